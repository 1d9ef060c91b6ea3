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
    promote_types, issubdtype, integer, floating, inexact, number,
    signedinteger, unsignedinteger, complexfloating, generic, ndarray,
)
from numpy import bool_ as bool  # noqa: A001 (numpy 2 exports `bool`)

from . import _indexing
from ._array import array, asarray, astype, can_cast, ndim, result_type, shape, size
from ._creation import (
    arange, copy, diag, diagflat, diagonal, empty, empty_like, eye, full, full_like, identity,
    indices, linspace, logspace, meshgrid, ones, ones_like, trace, tri, tril, triu, vander,
    zeros, zeros_like,
)
from ._dot import cross, dot, inner, kron, matmul, outer, polyval, tensordot, vdot, vecdot
from ._einsum import einsum
from ._indexing import (
    argsort, argwhere, bincount, choose, compress, extract, flatnonzero, lexsort, nonzero, searchsorted,
    select, sort, take, take_along_axis, unique,
)
from ._reductions import (
    all, allclose, amax, amin, any, argmax, argmin, array_equal, array_equiv, average,
    corrcoef, count_nonzero, cov, cumprod, cumsum, cumulative_prod, cumulative_sum, histogram,
    max, mean,
    median, min, nanargmax, nanargmin, nancumprod, nancumsum, nanmax, nanmean, nanmin, nanprod,
    nanstd, nansum, nanvar, percentile, prod, ptp, quantile, std, sum, trapezoid, var,
)
from ._shape import (
    append, array_split, atleast_1d, atleast_2d, atleast_3d, broadcast_arrays, broadcast_shapes,
    broadcast_to, column_stack, concat, concatenate, diff, dsplit, dstack, ediff1d, expand_dims,
    flip, fliplr, flipud, hsplit, hstack, matrix_transpose, moveaxis, pad, permute_dims, ravel,
    repeat, reshape, roll, rollaxis, rot90, row_stack, split, squeeze, stack, swapaxes, tile,
    transpose, unstack, vsplit, vstack,
)
from ._ufuncs import (
    abs, absolute, acos, acosh, add, angle, arccos, arccosh, arcsin, arcsinh, arctan, arctan2,
    arctanh, around, asin, asinh, atan, atan2, atanh, bitwise_and, bitwise_invert,
    bitwise_left_shift, bitwise_not, bitwise_or, bitwise_right_shift, bitwise_xor, cbrt, ceil,
    clip, conj, conjugate, copysign, cos, cosh, deg2rad, degrees, divide, divmod, equal, exp, exp2,
    expm1, fabs, fix, float_power, floor, floor_divide, fmax, fmin, fmod, greater, greater_equal,
    heaviside, hypot, imag, interp, invert, isclose, iscomplex, isfinite, isinf, isnan, isneginf,
    isposinf, isreal, ldexp, left_shift, less, less_equal, log, log10, log1p, log2, logaddexp,
    logaddexp2, logical_and, logical_not, logical_or, logical_xor, maximum, minimum, mod, modf,
    multiply, nan_to_num, negative, nextafter, not_equal, positive, pow, power, rad2deg, radians,
    real, reciprocal, remainder, right_shift, rint, round, sign, signbit, sin, sinc, sinh, sqrt,
    square, subtract, tan, tanh, true_divide, trunc, where,
)

from . import linalg  # noqa: E402
from . import _methods  # noqa: E402

_methods.install(__import__(__name__, fromlist=["_"]))
