"""Primitive families. Importing this package registers every primitive in
``funcgrad.core.registry``."""
from . import elementwise, structural, reduction, linalg, indexing  # noqa: F401
from . import control_flow  # noqa: F401
from . import conv  # noqa: F401
