"""asv benchmarks for 2D depthwise and separable convolution on an NVIDIA GPU (the MobileNet set, batch 64).

Operands live on the device; every timed call ends with a synchronize.  Without
a usable GPU, setup raises NotImplementedError and asv reports the benchmarks
as skipped.
"""

import numpy as np

import numba_dwconv as nd

from .bench_cuda import require_gpu

SHAPES = {  # name: (batch, height, width, channels, kernel size, stride)
    "B64-56x56-C128-K3-s1": (64, 56, 56, 128, 3, 1),
    "B64-112x112-C32-K3-s1": (64, 112, 112, 32, 3, 1),
    "B64-56x56-C256-K3-s2": (64, 56, 56, 256, 3, 2),
    "B64-28x28-C512-K5-s1": (64, 28, 28, 512, 5, 1),
}


class _Conv2DCuda:
    params = (list(SHAPES), ["float32", "float16"], ["channels_last", "channels_first"])
    param_names = ["shape", "dtype", "data_format"]

    def setup(self, shape, dtype, data_format):
        self.cuda = cuda = require_gpu()
        batch, height, width, channels, ksize, self.stride = SHAPES[shape]
        rng = np.random.default_rng(0)
        dims = (batch, height, width, channels) if data_format == "channels_last" else (batch, channels, height, width)
        self.x = cuda.to_device(rng.standard_normal(dims).astype(dtype))
        self.kernel = cuda.to_device(rng.standard_normal((ksize, ksize, channels, 1)).astype(dtype))
        self.bias = cuda.to_device(rng.standard_normal(channels).astype(dtype))
        self.pointwise = cuda.to_device(rng.standard_normal((1, 1, channels, channels)).astype(dtype))
        self.data_format = data_format
        self.grad_y = self.forward()
        self.backward()
        self.separable()
        cuda.synchronize()

    def forward(self):
        return nd.depthwise_conv2d(self.x, self.kernel, self.bias, self.stride, "same", self.data_format)

    def backward(self):
        return nd.depthwise_conv2d_backward(self.grad_y, self.x, self.kernel, self.stride, "same", self.data_format)

    def separable(self):
        return nd.separable_conv2d(self.x, self.kernel, self.pointwise, None, self.stride, "same", self.data_format)


class CudaForward2D(_Conv2DCuda):
    def time_forward(self, shape, dtype, data_format):
        self.forward()
        self.cuda.synchronize()


class CudaBackward2D(_Conv2DCuda):
    def time_backward(self, shape, dtype, data_format):
        self.backward()
        self.cuda.synchronize()


class CudaSeparable2D(_Conv2DCuda):
    def time_separable_forward(self, shape, dtype, data_format):
        self.separable()
        self.cuda.synchronize()
