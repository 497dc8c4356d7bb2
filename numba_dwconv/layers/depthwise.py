"""``DepthwiseConv1D``: Keras' layer on the library's depthwise kernels."""

from __future__ import annotations

from .. import _geometry as geo
from .. import constraints, initializers, ops, regularizers
from .base import WeightSpec
from .conv import ConvLayer


class DepthwiseConv1D(ConvLayer):
    """1D depthwise convolution layer, Keras ``DepthwiseConv1D`` (plus ``padding="causal"`` and ``device``).

    Each input channel is convolved with ``depth_multiplier`` kernels of its own;
    output channel ``c * depth_multiplier + j`` is channel ``c`` with kernel ``j``.

    Parameters
    ----------
    kernel_size : int or tuple of 1 int
    strides : int or tuple of 1 int, default 1
    padding : {"valid", "same", "causal"}, default "valid"
    depth_multiplier : int, default 1
    data_format : {"channels_last", "channels_first"} or None, default None (channels_last)
    dilation_rate : int or tuple of 1 int, default 1
    activation : str, callable or None
        None is linear.
    use_bias : bool, default True
    depthwise_initializer, bias_initializer : identifier
        Default "glorot_uniform" and "zeros".
    depthwise_regularizer, bias_regularizer, activity_regularizer : identifier or None
    depthwise_constraint, bias_constraint : identifier or None
    name, trainable, dtype, device : keyword-only
        See :class:`numba_dwconv.layers.base.Layer`.

    Attributes
    ----------
    kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
    bias : ndarray, shape (channels * depth_multiplier,), or None without bias

    Examples
    --------
    >>> import numpy as np
    >>> from numba_dwconv import DepthwiseConv1D
    >>> layer = DepthwiseConv1D(3, padding="same", depth_multiplier=2, activation="relu")
    >>> layer(np.ones((4, 16, 8), np.float32)).shape
    (4, 16, 16)
    """

    _conv = staticmethod(ops.depthwise_conv1d)
    _conv_backward = staticmethod(ops.depthwise_conv1d_backward)

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        *,
        name=None,
        trainable=True,
        dtype=None,
        device="auto",
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         activity_regularizer, name=name, trainable=trainable, dtype=dtype, device=device)
        self.depth_multiplier = geo.as_positive_int(depth_multiplier, "depth_multiplier")
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel = None
        self.bias = None

    def _output_channels(self, channels: int) -> int:
        return channels * self.depth_multiplier

    def _weight_specs(self, channels: int) -> list:
        specs = [WeightSpec("kernel", (*self.kernel_size, channels, self.depth_multiplier),
                            self.depthwise_initializer, self.depthwise_regularizer, self.depthwise_constraint)]
        if self.use_bias:
            specs.append(WeightSpec("bias", (channels * self.depth_multiplier,), self.bias_initializer,
                                    self.bias_regularizer, self.bias_constraint))
        return specs

    def _forward(self, inputs, activation=None, padding=None):
        bias = self.bias if self.use_bias else None
        return self._conv(inputs, self.kernel, bias, *self._op_args(padding), device=self.device,
                          activation=activation)

    def _backward(self, grad_pre, inputs, activation=None):
        bias = self.bias if self.use_bias and activation is not None else None
        grads = self._conv_backward(grad_pre, inputs, self.kernel, *self._op_args(), device=self.device, bias=bias,
                                    activation=activation)
        weight_grads = [grads.grad_kernel] + ([grads.grad_bias] if self.use_bias else [])
        return grads.grad_inputs, weight_grads

    def get_config(self) -> dict:
        """Keras' config: exactly ``keras.layers.DepthwiseConv1D``/``DepthwiseConv2D``'s keys, in their order."""
        return {
            **self._base_config(),
            "depth_multiplier": self.depth_multiplier,
            **self._spatial_config(),
            "activation": self._activation_config(),
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "depthwise_constraint": constraints.serialize(self.depthwise_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class DepthwiseConv2D(DepthwiseConv1D):
    """2D depthwise convolution layer, Keras ``DepthwiseConv2D`` (plus ``device``).

    Same arguments as :class:`DepthwiseConv1D`, with ``kernel_size``, ``strides`` and
    ``dilation_rate`` an int or a pair and ``padding`` ``"valid"`` or ``"same"``.
    Inputs are ``(batch, height, width, channels)`` or ``(batch, channels, height, width)``.

    Attributes
    ----------
    kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    bias : ndarray, shape (channels * depth_multiplier,), or None without bias
    """

    rank = 2
    _conv = staticmethod(ops.depthwise_conv2d)
    _conv_backward = staticmethod(ops.depthwise_conv2d_backward)
