import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Deterministic, bounded property tests in CI; `--hypothesis-profile=dev` for more examples.
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _cupy_available() -> bool:
    try:
        import cupy
        return bool(cupy.is_available())
    except Exception:
        return False


def _no_compiler_reason() -> str | None:
    from funcgrad.compiler import cache
    try:
        cache.find_compiler()
    except cache.CompileError as e:
        return str(e)
    return None


def pytest_collection_modifyitems(config, items):
    if not _cupy_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (cupy.is_available() is False)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    if any("needs_compiler" in item.keywords for item in items):
        reason = _no_compiler_reason()
        if reason is not None:
            skip = pytest.mark.skip(reason=f"needs a C++ compiler: {reason}")
            for item in items:
                if "needs_compiler" in item.keywords:
                    item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
