"""Start-up of a fresh process: import time and the first call, with an empty and with a warm kernel cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

_STARTUP_CODE = """
import time
t0 = time.perf_counter()
import numpy as np
import numba_dwconv
t1 = time.perf_counter()
x = np.ones((2, 64, 8), np.float32)
k = np.ones((3, 8, 1), np.float32)
numba_dwconv.depthwise_conv1d(x, k, padding="same")
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _first_call(env) -> dict:
    out = subprocess.run([sys.executable, "-c", _STARTUP_CODE], capture_output=True, text=True, check=True, env=env)
    import_s, first_call_s = (float(v) for v in out.stdout.split())
    return {"import_s": import_s, "first_forward_s": first_call_s}


def measure_startup() -> dict:
    """Import time and first-call time of fresh processes.

    ``cold_cache_process`` runs with an empty ``NUMBA_CACHE_DIR`` (what a new machine
    or container pays: the kernels compile); ``warm_cache_process`` with the usual
    cache, after a first process has filled it (what every later process pays).
    """
    with tempfile.TemporaryDirectory(prefix="numba_dwconv_cold_") as empty:
        cold = _first_call({**os.environ, "NUMBA_CACHE_DIR": empty})
    _first_call(dict(os.environ))  # fills the usual cache if it is empty
    return {"cold_cache_process": cold, "warm_cache_process": _first_call(dict(os.environ))}
