"""Performance cliffs: % of the copy roofline of every option combination, both layouts, one rank.

    python tools/option_sweep.py 1      # 1D: B8 L8192 C256 K5
    python tools/option_sweep.py 2      # 2D: B8 56x56 C256 3x3

Each line is one option (plain 'same', stride 2, dilation 2, depth multiplier 2, 'valid'); each
layout column gives forward and backward as % of the copy roofline (input + output bytes at the
bandwidth of a large ``np.copyto`` measured first; the backward counts twice those bytes), best of 5.
The issue's rule: every option within 2x of the fraction the best layout reaches on the same shape.
"""

import sys

import numpy as np

import numba_dwconv as nd
from numba_dwconv.bench.timing import best_time, copy_bandwidth

OPTIONS = [({}, 1, "same"), ({"strides": 2}, 1, "same"), ({"dilation_rate": 2}, 1, "same"), ({}, 2, "same"),
           ({}, 1, "valid")]


def sweep(rank: int) -> None:
    """Print one line per option of :data:`OPTIONS` for ``rank`` (1 or 2)."""
    bandwidth = copy_bandwidth()
    batch, size, channels, ksize = (8, 8192, 256, 5) if rank == 1 else (8, 56, 256, 3)
    forward = nd.depthwise_conv1d if rank == 1 else nd.depthwise_conv2d
    backward = nd.depthwise_conv1d_backward if rank == 1 else nd.depthwise_conv2d_backward
    rng = np.random.default_rng(0)
    for options, mult, padding in OPTIONS:
        line = f"{str(options) + ' m' + str(mult) + ' ' + padding:40}"
        for layout in ("channels_last", "channels_first"):
            spatial = (size,) * rank
            shape = (batch,) + (spatial + (channels,) if layout == "channels_last" else (channels,) + spatial)
            x = rng.standard_normal(shape).astype(np.float32)
            k = rng.standard_normal((ksize,) * rank + (channels, mult)).astype(np.float32)
            kwargs = dict(padding=padding, data_format=layout, **options)
            y = forward(x, k, **kwargs)
            t_fwd = best_time(lambda: forward(x, k, **kwargs), 5)
            t_bwd = best_time(lambda: backward(y, x, k, **kwargs), 5)
            roof = (x.nbytes + y.nbytes) / bandwidth
            line += f" {layout[9:]:5} fwd {100 * roof / t_fwd:5.0f}% bwd {200 * roof / t_bwd:5.0f}%"
        print(line, flush=True)


if __name__ == "__main__":
    sweep(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
