"""asv benchmarks for the separable ops and the layers' training step (CPU).

``setup`` builds seeded data and runs each operation once, so JIT compilation
(or the load from numba's on-disk cache) is never timed.
"""

import numpy as np

import numba_dwconv as nd

# (batch, length, channels, filters, kernel_size, padding): a MobileNet-like block and an audio-like one
SHAPES = {
    "B8-L2048-C256-F256-K3-same": (8, 2048, 256, 256, 3, "same"),
    "B16-L4096-C64-F128-K7-causal": (16, 4096, 64, 128, 7, "causal"),
}


class _Separable:
    params = (list(SHAPES), ["channels_last", "channels_first"])
    param_names = ["shape", "data_format"]

    def setup(self, shape, data_format):
        batch, length, channels, filters, ksize, self.padding = SHAPES[shape]
        rng = np.random.default_rng(0)
        dims = (batch, length, channels) if data_format == "channels_last" else (batch, channels, length)
        self.x = rng.standard_normal(dims).astype(np.float32)
        self.depthwise = rng.standard_normal((ksize, channels, 1)).astype(np.float32)
        self.pointwise = rng.standard_normal((1, channels, filters)).astype(np.float32)
        self.bias = rng.standard_normal(filters).astype(np.float32)
        self.data_format = data_format
        self.grad_y = self.forward()
        self.backward()

    def forward(self):
        return nd.separable_conv1d(self.x, self.depthwise, self.pointwise, self.bias, 1, self.padding,
                                   self.data_format)

    def backward(self):
        return nd.separable_conv1d_backward(self.grad_y, self.x, self.depthwise, self.pointwise, 1, self.padding,
                                            self.data_format)


class SeparableForward(_Separable):
    def time_forward(self, shape, data_format):
        self.forward()

    def peakmem_forward(self, shape, data_format):
        self.forward()


class SeparableBackward(_Separable):
    def time_backward(self, shape, data_format):
        self.backward()


class LayerTrainingStep:
    """Forward, backward and an Adam step of a regularised SeparableConv1D with a GELU."""

    params = (list(SHAPES),)
    param_names = ["shape"]

    def setup(self, shape):
        batch, length, channels, filters, ksize, padding = SHAPES[shape]
        self.x = np.random.default_rng(0).standard_normal((batch, length, channels)).astype(np.float32)
        self.layer = nd.SeparableConv1D(filters, ksize, padding=padding, activation="gelu",
                                        depthwise_regularizer="l2", activity_regularizer="l1")
        self.optimizer = nd.optimizers.Adam()
        self.grad_y = np.ones(self.layer.compute_output_shape(self.x.shape), np.float32)
        self.time_training_step(shape)

    def time_training_step(self, shape):
        self.layer(self.x)
        self.layer.backward(self.grad_y)
        self.optimizer.step(self.layer)
