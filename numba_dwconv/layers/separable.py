"""``SeparableConv1D``: Keras' layer on the library's separable ops (depthwise, then pointwise)."""

from __future__ import annotations

from .. import _geometry as geo
from .. import constraints, initializers, ops, regularizers
from .base import WeightSpec
from .conv import ConvLayer


class SeparableConv1D(ConvLayer):
    """1D depthwise-separable convolution layer, Keras ``SeparableConv1D`` (plus ``causal`` and ``device``).

    A depthwise convolution (``depth_multiplier`` kernels per channel, no bias), a
    1x1 pointwise convolution mixing the ``C * depth_multiplier`` channels into
    ``filters``, then the bias and the activation.

    Parameters
    ----------
    filters : int
    kernel_size : int or tuple of 1 int
    strides : int or tuple of 1 int, default 1
    padding : {"valid", "same", "causal"}, default "valid"
    data_format : {"channels_last", "channels_first"} or None, default None (channels_last)
    dilation_rate : int or tuple of 1 int, default 1
    depth_multiplier : int, default 1
    activation : str, callable or None
    use_bias : bool, default True
    depthwise_initializer, pointwise_initializer, bias_initializer : identifier
        Default "glorot_uniform", "glorot_uniform" and "zeros".
    depthwise_regularizer, pointwise_regularizer, bias_regularizer, activity_regularizer : identifier or None
    depthwise_constraint, pointwise_constraint, bias_constraint : identifier or None
    name, trainable, dtype, device : keyword-only
        See :class:`numba_dwconv.layers.base.Layer`.

    Attributes
    ----------
    depthwise_kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
    pointwise_kernel : ndarray, shape (1, channels * depth_multiplier, filters)
    bias : ndarray, shape (filters,), or None without bias
    """

    _conv = staticmethod(ops.separable_conv1d)
    _conv_backward = staticmethod(ops.separable_conv1d_backward)

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        *,
        name=None,
        trainable=True,
        dtype=None,
        device="auto",
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         activity_regularizer, name=name, trainable=trainable, dtype=dtype, device=device)
        self.filters = geo.as_positive_int(filters, "filters")
        self.depth_multiplier = geo.as_positive_int(depth_multiplier, "depth_multiplier")
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.pointwise_constraint = constraints.get(pointwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.depthwise_kernel = None
        self.pointwise_kernel = None
        self.bias = None

    def _output_channels(self, channels: int) -> int:
        return self.filters

    def _weight_specs(self, channels: int) -> list:
        depth_channels = channels * self.depth_multiplier
        specs = [
            WeightSpec("depthwise_kernel", (*self.kernel_size, channels, self.depth_multiplier),
                       self.depthwise_initializer, self.depthwise_regularizer, self.depthwise_constraint),
            WeightSpec("pointwise_kernel", (*(1,) * self.rank, depth_channels, self.filters),
                       self.pointwise_initializer, self.pointwise_regularizer, self.pointwise_constraint),
        ]
        if self.use_bias:
            specs.append(WeightSpec("bias", (self.filters,), self.bias_initializer, self.bias_regularizer,
                                    self.bias_constraint))
        return specs

    def _forward(self, inputs, activation=None, padding=None):
        bias = self.bias if self.use_bias else None
        return self._conv(inputs, self.depthwise_kernel, self.pointwise_kernel, bias, *self._op_args(padding),
                          device=self.device, activation=activation)

    def _backward(self, grad_pre, inputs, activation=None):
        bias = self.bias if self.use_bias and activation is not None else None
        grads = self._conv_backward(grad_pre, inputs, self.depthwise_kernel, self.pointwise_kernel,
                                    *self._op_args(), device=self.device, bias=bias, activation=activation)
        weight_grads = [grads.grad_depthwise_kernel, grads.grad_pointwise_kernel]
        if self.use_bias:
            weight_grads.append(grads.grad_bias)
        return grads.grad_inputs, weight_grads

    def get_config(self) -> dict:
        """Keras' config: exactly ``keras.layers.SeparableConv1D``'s keys, in its order."""
        return {
            **self._base_config(),
            "depth_multiplier": self.depth_multiplier,
            "filters": self.filters,
            **self._spatial_config(),
            "activation": self._activation_config(),
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "depthwise_constraint": constraints.serialize(self.depthwise_constraint),
            "pointwise_constraint": constraints.serialize(self.pointwise_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class SeparableConv2D(SeparableConv1D):
    """2D depthwise-separable convolution layer, Keras ``SeparableConv2D`` (plus ``device``).

    Same arguments as :class:`SeparableConv1D`, with ``kernel_size``, ``strides`` and
    ``dilation_rate`` an int or a pair and ``padding`` ``"valid"`` or ``"same"``.

    Attributes
    ----------
    depthwise_kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    pointwise_kernel : ndarray, shape (1, 1, channels * depth_multiplier, filters)
    bias : ndarray, shape (filters,), or None without bias
    """

    rank = 2
    _conv = staticmethod(ops.separable_conv2d)
    _conv_backward = staticmethod(ops.separable_conv2d_backward)
