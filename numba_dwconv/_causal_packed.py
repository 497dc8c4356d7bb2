"""Packed sequences: several causal sequences along each row, each convolved on its own.

``depthwise_conv1d(..., sequence_ids=)`` and ``depthwise_conv1d_backward(..., sequence_ids=)``
(:mod:`numba_dwconv.ops`) come here: ``sequence_ids`` (batch, length) names the sequence of every
position (negative: padding, output zero); a sequence's first position sees causal zero padding,
never the previous sequence's inputs.  The kernels: :mod:`numba_dwconv.cpu.packed` and
:mod:`numba_dwconv.cuda.packed`; dask arrays go block by block (:mod:`numba_dwconv._dask_packed`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _dask, dispatch
from . import _geometry as geo
from ._opcore import RANK1, _activate_on_target, _activation, _bias_operand, _check_target, _problem
from .causal import check_causal


class _Packed(NamedTuple):
    place: object
    x: object  # inputs of the dtype, channels_last on the CPU, the caller's layout on the GPU
    ids: object  # int64, on the target
    kernel: object
    dtype: np.dtype
    dilation: int
    channels_last: bool
    shape: tuple  # (batch, length, channels)


def _packed_operands(inputs, kernel, sequence_ids, strides, padding, data_format, dilation_rate, device, stream,
                     extra=()) -> _Packed:
    """The validated operands of a packed call, placed where it runs."""
    check_causal(strides, padding, "sequence_ids")
    place = dispatch.place(device, (inputs, *extra), (kernel,), stream)
    inputs = place.view("inputs", inputs)
    kernel = place.view("kernel", kernel)
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    problem = _problem(RANK1, inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    ids = dispatch.to_host(sequence_ids) if dispatch.is_cuda_array(sequence_ids) else np.asarray(sequence_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"`sequence_ids` must be an integer array. Received sequence_ids.dtype={ids.dtype}")
    geo.check_shape("sequence_ids", ids.shape, (problem.batch, problem.axis.length))
    _check_packed_ids(ids)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    shape = (problem.batch, problem.axis.length, problem.channels)
    if place.target == "cuda":
        from numba import cuda

        return _Packed(place, place.operand(inputs, dtype), cuda.to_device(ids, stream=place.stream),
                       place.operand(kernel, dtype), dtype, problem.axis.dilation, problem.channels_last, shape)
    x = np.ascontiguousarray(inputs if problem.channels_last else inputs.transpose(0, 2, 1), dtype=dtype)
    return _Packed(place, x, ids, np.ascontiguousarray(kernel, dtype), dtype, problem.axis.dilation,
                   problem.channels_last, shape)


def _packed_empty(p: _Packed, channels: int):
    """An uninitialised array of ``channels`` per position, where and how the packed kernels write it."""
    batch, length, _ = p.shape
    if p.place.target == "cuda":
        from numba import cuda

        shape = (batch, length, channels) if p.channels_last else (batch, channels, length)
        return cuda.device_array(shape, dtype=p.dtype, stream=p.place.stream)
    return np.empty((batch, length, channels), p.dtype)


def _packed_forward_pre(p: _Packed, bias):
    """The pre-activation outputs (zero at padding positions) of a packed call."""
    out_channels = p.kernel.shape[1] * p.kernel.shape[2]
    out = _packed_empty(p, out_channels)
    bias = _bias_operand(p.place, bias, out_channels, p.dtype)
    if p.place.target == "cuda":
        from .cuda import arrays
        from .cuda import packed as gpu

        if bias is None:
            bias = arrays.device_zeros(out_channels, p.dtype, p.place.stream)
        gpu.forward_packed(p.x, p.ids, p.kernel, bias, p.dilation, out, p.channels_last, p.place.stream)
        return out
    from ._jit import launch
    from .cpu import packed

    if out.size:
        launch(packed.forward_packed, p.x, p.ids, p.kernel,
               np.zeros(out_channels, p.dtype) if bias is None else bias, p.dilation, out)
    return out


def _check_packed_ids(ids) -> None:
    """ValueError unless each row's sequences (ids >= 0) come one after another, each as one run.

    Negative ids (padding) may sit anywhere, e.g. at the end of a row.
    """
    for row in ids:
        live = row[row >= 0]
        starts = np.count_nonzero((row >= 0) & np.concatenate([[True], row[1:] != row[:-1]]))
        if np.any(np.diff(live) < 0) or starts != np.unique(live).size:
            raise ValueError(
                "`sequence_ids` must be non-decreasing along each row, each sequence one contiguous run "
                f"(negative ids, padding, may sit anywhere). Received a row {row.tolist() if row.size <= 64 else row}"
            )


def _to_layout(array, channels_last):
    return array if channels_last else np.ascontiguousarray(array.transpose(0, 2, 1))


def packed_forward(inputs, kernel, bias, sequence_ids, strides, padding, data_format, dilation_rate, device, stream,
                   activation=None):
    """``depthwise_conv1d(..., sequence_ids=)``: the causal convolution of each packed sequence on its own."""
    if _dask.is_dask(inputs) or _dask.is_dask(sequence_ids):  # lazy, block by block
        from . import _dask_packed

        return _dask_packed.packed_forward(inputs, kernel, bias, sequence_ids, strides, padding, data_format,
                                           dilation_rate, device, activation)
    p = _packed_operands(inputs, kernel, sequence_ids, strides, padding, data_format, dilation_rate, device, stream)
    out = _activate_packed(p, _packed_forward_pre(p, bias), activation)
    if p.place.target == "cuda":
        return p.place.finish(out)
    return _to_layout(out, p.channels_last)


def _activate_packed(p: _Packed, out, activation, grad=None):
    """The activation (or ``grad * f'``) on the outputs of real positions; padding positions stay zero."""
    if activation is None:
        return out
    act, name = _activation(activation)
    _check_target(p.place, act, name)
    result = _activate_on_target(p.place, act, name, out, grad)
    if p.place.target == "cuda":
        from .cuda import packed as gpu

        gpu.zero_padding(result, p.ids, p.channels_last, p.place.stream)
    else:
        result[p.ids < 0] = 0
    return result


def packed_backward(grad_outputs, inputs, kernel, sequence_ids, strides, padding, data_format, dilation_rate, device,
                    stream, bias=None, activation=None):
    """``depthwise_conv1d_backward(..., sequence_ids=)``: ``(grad_inputs, grad_kernel, grad_bias)``."""
    from .ops import DepthwiseGrads

    if any(_dask.is_dask(a) for a in (grad_outputs, inputs, sequence_ids)):  # lazy, block by block
        from . import _dask_packed

        return _dask_packed.packed_backward(grad_outputs, inputs, kernel, sequence_ids, strides, padding, data_format,
                                            dilation_rate, device, bias, activation)
    p = _packed_operands(inputs, kernel, sequence_ids, strides, padding, data_format, dilation_rate, device, stream,
                         (grad_outputs,))
    batch, length, channels = p.shape
    out_channels = p.kernel.shape[1] * p.kernel.shape[2]
    grad = p.place.view("grad_outputs", grad_outputs)
    expected = (batch, length, out_channels) if p.channels_last else (batch, out_channels, length)
    geo.check_shape("grad_outputs", grad.shape, expected)
    on_gpu = p.place.target == "cuda"
    grad = p.place.operand(grad, p.dtype) if on_gpu else \
        np.ascontiguousarray(grad if p.channels_last else grad.transpose(0, 2, 1), dtype=p.dtype)
    if activation is not None:  # the gradient at the pre-activation, recomputed
        grad = _activate_packed(p, _packed_forward_pre(p, bias), activation, grad)
    grad_in = _packed_empty(p, channels)
    part_shape = ((batch,) + tuple(p.kernel.shape), (batch, out_channels))
    if on_gpu:
        from numba import cuda

        from .cuda import packed as gpu

        part_kernel = cuda.device_array(part_shape[0], dtype=p.dtype, stream=p.place.stream)
        part_bias = cuda.device_array(part_shape[1], dtype=p.dtype, stream=p.place.stream)
        gpu.input_grad_packed(grad, p.ids, p.kernel, p.dilation, grad_in, p.channels_last, p.place.stream)
        gpu.kernel_grad_packed(grad, p.x, p.ids, p.dilation, part_kernel, part_bias, p.channels_last,
                               p.place.stream)
        grad_kernel = part_kernel.copy_to_host(stream=p.place.stream).sum(axis=0)
        grad_bias = part_bias.copy_to_host(stream=p.place.stream).sum(axis=0)
        if not p.place.to_host:
            grad_kernel, grad_bias = (cuda.to_device(a, stream=p.place.stream) for a in (grad_kernel, grad_bias))
        return DepthwiseGrads(p.place.finish(grad_in), grad_kernel, grad_bias)
    from ._jit import launch
    from .cpu import packed

    part_kernel, part_bias = np.empty(part_shape[0], p.dtype), np.empty(part_shape[1], p.dtype)
    if grad_in.size:
        launch(packed.input_grad_packed, grad, p.ids, p.kernel, p.dilation, grad_in)
        launch(packed.kernel_grad_packed, grad, p.x, p.ids, p.dilation, part_kernel, part_bias)
    return DepthwiseGrads(_to_layout(grad_in, p.channels_last), part_kernel.sum(axis=0), part_bias.sum(axis=0))
