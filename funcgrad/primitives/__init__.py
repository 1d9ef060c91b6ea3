"""Primitive families. Importing this package registers every primitive in
``funcgrad.core.registry``."""
from . import elementwise, structural, reduction, linalg  # noqa: F401
