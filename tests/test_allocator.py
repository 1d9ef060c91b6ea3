"""funcgrad tunes glibc malloc at import (freed buffers are reused), unless told not to."""
import subprocess
import sys

import pytest


def _tuned(env_value):
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["FUNCGRAD_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", "import funcgrad.allocator as a, funcgrad; print(a.tuned)"],
                         capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_malloc_is_tuned_at_import_and_can_be_disabled():
    assert _tuned(None) == "True"
    assert _tuned("0") == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_a_freed_large_buffer_is_reused_without_page_faults():
    # 256 MB is above glibc's own mmap threshold: untuned, every allocation faults 65k pages in.
    code = ("import resource, numpy as np, funcgrad\n"
            "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "np.ones(1 << 26, np.float32)\n"
            "before = faults(); np.ones(1 << 26, np.float32); print(faults() - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert int(out.stdout) < 16     # 65536 4-KiB pages (or 128 huge pages) if not reused
