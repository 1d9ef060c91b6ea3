"""funcgrad.lax: the primitives' own functions (strict dtypes, no promotion) and structured
control flow. Mirrors ``jax.lax`` names."""
from .primitives.control_flow import (  # noqa: F401
    cond, fori_loop, map, scan, switch, while_loop,
)
from .primitives.conv import (  # noqa: F401
    ConvDimensionNumbers, conv, conv_dimension_numbers, conv_general_dilated, conv_transpose,
    conv_with_general_padding, reduce_window,
)
from .primitives.elementwise import (  # noqa: F401
    abs, acos, acosh, add, asin, asinh, atan, atan2, atanh, bitcast_convert_type, bitwise_and,
    bitwise_not, bitwise_or, bitwise_xor, cbrt, ceil, clamp, convert_element_type, cos, cosh,
    div, eq, erf, erf_inv, erfc, exp, exp2, expm1, floor, floor_divide, ge, gt, integer_pow,
    is_finite, le, log, log1p, log2, log10, logistic, lt, max, min, mul, ne, neg, nextafter,
    pow, rem, round, rsqrt, select, shift_left, shift_right, sign, sin, sinh, sqrt, stop_gradient,
    sub, tan, tanh, full_like, zeros_like,
)
from .primitives.indexing import (  # noqa: F401
    dynamic_index_in_dim, dynamic_slice, dynamic_slice_in_dim, dynamic_update_index_in_dim,
    dynamic_update_slice, dynamic_update_slice_in_dim, gather, index_take, scatter, scatter_add,
    scatter_max, scatter_min, scatter_mul, sort, sort_key_val, take_along_axis,
)
from .primitives.linalg import (  # noqa: F401
    cholesky, dot, dot_general, eigh, lu, lu_solve, qr, svd, triangular_solve,
)
from .primitives.reduction import (  # noqa: F401
    argmax, argmin, associative_scan, cummax, cummin, cumprod, cumsum, reduce_and, reduce_max,
    reduce_min, reduce_or, reduce_prod, reduce_sum,
)
from .primitives.structural import (  # noqa: F401
    broadcast_in_dim, broadcast_to, broadcasted_iota, concatenate, expand_dims, full, iota, pad,
    reshape, rev, slice, slice_in_dim, squeeze, transpose,
)

