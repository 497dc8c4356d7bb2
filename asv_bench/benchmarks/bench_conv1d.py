"""asv benchmarks for the 1D depthwise convolution (CPU).

Shapes are taken from the public shape set of the bench report.  ``setup``
builds seeded data and runs each operation once, so JIT compilation (or the
load from numba's on-disk cache) is never timed.
"""

import numpy as np

import numba_dwconv as nd

# (batch, length, channels, kernel_size, padding)
SHAPES = {
    "B8-L16384-C256-K3-same": (8, 16384, 256, 3, "same"),
    "B8-L2048-C1536-K4-causal": (8, 2048, 1536, 4, "causal"),
    "B32-L128-C64-K3-same": (32, 128, 64, 3, "same"),
}


class _Conv1D:
    params = (list(SHAPES), ["float32", "float64"], ["channels_last", "channels_first"])
    param_names = ["shape", "dtype", "data_format"]

    def setup(self, shape, dtype, data_format):
        batch, length, channels, ksize, self.padding = SHAPES[shape]
        rng = np.random.default_rng(0)
        dims = (batch, length, channels) if data_format == "channels_last" else (batch, channels, length)
        self.x = rng.standard_normal(dims).astype(dtype)
        self.kernel = rng.standard_normal((ksize, channels, 1)).astype(dtype)
        self.bias = rng.standard_normal(channels).astype(dtype)
        self.data_format = data_format
        self.grad_y = nd.depthwise_conv1d(self.x, self.kernel, self.bias, 1, self.padding, data_format)
        self.backward()

    def forward(self):
        return nd.depthwise_conv1d(self.x, self.kernel, self.bias, 1, self.padding, self.data_format)

    def backward(self):
        return nd.depthwise_conv1d_backward(self.grad_y, self.x, self.kernel, 1, self.padding, self.data_format)


class Forward(_Conv1D):
    def time_forward(self, shape, dtype, data_format):
        self.forward()

    def peakmem_forward(self, shape, dtype, data_format):
        self.forward()


class Backward(_Conv1D):
    def time_backward(self, shape, dtype, data_format):
        self.backward()

    def peakmem_backward(self, shape, dtype, data_format):
        self.backward()
