"""Public functional API, 2D: the depthwise and separable 2D ops (re-exported by :mod:`numba_dwconv.ops`).

Same conventions as the 1D ops: validation in :mod:`numba_dwconv._geometry`, placement in
:mod:`numba_dwconv.dispatch`, bodies in :mod:`numba_dwconv._opcore`.
"""

from __future__ import annotations

from . import _opcore as core
from .ops import DepthwiseGrads, SeparableGrads

_SHARED_2D = """strides : int or pair of int, default 1
        Step between output positions along (height, width).
    padding : {"valid", "same"}, default "valid"
        Case-insensitive, per axis as in 1D (the extra zero of ``same`` goes on the
        bottom/right); ``causal`` is a ValueError in 2D.
    data_format : {"channels_last", "channels_first"}, default "channels_last"
        ``(batch, height, width, channels)`` or ``(batch, channels, height, width)``.
    dilation_rate : int or pair of int, default 1
        Step between kernel taps; may be combined with ``strides > 1``.
    device, stream : keyword-only
        As in :func:`depthwise_conv1d`."""


def _doc2(func):
    func.__doc__ = func.__doc__.replace("{shared}", _SHARED_2D)
    return func


@_doc2
def depthwise_conv2d(inputs, kernel, bias=None, strides=1, padding="valid", data_format="channels_last",
                     dilation_rate=1, *, device="auto", stream=None, activation=None):
    """2D depthwise convolution (cross-correlation), Keras ``DepthwiseConv2D`` semantics.

    ``y[b, h, w, c*m + j] = bias[c*m + j] + sum_{i, k} x[b, h*sh + i*dh - pad_top, w*sw + k*dw - pad_left, c]
    * kernel[i, k, c, j]`` with positions outside the input reading as zero.

    Parameters
    ----------
    inputs : ndarray, shape (batch, height, width, channels) or (batch, channels, height, width)
    kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    bias : ndarray, shape (channels * depth_multiplier,), optional
    {shared}
    activation : keyword-only
        As in :func:`depthwise_conv1d`.

    Returns
    -------
    outputs : ndarray, shape (batch, out_h, out_w, C*m) or (batch, C*m, out_h, out_w)
    """
    return core.forward(core.RANK2, inputs, kernel, bias, strides, padding, data_format, dilation_rate, device,
                        stream, activation)


@_doc2
def depthwise_conv2d_backward(grad_outputs, inputs, kernel, strides=1, padding="valid", data_format="channels_last",
                              dilation_rate=1, *, device="auto", stream=None, bias=None,
                              activation=None) -> DepthwiseGrads:
    """All gradients of :func:`depthwise_conv2d` for an upstream gradient.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
    inputs : ndarray, shape (batch, height, width, channels) or (batch, channels, height, width)
    kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    {shared}
    bias, activation : keyword-only
        As in :func:`depthwise_conv1d_backward`.

    Returns
    -------
    DepthwiseGrads
        ``(grad_inputs, grad_kernel, grad_bias)``.
    """
    return DepthwiseGrads(*core.backward(core.RANK2, grad_outputs, inputs, kernel, strides, padding, data_format,
                                         dilation_rate, device, stream, bias, activation))


@_doc2
def depthwise_conv2d_input_grad(grad_outputs, kernel, input_size, strides=1, padding="valid",
                                data_format="channels_last", dilation_rate=1, *, device="auto", stream=None):
    """Gradient of :func:`depthwise_conv2d` with respect to its inputs.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
    kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    input_size : int or pair of int
        (height, width) of the forward inputs.
    {shared}

    Returns
    -------
    grad_inputs : ndarray, the shape of the forward inputs
    """
    return core.input_grad(core.RANK2, grad_outputs, kernel, input_size, "input_size", strides, padding, data_format,
                           dilation_rate, device, stream)


@_doc2
def depthwise_conv2d_kernel_grad(grad_outputs, inputs, kernel_size, strides=1, padding="valid",
                                 data_format="channels_last", dilation_rate=1, *, device="auto", stream=None):
    """Gradients of :func:`depthwise_conv2d` with respect to its kernel and bias.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
    inputs : ndarray, shape (batch, height, width, channels) or (batch, channels, height, width)
    kernel_size : int or pair of int
    {shared}

    Returns
    -------
    grad_kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    grad_bias : ndarray, shape (channels * depth_multiplier,)
    """
    return core.kernel_grad(core.RANK2, grad_outputs, inputs, kernel_size, strides, padding, data_format,
                            dilation_rate, device, stream)


@_doc2
def separable_conv2d(inputs, depthwise_kernel, pointwise_kernel, bias=None, strides=1, padding="valid",
                     data_format="channels_last", dilation_rate=1, *, device="auto", stream=None, activation=None):
    """2D depthwise-separable convolution, Keras ``SeparableConv2D`` semantics.

    Parameters
    ----------
    inputs : ndarray, shape (batch, height, width, channels) or (batch, channels, height, width)
    depthwise_kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    pointwise_kernel : ndarray, shape (1, 1, channels * depth_multiplier, filters)
    bias : ndarray, shape (filters,), optional
    {shared}

    Returns
    -------
    outputs : ndarray, shape (batch, out_h, out_w, filters) or (batch, filters, out_h, out_w)
    """
    return core.separable_forward(core.RANK2, inputs, depthwise_kernel, pointwise_kernel, bias, strides, padding,
                                  data_format, dilation_rate, device, stream, activation)


@_doc2
def separable_conv2d_backward(grad_outputs, inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid",
                              data_format="channels_last", dilation_rate=1, *, device="auto", stream=None,
                              bias=None, activation=None) -> SeparableGrads:
    """All gradients of :func:`separable_conv2d` for an upstream gradient.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
    inputs : ndarray, shape (batch, height, width, channels) or (batch, channels, height, width)
    depthwise_kernel : ndarray, shape (kernel_height, kernel_width, channels, depth_multiplier)
    pointwise_kernel : ndarray, shape (1, 1, channels * depth_multiplier, filters)
    {shared}

    Returns
    -------
    SeparableGrads
    """
    return SeparableGrads(*core.separable_backward(core.RANK2, grad_outputs, inputs, depthwise_kernel,
                                                   pointwise_kernel, strides, padding, data_format, dilation_rate,
                                                   device, stream, bias, activation))
