"""The bench report: ``python -m numba_dwconv``.

Runs the public shape set, prints a table (ms, GB/s, % of the copy roofline,
backward/forward ratio, speed-up over PyTorch when it is importable) and checks
every shape against the slow NumPy reference on a slice.

All ratios are measured in the same run: the copy roofline is the bandwidth of a
large ``np.copyto`` (bytes read + bytes written) measured right before the
table, and every time is the best of ``repeat`` runs (the machine is shared and
noisy; the minimum is the least disturbed run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import ops


class Shape(NamedTuple):
    """One benchmark problem: (batch, length, channels, kernel_size, padding)."""

    batch: int
    length: int
    channels: int
    kernel_size: int
    padding: str

    def label(self) -> str:
        """Short text form for tables."""
        return f"B{self.batch} L{self.length} C{self.channels} K{self.kernel_size} {self.padding}"


PUBLIC_SHAPES = (
    Shape(8, 16384, 256, 3, "same"),
    Shape(8, 2048, 1536, 4, "causal"),
    Shape(32, 128, 64, 3, "same"),
    Shape(4, 4096, 768, 7, "same"),
    Shape(1, 65536, 512, 31, "same"),
)
QUICK_SHAPES = (
    Shape(4, 4096, 128, 3, "same"),
    Shape(2, 2048, 256, 4, "causal"),
    Shape(1, 8192, 64, 31, "same"),
)
LAYOUTS = ("channels_last", "channels_first")


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


def copy_bandwidth(nbytes: int = 1 << 28, repeat: int = 5) -> float:
    """Bytes per second of a large ``np.copyto`` counting both the read and the write."""
    src = np.random.default_rng(0).random(nbytes // 8)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_time(lambda: np.copyto(dst, src), repeat)


def make_problem(shape: Shape, layout: str, dtype=np.float32, seed: int = 0):
    """Seeded random inputs, kernel, bias and upstream gradient for ``shape``."""
    rng = np.random.default_rng(seed)
    b, length, c, k = shape.batch, shape.length, shape.channels, shape.kernel_size
    dims = (b, length, c) if layout == "channels_last" else (b, c, length)
    x = rng.standard_normal(dims, dtype=np.float32).astype(dtype)
    kernel = rng.standard_normal((k, c, 1), dtype=np.float32).astype(dtype)
    bias = rng.standard_normal(c, dtype=np.float32).astype(dtype)
    y = ops.depthwise_conv1d(x, kernel, bias, padding=shape.padding, data_format=layout)
    grad_y = rng.standard_normal(y.shape, dtype=np.float32).astype(dtype)
    return x, kernel, bias, y, grad_y


def check_slice(reference, shape: Shape, layout: str, x, kernel, bias, grad_y, device: str = "cpu") -> float:
    """Largest relative error of outputs and gradients against the reference on a slice.

    The slice keeps the full length (so padding is unchanged) and takes batch 0
    and the first 8 channels, which are independent of the others; it is computed
    on ``device`` (NumPy in, NumPy out).
    """
    n_ch = min(8, shape.channels)
    cut = (slice(0, 1), slice(None), slice(0, n_ch)) if layout == "channels_last" else (slice(0, 1), slice(0, n_ch))
    xs, gs, ks, bs = x[cut], grad_y[cut], kernel[:, :n_ch], bias[:n_ch]
    options = {"padding": shape.padding, "data_format": layout, "device": device}
    got = [ops.depthwise_conv1d(xs, ks, bs, **options), *ops.depthwise_conv1d_backward(gs, xs, ks, **options)]
    want = [reference.conv1d_forward(xs, ks, bs, 1, shape.padding, layout, 1),
            *reference.conv1d_gradients(gs, xs, ks, 1, shape.padding, layout, 1)]
    errors = [np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30) for g, w in zip(got, want)]
    return float(max(errors))


def _torch_times(shape: Shape, layout: str, x, kernel, repeat: int, device: str = "cpu"):
    """(forward, forward+backward) best times of torch conv1d(groups=C) on NCW tensors, or None.

    ``device`` is "cpu" (wall clock) or "cuda" (CUDA events; numba's events sit on the
    legacy default stream, which orders PyTorch's default stream too).
    """
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if device == "cuda" and not torch.cuda.is_available():
        return None
    k = shape.kernel_size
    xt = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 1, 2)) if layout == "channels_last" else x).to(device)
    xt.requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(1, 2, 0))).reshape(shape.channels, 1, k).to(device)
    wt.requires_grad_(True)
    padding = "valid" if shape.padding == "causal" else shape.padding

    def forward():
        inp = F.pad(xt, (k - 1, 0)) if shape.padding == "causal" else xt
        return F.conv1d(inp, wt, groups=shape.channels, padding=padding)

    with torch.no_grad():
        grad = torch.ones_like(forward())

    def forward_backward():
        xt.grad = wt.grad = None
        forward().backward(grad)

    timer = _gpu_time if device == "cuda" else best_time
    with torch.no_grad():
        t_fwd = timer(forward, repeat)
    return t_fwd, timer(forward_backward, repeat)


def run_cpu(shapes, repeat: int, bandwidth: float, with_torch: bool, reference):
    """Measure every shape x layout on the CPU; return a list of result dicts."""
    rows = []
    for shape in shapes:
        torch_times = None
        for layout in LAYOUTS:
            x, kernel, bias, y, grad_y = make_problem(shape, layout)
            fwd = best_time(
                lambda: ops.depthwise_conv1d(x, kernel, bias, padding=shape.padding, data_format=layout), repeat
            )
            bwd = best_time(
                lambda: ops.depthwise_conv1d_backward(grad_y, x, kernel, padding=shape.padding, data_format=layout),
                repeat,
            )
            nbytes = x.nbytes + y.nbytes
            row = {
                "device": "cpu",
                "shape": shape.label(),
                "layout": layout,
                "dtype": "float32",
                "forward_ms": fwd * 1e3,
                "backward_ms": bwd * 1e3,
                "forward_GBps": nbytes / fwd / 1e9,
                "roofline_pct": 100 * (nbytes / bandwidth) / fwd,
                "backward_over_forward": bwd / fwd,
            }
            if with_torch:
                if torch_times is None:
                    torch_times = _torch_times(shape, layout, x, kernel, repeat)
                if torch_times is not None:
                    row["torch_forward_speedup"] = torch_times[0] / fwd
                    row["torch_fwd_bwd_speedup"] = torch_times[1] / (fwd + bwd)
            if reference is not None:
                row["max_rel_error"] = check_slice(reference, shape, layout, x, kernel, bias, grad_y, "cpu")
            rows.append(row)
    return rows


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


def measure_startup() -> dict:
    """Import time and first-call time of fresh processes; the second process finds a warm disk cache."""
    import subprocess

    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _STARTUP_CODE], capture_output=True, text=True, check=True)
        import_s, first_call_s = (float(v) for v in out.stdout.split())
        runs.append({"import_s": import_s, "first_forward_s": first_call_s})
    return {"cold_or_warm_first_process": runs[0], "warm_cache_process": runs[1]}


GPU_SHAPES = (
    Shape(8, 16384, 256, 3, "same"),
    Shape(8, 2048, 1536, 4, "causal"),
    Shape(32, 128, 64, 3, "same"),
    Shape(4, 4096, 768, 7, "same"),
    Shape(1, 65536, 512, 31, "same"),
)


def _gpu_time(func, repeat: int, calls: int = 20) -> float:
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
    seconds = _gpu_time(lambda: dst.copy_to_device(src), repeat, calls=5)
    return 2 * nbytes / seconds


def launch_overhead(repeat: int = 200) -> float:
    """Host seconds per call of a tiny forward on device arrays (launch only, configuration warm)."""
    from numba import cuda

    x = cuda.to_device(np.ones((1, 64, 8), np.float32))
    kernel = cuda.to_device(np.ones((3, 8, 1), np.float32))
    bias = cuda.to_device(np.zeros(8, np.float32))
    ops.depthwise_conv1d(x, kernel, bias, padding="same")
    cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            ops.depthwise_conv1d(x, kernel, bias, padding="same")
        best = min(best, (time.perf_counter() - t0) / repeat)
        cuda.synchronize()
    return best


def run_cuda(shapes, repeat: int, bandwidth: float, with_torch: bool, reference):
    """Measure every shape x layout on the GPU (device-resident operands); return result dicts."""
    from numba import cuda

    rows = []
    for shape in shapes:
        for layout in LAYOUTS:
            x, kernel, bias, y, grad_y = make_problem(shape, layout)
            dx, dk, db, dgy = (cuda.to_device(a) for a in (x, kernel, bias, grad_y))
            pad = shape.padding
            fwd = _gpu_time(lambda: ops.depthwise_conv1d(dx, dk, db, padding=pad, data_format=layout), repeat)
            bwd = _gpu_time(lambda: ops.depthwise_conv1d_backward(dgy, dx, dk, padding=pad, data_format=layout),
                            repeat)
            nbytes = x.nbytes + y.nbytes
            bwd_bytes = 2 * x.nbytes + 2 * y.nbytes  # reads grad_y twice, x once, writes grad_x
            row = {
                "device": "cuda",
                "shape": shape.label(),
                "layout": layout,
                "dtype": "float32",
                "forward_ms": fwd * 1e3,
                "backward_ms": bwd * 1e3,
                "forward_GBps": nbytes / fwd / 1e9,
                "roofline_pct": 100 * (nbytes / bandwidth) / fwd,
                "backward_roofline_pct": 100 * (bwd_bytes / bandwidth) / bwd,
                "backward_over_forward": bwd / fwd,
            }
            if with_torch:
                times = _torch_times(shape, layout, x, kernel, repeat, "cuda")
                if times is not None:
                    row["torch_forward_speedup"] = times[0] / fwd
                    row["torch_fwd_bwd_speedup"] = times[1] / (fwd + bwd)
            if reference is not None:
                row["max_rel_error"] = check_slice(reference, shape, layout, x, kernel, bias, grad_y, "cuda")
            rows.append(row)
    return rows


def format_table(rows, bandwidth: float, label: str = "copy roofline") -> str:
    """A fixed-width text table of the result rows."""
    header = (
        f"{'device':6} {'shape':28} {'layout':14} {'fwd ms':>8} {'GB/s':>6} {'%roof':>6} "
        f"{'bwd ms':>8} {'bwd/fwd':>7} {'xTorch f':>8} {'xTorch fb':>9} {'rel err':>8}"
    )
    lines = [f"{label}: {bandwidth / 1e9:.1f} GB/s (read + write)", header, "-" * len(header)]
    for r in rows:
        speed_f = f"{r['torch_forward_speedup']:.1f}" if "torch_forward_speedup" in r else "-"
        speed_fb = f"{r['torch_fwd_bwd_speedup']:.1f}" if "torch_fwd_bwd_speedup" in r else "-"
        err = f"{r['max_rel_error']:.1e}" if "max_rel_error" in r else "-"
        lines.append(
            f"{r['device']:6} {r['shape']:28} {r['layout']:14} {r['forward_ms']:8.2f} {r['forward_GBps']:6.1f} "
            f"{r['roofline_pct']:6.0f} {r['backward_ms']:8.2f} {r['backward_over_forward']:7.2f} "
            f"{speed_f:>8} {speed_fb:>9} {err:>8}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of ``python -m numba_dwconv``."""
    parser = argparse.ArgumentParser(prog="python -m numba_dwconv", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a few seconds)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement; the best is kept")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-check", action="store_true", help="skip the correctness check")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="which rows to run (default: the CPU, and the GPU when one is available)")
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else PUBLIC_SHAPES
    if args.repeat is not None and args.repeat <= 0:
        parser.error(f"--repeat must be a positive integer, got {args.repeat}")
    repeat = args.repeat or (3 if args.quick else 7)
    reference = None
    if not args.no_check:
        from . import reference
    from .dispatch import cuda_available

    result = {"repeat": repeat, "rows": []}
    tables = []
    if args.device in ("all", "cpu"):
        startup = measure_startup()
        bandwidth = copy_bandwidth()
        rows = run_cpu(shapes, repeat, bandwidth, not args.no_torch, reference)
        warm = startup["warm_cache_process"]
        tables.append(format_table(rows, bandwidth, "CPU copy roofline (np.copyto)") + (
            f"\nstartup (fresh process, warm kernel cache): import {warm['import_s']:.3f} s, "
            f"first forward call {warm['first_forward_s']:.3f} s"
        ))
        result.update(copy_bandwidth_GBps=bandwidth / 1e9, startup=startup)
        result["rows"] += rows
        from .bench2d import PUBLIC_SHAPES_2D, QUICK_SHAPES_2D, run_cpu_2d

        rows_2d = run_cpu_2d(QUICK_SHAPES_2D if args.quick else PUBLIC_SHAPES_2D, repeat, bandwidth,
                             not args.no_torch, reference)
        tables.append(format_table(rows_2d, bandwidth, "2D depthwise, CPU copy roofline (np.copyto)"))
        result["rows"] += rows_2d
    if args.device == "cuda" or (args.device == "all" and cuda_available()):
        from numba import config as numba_config

        if numba_config.ENABLE_CUDASIM:
            tables.append("GPU rows skipped: numba's CUDA simulator is active (NUMBA_ENABLE_CUDASIM=1)")
        else:
            gpu_bandwidth = gpu_copy_bandwidth()
            rows = run_cuda(QUICK_SHAPES if args.quick else GPU_SHAPES, repeat, gpu_bandwidth, not args.no_torch,
                            reference)
            overhead = launch_overhead()
            tables.append(format_table(rows, gpu_bandwidth, "GPU device-to-device copy") +
                          f"\nGPU launch overhead (host time per small forward call, warm): {overhead * 1e6:.1f} us")
            result.update(gpu_copy_bandwidth_GBps=gpu_bandwidth / 1e9, gpu_launch_overhead_us=overhead * 1e6)
            result["rows"] += rows
    rows = result["rows"]
    table = "\n\n".join(tables)
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(table)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
    bad = [r for r in rows if r.get("max_rel_error", 0.0) > 1e-4]
    if bad:
        print(f"CORRECTNESS CHECK FAILED for {len(bad)} rows", file=sys.stderr)
        return 1
    return 0
