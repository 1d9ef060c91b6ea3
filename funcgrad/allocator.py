"""Keep freed array memory in the process, for reuse by the next step.

NumPy allocates its arrays with ``malloc``. glibc hands large freed blocks straight back to
the operating system (big blocks are ``mmap``-ed; the heap top is trimmed), so a training
loop page-faults its whole working set back in on every step: measured here at 6-8 ms of a
27 ms CNN step, and 40% of the per-example gradients of an MLP, whose 205 MB result is
re-faulted (and zeroed by the kernel) on every call (XLA and PyTorch avoid this with
allocators of their own). At import funcgrad raises glibc's mmap and trim thresholds so
that freed buffers, up to 1 GiB each, are reused instead. The cost is that up to
``TRIM_THRESHOLD`` bytes of freed memory stay with the process; peak memory is unchanged.

Set ``FUNCGRAD_MALLOC_TUNING=0`` to leave malloc untouched. Only glibc (Linux) is tuned.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 1 << 30     # blocks above this size still come from (and go back to) mmap
TRIM_THRESHOLD = 1 << 30     # free memory kept at the heap top before it is returned
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3       # glibc's mallopt parameter numbers

tuned = False


def tune() -> bool:
    """Apply the thresholds once (unless disabled); returns whether malloc was tuned."""
    global tuned
    if tuned or os.environ.get("FUNCGRAD_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):      # not glibc (e.g. musl): nothing to tune
        return False
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return tuned
