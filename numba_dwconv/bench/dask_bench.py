"""Dask figures: the same input in memory and as a chunked dask array, and an input larger than memory.

``python -m numba_dwconv.bench.dask_bench [--large-gib N]`` prints both (dask must be installed).
Ratios are measured in one run, best of ``repeat``; the threaded scheduler runs the blocks.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from .timing import best_time


def overhead_row(repeat: int = 3, batch: int = 8, length: int = 131072, channels: int = 256,
                 chunk_bytes: int = 64 << 20) -> dict:
    """A 1 GiB float32 channels_last 1D input (K=4, causal): in memory vs dask in ``chunk_bytes`` chunks."""
    import dask
    import dask.array as da

    import numba_dwconv as nd

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, length, channels), dtype=np.float32)
    kernel = rng.standard_normal((4, channels, 1), dtype=np.float32)
    grad = rng.standard_normal(x.shape, dtype=np.float32)
    rows = max(1, chunk_bytes // (channels * 4))
    xd = da.from_array(x, chunks=(1, rows, channels))
    kw = dict(padding="causal")
    # the upstream gradient chunked like the outputs, as the next op of a pipeline would hand it back
    gd = da.from_array(grad, chunks=nd.depthwise_conv1d(xd, kernel, None, **kw).chunks)

    def fwd_dask():  # results stay in chunks (persist): a dask pipeline's next step reads them there
        return nd.depthwise_conv1d(xd, kernel, None, **kw).persist()

    def both_dask():
        y = nd.depthwise_conv1d(xd, kernel, None, **kw)
        return dask.persist(y, *nd.depthwise_conv1d_backward(gd, xd, kernel, **kw))

    def fwd_dask_numpy():  # gathered into one NumPy array (one more pass over the outputs)
        return nd.depthwise_conv1d(xd, kernel, None, **kw).compute()

    from .._memory import release_pool

    with dask.config.set(scheduler="threads"):
        mem_f = best_time(lambda: nd.depthwise_conv1d(x, kernel, None, **kw), repeat)
        release_pool()  # each side in its own steady state: the idle outputs of one do not crowd the other's out
        dask_f = best_time(fwd_dask, repeat)
        dask_fn = best_time(fwd_dask_numpy, repeat)
        release_pool()
        mem_b = best_time(lambda: (nd.depthwise_conv1d(x, kernel, None, **kw),
                                   nd.depthwise_conv1d_backward(grad, x, kernel, **kw)), repeat)
        release_pool()
        dask_b = best_time(both_dask, repeat)
    return {"shape": f"B{batch} L{length} C{channels} K4 causal fp32 ({x.nbytes / 2**30:.2f} GiB), "
                     f"{rows * channels * 4 / 2**20:.0f} MiB chunks",
            "forward_over_memory": dask_f / mem_f, "forward_backward_over_memory": dask_b / mem_b,
            "forward_to_numpy_over_memory": dask_fn / mem_f,
            "memory_forward_ms": mem_f * 1e3, "dask_forward_ms": dask_f * 1e3}


def larger_than_memory_row(gib: float = 40.0, convolve: bool = True, channels: int = 256,
                           chunk_rows: int = 65536) -> dict:
    """A lazily generated ``gib`` GiB float32 1D input, convolved (or not) then summed: seconds and peak memory.

    Run each case in a fresh process (:func:`main` does): the peak resident memory is then the pipeline's.
    """
    import dask
    import dask.array as da

    import numba_dwconv as nd

    length = int(gib * 2**30) // (channels * 4)
    length -= length % chunk_rows
    x = da.random.default_rng(0).standard_normal((1, length, channels), chunks=(1, chunk_rows, channels),
                                                 dtype=np.float32)
    kernel = np.random.default_rng(1).standard_normal((4, channels, 1)).astype(np.float32)
    pipeline = (nd.depthwise_conv1d(x, kernel, None, padding="causal") if convolve else x).sum()
    with dask.config.set(scheduler="threads"):
        start = time.perf_counter()
        pipeline.compute()
        seconds = time.perf_counter() - start
    peak = _peak_resident_bytes()
    nbytes = length * channels * 4
    return {"input_GiB": nbytes / 2**30, "seconds": seconds, "GBps": nbytes / seconds / 1e9,
            "peak_rss_GiB": peak / 2**30}


def _peak_resident_bytes() -> int:
    """Peak resident memory of the process in bytes: Linux's VmHWM, else getrusage's maxrss.

    (On Linux, maxrss also counts, after a fork and exec, what the parent held when it forked.)
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _in_fresh_process(gib: float, convolve: bool) -> dict:
    import json
    import subprocess
    import sys

    code = ("import json; from numba_dwconv.bench.dask_bench import larger_than_memory_row; "
            f"print(json.dumps(larger_than_memory_row({float(gib)!r}, {bool(convolve)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    """Print the overhead row and, with ``--large-gib``, the larger-than-memory row."""
    parser = argparse.ArgumentParser(prog="python -m numba_dwconv.bench.dask_bench")
    parser.add_argument("--large-gib", type=float, default=0.0, help="also run the larger-than-memory row")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    row = overhead_row(args.repeat)
    print(f"{row['shape']}: dask/memory forward {row['forward_over_memory']:.2f}x "
          f"({row['dask_forward_ms']:.0f} vs {row['memory_forward_ms']:.0f} ms), forward+backward "
          f"{row['forward_backward_over_memory']:.2f}x (results kept in chunks, persist); forward gathered into "
          f"one NumPy array {row['forward_to_numpy_over_memory']:.2f}x")
    if args.large_gib:
        conv, alone = _in_fresh_process(args.large_gib, True), _in_fresh_process(args.large_gib, False)
        print(f"{conv['input_GiB']:.1f} GiB generated lazily, convolved and summed: {conv['seconds']:.1f} s "
              f"({conv['GBps']:.2f} GB/s, generation included; generation and sum alone {alone['GBps']:.2f} GB/s), "
              f"peak RSS {conv['peak_rss_GiB']:.2f} GiB (generation alone {alone['peak_rss_GiB']:.2f} GiB)")


if __name__ == "__main__":
    main()
