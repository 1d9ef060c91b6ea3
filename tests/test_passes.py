"""Each IR pass on its own: what it rewrites, what it must leave alone, and that the result
is well-typed (``check_jaxpr``) and computes the same values as its input."""
import numpy as np
import pytest

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, jit, lax, make_jaxpr
from funcgrad.compiler import passes

RNG = np.random.default_rng(0)


def arg(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def prims(closed):
    return [e.primitive.name for e in closed.jaxpr.eqns]


def run(closed, *args):
    return core.eval_jaxpr(closed.jaxpr, closed.consts, *args)


def check_pass(p, f, *args):
    """Apply pass ``p`` to ``f``'s jaxpr; check types and values; return the result.
    (Calls inside the jaxprs run as numpy code: fused kernels' math functions may differ
    from numpy's in the last bit, and the comparison is exact.)"""
    before = make_jaxpr(f)(*args)
    after = p(before)
    core.check_jaxpr(after)
    with funcgrad.config.override(backend="numpy"):
        for x, y in zip(run(before, *args), run(after, *args)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    return after


# --- inline_calls -------------------------------------------------------------------------------

def test_inline_calls_splices_nested_jit():
    inner = jit(lambda x: fnp.sin(x) * 2.0)
    outer = jit(lambda x: inner(x) + inner(x * 3.0))
    closed = make_jaxpr(lambda x: outer(x) - 1.0)(arg(3))
    assert prims(closed).count("jit_call") == 1
    after = check_pass(passes.inline_calls, lambda x: outer(x) - 1.0, arg(3))
    assert "jit_call" not in prims(after)
    assert prims(after).count("sin") == 2       # the same callee spliced twice, renamed


def test_inline_calls_moves_callee_consts():
    table = np.arange(3.0, dtype=np.float32)
    inner = jit(lambda x: x * table)
    after = check_pass(passes.inline_calls, lambda x: inner(x) + 1.0, arg(3))
    assert any(c is table for c in after.consts)


def test_inline_calls_leaves_call_free_jaxprs_alone():
    closed = make_jaxpr(lambda x: x + 1.0)(arg(2))
    assert passes.inline_calls(closed) is closed


# --- dce ----------------------------------------------------------------------------------------

def test_dce_drops_dead_equations_and_consts():
    table = np.ones(3, np.float32)

    def f(x):
        unused = fnp.exp(x) * table
        return x + 1.0

    after = check_pass(passes.dce, f, arg(3))
    assert prims(after) == ["add"]
    assert after.consts == []


def test_dce_keeps_live_inputs_and_order():
    after = check_pass(passes.dce, lambda x, y: (y * 2.0, fnp.sin(x)), arg(3), arg(3))
    assert prims(after) == ["mul", "sin"]
    assert len(after.jaxpr.invars) == 2


# --- cse ----------------------------------------------------------------------------------------

def test_cse_merges_repeated_computations():
    after = check_pass(passes.cse, lambda x: fnp.sin(x) * 2.0 + fnp.sin(x) * 2.0, arg(4))
    assert prims(after).count("sin") == 1 and prims(after).count("mul") == 1


def test_cse_distinguishes_params_and_signed_zero_literals():
    def f(x):
        return fnp.sum(x, axis=0), fnp.sum(x, axis=1), x + 0.0, x + (-0.0)
    after = check_pass(passes.cse, f, arg(2, 3))
    assert prims(after).count("reduce_sum") == 2
    assert prims(after).count("add") == 2


# --- fold_constants -----------------------------------------------------------------------------

def test_fold_constants_computes_small_results():
    table = np.arange(4.0, dtype=np.float32)

    def f(x):
        scale = fnp.sum(fnp.exp(table))          # known: becomes a literal
        return x * scale + fnp.cos(table)        # cos(table) is small: becomes a const

    after = check_pass(passes.fold_constants, f, arg(4))
    assert prims(after) == ["mul", "add"]


def test_fold_constants_keeps_large_results():
    big = np.ones(10_000, np.float32)
    after = check_pass(passes.fold_constants, lambda x: x + fnp.exp(big), arg(10_000))
    assert "exp" in prims(after)


def test_fold_constants_leaves_errors_to_run_time():
    ints = np.arange(1, 4, dtype=np.int32)
    after = passes.fold_constants(make_jaxpr(lambda x: (x, lax.integer_pow(ints, -1)))(arg(3)))
    core.check_jaxpr(after)
    assert "integer_pow" in prims(after)        # numpy raises for int ** negative


def test_fold_constants_of_literal_only_equations():
    after = check_pass(passes.fold_constants,
                       lambda x: x * lax.add(np.float32(2.0), np.float32(1.0)), arg(3))
    assert prims(after) == ["mul"]
    assert after.jaxpr.eqns[0].invars[1].val == 3.0


# --- simplify -----------------------------------------------------------------------------------

@pytest.mark.parametrize("f, gone", [
    (lambda x: x * 1.0, "mul"),
    (lambda x: 1.0 * x, "mul"),
    (lambda x: x / 1.0, "div"),
    (lambda x: x - 0.0, "sub"),
    (lambda x: -(-x), "neg"),
    (lambda x: fnp.transpose(fnp.transpose(x)), "transpose"),
    (lambda x: fnp.reshape(fnp.reshape(x, (6,)), (2, 3)), "reshape"),
    (lambda x: fnp.squeeze(fnp.expand_dims(x, 0), 0), "squeeze"),
    (lambda x: x.astype(np.float32), "convert_element_type"),
    (lambda x: lax.integer_pow(x, 1), "integer_pow"),
])
def test_simplify_identities(f, gone):
    after = passes.dce(check_pass(passes.simplify, f, arg(2, 3)))
    assert gone not in prims(after)


def test_simplify_keeps_inexact_identities():
    # x + 0.0 turns -0.0 into 0.0, so it stays for floats; for integers it goes.
    assert prims(passes.simplify(make_jaxpr(lambda x: x + 0.0)(arg(3)))) == ["add"]
    ints = np.arange(3, dtype=np.int32)
    assert prims(passes.dce(passes.simplify(make_jaxpr(lambda x: x + 0)(ints)))) == []
    x = np.array([-0.0, 1.0], np.float32)
    assert np.signbit(jit(lambda x: x + 0.0)(x)[0]) == np.signbit(x[0] + 0.0)


def test_simplify_composes_transposes_and_broadcasts():
    after = passes.dce(check_pass(passes.simplify,
                                  lambda x: fnp.transpose(fnp.transpose(x, (1, 2, 0)), (1, 2, 0)),
                                  arg(2, 3, 4)))
    assert prims(after) == ["transpose"]
    after = passes.dce(check_pass(
        passes.simplify, lambda x: lax.broadcast_in_dim(lax.broadcast_in_dim(x, (3, 4), (1,)),
                                                        (2, 3, 4), (1, 2)), arg(4)))
    assert prims(after) == ["broadcast_in_dim"]
    assert after.jaxpr.eqns[0].params["broadcast_dimensions"] == (2,)


def test_simplify_absorbs_broadcast_operands():
    def f(x, row, col):
        return (x * lax.broadcast_in_dim(row, (2, 3), (1,)) +
                lax.broadcast_in_dim(col, (2, 3), (0,)) * x - lax.full((2, 3), 2.0, np.float32))
    after = passes.dce(check_pass(passes.simplify, f, arg(2, 3), arg(3), arg(2)))
    assert "broadcast_in_dim" not in prims(after)
    # the column needs a reshape to (2, 1) for NumPy's trailing alignment
    assert "reshape" in prims(after)
    assert after.jaxpr.eqns[-1].invars[1].val == 2.0


def test_simplify_keeps_the_broadcast_that_gives_the_shape():
    def f(col):
        return lax.broadcast_in_dim(col, (2, 3), (0,)) * lax.full((2, 3), 2.0, np.float32)
    after = passes.dce(check_pass(passes.simplify, f, arg(2)))
    assert prims(after) == ["mul", "broadcast_in_dim"]     # computed on 2 elements, then broadcast


def test_simplify_sinks_shared_broadcasts():
    def f(s, t):
        b = lax.broadcast_in_dim(s, (50, 40), ())
        c = lax.broadcast_in_dim(t, (50, 40), ())
        return fnp.exp(b) * c
    after = passes.dce(check_pass(passes.simplify, f, arg(), arg()))
    assert prims(after)[-1] == "broadcast_in_dim"
    assert all(v.aval.shape == () for e in after.jaxpr.eqns[:-1] for v in e.outvars)


def test_simplify_swaps_transposed_matmul():
    after = passes.dce(check_pass(passes.simplify, lambda a, b: (a.T @ b).T, arg(5, 3), arg(5, 4)))
    assert prims(after) == ["dot_general"]
    assert after.jaxpr.outvars[0].aval.shape == (4, 3)


def test_simplify_select_with_known_predicate():
    after = passes.dce(check_pass(passes.simplify, lambda x, y: lax.select(True, x, y), arg(3), arg(3)))
    assert prims(after) == []


# --- the pipeline -------------------------------------------------------------------------------

def test_optimize_checks_every_pass_and_reaches_a_fixpoint():
    def f(x, w):
        h = fnp.maximum(x @ w + 1.0, 0.0)
        return fnp.sum(h * 1.0) + fnp.sum(h * 1.0)
    closed = make_jaxpr(f)(arg(4, 3), arg(3, 2))
    once = passes.optimize(closed, check=True)
    assert passes.optimize(once) is once
    assert prims(once).count("dot_general") == 1 and "mul" not in prims(once)


def test_optimize_reports_the_failing_pass(monkeypatch):
    def broken(closed):
        j = closed.jaxpr
        return core.ClosedJaxpr(core.Jaxpr(j.constvars, j.invars, j.eqns[1:], j.outvars), closed.consts)
    broken.__name__ = "broken"
    monkeypatch.setattr(passes, "PASSES", (broken,))
    with pytest.raises(core.JaxprTypeError, match="after pass broken"):
        passes.optimize(make_jaxpr(lambda x: fnp.sin(x) + 1.0)(arg(2)), check=True)
