"""asv benchmarks for the 1D depthwise convolution on an NVIDIA GPU.

Operands live on the device; every timed call ends with a synchronize.  Without
a usable GPU, setup raises NotImplementedError and asv reports the benchmarks
as skipped.
"""

import numpy as np

import numba_dwconv as nd

from .bench_conv1d import SHAPES


def require_gpu():
    """numba.cuda, or NotImplementedError (asv: skipped) without a real GPU."""
    if not nd.cuda_available():
        raise NotImplementedError("no CUDA GPU")
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        raise NotImplementedError("CUDA simulator: no meaningful GPU timings")
    return cuda


class _Conv1DCuda:
    params = (list(SHAPES), ["float32", "float16"], ["channels_last", "channels_first"])
    param_names = ["shape", "dtype", "data_format"]

    def setup(self, shape, dtype, data_format):
        self.cuda = cuda = require_gpu()
        batch, length, channels, ksize, self.padding = SHAPES[shape]
        rng = np.random.default_rng(0)
        dims = (batch, length, channels) if data_format == "channels_last" else (batch, channels, length)
        self.x = cuda.to_device(rng.standard_normal(dims).astype(dtype))
        self.kernel = cuda.to_device(rng.standard_normal((ksize, channels, 1)).astype(dtype))
        self.bias = cuda.to_device(rng.standard_normal(channels).astype(dtype))
        self.data_format = data_format
        self.grad_y = self.forward()
        self.backward()
        cuda.synchronize()

    def forward(self):
        return nd.depthwise_conv1d(self.x, self.kernel, self.bias, 1, self.padding, self.data_format)

    def backward(self):
        return nd.depthwise_conv1d_backward(self.grad_y, self.x, self.kernel, 1, self.padding, self.data_format)


class CudaForward(_Conv1DCuda):
    def time_forward(self, shape, dtype, data_format):
        self.forward()
        self.cuda.synchronize()


class CudaBackward(_Conv1DCuda):
    def time_backward(self, shape, dtype, data_format):
        self.backward()
        self.cuda.synchronize()
