"""Public functional API: validate once, pick the device, call the kernels.

All shapes, padding rules and error messages come from :mod:`numba_dwconv._geometry`;
where the work runs is decided by :mod:`numba_dwconv.dispatch`; the kernels in
:mod:`numba_dwconv.cpu` and :mod:`numba_dwconv.cuda` only do arithmetic.  Inputs are never
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
        Where to run. ``auto`` runs where the data lives: NumPy on the CPU (NumPy
        results), CUDA arrays (``__cuda_array_interface__``: numba, CuPy, PyTorch) on
        the GPU without a copy (numba device array results). ``cuda`` copies NumPy
        operands to the GPU (and NumPy results back); ``cpu`` copies device arrays to
        the host.
    stream : numba.cuda stream, keyword-only, optional
        Stream for GPU calls (default stream when None); a ValueError on the CPU."""


def _doc(func):
    func.__doc__ = func.__doc__.replace("{shared}", _SHARED_PARAMETERS)
    return func


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
    stream=None,
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
    outputs : ndarray, shape (batch, out_length, C*m) or (batch, C*m, out_length)
        Output channel ``c * depth_multiplier + j`` is channel ``c`` convolved with
        ``kernel[:, c, j]``. dtype: NumPy promotion of the inputs' and kernel's dtypes.

    Raises
    ------
    ValueError
        Bad shapes, sizes, padding, data format or device.
    TypeError
        Non-floating dtypes.
    """
    place = dispatch.place(device, (inputs,), (kernel, bias), stream)
    inputs = place.view("inputs", inputs)
    kernel = place.view("kernel", kernel)
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    problem = geo.conv1d_problem(inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    out_channels = problem.channels * problem.multiplier
    if bias is None:
        bias = place.zeros(out_channels, dtype)
    else:
        bias = place.view("bias", bias)
        geo.check_shape("bias", bias.shape, (out_channels,))
        bias = place.operand(bias, dtype)
    out = place.call("conv1d_forward", problem, place.operand(inputs, dtype), place.operand(kernel, dtype), bias)
    return place.finish(out)


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
    stream=None,
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
    place = dispatch.place(device, (grad_outputs, inputs), (kernel,), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    inputs = place.view("inputs", inputs)
    kernel = place.view("kernel", kernel)
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype, kernel.dtype)
    problem = geo.conv1d_problem(inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(problem, grad_outputs)
    grad_outputs = place.operand(grad_outputs, dtype)
    grad_inputs = place.call("conv1d_input_grad", problem, grad_outputs, place.operand(kernel, dtype))
    grad_kernel, grad_bias = place.call("conv1d_kernel_grad", problem, grad_outputs, place.operand(inputs, dtype))
    return DepthwiseGrads(*place.finish((grad_inputs, grad_kernel, grad_bias)))


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
    stream=None,
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
    place = dispatch.place(device, (grad_outputs,), (kernel,), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    kernel = place.view("kernel", kernel)
    input_length = geo.as_positive_int(input_length, "input_length")
    dtype = np.result_type(grad_outputs.dtype, kernel.dtype)
    geo.check_rank("grad_outputs", grad_outputs.shape, 3, "like the outputs")
    geo.check_rank("kernel", kernel.shape, 3, "(kernel_size, channels, depth_multiplier)")
    batch, channels = grad_outputs.shape[0], kernel.shape[1]
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    input_shape = (batch, input_length, channels) if channels_last else (batch, channels, input_length)
    problem = geo.conv1d_problem(input_shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(problem, grad_outputs)
    grad_inputs = place.call(
        "conv1d_input_grad", problem, place.operand(grad_outputs, dtype), place.operand(kernel, dtype)
    )
    return place.finish(grad_inputs)


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
    stream=None,
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
    place = dispatch.place(device, (grad_outputs, inputs), (), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    inputs = place.view("inputs", inputs)
    (ksize,) = geo.normalize_tuple(kernel_size, 1, "kernel_size")
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype)
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    layout = "(batch, length, channels)" if channels_last else "(batch, channels, length)"
    geo.check_rank("inputs", inputs.shape, 3, layout)
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
    grads = place.call(
        "conv1d_kernel_grad", problem, place.operand(grad_outputs, dtype), place.operand(inputs, dtype)
    )
    return place.finish(grads)


# ---------------------------------------------------------------------------- separable
class SeparableGrads(NamedTuple):
    """Gradients of a depthwise-separable convolution.

    Attributes
    ----------
    grad_inputs : ndarray
        Same shape as the inputs.
    grad_depthwise_kernel : ndarray, shape (K, C, m)
    grad_pointwise_kernel : ndarray, shape (1, C*m, filters)
    grad_bias : ndarray, shape (filters,)
        Sum of ``grad_outputs`` over the batch and spatial axes.
    """

    grad_inputs: np.ndarray
    grad_depthwise_kernel: np.ndarray
    grad_pointwise_kernel: np.ndarray
    grad_bias: np.ndarray


def _separable_operands(place, inputs, depthwise_kernel, pointwise_kernel, extra_dtypes,
                        strides, padding, data_format, dilation_rate):
    """Validate a separable call; return (problem, filters, dtype, inputs, depthwise, pointwise as (Cm, F))."""
    inputs = place.view("inputs", inputs)
    depthwise_kernel = place.view("depthwise_kernel", depthwise_kernel)
    pointwise_kernel = place.view("pointwise_kernel", pointwise_kernel)
    dtype = np.result_type(inputs.dtype, depthwise_kernel.dtype, pointwise_kernel.dtype, *extra_dtypes)
    problem = geo.conv1d_problem(inputs.shape, depthwise_kernel.shape, strides, padding, data_format, dilation_rate,
                                 dtype, kernel_name="depthwise_kernel")
    depth_channels = problem.channels * problem.multiplier
    filters = geo.pointwise_filters(pointwise_kernel.shape, depth_channels)
    pointwise = place.operand(pointwise_kernel, dtype).reshape(depth_channels, filters)
    return (problem, filters, dtype, place.operand(inputs, dtype), place.operand(depthwise_kernel, dtype),
            pointwise)


@_doc
def separable_conv1d(
    inputs,
    depthwise_kernel,
    pointwise_kernel,
    bias=None,
    strides=1,
    padding="valid",
    data_format="channels_last",
    dilation_rate=1,
    *,
    device="auto",
    stream=None,
):
    """1D depthwise-separable convolution, Keras ``SeparableConv1D`` semantics.

    The depthwise step (strided, dilated, no bias) gives ``C*m`` channels; a 1x1
    pointwise step mixes them into ``filters`` channels (a BLAS matrix product on
    the CPU, a tiled matrix-product kernel on the GPU); then ``bias`` is added.

    Parameters
    ----------
    inputs : ndarray, shape (batch, length, channels) or (batch, channels, length)
        float32 or float64 (float16 too on the GPU). Not modified.
    depthwise_kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
    pointwise_kernel : ndarray, shape (1, channels * depth_multiplier, filters)
    bias : ndarray, shape (filters,), optional
    {shared}

    Returns
    -------
    outputs : ndarray, shape (batch, out_length, filters) or (batch, filters, out_length)
    """
    place = dispatch.place(device, (inputs,), (depthwise_kernel, pointwise_kernel, bias), stream)
    bias = None if bias is None else place.view("bias", bias)
    extra = () if bias is None else (bias.dtype,)
    problem, filters, dtype, inputs, depthwise, pointwise = _separable_operands(
        place, inputs, depthwise_kernel, pointwise_kernel, extra, strides, padding, data_format, dilation_rate)
    if bias is not None:
        geo.check_shape("bias", bias.shape, (filters,))
        bias = place.operand(bias, dtype)
    depthwise_out = place.call("conv1d_forward", problem, inputs, depthwise,
                               place.zeros(problem.channels * problem.multiplier, dtype))
    out = place.call("pointwise_forward", depthwise_out, pointwise, bias, problem.channels_last, module="pointwise")
    return place.finish(out)


@_doc
def separable_conv1d_backward(
    grad_outputs,
    inputs,
    depthwise_kernel,
    pointwise_kernel,
    strides=1,
    padding="valid",
    data_format="channels_last",
    dilation_rate=1,
    *,
    device="auto",
    stream=None,
) -> SeparableGrads:
    """All gradients of :func:`separable_conv1d` for an upstream gradient.

    The depthwise outputs are recomputed (one forward depthwise pass), then the
    pointwise gradients, then the depthwise input and kernel gradients.

    Parameters
    ----------
    grad_outputs : ndarray, shape of the outputs
        Gradient of the loss with respect to the outputs of the forward call.
    inputs : ndarray, shape (batch, length, channels) or (batch, channels, length)
    depthwise_kernel : ndarray, shape (kernel_size, channels, depth_multiplier)
    pointwise_kernel : ndarray, shape (1, channels * depth_multiplier, filters)
    {shared}

    Returns
    -------
    SeparableGrads
        ``(grad_inputs, grad_depthwise_kernel, grad_pointwise_kernel, grad_bias)``.
    """
    place = dispatch.place(device, (grad_outputs, inputs), (depthwise_kernel, pointwise_kernel), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    problem, filters, dtype, inputs, depthwise, pointwise = _separable_operands(
        place, inputs, depthwise_kernel, pointwise_kernel, (grad_outputs.dtype,), strides, padding, data_format,
        dilation_rate)
    depth_channels = problem.channels * problem.multiplier
    geo.check_rank("grad_outputs", grad_outputs.shape, 3, "like the outputs")
    out_shape = list(problem.output_shape)
    out_shape[2 if problem.channels_last else 1] = filters
    geo.check_shape("grad_outputs", grad_outputs.shape, out_shape)
    grad_outputs = place.operand(grad_outputs, dtype)
    depthwise_out = place.call("conv1d_forward", problem, inputs, depthwise, place.zeros(depth_channels, dtype))
    grad_depthwise_out, grad_pointwise, grad_bias = place.call(
        "pointwise_backward", grad_outputs, depthwise_out, pointwise, problem.channels_last, module="pointwise")
    grad_inputs = place.call("conv1d_input_grad", problem, grad_depthwise_out, depthwise)
    grad_depthwise, _ = place.call("conv1d_kernel_grad", problem, grad_depthwise_out, inputs)
    grads = (grad_inputs, grad_depthwise, grad_pointwise.reshape(1, depth_channels, filters), grad_bias)
    return SeparableGrads(*place.finish(grads))
