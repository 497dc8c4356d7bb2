"""Packed sequences (``sequence_ids=``) on dask arrays: each length block runs the in-memory op on a halo'd window.

A packed call is causal with unit stride, so an output reads only the ``halo = (K-1)*d`` positions before it:

* forward: output block ``[t0, t1)`` is the tail of the in-memory op on inputs and ids ``[t0 - halo, t1)``;
* input gradient: input block ``[t0, t1)`` is the head of the in-memory backward on ``[t0 - halo, t1 + halo)``
  (the outputs after ``t1`` that read the block, with the inputs their pre-activations need);
* kernel and bias gradients: each block's partial is the in-memory backward on ``[t0 - halo, t1)`` with the
  output gradient zeroed before ``t0`` (each output counted in one block), summed over blocks by dask.

Windows come from :func:`dask.array.overlap.overlap` (chunks shorter than the halo are merged first) and
blocks map one to one along batch and channels (kernel and bias sliced per channel block; an output
gradient's channel blocks are its inputs' times the multiplier).  The ids' ordering rule is checked
inside each window (a sequence split into runs farther apart than one block plus its halo is not seen;
it does not change the results, which read only the halo).
"""

from __future__ import annotations

import numpy as np

from . import _geometry as geo
from ._dask import _small, is_dask
from ._dask_blocks import _threads


