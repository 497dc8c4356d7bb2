"""2D rows of the bench report: depthwise_conv2d on the CPU and the GPU against the copy roofline and PyTorch.

PyTorch runs channels_last rows on tensors in ``torch.channels_last`` memory
format (oneDNN's / cuDNN's fast path) and channels_first rows on NCHW tensors, each
with ``groups=C`` and the same padding; ratios are measured in one run.  GPU rows
also time the separable op against the depthwise op alone plus a cuBLAS matrix
product of the pointwise step's size (through PyTorch).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import ops
from .timing import best_time, gpu_time, relative_error, result_row


class Shape2D(NamedTuple):
    """A 2D benchmark problem (fp32, ``same`` padding, depth multiplier 1)."""

    batch: int
    height: int
    width: int
    channels: int
    kernel_size: int
    stride: int

    def label(self) -> str:
        """Short text label."""
        return f"B{self.batch} {self.height}x{self.width} C{self.channels} K{self.kernel_size} s{self.stride}"


PUBLIC_SHAPES_2D = (
    Shape2D(16, 56, 56, 128, 3, 1),
    Shape2D(16, 112, 112, 32, 3, 1),
    Shape2D(16, 56, 56, 256, 3, 2),
    Shape2D(8, 28, 28, 512, 5, 1),
)
QUICK_SHAPES_2D = (Shape2D(4, 28, 28, 64, 3, 1), Shape2D(2, 28, 28, 128, 5, 2))
GPU_SHAPES_2D = tuple(shape._replace(batch=64) for shape in PUBLIC_SHAPES_2D)  # the MobileNet set at batch 64
GPU_DTYPES_2D = ("float32", "float16")


def _problem(shape: Shape2D, layout: str, seed: int = 0, dtype: str = "float32"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.batch, shape.height, shape.width, shape.channels), dtype=np.float32)
    if layout == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    kernel = rng.standard_normal((shape.kernel_size, shape.kernel_size, shape.channels, 1)).astype(np.float32)
    bias = rng.standard_normal(shape.channels).astype(np.float32)
    y = ops.depthwise_conv2d(x, kernel, bias, shape.stride, "same", layout)
    grad_y = rng.standard_normal(y.shape, dtype=np.float32)
    return tuple(a.astype(dtype, copy=False) for a in (x, kernel, bias, y, grad_y))  # (float16: the CPU has none)


def _torch_times(shape: Shape2D, layout: str, x, kernel, repeat: int, device: str = "cpu"):
    """(forward, forward+backward) best times of torch conv2d(groups=C), or None without PyTorch.

    ``device`` "cuda" times with CUDA events (cuDNN) in the data's dtype.
    """
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if device == "cuda" and not torch.cuda.is_available():
        return None
    nchw = x if layout == "channels_first" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    xt = torch.from_numpy(nchw).to(device)
    if layout == "channels_last":
        xt = xt.contiguous(memory_format=torch.channels_last)
    xt.requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(kernel[:, :, :, 0].transpose(2, 0, 1))[:, None]).to(device)
    wt.requires_grad_(True)
    k, s = shape.kernel_size, shape.stride
    # TensorFlow's "same": total padding split with the extra zero at the bottom/right
    total_h = max((-(-shape.height // s) - 1) * s + k - shape.height, 0)
    total_w = max((-(-shape.width // s) - 1) * s + k - shape.width, 0)
    pads = (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)
    symmetric = pads[0] == pads[1] and pads[2] == pads[3]  # then conv2d pads itself (F.pad copies the input)

    def forward():
        if symmetric:
            return F.conv2d(xt, wt, None, s, (pads[2], pads[0]), 1, shape.channels)
        return F.conv2d(F.pad(xt, pads), wt, None, s, 0, 1, shape.channels)

    timer = gpu_time if device == "cuda" else best_time
    with torch.no_grad():
        grad = torch.ones_like(forward())
        t_fwd = timer(forward, repeat)

    def forward_backward():
        xt.grad = wt.grad = None
        forward().backward(grad)

    return t_fwd, timer(forward_backward, repeat)


def _check_slice(reference, shape: Shape2D, layout: str, x, kernel, bias, grad_y, device: str = "cpu") -> float:
    """Largest relative error against the reference on batch 0 and the first 8 channels (independent of the rest)."""
    n = min(8, shape.channels)
    cut = (slice(0, 1), Ellipsis, slice(0, n)) if layout == "channels_last" else (slice(0, 1), slice(0, n))
    xs, gs, ks, bs = x[cut], grad_y[cut], kernel[:, :, :n], bias[:n]
    args = (shape.stride, "same", layout)
    got = [ops.depthwise_conv2d(xs, ks, bs, *args, device=device),
           *ops.depthwise_conv2d_backward(gs, xs, ks, *args, device=device)]
    want = [reference.conv2d_forward(xs, ks, bs, *args), *reference.conv2d_gradients(gs, xs, ks, *args)]
    return max(relative_error(g, w) for g, w in zip(got, want))


def run_cpu_2d(shapes, repeat: int, bandwidth: float, with_torch: bool, reference, on_row=None):
    """Measure every 2D shape x layout on the CPU; rows in the format of :func:`numba_dwconv.bench.conv1d.run_cpu`.

    ``on_row(row)`` is called with each row as soon as it is measured.
    """
    rows = []
    for shape in shapes:
        for layout in ("channels_last", "channels_first"):
            x, kernel, bias, y, grad_y = _problem(shape, layout)
            args = (shape.stride, "same", layout)
            fwd = best_time(lambda: ops.depthwise_conv2d(x, kernel, bias, *args), repeat)
            bwd = best_time(lambda: ops.depthwise_conv2d_backward(grad_y, x, kernel, *args), repeat)
            torch_times = _torch_times(shape, layout, x, kernel, repeat) if with_torch else None
            row = result_row("cpu", shape.label(), layout, fwd, bwd, x.nbytes + y.nbytes,
                             y.size * shape.kernel_size**2, bandwidth, torch_times)
            if reference is not None:
                row["max_rel_error"] = _check_slice(reference, shape, layout, x, kernel, bias, grad_y)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def _separable_times(shape: Shape2D, layout: str, dx, dk, repeat: int):
    """(separable forward, depthwise forward + cuBLAS matmul of the pointwise size) on the GPU, or None.

    The pointwise step maps C to C filters; the matmul is PyTorch's (cuBLAS) on a tensor of the
    depthwise output's size, so the second time is what a hand-assembled pair of library calls costs.
    """
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from numba import cuda

    rng = np.random.default_rng(1)
    pointwise = cuda.to_device(rng.standard_normal((1, 1, shape.channels, shape.channels)).astype(dx.dtype))
    args = (shape.stride, "same", layout)
    t_sep = gpu_time(lambda: ops.separable_conv2d(dx, dk, pointwise, None, *args), repeat)
    z = ops.depthwise_conv2d(dx, dk, None, *args)
    positions = z.size // shape.channels
    zt = torch.randn((positions, shape.channels), device="cuda", dtype=getattr(torch, dx.dtype.name))
    wt = torch.randn((shape.channels, shape.channels), device="cuda", dtype=zt.dtype)
    t_dw = gpu_time(lambda: ops.depthwise_conv2d(dx, dk, None, *args), repeat)
    t_mm = gpu_time(lambda: torch.matmul(zt, wt), repeat)
    return t_sep, t_dw + t_mm


def run_cuda_2d(shapes, repeat: int, bandwidth: float, with_torch: bool, reference, on_row=None):
    """Measure every 2D shape x dtype x layout on the GPU (device-resident operands); result dicts.

    Backward traffic counts the least the gradients need (read inputs and output gradient, write the input
    gradient).  PyTorch (cuDNN) runs in the same dtype.

    ``on_row(row)`` is called with each row as soon as it is measured.
    """
    from numba import cuda

    rows = []
    for shape in shapes:
        for dtype in GPU_DTYPES_2D:
            for layout in ("channels_last", "channels_first"):
                x, kernel, bias, y, grad_y = _problem(shape, layout, dtype=dtype)
                dx, dk, db, dgy = (cuda.to_device(a) for a in (x, kernel, bias, grad_y))
                args = (shape.stride, "same", layout)
                fwd = gpu_time(lambda: ops.depthwise_conv2d(dx, dk, db, *args), repeat)
                bwd = gpu_time(lambda: ops.depthwise_conv2d_backward(dgy, dx, dk, *args), repeat)
                torch_times = _torch_times(shape, layout, x, kernel, repeat, "cuda") if with_torch else None
                label = shape.label() + ("" if dtype == "float32" else " fp16")
                row = result_row("cuda", label, layout, fwd, bwd, x.nbytes + y.nbytes,
                                 y.size * shape.kernel_size**2, bandwidth, torch_times, dtype)
                row["backward_roofline_pct"] = 100 * ((2 * x.nbytes + y.nbytes) / bandwidth) / bwd
                separable = _separable_times(shape, layout, dx, dk, repeat) if with_torch else None
                if separable is not None:
                    row["separable_over_dw_plus_cublas"] = separable[0] / separable[1]
                if reference is not None and dtype == "float32":
                    row["max_rel_error"] = _check_slice(reference, shape, layout, x, kernel, bias, grad_y, "cuda")
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows
