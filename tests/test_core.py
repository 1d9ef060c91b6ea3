"""The IR and tracing (funcgrad.core): the printed jaxpr, check_jaxpr, trace-time shape/dtype
errors, Python control flow on concrete and abstract values, leaked tracers, and the tracer's
ndarray interface."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, lax
from funcgrad.core import ConcretizationError, JaxprTypeError, UnexpectedTracerError

HERE = os.path.basename(__file__)


def line_of(fun, offset: int = 1) -> str:
    """``test_core.py:N`` for the line ``offset`` lines below ``fun``'s ``def``."""
    return f"{HERE}:{fun.__code__.co_firstlineno + offset}"


def mlp(params, x):
    (w1, b1), (w2, b2) = params
    h = fnp.tanh(x @ w1 + b1)
    return h @ w2 + b2


def mlp_loss(params, x, y):
    return fnp.mean((mlp(params, x) - y) ** 2)


def mlp_args(dtype=np.float32):
    rng = np.random.default_rng(0)
    params = [(rng.standard_normal((3, 4)).astype(dtype), np.zeros(4, dtype)),
              (rng.standard_normal((4, 2)).astype(dtype), np.zeros(2, dtype))]
    return params, rng.standard_normal((5, 3)).astype(dtype), np.ones((5, 2), dtype)


# ---------------------------------------------------------------------------------------------
# The printed IR

BINDER = r"[a-z_]+:(?:f32|f64|i32|bool)\[[\d,]*\]"
EQN = re.compile(rf"^    (?:{BINDER} )+= (?P<prim>[a-z_]+)(?:\[(?P<params>.*)\])?(?P<args>(?: \S+)*)$")


def parse_jaxpr_text(text: str):
    """Check the printed form line by line; return (input binders, [primitive], outputs)."""
    lines = text.splitlines()
    head = re.fullmatch(rf"{{ lambda (?P<consts>(?:{BINDER} ?)*); (?P<ins>(?:{BINDER} ?)*)\. let",
                        lines[0])
    assert head, lines[0]
    prims = []
    for line in lines[1:-1]:
        m = EQN.match(line)
        assert m, f"not an equation line: {line!r}"
        prims.append(m["prim"])
    tail = re.fullmatch(r"  in \((?P<outs>[a-z_]+(?:, [a-z_]+)*,?)\) }", lines[-1])
    assert tail, lines[-1]
    return head["ins"].split(), prims, tail["outs"].rstrip(",").split(", ")


def test_make_jaxpr_of_an_mlp_prints_readable_ir_with_shapes():
    params, x, _ = mlp_args()
    text = str(funcgrad.make_jaxpr(mlp)(params, x))
    ins, prims, outs = parse_jaxpr_text(text)
    assert ins == ["a:f32[3,4]", "b:f32[4]", "c:f32[4,2]", "d:f32[2]", "e:f32[5,3]"]
    assert prims == ["dot_general", "add", "tanh", "dot_general", "add"]
    assert len(outs) == 1
    lines = text.splitlines()
    assert lines[1] == "    f:f32[5,4] = dot_general[dimension_numbers=(((1,), (0,)), ((), ()))] e a"
    assert lines[2] == "    g:f32[5,4] = add f b"
    assert lines[-1] == "  in (j,) }"


def test_printed_ir_can_show_the_user_source_line_of_each_equation():
    params, x, _ = mlp_args()
    text = core.pp_jaxpr(funcgrad.make_jaxpr(mlp)(params, x).jaxpr, source=True)
    first, second = line_of(mlp, 2), line_of(mlp, 3)
    srcs = [line.split("    # ")[1] for line in text.splitlines()[1:-1]]
    assert srcs == [f"{first} (mlp)"] * 3 + [f"{second} (mlp)"] * 2


def test_literals_print_with_their_type_unless_weak():
    text = str(funcgrad.make_jaxpr(lambda x: x * 2.0 + np.float32(1))(np.ones(3, np.float32)))
    assert "mul a 2.0:f32[]" in text and "add b 1.0:f32[]" in text
    text = str(funcgrad.make_jaxpr(lambda x: x * 2)(np.int32(3)))
    assert re.search(r"mul a 2:i32\[\]", text)


def test_sub_jaxprs_print_indented():
    def f(x):
        return lax.cond(x.sum() > 0, lambda v: v * 2.0, lambda v: v - 1.0, x)
    text = str(funcgrad.make_jaxpr(f)(np.ones(3)))
    branch_heads = [line for line in text.splitlines() if line.strip().startswith("{ lambda")]
    assert len(branch_heads) == 3
    assert all(line.startswith("        { lambda") for line in branch_heads[1:])


def test_make_jaxpr_static_argnums_and_return_shape():
    jaxpr, shape = funcgrad.make_jaxpr(lambda x, n: fnp.tile(x, n), static_argnums=1,
                                       return_shape=True)(np.ones(2, np.float32), 3)
    assert len(jaxpr.in_avals) == 1
    assert shape.shape == (6,) and shape.dtype == np.float32


def test_eval_jaxpr_reproduces_the_function():
    params, x, y = mlp_args(np.float64)
    closed = funcgrad.make_jaxpr(mlp_loss)(params, x, y)
    flat = funcgrad.tree_util.tree_leaves((params, x, y))
    np.testing.assert_allclose(closed(*flat)[0], mlp_loss(params, x, y), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# check_jaxpr


def test_check_jaxpr_accepts_every_transformed_jaxpr():
    params, x, y = mlp_args(np.float64)
    per_example = lambda p, xi, yi: mlp_loss(p, xi[None], yi[None])
    jaxprs = [
        funcgrad.make_jaxpr(mlp_loss)(params, x, y),
        funcgrad.make_jaxpr(funcgrad.grad(mlp_loss))(params, x, y),
        funcgrad.make_jaxpr(funcgrad.vmap(funcgrad.grad(per_example), (None, 0, 0)))(params, x, y),
        funcgrad.make_jaxpr(funcgrad.hessian(lambda w: mlp_loss([(w, params[0][1]), params[1]], x, y)))(params[0][0]),
        funcgrad.jit(funcgrad.grad(mlp_loss)).lower(params, x, y).jaxpr,
        funcgrad.jit(funcgrad.grad(mlp_loss)).lower(params, x, y).optimized_jaxpr,
    ]
    for j in jaxprs:
        core.check_jaxpr(j)


def _tiny_jaxpr():
    return funcgrad.make_jaxpr(lambda x: fnp.sin(x) * 2.0)(np.ones(3)).jaxpr


def test_check_jaxpr_rejects_a_variable_used_before_it_is_bound():
    j = _tiny_jaxpr()
    j.eqns.reverse()
    with pytest.raises(JaxprTypeError, match="used before it is bound"):
        core.check_jaxpr(j)


def test_check_jaxpr_rejects_a_variable_bound_twice():
    j = _tiny_jaxpr()
    j.eqns[1] = j.eqns[1].replace(outvars=[j.invars[0]])
    with pytest.raises(JaxprTypeError, match="bound twice"):
        core.check_jaxpr(j)


def test_check_jaxpr_rejects_a_wrongly_typed_binder():
    j = _tiny_jaxpr()
    j.eqns[0] = j.eqns[0].replace(outvars=[core.Var(core.ShapedArray((4,), np.float64))])
    with pytest.raises(JaxprTypeError, match=r"binder type f64\[4\] but rule gives f64\[3\]"):
        core.check_jaxpr(j)


def test_check_jaxpr_rejects_ill_typed_operands():
    j = funcgrad.make_jaxpr(lambda x, y: x + y)(np.ones(3), np.ones(3)).jaxpr
    j.invars[1] = core.Var(core.ShapedArray((4,), np.float64))
    j.eqns[0] = j.eqns[0].replace(invars=[j.invars[0], j.invars[1]])
    with pytest.raises(JaxprTypeError, match="in equation add"):
        core.check_jaxpr(j)


# ---------------------------------------------------------------------------------------------
# Trace-time shape and dtype errors name the operation, the operand types and the user's line


def bad_add(x):
    return x + fnp.ones(5, np.float32)


def bad_matmul(x):
    return x @ fnp.ones((5, 2), np.float32)


def bad_reshape(x):
    return x.reshape((5, 3))


def bad_concatenate(x):
    return fnp.concatenate([x, fnp.ones((2, 5), np.float32)], axis=0)


def bad_conv(x):
    return lax.conv_general_dilated(x.reshape((1, 3, 2, 2)), fnp.ones((4, 2, 1, 1), np.float32),
                                    (1, 1), "SAME")


def bad_dtype_dot(x):
    return lax.dot_general(x, np.ones((4, 2), np.int32), (((1,), (0,)), ((), ())))


SHAPE_ERRORS = [
    (bad_add, "add", "shapes cannot be broadcast together", "f32[3,4], f32[5]"),
    (bad_matmul, "matmul", "contracting sizes differ: 4", "f32[3,4], f32[5,2]"),
    (bad_reshape, "reshape", "cannot reshape an array of size 12 into shape (5, 3)", "f32[3,4]"),
    (bad_concatenate, "concatenate", "equal shapes except along dimension 0", "f32[3,4], f32[2,5]"),
    (bad_conv, "conv_general_dilated", "lhs feature axis 1 has size 3", "f32[1,3,2,2], f32[4,2,1,1]"),
    (bad_dtype_dot, "dot_general", "same dtype", "f32[3,4], i32[4,2]"),
]


@pytest.mark.parametrize("fun, op, what, operands", SHAPE_ERRORS, ids=lambda v: getattr(v, "__name__", None))
@pytest.mark.parametrize("transform", ["make_jaxpr", "grad", "vmap", "jit"])
def test_shape_errors_name_the_operation_operands_and_user_line(fun, op, what, operands, transform):
    x = np.ones((3, 4), np.float32)
    run = {"make_jaxpr": lambda: funcgrad.make_jaxpr(fun)(x),
           "grad": lambda: funcgrad.grad(lambda v: fun(v).sum())(x),
           "vmap": lambda: funcgrad.vmap(fun, in_axes=None, axis_size=2)(x),
           "jit": lambda: funcgrad.jit(fun)(x)}[transform]
    with pytest.raises(TypeError) as info:
        run()
    msg = str(info.value)
    assert msg.startswith(f"{op}: "), msg
    assert what in msg and f"(operands: {operands})" in msg, msg
    assert msg.endswith(f"at {line_of(fun)} ({fun.__name__})"), msg


def test_shape_errors_inside_a_transform_point_at_the_innermost_user_frame():
    def outer(x):
        return helper(x)

    def helper(x):
        return x + fnp.ones(7)

    with pytest.raises(TypeError, match=rf"at {line_of(helper)} \(helper\)$"):
        funcgrad.grad(lambda x: outer(x).sum())(np.ones(3))


# ---------------------------------------------------------------------------------------------
# Python control flow on values


def relu_or_square(x):
    if x.sum() > 0:
        return fnp.sum(x ** 2)
    return fnp.sum(fnp.maximum(x, 0.0))


def test_python_control_flow_on_concrete_values_works_under_grad():
    pos, neg = np.array([1.0, 2.0]), np.array([-1.0, -2.0])
    np.testing.assert_allclose(funcgrad.grad(relu_or_square)(pos), 2 * pos)
    np.testing.assert_allclose(funcgrad.grad(relu_or_square)(neg), [0.0, 0.0])


def test_python_loop_count_from_a_value_works_under_grad():
    def power(x, n):
        out = x
        for _ in range(int(n) - 1):
            out = out * x
        return out
    np.testing.assert_allclose(funcgrad.grad(power)(1.5, np.int32(4)), 4 * 1.5 ** 3)
    np.testing.assert_allclose(funcgrad.grad(funcgrad.grad(power))(1.5, np.int32(3)), 6 * 1.5)


def test_python_control_flow_works_under_vmap_on_unbatched_values():
    def f(x, scale):
        if scale.sum() > 0:
            return x * scale
        return x - scale
    xs = np.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(funcgrad.vmap(f, in_axes=(0, None))(xs, np.ones(2)), xs)
    np.testing.assert_allclose(funcgrad.vmap(f, in_axes=(0, None))(xs, -np.ones(2)), xs + 1)
    # ... and under grad of vmap, and vmap of grad
    g = funcgrad.grad(lambda s: funcgrad.vmap(f, in_axes=(0, None))(xs, s).sum())(np.ones(2))
    np.testing.assert_allclose(g, xs.sum(0))
    g = funcgrad.vmap(funcgrad.grad(lambda x, s: f(x, s).sum()), in_axes=(0, None))(xs, np.ones(2))
    np.testing.assert_allclose(g, np.ones_like(xs))


def test_control_flow_on_a_batched_value_raises_under_vmap():
    with pytest.raises(ConcretizationError) as info:
        funcgrad.vmap(relu_or_square)(np.ones((2, 3)))
    msg = str(info.value)
    assert f"at {line_of(relu_or_square)} (relu_or_square)" in msg
    assert "batched under vmap" in msg


@pytest.mark.parametrize("transform", [funcgrad.jit, funcgrad.make_jaxpr,
                                       lambda f: funcgrad.jit(funcgrad.grad(f))])
def test_control_flow_on_an_abstract_value_raises_naming_the_line(transform):
    with pytest.raises(ConcretizationError) as info:
        transform(relu_or_square)(np.ones(3))
    msg = str(info.value)
    assert f"bool() of a traced bool[] at {line_of(relu_or_square)} (relu_or_square)" in msg
    assert "argument `x`" in msg or "jit" in msg
    assert "funcgrad.lax.cond" in msg and "static_argnums" in msg


def test_jit_names_the_argument_a_concretized_value_depends_on():
    def f(params, n):
        return params["w"] * int(n["steps"])
    with pytest.raises(ConcretizationError, match=r"int\(\) of a traced i32\[\].*argument `n\['steps'\]`"):
        funcgrad.jit(f)({"w": np.ones(2)}, {"steps": np.int32(3)})
    assert funcgrad.jit(f, static_argnums=1) is not None


def test_static_argnums_make_control_flow_work_under_jit():
    def f(x, flag):
        return x * 2.0 if flag else x - 1.0
    g = funcgrad.jit(f, static_argnums=1)
    np.testing.assert_allclose(g(np.ones(2), True), [2.0, 2.0])
    np.testing.assert_allclose(g(np.ones(2), False), [0.0, 0.0])


def test_float_and_numpy_conversion_of_tracers_are_errors():
    with pytest.raises(core.TracerConversionError, match="float()"):
        funcgrad.grad(lambda x: float(x) * x)(1.0)
    with pytest.raises(core.TracerConversionError, match="converted to a numpy array"):
        funcgrad.grad(lambda x: np.asarray(x).sum())(np.ones(2))


# ---------------------------------------------------------------------------------------------
# Leaked tracers


def leaky(x, store):
    y = fnp.sin(x) * 2.0
    store.append(y)
    return y.sum()


@pytest.mark.parametrize("use", ["eager op", "numpy ufunc", "indexing", "inside grad", "inside jit",
                                 "inside vmap"])
def test_a_leaked_tracer_is_reported_with_the_line_that_made_it(use):
    store = []
    funcgrad.grad(leaky)(np.ones(3), store)
    leaked = store[0]
    run = {"eager op": lambda: leaked + 1.0,
           "numpy ufunc": lambda: np.exp(leaked),
           "indexing": lambda: leaked[0],
           "inside grad": lambda: funcgrad.grad(lambda v: (v * leaked).sum())(np.ones(3)),
           "inside jit": lambda: funcgrad.jit(lambda v: v * leaked)(np.ones(3)),
           "inside vmap": lambda: funcgrad.vmap(lambda v: v * leaked)(np.ones((2, 3)))}[use]
    with pytest.raises(UnexpectedTracerError) as info:
        run()
    msg = str(info.value)
    assert f"created at {line_of(leaky)} (leaky)" in msg and "leaked tracer" in msg


def test_tracers_of_an_outer_trace_are_constants_of_an_inner_one():
    # A closure over the outer argument: the inner grad treats it as a constant.
    def f(x):
        inner = funcgrad.grad(lambda y: fnp.sin(x * y))
        return inner(2.0)            # = x cos(2x)
    x = 0.7
    np.testing.assert_allclose(f(x), x * np.cos(2 * x))
    np.testing.assert_allclose(funcgrad.grad(f)(x), np.cos(2 * x) - 2 * x * np.sin(2 * x))


# ---------------------------------------------------------------------------------------------
# The tracer's ndarray interface


def test_tracer_operators_and_methods_match_numpy():
    rng = np.random.default_rng(1)
    a = rng.uniform(1.0, 2.0, (3, 4))
    b = rng.uniform(1.0, 2.0, (4,))
    cases = {
        "add": lambda x, y: x + y, "radd": lambda x, y: 1.0 + x, "sub": lambda x, y: x - y,
        "rsub": lambda x, y: 2.0 - x, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
        "rdiv": lambda x, y: 1.0 / x, "floordiv": lambda x, y: x // y, "mod": lambda x, y: x % y,
        "pow": lambda x, y: x ** y, "rpow": lambda x, y: 2.0 ** x, "matmul": lambda x, y: x @ y,
        "rmatmul": lambda x, y: y @ x.T, "neg": lambda x, y: -x, "pos": lambda x, y: +x,
        "abs": lambda x, y: abs(x - 1.5), "lt": lambda x, y: x < y, "le": lambda x, y: x <= y,
        "gt": lambda x, y: x > y, "ge": lambda x, y: x >= y, "eq": lambda x, y: x == y,
        "ne": lambda x, y: x != y, "T": lambda x, y: x.T, "reshape": lambda x, y: x.reshape(2, 6),
        "reshape_tuple": lambda x, y: x.reshape((-1,)), "astype": lambda x, y: x.astype(np.float32),
        "sum": lambda x, y: x.sum(axis=0), "mean": lambda x, y: x.mean(),
        "max": lambda x, y: x.max(axis=1, keepdims=True), "min": lambda x, y: x.min(),
        "index": lambda x, y: x[1:, ::2], "index_int": lambda x, y: x[-1],
        "index_array": lambda x, y: x[np.array([2, 0])], "index_mask": lambda x, y: y[y > 1.5],
        "at_set": lambda x, y: x.at[0, 1].set(9.0), "at_add": lambda x, y: x.at[:, 0].add(1.0),
        "at_mul": lambda x, y: x.at[1].multiply(3.0), "at_min": lambda x, y: x.at[2].min(1.2),
        "at_max": lambda x, y: x.at[2].max(1.8), "at_get": lambda x, y: x.at[1, 2].get(),
    }
    for name, fn in cases.items():
        want = fn(a, b) if not name.startswith("at_") else None
        # Concrete tracing (jvp outside jit) and abstract tracing (jit; a boolean mask needs
        # concrete values).
        got = funcgrad.jvp(fn, (a, b), (np.zeros_like(a), np.zeros_like(b)))[0]
        if name != "index_mask":
            np.testing.assert_allclose(funcgrad.jit(fn)(a, b), got, rtol=1e-12, err_msg=name)
        if want is None:               # numpy has no .at: write the expected value by hand
            want = {"at_set": lambda: _setitem(a, (0, 1), 9.0),
                    "at_add": lambda: _setitem(a, (slice(None), 0), a[:, 0] + 1.0),
                    "at_mul": lambda: _setitem(a, 1, a[1] * 3.0),
                    "at_min": lambda: _setitem(a, 2, np.minimum(a[2], 1.2)),
                    "at_max": lambda: _setitem(a, 2, np.maximum(a[2], 1.8)),
                    "at_get": lambda: a[1, 2]}[name]()
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
        assert np.asarray(got).dtype == np.asarray(want).dtype, name
    traced_attrs = []
    funcgrad.make_jaxpr(lambda x: traced_attrs.append((x.shape, x.dtype, x.ndim, x.size, len(x))) or x)(a)
    assert traced_attrs == [((3, 4), np.float64, 2, 12, 3)]


def _setitem(a, idx, value):
    out = a.copy()
    out[idx] = value
    return out


def test_shaped_array_equality_hash_and_weak_type():
    s = core.ShapedArray((2, 3), np.float32)
    assert s == core.ShapedArray((2, 3), "float32") and hash(s) == hash(core.ShapedArray((2, 3), np.float32))
    assert s != core.ShapedArray((2, 3), np.float32, weak_type=True)
    assert s != core.ShapedArray((3, 2), np.float32)
    assert str(s) == "f32[2,3]" and core.get_aval(2.0).weak_type and not core.get_aval(np.ones(2)).weak_type
