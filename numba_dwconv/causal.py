"""Causal 1D convolution over carried state: chunked sequences and the decode step.

A causal convolution (``padding="causal"``, stride 1) at position ``t`` reads the inputs
``t - (K-1)*d .. t``.  When a sequence arrives in pieces, the ``P = (K-1)*d`` inputs before a
piece (its *state*, oldest first) replace the causal zero padding:

* :func:`stateful_forward` / :func:`stateful_backward` back ``depthwise_conv1d(...,
  initial_state=, return_final_state=)`` and ``depthwise_conv1d_backward(..., initial_state=)``:
  the convolution of ``[state, inputs]`` with ``valid`` padding (exactly ``L`` outputs), so the
  chunks of a sequence, each given the previous chunk's final state, give the outputs of one
  call on the whole sequence.
* :func:`depthwise_conv1d_update` is the decode step: a few new positions per row, the state
  updated in place, rows mapped to state slots (continuous batching).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _dask, dispatch
from . import _geometry as geo
from . import activations as _activations
from ._opcore import _activation, _bias_operand, _check_target


class StatefulGrads(NamedTuple):
    """Gradients of a causal convolution that started from an ``initial_state``.

    Attributes
    ----------
    grad_inputs : ndarray
        Same shape as the inputs.
    grad_kernel : ndarray, shape (K, C, m)
    grad_bias : ndarray, shape (C*m,)
    grad_initial_state : ndarray
        Same shape as the initial state.
    """

    grad_inputs: np.ndarray
    grad_kernel: np.ndarray
    grad_bias: np.ndarray
    grad_initial_state: np.ndarray


# ---------------------------------------------------------------------------- validation
def state_shape(batch: int, channels: int, positions: int, channels_last: bool) -> tuple[int, int, int]:
    """``(batch, positions, channels)`` or ``(batch, channels, positions)``."""
    return (batch, positions, channels) if channels_last else (batch, channels, positions)


def state_positions(kernel_shape, dilation_rate) -> int:
    """``(K - 1) * d``: the inputs a causal output reads before its own position."""
    (dilation,) = geo.normalize_tuple(dilation_rate, 1, "dilation_rate")
    return (int(kernel_shape[0]) - 1) * dilation


def check_causal(strides, padding, what: str) -> None:
    """ValueError unless ``padding`` is 'causal' and ``strides`` is 1 (a state needs both)."""
    (stride,) = geo.normalize_tuple(strides, 1, "strides")
    mode = geo.normalize_padding(padding, geo.PADDINGS_1D)
    if mode != "causal" or stride != 1:
        raise ValueError(
            f"`{what}` needs padding='causal' and strides=1 (a state stands for the inputs before position 0 "
            f"of a causal, unstrided convolution). Received padding={padding!r}, strides={strides!r}"
        )


def _layout(data_format) -> bool:
    return geo.normalize_data_format(data_format) == "channels_last"


def _length_slices(positions: int, channels_last: bool):
    """Index tuples of the first ``positions`` and the rest along the length axis."""
    if channels_last:
        return (slice(None), slice(None, positions)), (slice(None), slice(positions, None))
    return (slice(None), slice(None), slice(None, positions)), (slice(None), slice(None), slice(positions, None))


def _extended_on_device(inputs, kernel, initial_state, dilation_rate, data_format, stream):
    """:func:`_extended` for device-array inputs: ``[initial_state, inputs]`` assembled on the GPU."""
    from numba import cuda

    from .cuda import arrays

    channels_last = _layout(data_format)
    inputs = arrays.as_device_array(inputs)
    geo.check_rank("inputs", inputs.shape, 3, "(batch, length, channels)" if channels_last
                   else "(batch, channels, length)")
    geo.check_rank("kernel", np.shape(kernel), 3, "(kernel_size, channels, depth_multiplier)")
    positions = state_positions(np.shape(kernel), dilation_rate)
    batch, channels = inputs.shape[0], inputs.shape[2] if channels_last else inputs.shape[1]
    expected = state_shape(batch, channels, positions, channels_last)
    dtype = np.result_type(inputs.dtype, np.asarray(kernel).dtype if isinstance(kernel, np.ndarray)
                           else arrays.as_device_array(kernel).dtype)
    geo.check_dtype("inputs", dtype, "cuda")
    shape = list(inputs.shape)
    shape[1 if channels_last else 2] += positions
    extended = cuda.device_array(tuple(shape), dtype=dtype, stream=stream)
    head, tail = _length_slices(positions, channels_last)
    if initial_state is None:
        state = cuda.to_device(np.zeros(expected, dtype), stream=stream)
    else:
        state = initial_state if dispatch.is_cuda_array(initial_state) else np.asarray(initial_state)
        geo.check_dtype("initial_state", state.dtype, "cuda")
        geo.check_shape("initial_state", state.shape, expected)
        state = arrays.device_operand(state, dtype, stream)
    arrays.copy_into(state, extended[head], stream)
    arrays.copy_into(inputs, extended[tail], stream)
    return extended, positions, channels_last


def _contiguous_part(array, index, stream):
    """A C-contiguous copy of ``array[index]`` (NumPy or device; a dask array's part stays lazy)."""
    if isinstance(array, np.ndarray):
        return np.ascontiguousarray(array[index])
    if _dask.is_dask(array):
        return array[index]
    from numba import cuda

    from .cuda import arrays

    view = array[index]
    out = cuda.device_array(view.shape, dtype=view.dtype, stream=stream)
    arrays.copy_into(view, out, stream)
    return out


def _extended(inputs, kernel, initial_state, dilation_rate, data_format):
    """``[initial_state, inputs]`` along the length axis (zeros for a missing state), on the CPU.

    Returns ``(extended, positions, channels_last)``; shapes checked against the inputs and kernel.
    """
    channels_last = _layout(data_format)
    inputs = inputs if _dask.is_dask(inputs) else np.asarray(inputs)  # dask: concatenated lazily below
    kernel = np.asarray(kernel)
    geo.check_rank("inputs", inputs.shape, 3, "(batch, length, channels)" if channels_last
                   else "(batch, channels, length)")
    geo.check_rank("kernel", kernel.shape, 3, "(kernel_size, channels, depth_multiplier)")
    positions = state_positions(kernel.shape, dilation_rate)
    batch = inputs.shape[0]
    channels = inputs.shape[2] if channels_last else inputs.shape[1]
    expected = state_shape(batch, channels, positions, channels_last)
    if initial_state is None:
        dtype = np.result_type(inputs.dtype, kernel.dtype)
        state = np.zeros(expected, dtype=geo.check_dtype("inputs", dtype, "cpu"))
    else:
        state = initial_state if _dask.is_dask(initial_state) else np.asarray(initial_state)
        geo.check_dtype("initial_state", state.dtype, "cpu")
        geo.check_shape("initial_state", state.shape, expected)
    return np.concatenate([state, inputs], axis=1 if channels_last else 2), positions, channels_last


def _assemble(device, stream, inputs, kernel, initial_state, dilation_rate, data_format, *data):
    """``[initial_state, inputs]`` where the work runs: on the GPU for device arrays, else with NumPy."""
    place = dispatch.place(device, (inputs, *data), (kernel, initial_state), stream)
    if place.target == "cuda" and not place.to_host:
        return _extended_on_device(inputs, kernel, initial_state, dilation_rate, data_format, place.stream)
    if dispatch.is_cuda_array(initial_state):
        initial_state = dispatch.to_host(initial_state)
    return _extended(dispatch.to_host(inputs) if dispatch.is_cuda_array(inputs) else inputs, kernel, initial_state,
                     dilation_rate, data_format)


# ---------------------------------------------------------------------------- whole sequences in chunks
def stateful_forward(inputs, kernel, bias, strides, padding, data_format, dilation_rate, device, stream,
                     initial_state, return_final_state, activation=None):
    """``depthwise_conv1d`` with a carried state (see the module docstring)."""
    from .ops import depthwise_conv1d

    what = "initial_state" if initial_state is not None else "return_final_state"
    check_causal(strides, padding, what)
    extended, positions, channels_last = _assemble(device, stream, inputs, kernel, initial_state, dilation_rate,
                                                   data_format)
    outputs = depthwise_conv1d(extended, kernel, bias, 1, "valid", data_format, dilation_rate, device=device,
                               stream=stream, activation=activation)
    if not return_final_state:
        return outputs
    length = extended.shape[1] if channels_last else extended.shape[2]
    _, rest = _length_slices(length - positions, channels_last)
    final = _contiguous_part(extended, rest, stream or 0)
    if isinstance(outputs, np.ndarray) and not isinstance(final, np.ndarray):
        final = final.copy_to_host()
    return outputs, final.astype(outputs.dtype, copy=False) if isinstance(final, np.ndarray) else final


def stateful_backward(grad_outputs, inputs, kernel, strides, padding, data_format, dilation_rate, device, stream,
                      initial_state, bias=None, activation=None) -> StatefulGrads:
    """``depthwise_conv1d_backward`` of a call that started from ``initial_state``."""
    from .ops import depthwise_conv1d_backward

    check_causal(strides, padding, "initial_state")
    extended, positions, channels_last = _assemble(device, stream, inputs, kernel, initial_state, dilation_rate,
                                                   data_format, grad_outputs)
    grad_extended, grad_kernel, grad_bias = depthwise_conv1d_backward(
        grad_outputs, extended, kernel, 1, "valid", data_format, dilation_rate, device=device, stream=stream,
        bias=bias, activation=activation)
    head, tail = _length_slices(positions, channels_last)
    return StatefulGrads(_contiguous_part(grad_extended, tail, stream or 0), grad_kernel, grad_bias,
                         _contiguous_part(grad_extended, head, stream or 0))


# ---------------------------------------------------------------------------- decode step
def _slots(state_indices, batch: int, slots: int) -> np.ndarray:
    """The slot of each row (int64; negative: a padding row), validated."""
    if state_indices is None:
        if slots != batch:
            raise ValueError(
                f"Without `state_indices`, `state` needs one slot per row of the batch ({batch}). "
                f"Received state with {slots} slots"
            )
        return np.arange(batch, dtype=np.int64)
    indices = np.asarray(state_indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"`state_indices` must be an integer array. Received state_indices.dtype={indices.dtype}")
    geo.check_shape("state_indices", indices.shape, (batch,))
    indices = indices.astype(np.int64)
    live = indices[indices >= 0]
    if live.size and live.max() >= slots:
        raise ValueError(f"`state_indices` must be below the {slots} slots of `state` (negative: a padding row). "
                         f"Received state_indices={indices.tolist()}")
    if np.unique(live).size != live.size:
        raise ValueError(f"Two rows of the batch cannot update the same state slot. "
                         f"Received state_indices={indices.tolist()}")
    return indices


def _writable_state(state, dtype, expected_tail, target: str = "cpu"):
    """``state`` itself if it can be updated in place on ``target`` (never a silent copy), else ValueError."""
    if target == "cuda":
        if not dispatch.is_cuda_array(state):
            raise ValueError("`state` is updated in place, so it must be a GPU array (numba, CuPy, PyTorch) for a GPU "
                             f"call. Received {type(state).__name__}")
        from .cuda import arrays

        state = arrays.as_device_array(state)
        contiguous, writeable = state.is_c_contiguous(), True
    else:
        if not isinstance(state, np.ndarray):
            raise ValueError(f"`state` is updated in place, so it must be a NumPy array on the CPU. "
                             f"Received {type(state).__name__}")
        contiguous, writeable = state.flags.c_contiguous, state.flags.writeable
    if state.dtype != dtype:
        raise ValueError(f"`state` is updated in place, so it must have the computation dtype {dtype}. "
                         f"Received state.dtype={state.dtype}")
    if not contiguous or not writeable:
        raise ValueError("`state` is updated in place, so it must be a writable C-contiguous array. "
                         f"Received one with c_contiguous={contiguous}, writeable={writeable}")
    if state.ndim != 3 or tuple(state.shape[1:]) != tuple(expected_tail):
        raise ValueError(f"`state` must have shape (slots, {', '.join(map(str, expected_tail))}). "
                         f"Received state with shape={tuple(state.shape)}")
    return state


def depthwise_conv1d_update(inputs, state, kernel, bias=None, dilation_rate=1, data_format="channels_last", *,
                            activation=None, state_indices=None, device="auto", stream=None):
    """One decode step (or a few) of a causal depthwise convolution, updating ``state`` in place.

    For each row ``b`` with slot ``s = state_indices[b]`` the result is what
    ``depthwise_conv1d(concat([state[s], inputs[b]]), kernel, bias, padding="causal")`` gives at
    the new positions, and ``state[s]`` becomes the last ``(K-1)*d`` positions of that sequence.

    Parameters
    ----------
    inputs : ndarray, shape (batch, C), or (batch, T, C) / (batch, C, T)
        One new position per row, or ``T`` of them in the layout of ``data_format``. Not modified.
    state : ndarray, shape (slots, (K-1)*d, C) or (slots, C, (K-1)*d)
        The ``(K-1)*d`` previous inputs of each slot, oldest first. **Updated in place**: it must be
        a writable C-contiguous NumPy array of the computation dtype (the NumPy promotion of the
        inputs' and kernel's dtypes), else ValueError (a copy would be updated silently).
    kernel : ndarray, shape (K, C, m)
    bias : ndarray, shape (C*m,), optional
    dilation_rate : int, default 1
    data_format : {"channels_last", "channels_first"}
    activation : str or callable, keyword-only, optional
        Applied to the outputs (any name of :mod:`numba_dwconv.activations`).
    state_indices : int array, shape (batch,), keyword-only, optional
        The slot of each row (continuous batching); a negative index marks a padding row: its
        outputs are zero and no slot changes. Default: row ``b`` uses slot ``b`` (``slots == batch``).
    device : {"auto", "cpu", "cuda"}, keyword-only
        Where to run (``auto``: where ``inputs`` lives). On the GPU, ``state`` must be a GPU array and
        ``activation`` a built-in name.
    stream : numba.cuda stream, keyword-only, optional
        For GPU calls.

    Returns
    -------
    outputs : ndarray, shape (batch, C*m), or (batch, T, C*m) / (batch, C*m, T)
    """
    place = dispatch.place(device, (inputs,), (state, kernel, bias), stream)
    channels_last = _layout(data_format)
    inputs = place.view("inputs", inputs)
    kernel = place.view("kernel", kernel)
    (dilation,) = geo.normalize_tuple(dilation_rate, 1, "dilation_rate")
    if inputs.ndim not in (2, 3):
        raise ValueError("`inputs` must be (batch, channels) for one step or a 3D array of shape "
                         f"{'(batch, steps, channels)' if channels_last else '(batch, channels, steps)'}. "
                         f"Received inputs with shape={tuple(inputs.shape)}")
    one_step = inputs.ndim == 2
    geo.check_rank("kernel", kernel.shape, 3, "(kernel_size, channels, depth_multiplier)")
    batch = inputs.shape[0]
    channels = inputs.shape[1] if one_step or not channels_last else inputs.shape[2]
    steps = 1 if one_step else inputs.shape[1] if channels_last else inputs.shape[2]
    ksize, kernel_channels, mult = (int(v) for v in kernel.shape)
    if kernel_channels != channels:
        raise ValueError(f"`kernel` must have {channels} channels (like the inputs) on axis 1. "
                         f"Received kernel with shape={tuple(kernel.shape)}")
    if ksize < 1 or mult < 1:
        raise ValueError(f"`kernel` must have at least one tap and one output per channel. "
                         f"Received kernel with shape={tuple(kernel.shape)}")
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    positions = (ksize - 1) * dilation
    tail = (positions, channels) if channels_last else (channels, positions)
    state = _writable_state(state, dtype, tail, place.target)
    slots = _slots(state_indices, batch, state.shape[0])
    act, name = _activation(activation)
    _check_target(place, act, name)
    bias = _bias_operand(place, bias, channels * mult, dtype)
    _check_no_overlap(state, inputs, kernel, bias)
    shape3d = (batch, steps, channels) if channels_last else (batch, channels, steps)
    out_shape = (batch, steps, channels * mult) if channels_last else (batch, channels * mult, steps)
    if place.target == "cuda":
        out = _update_on_gpu(place, inputs, state, kernel, bias, slots, dilation, shape3d, out_shape, dtype,
                             channels_last, name)
    else:
        out = _update_on_cpu(place, inputs, state, kernel, bias, slots, dilation, shape3d, out_shape, dtype,
                             channels_last, act)
    return out.reshape(batch, channels * mult) if one_step else out


def _update_on_cpu(place, inputs, state, kernel, bias, slots, dilation, shape3d, out_shape, dtype, channels_last,
                   act):
    x = np.ascontiguousarray(inputs, dtype=dtype).reshape(shape3d)
    out = np.empty(out_shape, dtype)
    if out.size:
        kernel_op = np.ascontiguousarray(kernel, dtype=dtype)
        bias_op = np.zeros(out_shape[2 if channels_last else 1], dtype) if bias is None else bias
        place.backend("update").run_update(x, state, kernel_op, bias_op, slots, dilation, out, channels_last)
    if act is not None and act is not _activations.linear:
        out = np.asarray(act(out), dtype=dtype)
    return out


def _update_on_gpu(place, inputs, state, kernel, bias, slots, dilation, shape3d, out_shape, dtype, channels_last,
                   name):
    from numba import cuda

    from .cuda import arrays
    from .cuda.activations import activate
    from .cuda.update import run_update

    x = place.operand(inputs, dtype).reshape(shape3d)
    out = cuda.device_array(out_shape, dtype=dtype, stream=place.stream)
    if out.size:
        kernel_op = place.operand(kernel, dtype)
        n_out = out_shape[2 if channels_last else 1]
        bias_op = arrays.device_zeros(n_out, dtype, place.stream) if bias is None else bias
        run_update(x, state, kernel_op, bias_op, cuda.to_device(slots, stream=place.stream), dilation, out,
                   channels_last, place.stream)
        if name is not None:
            activate(out, name, None, place.stream)
    return place.finish(out)


def _span(array):
    """``(first byte, end byte)`` of an array's memory (host or device)."""
    if array is None:
        return None
    if isinstance(array, np.ndarray):
        lo = array.__array_interface__["data"][0]
    elif hasattr(array, "__cuda_array_interface__"):
        lo = array.__cuda_array_interface__["data"][0]
    elif isinstance(getattr(array, "_ary", None), np.ndarray):  # the CUDA simulator's arrays wrap NumPy ones
        lo = array._ary.__array_interface__["data"][0]
    else:
        return None
    return lo, lo + array.size * np.dtype(array.dtype).itemsize


def _check_no_overlap(state, *others) -> None:
    """ValueError if ``state`` (updated in place) shares memory with another operand."""
    if isinstance(state, np.ndarray):  # NumPy's bounds check (C, fast)
        overlap = False
        for other in others:
            overlap |= isinstance(other, np.ndarray) and np.may_share_memory(state, other)
    else:
        s = _span(state)
        overlap = False
        for other in others:
            o = _span(other) if other is not None and not isinstance(other, np.ndarray) else None
            overlap |= s is not None and o is not None and o[0] < s[1] and s[0] < o[1] and s[0] != s[1]
    if overlap:
        raise ValueError("`state` must not share memory with `inputs`, `kernel` or `bias` (it is updated in place)")
