import os

import pytest
from gpu import tiny_launches
from hypothesis import HealthCheck, settings

# Kernels compile on first use (then come from numba's on-disk cache), so the
# first example of a property test can be slow: no deadline.
settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(autouse=True)
def _tiny_gpu_launches_under_simulator(monkeypatch):
    tiny_launches(monkeypatch)
    yield


@pytest.fixture(autouse=True)
def _outputs_start_as_nan(monkeypatch):
    """CPU output arrays start full of NaN, so that an output a kernel leaves unwritten fails its test.

    (Uninitialised memory often holds the previous call's result: pooled blocks and freed heap memory come back
    with it, and a test comparing a second identical call would pass on a value nothing wrote.)
    """
    import numpy as np

    from numba_dwconv import _memory

    real = _memory.empty

    def poisoned(shape, dtype):
        out = real(shape, dtype)
        if out.dtype.kind in "fc":
            out.fill(np.nan)
        return out

    monkeypatch.setattr(_memory, "empty", poisoned)
    yield


def pytest_collection_modifyitems(config, items):
    """Start the longest test first (the bench report end to end, ~200 s of compiling in a subprocess), so that
    parallel workers overlap it with everything else instead of finishing with it alone."""
    items.sort(key=lambda item: item.name != "test_quick_report_as_json")