class _Layout:
    """The axes of one data format, and the ids shaped to broadcast against its blocks."""

    def __init__(self, channels_last: bool):
        self.channels_last = channels_last
        self.data_format = "channels_last" if channels_last else "channels_first"
        self.length_axis, self.channel_axis = (1, 2) if channels_last else (2, 1)
        self.length_axis4 = 1 if channels_last else 3  # in the 4D arrays of `split`

    def ids3(self, ids):
        """The ids ``(B, L)`` with a channel axis of one, so that they broadcast over channel blocks."""
        return ids[:, :, None] if self.channels_last else ids[:, None, :]

    def squeeze(self, ids3):
        return ids3[:, :, 0] if self.channels_last else ids3[:, 0, :]

    # The gradients' blocks pair inputs (C channels) with output gradients (C*m): as 4D arrays with the
    # multiplier on an axis of its own (of one for the inputs and ids), whose channel blocks line up.
    def split(self, array, mult):
        """A 3D dask array of this layout with its channels ``c*m + j`` on two axes ``(c, j)``."""
        if self.channels_last:
            return array.reshape(array.shape[:2] + (array.shape[2] // mult, mult))
        return array.reshape((array.shape[0], array.shape[1] // mult, mult, array.shape[2]))

    def merge(self, block):
        """A 4D block of :meth:`split` as the 3D block of this layout."""
        if self.channels_last:
            return block.reshape(block.shape[:2] + (-1,))
        return block.reshape((block.shape[0], -1, block.shape[3]))

    def take(self, array, lo, hi):
        """``array[..., lo:hi]`` along the length axis."""
        return array[:, lo:hi] if self.channels_last else array[:, :, lo:hi]


def _prepare(inputs, kernel, sequence_ids, strides, padding, data_format, dilation_rate, extra=()):
    """Validated operands: dask inputs (and ``extra``) and ids, chunk-aligned, with the problem and its halo."""
    import dask.array as da
    from dask.array.overlap import ensure_minimum_chunksize

    from ._opcore import RANK1, _problem
    from .causal import check_causal

    check_causal(strides, padding, "sequence_ids")
    kernel = _small(kernel)
    inputs = inputs if is_dask(inputs) else da.asarray(inputs)
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    problem = _problem(RANK1, inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    ids = sequence_ids if is_dask(sequence_ids) else da.asarray(np.asarray(sequence_ids))
    if ids.dtype.kind not in "iu":
        raise TypeError(f"`sequence_ids` must be an integer array. Received sequence_ids.dtype={ids.dtype}")
    geo.check_shape("sequence_ids", ids.shape, (problem.batch, problem.axis.length))
    layout = _Layout(problem.channels_last)
    # an output reads the `halo` positions before it (none before position 0: at most the length)
    halo = min((problem.axis.kernel_size - 1) * problem.axis.dilation, problem.axis.length)
    lengths = inputs.chunks[layout.length_axis]
    if halo:
        lengths = ensure_minimum_chunksize(halo, lengths)
    chunks = list(inputs.chunks)
    chunks[layout.length_axis] = lengths
    inputs = inputs.rechunk(tuple(chunks))
    ids = ids.astype(np.int64).rechunk((inputs.chunks[0], lengths))
    extra = [(e if is_dask(e) else da.asarray(e)) for e in extra]
    return inputs, ids, kernel, dtype, problem, layout, halo, extra


def _overlap(array, axis: int, before: int, after: int):
    from dask.array.overlap import overlap

    if not before and not after:
        return array
    depth = {d: ((before, after) if d == axis else 0) for d in range(array.ndim)}
    return overlap(array, depth=depth, boundary="none", allow_rechunk=False)


def _grad_by_input_channel(grad, inputs, layout, mult):
    """``grad`` (C*m channels) chunked like ``inputs`` along batch, length and channels (times m)."""
    chunks = list(inputs.chunks)
    chunks[layout.channel_axis] = tuple(c * mult for c in inputs.chunks[layout.channel_axis])
    return grad.rechunk(tuple(chunks))


def _channel_range(block_info, layout):
    return block_info[0]["array-location"][layout.channel_axis]


def _starts(chunks):
    return tuple(int(s) for s in np.cumsum((0,) + tuple(chunks[:-1])))


@_threads
def _forward_block(x, ids, *, kernel, bias, layout, dilation, activation, halo, starts, device, block_info=None):
    from .ops import depthwise_conv1d

    c0, c1 = _channel_range(block_info, layout)
    mult = kernel.shape[2]
    j = block_info[0]["chunk-location"][layout.length_axis]
    left = min(halo, starts[j])
    out = depthwise_conv1d(x, kernel[:, c0:c1], None if bias is None else bias[c0 * mult:c1 * mult], padding="causal",
                           data_format=layout.data_format, dilation_rate=dilation, sequence_ids=layout.squeeze(ids),
                           activation=activation, device=device)
    return layout.take(out, left, out.shape[layout.length_axis])


@_threads
def _input_grad_block(x, ids, grad, *, kernel, bias, layout, dilation, activation, halo, starts, device, lengths,
                      block_info=None):
    from .ops import depthwise_conv1d_backward

    c0, c1 = _channel_range(block_info, layout)
    mult = kernel.shape[2]
    j = block_info[0]["chunk-location"][layout.length_axis4]
    left = min(halo, starts[j])
    x, ids, grad = layout.merge(x), layout.merge(ids), layout.merge(grad)
    grads = depthwise_conv1d_backward(grad, x, kernel[:, c0:c1], padding="causal", data_format=layout.data_format,
                                      dilation_rate=dilation, sequence_ids=layout.squeeze(ids), activation=activation,
                                      bias=None if bias is None else bias[c0 * mult:c1 * mult], device=device)
    block = layout.take(grads.grad_inputs, left, left + lengths[j])
    return block[:, :, :, None] if layout.channels_last else block[:, :, None, :]


@_threads
def _partials_block(x, ids, grad, *, kernel, bias, layout, dilation, activation, halo, starts, device,
                    block_info=None):
    """The block's kernel-gradient partial ``(K, Cb*m)`` over its bias partial, flattened along the channel axis."""
    from .ops import depthwise_conv1d_backward

    c0, c1 = _channel_range(block_info, layout)
    mult = kernel.shape[2]
    j = block_info[0]["chunk-location"][layout.length_axis4]
    left = min(halo, starts[j])
    x, ids = layout.merge(x), layout.merge(ids)
    grad = np.array(layout.merge(grad))  # the halo's outputs belong to the block before: zero their gradient here
    if layout.channels_last:
        grad[:, :left] = 0
    else:
        grad[:, :, :left] = 0
    grads = depthwise_conv1d_backward(grad, x, kernel[:, c0:c1], padding="causal", data_format=layout.data_format,
                                      dilation_rate=dilation, sequence_ids=layout.squeeze(ids), activation=activation,
                                      bias=None if bias is None else bias[c0 * mult:c1 * mult], device=device)
    ksize = kernel.shape[0]
    stacked = np.concatenate([grads.grad_kernel.reshape(ksize, -1), grads.grad_bias.reshape(1, -1)]).reshape(-1)
    return stacked[None, None, :, None] if layout.channels_last else stacked[None, :, None, None]


def packed_forward(inputs, kernel, bias, sequence_ids, strides, padding, data_format, dilation_rate, device,
                   activation):
    """``depthwise_conv1d(..., sequence_ids=)`` on dask operands: a lazy dask array of the outputs."""
    import dask.array as da

    x, ids, kernel, dtype, problem, layout, halo, _ = _prepare(inputs, kernel, sequence_ids, strides, padding,
                                                              data_format, dilation_rate)
    bias = None if bias is None else _small(bias)
    mult = problem.multiplier
    if bias is not None:
        geo.check_shape("bias", bias.shape, (problem.channels * mult,))
    lengths = x.chunks[layout.length_axis]
    chunks = list(x.chunks)
    chunks[layout.channel_axis] = tuple(c * mult for c in chunks[layout.channel_axis])
    axis = layout.length_axis
    out = da.map_blocks(
        _forward_block, _overlap(x, axis, halo, 0), _overlap(layout.ids3(ids), axis, halo, 0), chunks=tuple(chunks),
        dtype=dtype, meta=np.empty((0, 0, 0), dtype), kernel=kernel, bias=bias, layout=layout,
        dilation=problem.axis.dilation, activation=activation, halo=halo, starts=_starts(lengths), device=device)
    return out


def packed_backward(grad_outputs, inputs, kernel, sequence_ids, strides, padding, data_format, dilation_rate, device,
                    bias, activation):
    """``depthwise_conv1d_backward(..., sequence_ids=)`` on dask operands: lazy gradients (``DepthwiseGrads``)."""
    import dask.array as da

    from .ops import DepthwiseGrads

    x, ids, kernel, dtype, problem, layout, halo, (grad,) = _prepare(
        inputs, kernel, sequence_ids, strides, padding, data_format, dilation_rate, (grad_outputs,))
    bias = None if bias is None else _small(bias)
    mult = problem.multiplier
    geo.check_shape("grad_outputs", grad.shape, problem.output_shape)
    if bias is not None:
        geo.check_shape("bias", bias.shape, (problem.channels * mult,))
    grad = _grad_by_input_channel(grad.astype(dtype), x, layout, mult)
    lengths = x.chunks[layout.length_axis]
    common = dict(kernel=kernel, bias=bias, layout=layout, dilation=problem.axis.dilation, activation=activation,
                  halo=halo, starts=_starts(lengths), device=device)
    axis = layout.length_axis4
    x4, ids4, grad4 = layout.split(x, 1), layout.split(layout.ids3(ids), 1), layout.split(grad, mult)
    grad_inputs = da.map_blocks(
        _input_grad_block, _overlap(x4, axis, halo, halo), _overlap(ids4, axis, halo, halo),
        _overlap(grad4, axis, halo, halo), chunks=x4.chunks, dtype=dtype, meta=np.empty((0, 0, 0, 0), dtype),
        lengths=lengths, **common)
    ksize = problem.axis.kernel_size
    ones_b, ones_l = (1,) * len(x.chunks[0]), (1,) * len(lengths)
    flat = tuple((ksize + 1) * c * mult for c in x.chunks[layout.channel_axis])
    part_chunks = (ones_b, ones_l, flat, (1,)) if layout.channels_last else (ones_b, flat, (1,), ones_l)
    partials = da.map_blocks(
        _partials_block, _overlap(x4, axis, halo, 0), _overlap(ids4, axis, halo, 0), _overlap(grad4, axis, halo, 0),
        chunks=part_chunks, dtype=dtype, meta=np.empty((0, 0, 0, 0), dtype), **common)
    sums = partials.sum(axis=(0, 1, 3) if layout.channels_last else (0, 2, 3))  # per channel block: (K + 1, Cb*m)
    sums = da.concatenate([sums.blocks[i].reshape(ksize + 1, -1) for i in range(sums.numblocks[0])], axis=1)
    grad_kernel = sums[:ksize].reshape(ksize, problem.channels, mult)
    grad_inputs = grad_inputs[:, :, :, 0] if layout.channels_last else grad_inputs[:, :, 0, :]
    return DepthwiseGrads(grad_inputs, grad_kernel, sums[ksize])
