"""Start-up of a fresh process: import, first forward and first backward, with an empty and a warm kernel cache.

The first call of each kind compiles its kernels (numba compiles on first use and caches the machine code on
disk); a fresh process with a filled cache only loads them.  Both are measured in child processes, so the
figures are what a new machine (``cold``) and every later process (``warm``) pay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

# Run in a child process: import, then the first forward and the first backward of one (rank, layout, dtype).
_FIRST_CALL_CODE = """
import json, time
rank, layout, dtype = {rank!r}, {layout!r}, {dtype!r}
t0 = time.perf_counter()
import numpy as np
import numba_dwconv as nd
t1 = time.perf_counter()
spatial = (64,) * rank
channels = 16
shape = (2,) + (spatial + (channels,) if layout == "channels_last" else (channels,) + spatial)
x = np.ones(shape, dtype)
k = np.ones((3,) * rank + (channels, 1), dtype)
forward = nd.depthwise_conv1d if rank == 1 else nd.depthwise_conv2d
backward = nd.depthwise_conv1d_backward if rank == 1 else nd.depthwise_conv2d_backward
y = forward(x, k, padding="same", data_format=layout)
t2 = time.perf_counter()
backward(y, x, k, padding="same", data_format=layout)
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "first_forward_s": t2 - t1, "first_backward_s": t3 - t2}}))
"""

# The (rank, layout) pairs the report measures, float32, K = 3, 'same'.
CASES = [(1, "channels_last"), (1, "channels_first"), (2, "channels_last"), (2, "channels_first")]


def first_call_code(rank: int, layout: str, dtype: str = "float32") -> str:
    """Python source that imports the package, makes the first forward and backward call and prints the times.

    Float ``dtype`` operands, K = 3, 'same'; the last line printed is a JSON object with ``import_s``,
    ``first_forward_s`` and ``first_backward_s`` (also what the asv first-call benchmarks run).
    """
    return _FIRST_CALL_CODE.format(rank=int(rank), layout=str(layout), dtype=str(dtype))


def first_call(rank: int, layout: str, dtype: str = "float32", cache_dir: str | None = None) -> dict:
    """Import, first-forward and first-backward seconds of a fresh process.

    Parameters
    ----------
    rank : {1, 2}
    layout : {"channels_last", "channels_first"}
    dtype : str
    cache_dir : str, optional
        ``NUMBA_CACHE_DIR`` of the child (an empty folder measures a cold start); default: the usual cache.
    """
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    env["NUMBA_DWCONV_COMPILE_MESSAGES"] = "0"
    out = subprocess.run([sys.executable, "-c", first_call_code(rank, layout, dtype)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.splitlines()[-1])


def measure_startup(cases=CASES, progress=None) -> list:
    """Cold-cache and warm-cache first-call times of fresh processes, one entry per (rank, layout) of ``cases``.

    Each case gets its own empty cache (cold: what a new machine or container pays, the kernels compile), then
    a second process loads what the first wrote (warm: what every later process pays).  ``progress`` (a
    callable taking a string) is told about each case before it runs.
    """
    results = []
    for rank, layout in cases:
        if progress is not None:
            progress(f"measuring the first call of {rank}D {layout} in fresh processes (compiles from scratch)")
        with tempfile.TemporaryDirectory(prefix="numba_dwconv_cold_") as empty:
            cold = first_call(rank, layout, cache_dir=empty)
            warm = first_call(rank, layout, cache_dir=empty)
        results.append({"rank": rank, "layout": layout, "cold_cache_process": cold, "warm_cache_process": warm})
    return results


def format_startup(results) -> str:
    """The first-call table of :func:`measure_startup`'s results."""
    lines = ["first call in a fresh process, float32, K=3 'same' (seconds; cold: empty kernel cache, kernels "
             "compile once per machine; warm: loaded from the cache)",
             f"{'case':22} {'import':>7} {'cold fwd':>9} {'cold bwd':>9} {'warm fwd':>9} {'warm bwd':>9}"]
    for r in results:
        cold, warm = r["cold_cache_process"], r["warm_cache_process"]
        lines.append(f"{str(r['rank']) + 'D ' + r['layout']:22} {warm['import_s']:7.2f} "
                     f"{cold['first_forward_s']:9.2f} {cold['first_backward_s']:9.2f} "
                     f"{warm['first_forward_s']:9.2f} {warm['first_backward_s']:9.2f}")
    return "\n".join(lines)
