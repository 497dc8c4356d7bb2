"""asv benchmarks for the 2D depthwise convolution (CPU), on the issue's MobileNet-like shapes.

``setup`` builds seeded data and runs each operation once, so JIT compilation
(or the load from numba's on-disk cache) is never timed.
"""

import numpy as np

import numba_dwconv as nd

# (batch, height, width, channels, kernel_size, stride), fp32, "same" padding
SHAPES = {
    "B16-56x56-C128-K3-s1": (16, 56, 56, 128, 3, 1),
    "B16-112x112-C32-K3-s1": (16, 112, 112, 32, 3, 1),
    "B16-56x56-C256-K3-s2": (16, 56, 56, 256, 3, 2),
    "B8-28x28-C512-K5-s1": (8, 28, 28, 512, 5, 1),
}
# Large kernels (ConvNeXt 7x7, RepLKNet 31x31, 1xN): (batch, height, width, channels, (KH, KW), stride)
LARGE_SHAPES = {
    "B8-28x28-C256-K7x7": (8, 28, 28, 256, (7, 7), 1),
    "B4-56x56-C64-K31x31": (4, 56, 56, 64, (31, 31), 1),
    "B4-56x56-C64-K1x101": (4, 56, 56, 64, (1, 101), 1),
}


class _Conv2D:
    params = (list(SHAPES), ["channels_last", "channels_first"])
    param_names = ["shape", "data_format"]
    shapes = SHAPES

    def setup(self, shape, data_format):
        batch, height, width, channels, ksize, self.stride = self.shapes[shape]
        ksize = ksize if isinstance(ksize, tuple) else (ksize, ksize)
        rng = np.random.default_rng(0)
        dims = (batch, height, width, channels) if data_format == "channels_last" else (batch, channels, height, width)
        self.x = rng.standard_normal(dims).astype(np.float32)
        self.kernel = rng.standard_normal((*ksize, channels, 1)).astype(np.float32)
        self.bias = rng.standard_normal(channels).astype(np.float32)
        self.data_format = data_format
        self.grad_y = self.forward()
        self.backward()

    def forward(self):
        return nd.depthwise_conv2d(self.x, self.kernel, self.bias, self.stride, "same", self.data_format)

    def backward(self):
        return nd.depthwise_conv2d_backward(self.grad_y, self.x, self.kernel, self.stride, "same", self.data_format)


class Forward2D(_Conv2D):
    def time_forward(self, shape, data_format):
        self.forward()

    def peakmem_forward(self, shape, data_format):
        self.forward()


class Backward2D(_Conv2D):
    def time_backward(self, shape, data_format):
        self.backward()

    def peakmem_backward(self, shape, data_format):
        self.backward()


class LargeKernel2D(_Conv2D):
    params = (list(LARGE_SHAPES), ["channels_last", "channels_first"])
    shapes = LARGE_SHAPES

    def time_forward(self, shape, data_format):
        self.forward()

    def time_backward(self, shape, data_format):
        self.backward()


def _aligned_copy(array):
    """``array`` copied to a buffer that starts on a 64-byte boundary (NumPy's large arrays start 16 bytes past one)."""
    flat = np.empty(array.size + 64 // array.itemsize, array.dtype)
    start = (-flat.ctypes.data % 64) // array.itemsize
    copy = flat[start:start + array.size].reshape(array.shape)
    copy[...] = array
    return copy


class AlignedInput2D(_Conv2D):
    """channels_last on 64-byte aligned inputs, as PyTorch and TensorFlow hand them over.

    Above 256 channels, kernels of 10-25 taps take the all-taps blocks from channel 0 on such inputs,
    from their first aligned channel on NumPy's (numba_dwconv.cpu.conv2d._all_taps_plan): this
    tracks the first path, the NumPy-allocated rows the second.
    """

    params = (["B16-56x56-C128-K3-s1", "B8-28x28-C512-K5-s1"], ["channels_last"])

    def setup(self, shape, data_format):
        super().setup(shape, data_format)
        self.x = _aligned_copy(self.x)
        self.forward()

    def time_forward(self, shape, data_format):
        self.forward()

    def time_backward(self, shape, data_format):
        self.backward()
