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

from . import _causal_packed, causal
from . import _opcore as core
from .causal import StatefulGrads, depthwise_conv1d_update


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
    activation=None,
    initial_state=None,
    return_final_state=False,
    sequence_ids=None,
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
    activation : str, keyword-only, optional
        Applied to the outputs inside the kernels, after the bias: any name of
        :mod:`numba_dwconv.activations` (``"silu"``, ``"gelu"``, ...; an ``Activation`` or a
        plain callable is applied to the result instead). CPU.
    initial_state : ndarray, keyword-only, optional
        ``padding="causal"``, ``strides=1`` only: shape ``(batch, (K-1)*d, channels)`` or
        ``(batch, channels, (K-1)*d)``, the ``(K-1)*d`` inputs before position 0 (oldest first),
        replacing the causal zero padding (CPU).
    return_final_state : bool, keyword-only, default False
        Also return the last ``(K-1)*d`` positions of ``[initial_state, inputs]`` (zeros stand in
        for a missing state): the ``initial_state`` of the next chunk of the sequence, so that
        chunks fed one after another give the outputs of one call on the whole sequence.
    sequence_ids : int array, shape (batch, length), keyword-only, optional
        ``padding="causal"``, ``strides=1`` only (CPU): several sequences packed along each row
        (non-decreasing ids, each sequence one run); an output never reads an input of another
        sequence (each is zero-padded on its own) and positions with a negative id (padding, anywhere)
        give zero outputs. Not with ``initial_state``.

    Returns
    -------
    outputs : ndarray, shape (batch, out_length, C*m) or (batch, C*m, out_length)
        Output channel ``c * depth_multiplier + j`` is channel ``c`` convolved with
        ``kernel[:, c, j]``. dtype: NumPy promotion of the inputs' and kernel's dtypes.
        With ``return_final_state``: ``(outputs, final_state)``.

    Raises
    ------
    ValueError
        Bad shapes, sizes, padding, data format or device.
    TypeError
        Non-floating dtypes.
    """
    if sequence_ids is not None:
        if initial_state is not None or return_final_state:
            raise ValueError("`sequence_ids` cannot be combined with `initial_state` or `return_final_state` (each "
                             "packed sequence starts from zeros)")
        return _causal_packed.packed_forward(inputs, kernel, bias, sequence_ids, strides, padding, data_format,
                                             dilation_rate, device, stream, activation)
    if initial_state is not None or return_final_state:
        return causal.stateful_forward(inputs, kernel, bias, strides, padding, data_format, dilation_rate, device,
                                       stream, initial_state, bool(return_final_state), activation)
    return core.forward(core.RANK1, inputs, kernel, bias, strides, padding, data_format, dilation_rate, device,
                        stream, activation)


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
    bias=None,
    activation=None,
    initial_state=None,
    sequence_ids=None,
):
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
    bias : ndarray, keyword-only, optional
        The forward call's bias: with an ``activation`` the pre-activation ``conv + bias`` is
        recomputed (never stored); otherwise only its shape is checked.
    activation : keyword-only, optional
        The forward call's activation; ``grad_outputs`` is then the gradient with respect to the
        activated outputs.
    initial_state, sequence_ids : keyword-only, optional
        The forward call's initial state or packed sequence ids (``padding="causal"``, ``strides=1``).

    Returns
    -------
    DepthwiseGrads or StatefulGrads
        ``(grad_inputs, grad_kernel, grad_bias)``; ``grad_bias`` has shape
        ``(channels * depth_multiplier,)`` whether or not the forward used a bias. With an
        ``initial_state``: ``StatefulGrads``, which adds ``grad_initial_state``.
    """
    if sequence_ids is not None:
        if initial_state is not None:
            raise ValueError("`sequence_ids` cannot be combined with `initial_state` (each packed sequence starts "
                             "from zeros)")
        return _causal_packed.packed_backward(grad_outputs, inputs, kernel, sequence_ids, strides, padding,
                                              data_format, dilation_rate, device, stream, bias, activation)
    if initial_state is not None:
        return causal.stateful_backward(grad_outputs, inputs, kernel, strides, padding, data_format, dilation_rate,
                                        device, stream, initial_state, bias, activation)
    return DepthwiseGrads(*core.backward(core.RANK1, grad_outputs, inputs, kernel, strides, padding, data_format,
                                         dilation_rate, device, stream, bias, activation))


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
    return core.input_grad(core.RANK1, grad_outputs, kernel, input_length, "input_length", strides, padding,
                           data_format, dilation_rate, device, stream)


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
    return core.kernel_grad(core.RANK1, grad_outputs, inputs, kernel_size, strides, padding, data_format,
                            dilation_rate, device, stream)


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
    activation=None,
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
    activation : str, keyword-only, optional
        Applied after the pointwise step and the bias (as Keras does), as in :func:`depthwise_conv1d`.

    Returns
    -------
    outputs : ndarray, shape (batch, out_length, filters) or (batch, filters, out_length)
    """
    return core.separable_forward(core.RANK1, inputs, depthwise_kernel, pointwise_kernel, bias, strides, padding,
                                  data_format, dilation_rate, device, stream, activation)


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
    bias=None,
    activation=None,
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
    bias, activation : keyword-only, optional
        The forward call's bias and activation (the pre-activation is recomputed); ``grad_outputs``
        is then the gradient with respect to the activated outputs.

    Returns
    -------
    SeparableGrads
        ``(grad_inputs, grad_depthwise_kernel, grad_pointwise_kernel, grad_bias)``.
    """
    return SeparableGrads(*core.separable_backward(core.RANK1, grad_outputs, inputs, depthwise_kernel,
                                                   pointwise_kernel, strides, padding, data_format, dilation_rate,
                                                   device, stream, bias, activation))


# The 2D ops live in ops2d (module size); they are part of this module's API too.
from .ops2d import (  # noqa: E402
    depthwise_conv2d,
    depthwise_conv2d_backward,
    depthwise_conv2d_input_grad,
    depthwise_conv2d_kernel_grad,
    separable_conv2d,
    separable_conv2d_backward,
)

__all__ = [
    "DepthwiseGrads",
    "SeparableGrads",
    "StatefulGrads",
    "depthwise_conv1d",
    "depthwise_conv1d_backward",
    "depthwise_conv1d_input_grad",
    "depthwise_conv1d_kernel_grad",
    "depthwise_conv1d_update",
    "depthwise_conv2d",
    "depthwise_conv2d_backward",
    "depthwise_conv2d_input_grad",
    "depthwise_conv2d_kernel_grad",
    "separable_conv1d",
    "separable_conv1d_backward",
    "separable_conv2d",
    "separable_conv2d_backward",
]
