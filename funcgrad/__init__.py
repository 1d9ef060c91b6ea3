"""funcgrad: composable function transformations over pytrees of arrays.

``grad``, ``vmap``, ``jit`` and friends trace Python functions into a small typed IR (a
jaxpr) and rewrite it. See README.md and DESIGN.md.
"""
from . import allocator as _allocator
from . import primitives as _primitives  # noqa: F401  (registers the primitives)
from . import tree_util, dtypes, core
from . import numpy  # noqa: F401  (installs tracer operators)
from .api import (grad, value_and_grad, vjp, jvp, linearize, jacfwd, jacrev, hessian, vmap,
                  make_jaxpr, stop_gradient)
from .custom_derivatives import custom_jvp, custom_vjp
from .remat import checkpoint, remat
from .core import ConcretizationError, UnexpectedTracerError, TracerConversionError, check_jaxpr
from . import lax
from . import random  # noqa: F401
from . import nn, scipy  # noqa: F401
from .compiler.jit import jit
from .config import config
from .device import device_put, devices

_allocator.tune()

__version__ = "0.1.0"

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "linearize", "jacfwd", "jacrev", "hessian",
           "vmap", "jit", "make_jaxpr", "stop_gradient", "custom_jvp", "custom_vjp", "checkpoint",
           "remat", "config", "device_put", "devices", "tree_util", "numpy", "lax", "random", "nn", "scipy", "dtypes",
           "ConcretizationError", "UnexpectedTracerError", "TracerConversionError", "check_jaxpr"]
