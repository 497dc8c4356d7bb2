"""Timing primitives of the bench report: best-of-N wall clock, CUDA-event timing, copy bandwidths."""

from __future__ import annotations

import time

import numpy as np


def best_time(func, repeat: int, min_seconds: float = 0.0) -> float:
    """Best wall time of ``func()`` over ``repeat`` runs (after one warm-up run)."""
    func()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def relative_error(got, want) -> float:
    """``|got - want| / |want|`` (Euclidean norms), summed without BLAS.

    ``np.linalg.norm`` runs OpenBLAS, whose threads then spin for ~0.1 s on every CPU: a kernel timed right
    after it waited for CPU time (measured: the B32 L128 C64 channels_last forward at 3.9 ms instead of 0.07).
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.sqrt(np.square(got - want).sum()) / max(np.sqrt(np.square(want).sum()), 1e-30))


def copy_bandwidth(nbytes: int = 1 << 28, repeat: int = 5) -> float:
    """Bytes per second of a large ``np.copyto`` counting both the read and the write."""
    src = np.random.default_rng(0).random(nbytes // 8)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_time(lambda: np.copyto(dst, src), repeat)


def gpu_time(func, repeat: int, calls: int = 20) -> float:
    """Best over ``repeat`` of the mean time of ``calls`` back-to-back calls, between CUDA events."""
    from numba import cuda

    func()
    cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        start, stop = cuda.event(), cuda.event()
        start.record()
        for _ in range(calls):
            func()
        stop.record()
        stop.synchronize()
        best = min(best, cuda.event_elapsed_time(start, stop) / 1e3 / calls)
    return best


def gpu_copy_bandwidth(nbytes: int = 1 << 31, repeat: int = 5) -> float:
    """Bytes per second of a device-to-device copy of a large array, read + write counted."""
    from numba import cuda

    src = cuda.to_device(np.random.default_rng(0).random(nbytes // 8))
    dst = cuda.device_array_like(src)
    seconds = gpu_time(lambda: dst.copy_to_device(src), repeat, calls=5)
    return 2 * nbytes / seconds


def result_row(device: str, label: str, layout: str, fwd: float, bwd: float, nbytes: int, fma: int,
               bandwidth: float, torch_times=None, dtype: str = "float32") -> dict:
    """One row of the report: times (s) turned into ms, GB/s, % of the copy roofline and ratios.

    ``nbytes`` is input + output bytes, ``fma`` the forward's multiply-adds, ``torch_times``
    PyTorch's (forward, forward + backward) times or None.
    """
    row = {"device": device, "shape": label, "layout": layout, "dtype": dtype, "bytes": nbytes, "fma": fma,
           "forward_ms": fwd * 1e3, "backward_ms": bwd * 1e3, "forward_GBps": nbytes / fwd / 1e9,
           "roofline_pct": 100 * (nbytes / bandwidth) / fwd, "backward_over_forward": bwd / fwd}
    if torch_times is not None:
        row["torch_forward_speedup"] = torch_times[0] / fwd
        row["torch_fwd_bwd_speedup"] = torch_times[1] / (fwd + bwd)
    return row
