"""Devices: the CPU (numpy arrays) and CUDA GPUs (cupy arrays).

``funcgrad.devices()`` lists them; ``funcgrad.device_put(x, "gpu")`` copies a pytree of
arrays to the GPU (``"gpu:1"`` for the second one), ``device_put(x, "cpu")`` back. Jitted
functions run where their arguments are: GPU arrays stay on the GPU, and one call may not
mix GPU and CPU arrays.
"""
from __future__ import annotations

import sys
from typing import Any, NamedTuple

import numpy as np

from .tree_util import tree_map


class Device(NamedTuple):
    platform: str        # "cpu" or "gpu"
    id: int = 0

    def __str__(self):
        return f"{self.platform}:{self.id}"


def _cupy(purpose: str):
    """The cupy module, if a CUDA GPU can be used; else a RuntimeError saying why."""
    try:
        import cupy
    except ImportError:
        raise RuntimeError(f"{purpose} needs cupy (pip install 'funcgrad[cuda]')") from None
    if not cupy.is_available():
        raise RuntimeError(f"{purpose} needs a CUDA GPU; cupy finds none")
    return cupy


def devices(platform: str | None = None) -> list[Device]:
    """The devices funcgrad can use (``platform``: only "cpu" or only "gpu")."""
    found = [Device("cpu")]
    try:
        import cupy
        if cupy.is_available():
            found += [Device("gpu", i) for i in range(cupy.cuda.runtime.getDeviceCount())]
    except ImportError:
        pass
    return [d for d in found if platform is None or d.platform == platform]


def _parse(device: Device | str) -> Device:
    if isinstance(device, Device):
        return device
    name, _, index = str(device).partition(":")
    if name not in ("cpu", "gpu") or (index and not index.isdigit()):
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'gpu' or 'gpu:N'")
    return Device(name, int(index or 0))


def device_put(x: Any, device: Device | str = "cpu") -> Any:
    """Copy the arrays of pytree ``x`` to ``device`` (arrays already there are kept)."""
    target = _parse(device)
    if target.platform == "cpu":
        cupy = sys.modules.get("cupy")
        to_host = (lambda a: a.get() if cupy is not None and isinstance(a, cupy.ndarray)
                   else np.asarray(a))
        return tree_map(to_host, x)
    cupy = _cupy("device_put(x, 'gpu')")
    if target.id >= cupy.cuda.runtime.getDeviceCount():
        raise ValueError(f"no device {target}: {cupy.cuda.runtime.getDeviceCount()} GPU(s) found")
    with cupy.cuda.Device(target.id):
        return tree_map(cupy.asarray, x)


def device_of(x: Any) -> Device:
    """Where an array lives."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return Device("gpu", x.device.id)
    return Device("cpu")
