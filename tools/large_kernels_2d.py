"""2D depthwise kernels of ConvNeXt and RepLKNet sizes (7x7, 13x13, 31x31) against PyTorch, both layouts.

    python tools/large_kernels_2d.py

float32, 'same', one run, best of 5 per call; each line: our forward and backward time and PyTorch's
(``conv2d(groups=C)`` on an NCHW tensor for channels_first, a ``torch.channels_last`` tensor for
channels_last; the backward is ``autograd.grad`` of input and weight), and the ratio torch / ours
(> 1: we are faster).
"""

import numpy as np

import numba_dwconv as nd
from numba_dwconv.bench.timing import best_time

# (batch, size, channels, kernel): ConvNeXt-T stage 2 (7x7), RepLKNet-31B stages (13x13, 31x31).
SHAPES = [(8, 56, 128, 7), (8, 28, 256, 13), (8, 56, 128, 31)]


def _torch_times(x_nhwc, kernel, layout, repeat):
    import torch

    c = x_nhwc.shape[-1]
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))  # NCHW values
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.from_numpy(np.ascontiguousarray(kernel[..., 0].transpose(2, 0, 1)[:, None]))  # (C, 1, KH, KW)
    x.requires_grad_(True)
    w.requires_grad_(True)
    pad = kernel.shape[0] // 2

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, w, padding=pad, groups=c)

    y = torch.nn.functional.conv2d(x, w, padding=pad, groups=c)
    gy = torch.ones_like(y)

    def backward():
        torch.autograd.grad(y, (x, w), gy, retain_graph=True)

    return best_time(forward, repeat), best_time(backward, repeat)


def main(repeat: int = 5) -> None:
    """Print one line per shape and layout of :data:`SHAPES`."""
    rng = np.random.default_rng(0)
    print(f"{'shape':24} {'layout':15} {'fwd ms':>8} {'torch':>8} {'ratio':>6} {'bwd ms':>8} {'torch':>8} {'ratio':>6}")
    for batch, size, channels, k in SHAPES:
        x_nhwc = rng.standard_normal((batch, size, size, channels), dtype=np.float32)
        kernel = rng.standard_normal((k, k, channels, 1), dtype=np.float32)
        for layout in ("channels_last", "channels_first"):
            x = x_nhwc if layout == "channels_last" else np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
            kw = dict(padding="same", data_format=layout)
            y = nd.depthwise_conv2d(x, kernel, **kw)
            fwd = best_time(lambda: nd.depthwise_conv2d(x, kernel, **kw), repeat)
            bwd = best_time(lambda: nd.depthwise_conv2d_backward(y, x, kernel, **kw), repeat)
            t_fwd, t_bwd = _torch_times(x_nhwc, kernel, layout, repeat)
            label = f"B{batch} {size}x{size} C{channels} K{k}"
            print(f"{label:24} {layout:15} {fwd * 1e3:8.2f} {t_fwd * 1e3:8.2f} {t_fwd / fwd:6.2f} "
                  f"{bwd * 1e3:8.2f} {t_bwd * 1e3:8.2f} {t_bwd / bwd:6.2f}", flush=True)


if __name__ == "__main__":
    main()
