"""2D rows of the bench report: depthwise_conv2d on the CPU against the copy roofline and PyTorch.

PyTorch runs channels_last rows on tensors in ``torch.channels_last`` memory
format (oneDNN's fast path) and channels_first rows on NCHW tensors, each with
``groups=C`` and the same padding; ratios are measured in one run.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import ops
from .timing import best_time, result_row


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


def _problem(shape: Shape2D, layout: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.batch, shape.height, shape.width, shape.channels)).astype(np.float32)
    if layout == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    kernel = rng.standard_normal((shape.kernel_size, shape.kernel_size, shape.channels, 1)).astype(np.float32)
    bias = rng.standard_normal(shape.channels).astype(np.float32)
    y = ops.depthwise_conv2d(x, kernel, bias, shape.stride, "same", layout)
    return x, kernel, bias, y, rng.standard_normal(y.shape).astype(np.float32)


def _torch_times(shape: Shape2D, layout: str, x, kernel, repeat: int):
    """(forward, forward+backward) best times of torch conv2d(groups=C), or None without PyTorch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    nchw = x if layout == "channels_first" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    xt = torch.from_numpy(nchw)
    if layout == "channels_last":
        xt = xt.contiguous(memory_format=torch.channels_last)
    xt.requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(kernel[:, :, :, 0].transpose(2, 0, 1))[:, None]).requires_grad_(True)
    k, s = shape.kernel_size, shape.stride
    # TensorFlow's "same": total padding split with the extra zero at the bottom/right
    total_h = max((-(-shape.height // s) - 1) * s + k - shape.height, 0)
    total_w = max((-(-shape.width // s) - 1) * s + k - shape.width, 0)
    pads = (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)

    def forward():
        inp = F.pad(xt, pads) if any(pads) else xt
        return F.conv2d(inp, wt, None, s, 0, 1, shape.channels)

    with torch.no_grad():
        grad = torch.ones_like(forward())
        t_fwd = best_time(forward, repeat)

    def forward_backward():
        xt.grad = wt.grad = None
        forward().backward(grad)

    return t_fwd, best_time(forward_backward, repeat)


def _check_slice(reference, shape: Shape2D, layout: str, x, kernel, bias, grad_y) -> float:
    """Largest relative error against the reference on batch 0 and the first 8 channels (independent of the rest)."""
    n = min(8, shape.channels)
    cut = (slice(0, 1), Ellipsis, slice(0, n)) if layout == "channels_last" else (slice(0, 1), slice(0, n))
    xs, gs, ks, bs = x[cut], grad_y[cut], kernel[:, :, :n], bias[:n]
    args = (shape.stride, "same", layout)
    got = [ops.depthwise_conv2d(xs, ks, bs, *args), *ops.depthwise_conv2d_backward(gs, xs, ks, *args)]
    want = [reference.conv2d_forward(xs, ks, bs, *args), *reference.conv2d_gradients(gs, xs, ks, *args)]
    return float(max(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30) for g, w in zip(got, want)))


def run_cpu_2d(shapes, repeat: int, bandwidth: float, with_torch: bool, reference):
    """Measure every 2D shape x layout on the CPU; rows in the format of :func:`numba_dwconv.bench.conv1d.run_cpu`."""
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
    return rows
