"""The functions dask runs on its workers for :mod:`numba_dwconv._dask`: one block each, NumPy in and out.

Each gathers its input windows from the chunks it receives (:func:`_gather`) and runs the in-memory
ops with explicit padding.  :data:`BLOCK_THREADS`: numba threads per block (default 1: dask runs
blocks in parallel on its own threads; ``None`` keeps numba's setting).
"""

from __future__ import annotations

import functools

import numpy as np

from . import _geometry as geo

BLOCK_THREADS: int | None = 1


def _threads(func):
    @functools.wraps(func)  # keeps the signature visible (dask's map_blocks looks for `block_info`)
    def run(*args, **kwargs):
        if BLOCK_THREADS is None:
            return func(*args, **kwargs)
        import numba

        before = numba.get_num_threads()
        numba.set_num_threads(min(BLOCK_THREADS, numba.config.NUMBA_NUM_THREADS))
        try:
            return func(*args, **kwargs)
        finally:
            numba.set_num_threads(before)

    return run


def _ops(rank: int):
    from . import ops

    if rank == 1:
        return ops.depthwise_conv1d, ops.depthwise_conv1d_backward, ops.depthwise_conv1d_input_grad, \
            ops.depthwise_conv1d_kernel_grad
    return ops.depthwise_conv2d, ops.depthwise_conv2d_backward, ops.depthwise_conv2d_input_grad, \
        ops.depthwise_conv2d_kernel_grad


class GatherLayout:
    """Where the pieces of a window lie: ``placements[k] = (chunk index, source slices, target slices)``, ``shape``.

    An opaque object, so that dask does not walk its nested tuples of slices when it builds the graph
    (that walk was most of the graph's construction time).
    """

    __slots__ = ("placements", "shape")

    def __init__(self, placements, shape):
        self.placements = placements
        self.shape = shape

    def __reduce__(self):
        return GatherLayout, (self.placements, self.shape)


class Static:
    """A task argument dask passes as it is (a plain tuple in a hand-built task would be read as a nested task)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return Static, (self.value,)


def _gather(chunks, layout: GatherLayout):
    """A window from the chunk arrays it overlaps (see :class:`GatherLayout`).

    One chunk that holds the whole window gives a view of it (no copy); otherwise the pieces are copied
    into a new array.
    """
    placements, shape = layout.placements, layout.shape
    if len(placements) == 1:
        i, source, target = placements[0]
        view = chunks[i][source]
        if view.shape == tuple(shape):
            return view
    window = np.empty(shape, dtype=chunks[0].dtype if chunks else np.float64)
    for i, source, target in placements:
        window[target] = chunks[i][source]
    return window


@_threads
def _forward_block(main, tails, kernel, bias, rank, strides, pads, data_format, dilation, activation, device, dtype):
    """One output block: the op on its own chunk, then the outputs that read the halo recomputed from their windows.

    ``main`` and each entry of ``tails`` (None for an axis without halo) are the arguments of
    :func:`_gather`; a tail also carries ``(offset, pads)``: its outputs overwrite the block's from
    ``offset`` on along its spatial axis.
    """
    forward = _ops(rank)[0]
    kw = dict(activation=activation, device=device)
    out = forward(_gather(*main), kernel, bias, strides, geo.ExplicitPadding(pads), data_format, dilation, **kw)
    out = out.astype(dtype, copy=False)
    first_spatial = 1 if data_format == "channels_last" else 2
    for d, tail in enumerate(tails):
        if tail is None:
            continue
        *window, spec = tail
        offset, tail_pads = spec.value
        part = forward(_gather(*window), kernel, bias, strides, geo.ExplicitPadding(tail_pads), data_format, dilation,
                       **kw)
        index = [slice(None)] * out.ndim
        index[first_spatial + d] = slice(offset, None)
        out[tuple(index)] = part
    return out


@_threads
def _grad_pre_block(grad, window, kernel, bias, rank, strides, pads, data_format, dilation, activation, device,
                    dtype):
    """``grad * activation'(conv + bias)`` of one output block (the gradient at the pre-activation)."""
    grad, window = _gather(*grad), _gather(*window)
    from ._opcore import RANK1, RANK2, Reduction, _grad_at_preactivation, _problem
    from .dispatch import place as place_of

    core_rank = RANK1 if rank == 1 else RANK2
    place = place_of(device, (window,), (kernel,), None)
    problem = _problem(core_rank, window.shape, kernel.shape, tuple(strides), geo.ExplicitPadding(pads),
                       data_format, tuple(dilation), dtype)
    grad = place.operand(grad, dtype)
    out = _grad_at_preactivation(core_rank, place, problem, Reduction(place, problem), place.operand(window, dtype),
                                 kernel, bias, grad, activation)
    return place.finish(out)


@_threads
def _input_grad_block(parts, kernel, rank, strides, data_format, dilation, shape, device, dtype):
    """The input gradient of one input chunk: the sum of its parts' gradients over the chunk.

    ``parts``: ``(grad, window_size, pads, crop)`` per group of outputs that read the chunk (each group's
    output gradient from one chunk: a view), its window cut to the chunk, ``crop`` the chunk slices it
    covers.  The first part covering the whole chunk is the result (no zeros and no added copy: one
    pass, as in memory); zeros where nothing reads.
    """
    input_grad = _ops(rank)[2]
    result = None
    for grad, window_size, pads, crop in parts:
        part = input_grad(_gather(*grad), kernel, window_size[0] if rank == 1 else window_size, strides,
                          geo.ExplicitPadding(pads), data_format, dilation, device=device)
        part = np.asarray(part if isinstance(part, np.ndarray) else part.copy_to_host())
        if result is None and part.shape == tuple(shape) and part.dtype == dtype:
            result = part
        else:
            if result is None:
                result = np.zeros(shape, dtype)
            result[crop.value] += part
    return np.zeros(shape, dtype) if result is None else result


@_threads
def _kernel_grad_block(grad, window, rank, kernel_size, strides, pads, data_format, dilation, device, dtype):
    """Partial kernel and bias gradients of one part of an output block (see ``_dask._grad_blocks``)."""
    kernel_grad = _ops(rank)[3]
    grad_kernel, grad_bias = kernel_grad(_gather(*grad), _gather(*window), kernel_size, strides,
                                         geo.ExplicitPadding(pads), data_format, dilation, device=device)
    return np.asarray(grad_kernel, dtype), np.asarray(grad_bias, dtype)


def _add_partials(parts):
    """``(sum of kernel gradients, sum of bias gradients)`` of partials, added in their order (deterministic)."""
    grad_kernel, grad_bias = parts[0][0].copy(), parts[0][1].copy()
    for kernel_part, bias_part in parts[1:]:
        grad_kernel += kernel_part
        grad_bias += bias_part
    return grad_kernel, grad_bias
