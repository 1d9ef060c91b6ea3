"""funcgrad.scipy: SciPy-like functions built on funcgrad.numpy (so far: ``special``)."""
from . import special  # noqa: F401
