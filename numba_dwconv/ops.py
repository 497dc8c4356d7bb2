"""Public functional API: validate once, pick the device, call the kernels.

All shapes, padding rules and error messages come from :mod:`numba_dwconv._geometry`;
the kernels in :mod:`numba_dwconv.cpu` only do arithmetic.  Inputs are never
modified: the kernels only read them, and any conversion (dtype promotion,
making a non-contiguous view contiguous) works on a copy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _geometry as geo
from . import dispatch


class DepthwiseGrads(NamedTuple):
    """Gradients of a depthwise convolution.

    Attributes
    ----------
    grad_inputs : ndarray
        Same shape as the inputs.
    grad_kernel : ndarray, shape (K, C, m)
        Same shape as the kernel.
    grad_bias : ndarray, shape (C*m,)
        Sum of ``grad_outputs`` over the batch and spatial axes (whether or not the
        forward pass used a bias).
    """

    grad_inputs: np.ndarray
    grad_kernel: np.ndarray
    grad_bias: np.ndarray


_SHARED_PARAMETERS = """strides : int or tuple of 1 int, default 1
        Step between output positions.
    padding : {"valid", "same", "causal"}, default "valid"
        Case-insensitive. ``valid``: no padding. ``same``: ``ceil(L / strides)``
        outputs, the extra zero (if any) on the right. ``causal``: ``ek - 1`` zeros on
        the left only, so output ``t`` never reads inputs after ``t * strides``.
    data_format : {"channels_last", "channels_first"}, default "channels_last"
        Layout of the inputs and outputs: ``(batch, length, channels)`` or
        ``(batch, channels, length)``.
    dilation_rate : int or tuple of 1 int, default 1
        Step between kernel taps; may be combined with ``strides > 1``.
    device : {"auto", "cpu", "cuda"}, keyword-only, default "auto"
        Where to run. ``auto`` runs where the data lives (NumPy: CPU)."""


def _doc(func):
    func.__doc__ = func.__doc__.replace("{shared}", _SHARED_PARAMETERS)
    return func


def _float_array(name, array):
    """``array`` as a NumPy array, checked to be float32 or float64."""
    array = dispatch.host_array(array)
    geo.check_float_dtype(name, array.dtype)
    return array


def _check_grad_outputs(problem, grad_outputs):
    geo.check_rank("grad_outputs", grad_outputs.shape, 3, "like the outputs")
    geo.check_shape("grad_outputs", grad_outputs.shape, problem.output_shape)


@_doc
def depthwise_conv1d(
    inputs,
    kernel,
    bias=None,
    strides=1,
    padding="valid",
    data_format="channels_last",
    dilation_rate=1,
    *,
    device="auto",
):
    """1D depthwise convolution (cross-correlation), Keras ``DepthwiseConv1D`` semantics.

    ``y[b, t, c*m + j] = bias[c*m + j] + sum_i x[b, t*s + i*d - pad_left, c] * kernel[i, c, j]``
    with positions outside ``[0, L)`` reading as zero.

    Parameters
    ----------
    inputs : ndarray, shape (batch, length, channels) or (batch, channels, length)
        float32 or float64. Not modified.
    kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
        Keras layout. float32 or float64.
    bias : ndarray, shape (channels * depth_multiplier,), optional
        Added to every output position.
    {shared}

    Returns
    -------
    outputs : ndarray, shape (batch, out_length, channels * depth_multiplier) or (batch, channels * depth_multiplier, out_length)
        Output channel ``c * depth_multiplier + j`` is channel ``c`` convolved with
        ``kernel[:, c, j]``. dtype: NumPy promotion of the inputs' and kernel's dtypes.

    Raises
    ------
    ValueError
        Bad shapes, sizes, padding, data format or device.
    TypeError
        Non-floating dtypes.
    """
    target = dispatch.select_device(device, inputs, kernel, bias)
    inputs = _float_array("inputs", inputs)
    kernel = _float_array("kernel", kernel)
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    problem = geo.conv1d_problem(inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    if bias is not None:
        bias = _float_array("bias", bias)
        geo.check_shape("bias", bias.shape, (problem.channels * problem.multiplier,))
        bias = dispatch.host_operand(bias, dtype)
    backend = dispatch.backend(target)
    return backend.conv1d_forward(
        problem, dispatch.host_operand(inputs, dtype), dispatch.host_operand(kernel, dtype), bias
    )


@_doc
def depthwise_conv1d_backward(
    grad_outputs,
    inputs,
    kernel,
    strides=1,
    padding="valid",
    data_format="channels_last",
    dilation_rate=1,
    *,
    device="auto",
) -> DepthwiseGrads:
    """All gradients of :func:`depthwise_conv1d` for an upstream gradient.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
        Gradient of the loss with respect to the outputs of the forward call.
    inputs : ndarray, shape (batch, length, channels) or (batch, channels, length)
        The inputs of the forward call.
    kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
        The kernel of the forward call.
    {shared}

    Returns
    -------
    DepthwiseGrads
        ``(grad_inputs, grad_kernel, grad_bias)``; ``grad_bias`` has shape
        ``(channels * depth_multiplier,)`` whether or not the forward used a bias.
    """
    target = dispatch.select_device(device, grad_outputs, inputs, kernel)
    grad_outputs = _float_array("grad_outputs", grad_outputs)
    inputs = _float_array("inputs", inputs)
    kernel = _float_array("kernel", kernel)
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype, kernel.dtype)
    problem = geo.conv1d_problem(inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(problem, grad_outputs)
    backend = dispatch.backend(target)
    grad_outputs = dispatch.host_operand(grad_outputs, dtype)
    grad_inputs = backend.conv1d_input_grad(problem, grad_outputs, dispatch.host_operand(kernel, dtype))
    grad_kernel, grad_bias = backend.conv1d_kernel_grad(problem, grad_outputs, dispatch.host_operand(inputs, dtype))
    return DepthwiseGrads(grad_inputs, grad_kernel, grad_bias)


@_doc
def depthwise_conv1d_input_grad(
    grad_outputs,
    kernel,
    input_length,
    strides=1,
    padding="valid",
    data_format="channels_last",
    dilation_rate=1,
    *,
    device="auto",
):
    """Gradient of :func:`depthwise_conv1d` with respect to its inputs.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
        Gradient of the loss with respect to the outputs.
    kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
        The kernel of the forward call.
    input_length : int
        Length of the forward inputs (several lengths can give one output length
        when ``strides > 1``).
    {shared}

    Returns
    -------
    grad_inputs : ndarray, shape (batch, input_length, channels) or (batch, channels, input_length)
    """
    target = dispatch.select_device(device, grad_outputs, kernel)
    grad_outputs = _float_array("grad_outputs", grad_outputs)
    kernel = _float_array("kernel", kernel)
    input_length = geo.as_positive_int(input_length, "input_length")
    dtype = np.result_type(grad_outputs.dtype, kernel.dtype)
    geo.check_rank("grad_outputs", grad_outputs.shape, 3, "like the outputs")
    geo.check_rank("kernel", kernel.shape, 3, "(kernel_size, channels, depth_multiplier)")
    batch, channels = grad_outputs.shape[0], kernel.shape[1]
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    input_shape = (batch, input_length, channels) if channels_last else (batch, channels, input_length)
    problem = geo.conv1d_problem(input_shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(problem, grad_outputs)
    backend = dispatch.backend(target)
    return backend.conv1d_input_grad(
        problem, dispatch.host_operand(grad_outputs, dtype), dispatch.host_operand(kernel, dtype)
    )


@_doc
def depthwise_conv1d_kernel_grad(
    grad_outputs,
    inputs,
    kernel_size,
    strides=1,
    padding="valid",
    data_format="channels_last",
    dilation_rate=1,
    *,
    device="auto",
):
    """Gradients of :func:`depthwise_conv1d` with respect to its kernel and bias.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
        Gradient of the loss with respect to the outputs; its channel count
        ``channels * depth_multiplier`` gives the depth multiplier.
    inputs : ndarray, shape (batch, length, channels) or (batch, channels, length)
        The inputs of the forward call.
    kernel_size : int or tuple of 1 int
        Number of kernel taps ``K``.
    {shared}

    Returns
    -------
    grad_kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
    grad_bias : ndarray, shape (channels * depth_multiplier,)
    """
    target = dispatch.select_device(device, grad_outputs, inputs)
    grad_outputs = _float_array("grad_outputs", grad_outputs)
    inputs = _float_array("inputs", inputs)
    (ksize,) = geo.normalize_tuple(kernel_size, 1, "kernel_size")
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype)
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    geo.check_rank("inputs", inputs.shape, 3, "(batch, length, channels)" if channels_last else "(batch, channels, length)")
    geo.check_rank("grad_outputs", grad_outputs.shape, 3, "like the outputs")
    channels = inputs.shape[2] if channels_last else inputs.shape[1]
    out_channels = grad_outputs.shape[2] if channels_last else grad_outputs.shape[1]
    if channels == 0 or out_channels % channels or out_channels == 0:
        raise ValueError(
            f"`grad_outputs` must have a positive multiple of the {channels} input channels. "
            f"Received grad_outputs with shape={tuple(grad_outputs.shape)}"
        )
    kernel_shape = (ksize, channels, out_channels // channels)
    problem = geo.conv1d_problem(inputs.shape, kernel_shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(problem, grad_outputs)
    backend = dispatch.backend(target)
    return backend.conv1d_kernel_grad(
        problem, dispatch.host_operand(grad_outputs, dtype), dispatch.host_operand(inputs, dtype)
    )
