"""einsum: hypothesis-generated expressions against numpy.einsum (values, derivatives, vmap),
contraction order, the subscript language's corners, and its errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, make_jaxpr
from funcgrad.test_util import check_grads

import primitive_harness as h
from primitive_harness import Operand

F32, F64, I32 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)
LABELS = "abcdeA"


@st.composite
def expressions(draw):
    """(subscripts, operand shapes): 1-4 operands of 0-3 labelled axes (repeats allowed:
    diagonals), sometimes '...' broadcast axes, some size-1 axes broadcasting, explicit or
    implicit output."""
    sizes = {l: draw(st.integers(1, 3)) for l in LABELS}
    n_ops = draw(st.integers(1, 4), label="operands")
    use_ellipsis = draw(st.booleans(), label="ellipsis")
    ell_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2))) if use_ellipsis else ()
    terms, shapes = [], []
    for _ in range(n_ops):
        labels = draw(st.lists(st.sampled_from(LABELS), max_size=3))
        shape = [sizes[l] for l in labels]
        # a size-1 axis broadcasts against the label's size elsewhere
        ones = [i for i in range(len(shape)) if draw(st.integers(0, 5)) == 0]
        shape = [1 if i in ones and labels.count(labels[i]) == 1 else n for i, n in enumerate(shape)]
        term = "".join(labels)
        if use_ellipsis and draw(st.booleans()):
            k = draw(st.integers(0, len(labels)))
            n_ell = draw(st.integers(0, len(ell_shape)))
            ell = [1 if draw(st.integers(0, 4)) == 0 else n for n in ell_shape[len(ell_shape) - n_ell:]]
            term = term[:k] + "..." + term[k:]
            shape = shape[:k] + ell + shape[k:]
        terms.append(term)
        shapes.append(tuple(shape))
    spec = ",".join(terms)
    if draw(st.booleans(), label="explicit"):
        used = sorted({l for t in terms for l in t if l != "."})
        out = draw(st.permutations(used).flatmap(lambda p: st.integers(0, len(p)).map(lambda k: p[:k])))
        out = "".join(out)
        if "..." in spec:
            k = draw(st.integers(0, len(out)))
            out = out[:k] + "..." + out[k:]
        spec += "->" + out
    return spec, shapes


@settings(max_examples=40)
@given(data=st.data(), expr=expressions(), dtype=st.sampled_from([F32, F64, I32]))
def test_einsum_matches_numpy(data, expr, dtype):
    spec, shapes = expr
    tol = 2e-5 if dtype == F32 else 1e-10
    h.check_primitive(data, lambda *xs: fnp.einsum(spec, *xs), [Operand(s, dtype) for s in shapes],
                      lambda *xs: np.einsum(spec, *xs), rtol=tol, atol=tol)


@pytest.mark.parametrize("spec,shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),                 # implicit output
    ("ii", [(3, 3)]),                            # trace
    ("ii->i", [(3, 3)]),                         # diagonal
    ("iij->ji", [(2, 2, 3)]),
    ("iii->i", [(2, 2, 2)]),
    ("ijk->", [(2, 3, 4)]),
    ("i,j->ij", [(2,), (3,)]),
    ("ij->ji", [(2, 3)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("...i,...i", [(2, 3), (3,)]),
    ("ba,Ab", [(2, 3), (4, 2)]),                 # implicit order: 'A' sorts before 'a'
    ("i,i,i->", [(4,), (4,), (4,)]),
    ("ij,ij->ij", [(1, 3), (2, 3)]),             # size-1 axis broadcasts
    ("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 2)]),
    (",ij->ij", [(), (2, 3)]),
    ("ij,kl->", [(2, 0), (3, 4)]),               # zero-size
])
def test_einsum_cases(spec, shapes, rng):
    xs = [rng.standard_normal(s) for s in shapes]
    closed = make_jaxpr(lambda *a: fnp.einsum(spec, *a))(*xs)
    core.check_jaxpr(closed)
    np.testing.assert_allclose(closed(*xs)[0], np.einsum(spec, *xs), rtol=1e-12, atol=1e-12)
    check_grads(lambda *a: fnp.einsum(spec, *a), xs, order=2)


def _largest_intermediate(closed) -> int:
    return max(v.aval.size for e in closed.eqns for v in e.outvars)


def test_contraction_order_avoids_large_intermediates(rng):
    """(100x2)(2x100)(100x3): left to right builds a 100x100 matrix; the greedy order
    contracts the two small-rank factors first."""
    xs = [rng.standard_normal(s) for s in [(100, 2), (2, 100), (100, 3)]]
    greedy = make_jaxpr(lambda *a: fnp.einsum("ij,jk,kl->il", *a))(*xs)
    assert _largest_intermediate(greedy) == 300
    assert [e.primitive.name for e in greedy.eqns] == ["dot_general", "dot_general"]
    naive = make_jaxpr(lambda *a: fnp.einsum("ij,jk,kl->il", *a, optimize=False))(*xs)
    assert _largest_intermediate(naive) == 100 * 100
    expected = np.einsum("ij,jk,kl->il", *xs)
    for opt in (True, False, "greedy", "optimal", np.einsum_path("ij,jk,kl->il", *xs)[0]):
        out = make_jaxpr(lambda *a: fnp.einsum("ij,jk,kl->il", *a, optimize=opt))(*xs)(*xs)[0]
        np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_shared_indices_become_batch_axes(rng):
    """An index kept in the output and shared by both operands is a dot_general batch axis
    (no broadcast, no elementwise product)."""
    a, b = rng.standard_normal((5, 2, 3)), rng.standard_normal((3, 5, 4))
    closed = make_jaxpr(lambda x, y: fnp.einsum("bij,jbk->bik", x, y))(a, b)
    assert h.primitives_in(closed) <= {"dot_general", "transpose"}
    dot, = [e for e in closed.eqns if e.primitive.name == "dot_general"]
    assert dot.params["dimension_numbers"] == (((2,), (0,)), ((0,), (1,)))


def test_vmap_of_einsum_is_one_dot_general(rng):
    a, b = rng.standard_normal((7, 2, 3)), rng.standard_normal((3, 4))
    f = funcgrad.vmap(lambda x: fnp.einsum("ij,jk->ik", x, b))
    closed = make_jaxpr(f)(a)
    assert [e.primitive.name for e in closed.eqns] == ["dot_general"]
    np.testing.assert_allclose(f(a), np.einsum("nij,jk->nik", a, b), rtol=1e-12)


def test_interleaved_form(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    expected = np.einsum(a, [0, 1], b, [1, 2], [0, 2])
    out = make_jaxpr(lambda x, y: fnp.einsum(x, [0, 1], y, [1, 2], [0, 2]))(a, b)(a, b)[0]
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    out = make_jaxpr(lambda x: fnp.einsum(x, [Ellipsis, 1]))(a)(a)[0]
    np.testing.assert_allclose(out, np.einsum(a, [Ellipsis, 1]))


def test_dtypes(rng):
    ints = rng.integers(-3, 4, (3, 4)).astype(np.int32)
    f32 = rng.standard_normal((4,)).astype(np.float32)
    for args, spec in [((ints, ints), "ij,ij->j"), ((ints, f32), "ij,j->i"),
                       ((f32, np.ones(4)), "i,i")]:
        out = make_jaxpr(lambda *a: fnp.einsum(spec, *a))(*args)(*args)[0]
        expected = np.einsum(spec, *args)
        assert out.dtype == expected.dtype
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    bools = rng.integers(0, 2, (3, 4)).astype(bool)
    out = make_jaxpr(lambda a, b: fnp.einsum("ij,jk->ik", a, b))(bools, bools.T)(bools, bools.T)[0]
    np.testing.assert_array_equal(out, np.einsum("ij,jk->ik", bools, bools.T))
    out = make_jaxpr(lambda a: fnp.einsum("ij->i", a, dtype=np.float32))(ints)(ints)[0]
    assert out.dtype == np.float32


def test_eager_is_numpy(rng):
    a = rng.standard_normal((2, 3))
    out = fnp.einsum("ij->j", a)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, np.einsum("ij->j", a))


@pytest.mark.parametrize("spec,shapes,message", [
    ("ij,jk->ik", [(2, 3)], r"subscripts 'ij,jk->ik' name 2 operands but 1 were given"),
    ("ij", [(2, 3, 4)], r"operand 0 has 3 axes but its subscripts 'ij' name 2"),
    ("ij,jk", [(2, 3), (4, 5)], r"index 'j' has size 3 in operand 0 but 4 in operand 1"),
    ("i1", [(2, 3)], r"invalid character '1' in the subscripts of operand 0"),
    ("ij->k", [(2, 3)], r"output subscript 'k' never appears in an input"),
    ("ij->ii", [(2, 3)], r"output subscript 'i' is repeated"),
    ("ii", [(2, 3)], r"the axes of repeated index 'i' in operand 0 have different sizes \(2 != 3\)"),
    ("...i->i", [(2, 3)], r"the operands have axes under '...' but the output 'i' has no '...'"),
    ("...i,...i", [(2, 3), (4, 3)], r"a broadcast \('...'\) axis has size 2 in operand 0 but 4"),
])
def test_errors(spec, shapes, message):
    xs = [np.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=r"einsum: " + message + r".*test_einsum.py"):
        make_jaxpr(lambda *a: fnp.einsum(spec, *a))(*xs)
