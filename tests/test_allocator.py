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
