"""``funcgrad.config``: process-wide settings.

* ``backend``: how ``jit`` runs compiled functions (initially ``$FUNCGRAD_BACKEND``, else
  ``"auto"``):

  - ``"auto"``: fused cupy kernels for GPU arrays; fused C++ kernels for CPU arrays when a
    C++ compiler works, else generated numpy code (with one warning saying why);
  - ``"numpy"``: generated array code only, no kernels (numpy, or cupy for GPU arrays);
  - ``"c"``: fused C++ kernels for CPU arrays (as "auto" does);
  - ``"cupy"``: fused cupy kernels; CPU arrays are an error (``funcgrad.device_put`` them).

``funcgrad.config.update("backend", "numpy")`` changes a setting; ``with
funcgrad.config.override(backend="numpy"):`` changes it for a block.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

BACKENDS = ("auto", "numpy", "c", "cupy")
_CHOICES = {"backend": BACKENDS}


class Config:
    """The settings; read them as attributes (``funcgrad.config.backend``)."""

    def __init__(self):
        self._values: dict[str, Any] = {}
        self.epoch = 0          # bumped on every change (compiled-function caches check it)
        self.update("backend", os.environ.get("FUNCGRAD_BACKEND", "auto") or "auto",
                    source="$FUNCGRAD_BACKEND")

    def update(self, name: str, value: Any, source: str | None = None) -> None:
        if name not in _CHOICES:
            raise KeyError(f"funcgrad.config has no setting {name!r}; settings: {sorted(_CHOICES)}")
        if value not in _CHOICES[name]:
            raise ValueError(f"{source or f'funcgrad.config.{name}'} must be one of "
                             f"{', '.join(map(repr, _CHOICES[name]))}, not {value!r}")
        self._values[name] = value
        self.epoch += 1

    @contextlib.contextmanager
    def override(self, **values: Any) -> Iterator[None]:
        """Change settings inside a ``with`` block."""
        saved = dict(self._values)
        try:
            for name, value in values.items():
                self.update(name, value)
            yield
        finally:
            self._values = saved
            self.epoch += 1

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"funcgrad.config has no setting {name!r}") from None

    def __repr__(self):
        return "funcgrad.config(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


config = Config()
