"""1D rows of the bench report: the public shape set on the CPU and the GPU, checked against the reference."""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from .. import ops
from .timing import best_time, gpu_time, relative_error, result_row


class Shape(NamedTuple):
    """One benchmark problem: (batch, length, channels, kernel_size, padding, depth multiplier)."""

    batch: int
    length: int
    channels: int
    kernel_size: int
    padding: str
    multiplier: int = 1

    def label(self) -> str:
        """Short text form for tables."""
        mult = f" m{self.multiplier}" if self.multiplier != 1 else ""
        return f"B{self.batch} L{self.length} C{self.channels} K{self.kernel_size} {self.padding}{mult}"


PUBLIC_SHAPES = (
    Shape(8, 16384, 256, 3, "same"),
    Shape(8, 2048, 1536, 4, "causal"),
    Shape(32, 128, 64, 3, "same"),
    Shape(4, 4096, 768, 7, "same"),
    Shape(1, 65536, 512, 31, "same"),
    Shape(8, 8192, 256, 5, "same", 2),  # the worst option combination measured (channels_last, m > 1)
)
QUICK_SHAPES = (
    Shape(4, 4096, 128, 3, "same"),
    Shape(2, 2048, 256, 4, "causal"),
    Shape(1, 8192, 64, 31, "same"),
)
LAYOUTS = ("channels_last", "channels_first")


def make_problem(shape: Shape, layout: str, dtype=np.float32, seed: int = 0):
    """Seeded random inputs, kernel, bias and upstream gradient for ``shape``."""
    rng = np.random.default_rng(seed)
    b, length, c, k = shape.batch, shape.length, shape.channels, shape.kernel_size
    dims = (b, length, c) if layout == "channels_last" else (b, c, length)
    x = rng.standard_normal(dims, dtype=np.float32).astype(dtype)
    kernel = rng.standard_normal((k, c, shape.multiplier), dtype=np.float32).astype(dtype)
    bias = rng.standard_normal(c * shape.multiplier, dtype=np.float32).astype(dtype)
    y = ops.depthwise_conv1d(*(a.astype(np.float32, copy=False) for a in (x, kernel, bias)),
                             padding=shape.padding, data_format=layout).astype(dtype)  # (float16: the CPU has none)
    grad_y = rng.standard_normal(y.shape, dtype=np.float32).astype(dtype)
    return x, kernel, bias, y, grad_y


def check_slice(reference, shape: Shape, layout: str, x, kernel, bias, grad_y, device: str = "cpu") -> float:
    """Largest relative error of outputs and gradients against the reference on a slice.

    The slice keeps the full length (so padding is unchanged) and takes batch 0
    and the first 8 channels, which are independent of the others; it is computed
    on ``device`` (NumPy in, NumPy out).
    """
    n_ch = min(8, shape.channels)
    n_out = n_ch * shape.multiplier

    def cut(n):
        return (slice(0, 1), slice(None), slice(0, n)) if layout == "channels_last" else (slice(0, 1), slice(0, n))

    xs, gs, ks, bs = x[cut(n_ch)], grad_y[cut(n_out)], kernel[:, :n_ch], bias[:n_out]
    options = {"padding": shape.padding, "data_format": layout, "device": device}
    got = [ops.depthwise_conv1d(xs, ks, bs, **options), *ops.depthwise_conv1d_backward(gs, xs, ks, **options)]
    want = [reference.conv1d_forward(xs, ks, bs, 1, shape.padding, layout, 1),
            *reference.conv1d_gradients(gs, xs, ks, 1, shape.padding, layout, 1)]
    return max(relative_error(g, w) for g, w in zip(got, want))


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
    wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(1, 2, 0))).reshape(-1, 1, k).to(device)
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

    timer = gpu_time if device == "cuda" else best_time
    with torch.no_grad():
        t_fwd = timer(forward, repeat)
    return t_fwd, timer(forward_backward, repeat)


def run_cpu(shapes, repeat: int, bandwidth: float, with_torch: bool, reference, on_row=None):
    """Measure every shape x layout on the CPU; return a list of result dicts.

    ``on_row(row)`` is called with each row as soon as it is measured.
    """
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
            if with_torch and torch_times is None:
                torch_times = _torch_times(shape, layout, x, kernel, repeat)
            row = result_row("cpu", shape.label(), layout, fwd, bwd, x.nbytes + y.nbytes, y.size * shape.kernel_size,
                             bandwidth, torch_times if with_torch else None)
            if reference is not None:
                row["max_rel_error"] = check_slice(reference, shape, layout, x, kernel, bias, grad_y, "cpu")
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


GPU_SHAPES = PUBLIC_SHAPES  # the same set, device-resident
SMALL_CALL = Shape(1, 256, 64, 3, "same")  # the host-time probe: launch cost dominates


def host_call_times(calls: int = 1000, runs: int = 3) -> tuple[float, float]:
    """Host seconds per warm small call (:data:`SMALL_CALL`, channels_last, device arrays): (forward, backward).

    ``calls`` back-to-back calls, synchronised once at the end; best of ``runs``.
    """
    from numba import cuda

    x, kernel, bias, _, grad_y = make_problem(SMALL_CALL, "channels_last")
    dx, dk, db, dgy = (cuda.to_device(a) for a in (x, kernel, bias, grad_y))
    pad = SMALL_CALL.padding
    per_call = []
    for call in (lambda: ops.depthwise_conv1d(dx, dk, db, padding=pad),
                 lambda: ops.depthwise_conv1d_backward(dgy, dx, dk, padding=pad)):
        call()
        cuda.synchronize()
        best = float("inf")
        for _ in range(runs):
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            cuda.synchronize()
            best = min(best, (time.perf_counter() - t0) / calls)
        per_call.append(best)
    return per_call[0], per_call[1]


GPU_DTYPES = ("float32", "float16")


def run_cuda(shapes, repeat: int, bandwidth: float, with_torch: bool, reference, on_row=None):
    """Measure every shape x layout x dtype on the GPU (device-resident operands); return result dicts.

    Backward traffic counts the least the three gradients need: read the inputs and the output gradient,
    write the input gradient (the kernel/bias gradients are tiny).  PyTorch is timed in float32.

    ``on_row(row)`` is called with each row as soon as it is measured.
    """
    from numba import cuda

    rows = []
    for shape in shapes:
        for dtype in GPU_DTYPES:
            for layout in LAYOUTS:
                x, kernel, bias, y, grad_y = make_problem(shape, layout, np.dtype(dtype))
                dx, dk, db, dgy = (cuda.to_device(a) for a in (x, kernel, bias, grad_y))
                pad = shape.padding
                fwd = gpu_time(lambda: ops.depthwise_conv1d(dx, dk, db, padding=pad, data_format=layout), repeat)
                bwd = gpu_time(lambda: ops.depthwise_conv1d_backward(dgy, dx, dk, padding=pad, data_format=layout),
                               repeat)
                torch_times = None
                if with_torch and dtype == "float32":
                    torch_times = _torch_times(shape, layout, x, kernel, repeat, "cuda")
                label = shape.label() + ("" if dtype == "float32" else " fp16")
                row = result_row("cuda", label, layout, fwd, bwd, x.nbytes + y.nbytes, y.size * shape.kernel_size,
                                 bandwidth, torch_times, dtype)
                row["backward_roofline_pct"] = 100 * ((2 * x.nbytes + y.nbytes) / bandwidth) / bwd
                if reference is not None and dtype == "float32":
                    row["max_rel_error"] = check_slice(reference, shape, layout, x, kernel, bias, grad_y, "cuda")
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows
