"""The machine's fp32 multiply-add peak, measured with a register-resident numba loop.

    python tools/fma_peak.py            # prints GFMA/s on all cores and on one, then K=31 1D rows as % of it

Each element of a small, L1-resident block starts eight independent chains of 16 dependent
multiply-adds each; the loop over elements vectorises (one SIMD register per chain), so per
loaded element there are 128 FMAs and nothing but the FMA units limits the rate.  The result
is the ceiling the compute-bound rows (long kernels: K = 31 in 1D) are compared with.
"""

import sys
import time

import numba
import numpy as np

from numba_dwconv._jit import launch, parallel_kernel, task_share
from numba_dwconv.bench.timing import best_time

_CHAINS = 8
_DEPTH = 16
_BLOCK = 512  # elements per task: 2 KiB, stays in L1


@parallel_kernel  # compiled as the kernels are (same pipeline: 512-bit vectors on AVX-512 CPUs)
def _fma_chains(part, parts, x, m, a, reps, out):
    tasks_lo, tasks_hi = task_share(x.shape[0], part, parts)
    for task in range(tasks_lo, tasks_hi):
        row = x[task]
        dst = out[task]
        for _ in range(reps):
            for c in range(row.shape[0]):
                c0 = row[c]  # eight different starting values, all of the array's dtype (a Python float
                c1 = c0 + a  # constant would promote the chains to float64)
                c2, c3, c4 = c1 + a, c1 - a, c0 - a
                c5, c6, c7 = c2 + a, c3 - a, c4 - a
                for _k in range(16):
                    c0 = c0 * m + a
                    c1 = c1 * m + a
                    c2 = c2 * m + a
                    c3 = c3 * m + a
                    c4 = c4 * m + a
                    c5 = c5 * m + a
                    c6 = c6 * m + a
                    c7 = c7 * m + a
                dst[c] = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7))


def fma_peak(threads: int | None = None, reps: int = 2000) -> float:
    """Multiply-adds per second (fp32) of ``threads`` numba threads (default: all), best of 5."""
    threads = numba.config.NUMBA_NUM_THREADS if threads is None else threads
    x = np.random.default_rng(0).random((threads, _BLOCK), dtype=np.float32)
    out = np.empty_like(x)
    m, a = np.float32(0.999), np.float32(1e-3)
    launch(_fma_chains, x, m, a, 1, out, parts=threads)  # compile
    seconds = best_time(lambda: launch(_fma_chains, x, m, a, reps, out, parts=threads), 5)
    return threads * _BLOCK * reps * _CHAINS * _DEPTH / seconds


def _long_kernel_rows(peak: float) -> None:
    """K = 31 1D forward (Conformer) as % of ``peak`` and of the copy roofline, both layouts."""
    import numba_dwconv as nd
    from numba_dwconv.bench.timing import copy_bandwidth

    bandwidth = copy_bandwidth()
    batch, length, channels, ksize = 1, 65536, 512, 31  # the public K = 31 row of the bench report
    rng = np.random.default_rng(0)
    for layout in ("channels_last", "channels_first"):
        shape = (batch, length, channels) if layout == "channels_last" else (batch, channels, length)
        x = rng.standard_normal(shape).astype(np.float32)
        k = rng.standard_normal((ksize, channels, 1)).astype(np.float32)
        y = nd.depthwise_conv1d(x, k, padding="same", data_format=layout)
        fwd = best_time(lambda: nd.depthwise_conv1d(x, k, padding="same", data_format=layout), 5)
        bwd = best_time(lambda: nd.depthwise_conv1d_backward(y, x, k, padding="same", data_format=layout), 5)
        fma = batch * length * channels * ksize
        roof = (x.nbytes + y.nbytes) / bandwidth
        print(f"K31 {layout:15} forward {100 * fma / fwd / peak:4.0f}% of FMA peak, {100 * roof / fwd:4.0f}% of "
              f"copy roofline; backward (2x the FMAs) {200 * fma / bwd / peak:4.0f}% of peak, "
              f"{200 * roof / bwd:4.0f}% of roofline", flush=True)


if __name__ == "__main__":
    start = time.perf_counter()
    peak_all = fma_peak()
    peak_one = fma_peak(1)
    print(f"fp32 FMA peak: {peak_all / 1e9:.1f} GFMA/s on {numba.config.NUMBA_NUM_THREADS} threads, "
          f"{peak_one / 1e9:.1f} GFMA/s on one", flush=True)
    if "--no-kernels" not in sys.argv:
        _long_kernel_rows(peak_all)
