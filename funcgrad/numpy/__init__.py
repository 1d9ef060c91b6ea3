"""funcgrad.numpy: the NumPy API, traceable by every funcgrad transform.

With no transform active these functions return NumPy (or CuPy) arrays, computed by NumPy
itself; under ``grad``/``vmap``/``jit`` they are built from funcgrad primitives. Dtype rules
are NumPy 2's (Python scalars are weak: ``x32 * 2.0`` stays float32). Where this differs
from ``jax.numpy``: float64 is the default float (as NumPy), out-of-range integer indices
raise ``IndexError`` (as NumPy) rather than being clamped, and ``x.at[idx]`` updates exist as
in JAX since traced arrays are immutable.
"""
from numpy import (  # dtypes and constants, shared with NumPy
    bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float16, float32, float64,
    complex64, complex128, dtype, finfo, iinfo, e, pi, inf, nan, newaxis, euler_gamma,
    result_type, promote_types, can_cast, issubdtype, integer, floating, inexact, number,
    signedinteger, unsignedinteger, complexfloating, generic, ndarray,
)
from numpy import bool_ as bool  # noqa: A001 (numpy 2 exports `bool`)

from . import _indexing
from ._array import array, asarray, astype, ndim, shape, size
from ._creation import (
    arange, diag, diagonal, empty, empty_like, eye, full, full_like, identity, indices,
    linspace, logspace, meshgrid, ones, ones_like, trace, tri, tril, triu, zeros, zeros_like,
)
from ._dot import dot, inner, kron, matmul, outer, tensordot, vdot
from ._reductions import (
    all, amax, amin, any, argmax, argmin, average, count_nonzero, cumprod, cumsum,
    cumulative_prod, cumulative_sum, max, mean, min, nanmax, nanmean, nanmin, nansum, prod, ptp,
    std, sum, var,
)
from ._shape import (
    array_split, atleast_1d, atleast_2d, atleast_3d, broadcast_arrays, broadcast_shapes,
    broadcast_to, column_stack, concat, concatenate, diff, dstack, ediff1d, expand_dims, flip,
    fliplr, flipud, hsplit, hstack, matrix_transpose, moveaxis, pad, permute_dims, ravel,
    repeat, reshape, roll, rollaxis, rot90, row_stack, split, squeeze, stack, swapaxes, tile,
    transpose, vsplit, vstack,
)
from ._ufuncs import (
    abs, absolute, acos, acosh, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh,
    around, asin, asinh, atan, atan2, atanh, bitwise_and, bitwise_invert, bitwise_left_shift,
    bitwise_not, bitwise_or, bitwise_right_shift, bitwise_xor, cbrt, ceil, clip, conj, conjugate,
    copysign, cos, cosh, deg2rad, degrees, divide, equal, exp, exp2, expm1, fix, float_power,
    floor, floor_divide, fmax, fmin, fmod, greater, greater_equal, heaviside, hypot, imag,
    invert, isfinite, isinf, isnan, isneginf, isposinf, left_shift, less, less_equal, log,
    log1p, log2, log10, logaddexp, logaddexp2, logical_and, logical_not, logical_or,
    logical_xor, maximum, minimum, mod, multiply, negative, nextafter, not_equal, positive,
    power, rad2deg, radians, real, reciprocal, remainder, right_shift, rint, round, sign,
    signbit, sin, sinc, sinh, sqrt, square, subtract, tan, tanh, true_divide, trunc, where,
)

pow = power  # noqa: A001

from . import _methods  # noqa: E402

_methods.install(__import__(__name__, fromlist=["_"]))
