"""Random elementwise programs for the fusion tests (a hypothesis strategy).

A :class:`Program` is a straight-line sequence of elementwise operations over a few inputs
whose shapes broadcast to one iteration shape (some inputs are read transposed or
broadcast), optionally ending in a reduction over trailing axes. The operations are the
*exact* ones -- IEEE arithmetic, comparisons, selects, casts, rounding, integer and bitwise
ops -- whose results a kernel must reproduce bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from funcgrad import lax
from funcgrad.primitives import elementwise as ew, reduction as red, structural as struct

FLOAT = (np.float32, np.float64)
INT = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
DTYPES = FLOAT + INT + (np.bool_,)

BINARY = {
    "f": ["add", "sub", "mul", "div", "max", "min", "rem", "floor_divide"],
    "i": ["add", "sub", "mul", "max", "min", "rem", "floor_divide", "and", "or", "xor",
          "shift_left", "shift_right"],
    "b": ["and", "or", "xor", "max", "min"],
}
UNARY = {
    "f": ["neg", "abs", "sqrt_abs", "floor", "ceil", "round", "sign", "square"],
    "i": ["neg", "abs", "not", "sign", "square", "cube"],
    "b": ["not"],
}
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge"]


def kind(dtype) -> str:
    k = np.dtype(dtype).kind
    return "i" if k in "iu" else k


@dataclass
class Program:
    shape: tuple[int, ...]
    inputs: list[tuple[tuple[int, ...], np.dtype, str]]   # (shape, dtype, view: "", "T", "bcast")
    ops: list[tuple] = field(default_factory=list)        # (name, operand indices, literal)
    reduce: tuple[str, int] | None = None                  # (sum/max/min, trailing axes)

    def make_inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        return [sample(rng, s[::-1] if view == "T" else s, d) for s, d, view in self.inputs]

    def __call__(self, *xs):
        values = []
        for x, (shape, dtype, view) in zip(xs, self.inputs):
            if view == "T":
                x = struct.transpose(x, tuple(reversed(range(len(shape)))))
            elif view == "bcast":
                n = len(self.shape)
                x = struct.broadcast_in_dim(x, self.shape, tuple(range(n - len(shape), n)))
            values.append(x)
        for name, args, lit in self.ops:
            values.append(apply(name, [values[a] for a in args], lit))
        out = values[-1]
        if self.reduce is not None:
            how, k = self.reduce
            n = len(self.shape)
            axes = tuple(range(n - k, n))
            out = {"sum": red.reduce_sum, "max": red.reduce_max, "min": red.reduce_min}[how](out, axes)
        return [out, values[-1]]


def sample(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        x = rng.standard_normal(shape) * 8
        special = np.array([0.0, -0.0, 1.5, -2.5, 0.5, np.inf, -np.inf, np.nan], dtype)
        mask = rng.random(shape) < 0.2
        x = np.where(mask, special[rng.integers(0, len(special), shape)], x)
        return x.astype(dtype)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    small = rng.integers(-3 if info.min < 0 else 0, 4, shape).astype(dtype)
    return np.where(rng.random(shape) < 0.5, small, x)


def literal(dtype, value):
    return np.asarray(value).astype(dtype)[()]


def apply(name: str, args: list, lit):
    x = args[0]
    if lit is not None:
        args = args + [lit]
    if name == "sqrt_abs":
        return ew.sqrt(ew.abs(x))
    if name == "square":
        return lax.integer_pow(x, 2)
    if name == "cube":
        return lax.integer_pow(x, 3)
    if name in COMPARE:
        return getattr(ew, name)(*args)
    if name.startswith("cast_"):
        return safe_cast(x, np.dtype(name[5:]))
    if name == "select":
        return ew.select(*args)
    fn = {"and": ew.bitwise_and, "or": ew.bitwise_or, "xor": ew.bitwise_xor,
          "not": ew.bitwise_not}.get(name) or getattr(ew, name)
    return fn(*args)


def safe_cast(x, dtype: np.dtype):
    """A cast numpy defines: floats go to integers only from [0, 100], NaN as 0."""
    src = x.aval.dtype
    if src.kind == "f" and dtype.kind in "iu":
        zero = literal(src, 0)
        x = ew.select(ew.ne(x, x), ew.full_like(x, zero), ew.clamp(x, zero, literal(src, 100)))
    return ew.convert_element_type(x, dtype)


@st.composite
def programs(draw, dtypes=DTYPES, max_ops: int = 8, reduce: bool = True, views: bool = True) -> Program:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    inputs = []
    for i in range(draw(st.integers(1, 3))):
        view = draw(st.sampled_from(["", "T", "bcast"] if views and i else [""]))
        in_shape = shape if view != "bcast" else shape[draw(st.integers(0, ndim)):]
        if view == "bcast" and draw(st.booleans()) and in_shape:
            in_shape = (1,) + in_shape[1:]
        inputs.append((in_shape, dtype, view))
    prog = Program(shape, inputs)
    types = [dtype] * len(inputs)
    for _ in range(draw(st.integers(2, max_ops))):
        i = draw(st.integers(0, len(types) - 1))
        t = types[i]
        k = kind(t)
        choice = draw(st.sampled_from(["unary", "binary", "binary_lit", "compare", "select", "cast"]))
        same = [j for j, u in enumerate(types) if u == t]
        if choice == "unary":
            prog.ops.append((draw(st.sampled_from(UNARY[k])), [i], None))
        elif choice in ("binary", "binary_lit"):
            name = draw(st.sampled_from(BINARY[k]))
            if name.startswith("shift"):
                width = np.dtype(t).itemsize * 8
                amount = draw(st.integers(0, width + 1))
                prog.ops.append((name, [i], literal(t, amount)))
            elif choice == "binary_lit":
                value = draw(st.sampled_from([0, 1, 2, 3, -1] if k != "b" else [0, 1]))
                if np.dtype(t).kind == "u" and value < 0:
                    value = 7
                if k == "f":
                    value = draw(st.sampled_from([0.5, -1.5, 3.0, 0.0, -0.0]))
                prog.ops.append((name, [i], literal(t, value)))
            else:
                prog.ops.append((name, [i, draw(st.sampled_from(same))], None))
        elif choice == "compare":
            prog.ops.append((draw(st.sampled_from(COMPARE)), [i, draw(st.sampled_from(same))], None))
            types.append(np.dtype(bool))
            continue
        elif choice == "select":
            preds = [j for j, u in enumerate(types) if u == np.dtype(bool)]
            if not preds:
                prog.ops.append((draw(st.sampled_from(COMPARE)), [i, i], None))
                types.append(np.dtype(bool))
                preds = [len(types) - 1]
            prog.ops.append(("select", [draw(st.sampled_from(preds)), i, draw(st.sampled_from(same))], None))
        else:
            target = np.dtype(draw(st.sampled_from(dtypes)))
            prog.ops.append((f"cast_{target.name}", [i], None))
            types.append(target)
            continue
        types.append(t)
    last = types[-1]
    if reduce and draw(st.booleans()):
        how = draw(st.sampled_from(["max", "min"] + (["sum"] if last.kind != "b" else [])))
        prog.reduce = (how, draw(st.integers(1, ndim)))
    return prog


def side_by_side(progs: list[Program], rng: np.random.Generator):
    """``(f, inputs)``: one function running ``progs`` on their own inputs, all outputs."""
    inputs = [p.make_inputs(rng) for p in progs]
    counts = [len(xs) for xs in inputs]

    def f(*xs):
        outs, at = [], 0
        for p, n in zip(progs, counts):
            outs += p(*xs[at:at + n])
            at += n
        return outs
    return f, [x for xs in inputs for x in xs]


def assert_same_bits(got, want, err_msg: str = ""):
    """Equal values, and for floats equal bits (signed zeros) with NaN where NaN is."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.dtype, got.shape) == (want.dtype, want.shape), (got.dtype, want.dtype, got.shape, err_msg)
    if got.dtype.kind == "f":
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=err_msg)
        bits = f"u{got.dtype.itemsize}"
        np.testing.assert_array_equal(np.where(nan, 0, got).view(bits), np.where(nan, 0, want).view(bits),
                                      err_msg=err_msg)
    else:
        np.testing.assert_array_equal(got, want, err_msg=err_msg)
