"""ndarray-like operators and methods of :class:`funcgrad.core.Tracer`.

Installed here (not in core) because they are funcgrad.numpy functions: ``a + b`` on a tracer
is ``funcgrad.numpy.add(a, b)``. NumPy functions called on tracers (``np.exp(t)``,
``np.sum(t)``) dispatch to the funcgrad.numpy function of the same name.
"""
from __future__ import annotations

from .. import core
from ..core import Tracer


def install(fnp) -> None:
    T = Tracer

    # Operators use the ``.operator`` variant of a ufunc where it has one: like Python
    # arithmetic on Python scalars, only-weak operands give a weak result (see _array.py).
    def binop(fn):
        fn = getattr(fn, "operator", fn)
        return lambda self, other: fn(self, other)

    def rbinop(fn):
        fn = getattr(fn, "operator", fn)
        return lambda self, other: fn(other, self)

    for name, fn in [("add", fnp.add), ("sub", fnp.subtract), ("mul", fnp.multiply),
                     ("truediv", fnp.true_divide), ("floordiv", fnp.floor_divide),
                     ("mod", fnp.remainder), ("pow", fnp.power), ("matmul", fnp.matmul),
                     ("and", fnp.bitwise_and), ("or", fnp.bitwise_or), ("xor", fnp.bitwise_xor),
                     ("lshift", fnp.left_shift), ("rshift", fnp.right_shift)]:
        setattr(T, f"__{name}__", binop(fn))
        setattr(T, f"__r{name}__", rbinop(fn))
    for name, fn in [("eq", fnp.equal), ("ne", fnp.not_equal), ("lt", fnp.less),
                     ("le", fnp.less_equal), ("gt", fnp.greater), ("ge", fnp.greater_equal)]:
        setattr(T, f"__{name}__", binop(fn))
    T.__divmod__ = lambda self, other: (fnp.floor_divide(self, other), fnp.remainder(self, other))
    T.__rdivmod__ = lambda self, other: (fnp.floor_divide(other, self), fnp.remainder(other, self))
    T.__neg__ = fnp.negative.operator
    T.__pos__ = lambda self: self
    T.__abs__ = fnp.absolute.operator
    T.__invert__ = fnp.invert.operator
    T.__round__ = lambda self, ndigits=None: fnp.round(self, ndigits or 0)
    T.__getitem__ = lambda self, idx: fnp._indexing.getitem(self, idx)

    T.T = property(lambda self: fnp.transpose(self))
    T.mT = property(lambda self: fnp.matrix_transpose(self))
    T.real = property(lambda self: fnp.real(self))
    T.imag = property(lambda self: fnp.imag(self))
    T.at = property(lambda self: fnp._indexing.IndexUpdateHelper(self))

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = shape[0]
        return fnp.reshape(self, shape, order)

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], int)):
            axes = axes[0]
        return fnp.transpose(self, axes or None)

    T.reshape = reshape
    T.transpose = transpose
    T.astype = lambda self, dtype, copy=False: fnp.astype(self, dtype)
    T.ravel = lambda self, order="C": fnp.ravel(self, order)
    T.flatten = T.ravel
    T.squeeze = lambda self, axis=None: fnp.squeeze(self, axis)
    T.swapaxes = lambda self, a, b: fnp.swapaxes(self, a, b)
    T.repeat = lambda self, repeats, axis=None: fnp.repeat(self, repeats, axis)
    T.clip = lambda self, min=None, max=None: fnp.clip(self, min, max)
    T.round = lambda self, decimals=0: fnp.round(self, decimals)
    T.dot = lambda self, b: fnp.dot(self, b)
    T.conj = T.conjugate = lambda self: fnp.conjugate(self)
    T.copy = lambda self: self
    T.item = lambda self: self.concrete_value("item() of a traced value").item()
    T.tolist = lambda self: self.concrete_value("tolist() of a traced value").tolist()
    T.nonzero = lambda self: fnp.nonzero(self)
    T.take = lambda self, indices, axis=None: fnp.take(self, indices, axis)
    T.diagonal = lambda self, offset=0, axis1=0, axis2=1: fnp.diagonal(self, offset, axis1, axis2)
    T.trace = lambda self, offset=0, axis1=0, axis2=1, dtype=None: fnp.trace(self, offset, axis1,
                                                                            axis2, dtype)
    T.argsort = lambda self, axis=-1: fnp.argsort(self, axis)
    T.sort = lambda self, axis=-1: fnp.sort(self, axis)   # a sorted copy, as JAX arrays
    T.searchsorted = lambda self, v, side="left", sorter=None: fnp.searchsorted(self, v, side, sorter)
    for name in ("sum", "prod", "mean", "var", "std", "max", "min", "all", "any", "argmax",
                 "argmin", "cumsum", "cumprod", "ptp"):
        setattr(T, name, getattr(fnp, name))

    def array_ufunc(self, ufunc, method, *inputs, **kwargs):
        if not core.is_tracing():
            raise core._leaked_error(self)
        fn = getattr(fnp, ufunc.__name__, None)
        if method != "__call__" or fn is None or kwargs.get("out") is not None:
            return NotImplemented
        kwargs.pop("out", None)
        if kwargs:
            return NotImplemented
        return fn(*inputs)

    def array_function(self, func, types, args, kwargs):
        if not core.is_tracing():
            raise core._leaked_error(self)
        # numpy.linalg.norm -> funcgrad.numpy.linalg.norm, numpy.sum -> funcgrad.numpy.sum
        namespace = fnp
        for part in func.__module__.split(".")[1:]:
            if not part.startswith("_"):
                namespace = getattr(namespace, part, None)
        fn = getattr(namespace, func.__name__, None) if namespace is not None else None
        if fn is None or fn is func or not callable(fn):     # (NumPy's own: it would recurse)
            qualified = ".".join([p for p in func.__module__.split(".") if not p.startswith("_")]
                                 + [func.__name__])
            raise TypeError(f"{qualified} is not supported on traced values "
                            f"(funcgrad.numpy has no equivalent)")
        return fn(*args, **kwargs)

    T.__array_ufunc__ = array_ufunc
    T.__array_function__ = array_function
