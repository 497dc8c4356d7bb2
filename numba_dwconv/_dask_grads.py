"""The gradients on dask arrays: backward, input gradient, kernel gradient (see :mod:`numba_dwconv._dask`).

Input gradient: per input chunk, the outputs that read it in groups that each lie in one chunk of
the output gradient, each group's window gradient added into the chunk's.  Kernel and bias
gradients: one partial per part of an output block (its own chunk, its halo), added in a fixed
tree, ``SPLIT_EVERY`` at a time (the same bits for the same chunking).
"""

from __future__ import annotations

import numpy as np

from . import _geometry as geo
from ._dask import (
    _as_dask,
    _Chunks,
    _Graph,
    _offsets,
    _output_chunks,
    _Plan,
    _plan,
    _problem_of,
    _product,
    _ranges,
    _readers,
    _small,
    _Split,
    _split_blocks,
    _window,
)
from ._dask_blocks import (
    GatherLayout,
    Static,
    _add_partials,
    _grad_pre_block,
    _input_grad_block,
    _kernel_grad_block,
)

SPLIT_EVERY = 8  # partial kernel gradients added this many at a time


def _segments(split: _Split) -> list[tuple[int, int]]:
    """The outputs of a split block in the parts that read only their own chunk and those that read the halo."""
    parts = [(split.t0, split.tm), (split.tm, split.t1)] if split.tail is not None else [(split.t0, split.t1)]
    return [(lo, hi) for lo, hi in parts if hi > lo]



def _grad_blocks(graph: _Graph, plan, grad_outputs, inputs, activation, device, dtype, rank):
    """Per (batch, channel, spatial output) block: its parts, each ``(grad, window, pads)`` as task arguments.

    A block's outputs are cut where they start reading the next input chunk (see :class:`_Split`), so
    the part that reads only its own chunk gets a view of it and only the short halo part gathers a
    copy.  ``grad``: the ``_gather`` arguments of the part's output gradient (at the pre-activation,
    a task of ``graph``, with an activation); ``window``: those of its inputs.
    """
    import itertools

    mult = plan.problem.multiplier
    source, grads = _Chunks(inputs), _Chunks(grad_outputs)
    pre = graph.name("grad-pre")
    split_blocks = _split_blocks(plan)
    out = {}
    for ic, (c0, c1) in enumerate(plan.channel_chunks):
        for ib, (b0, b1) in enumerate(plan.batch_chunks):
            for key, splits in _product(split_blocks):
                pre_key = None
                if activation is not None:  # the whole block's gradient at the pre-activation, once
                    full = [_window(axis, sp.t0, sp.t1) for axis, sp in zip(plan.axes, splits)]
                    pre_key = (pre, *plan.index(ib, ic, key))
                    graph.dsk[pre_key] = (
                        _grad_pre_block,
                        list(grads.keys(_ranges(plan, (b0, b1), (c0 * mult, c1 * mult),
                                                [(sp.t0, sp.t1) for sp in splits]))),
                        list(source.keys(_ranges(plan, (b0, b1), (c0, c1), [w[:2] for w in full]))),
                        graph.kernel_key(ic), graph.bias_key(ic), rank, plan.strides, tuple(w[2:] for w in full),
                        plan.data_format, plan.dilations, activation, device, dtype)
                parts = []
                for segments in itertools.product(*(_segments(sp) for sp in splits)):
                    windows = [_window(axis, lo, hi) for axis, (lo, hi) in zip(plan.axes, segments)]
                    window = list(source.keys(_ranges(plan, (b0, b1), (c0, c1), [w[:2] for w in windows])))
                    if pre_key is None:
                        grad = list(grads.keys(_ranges(plan, (b0, b1), (c0 * mult, c1 * mult), segments)))
                    else:
                        local = [(lo - sp.t0, hi - sp.t0) for (lo, hi), sp in zip(segments, splits)]
                        shape = plan.shape(b1 - b0, (c1 - c0) * mult, [hi - lo for lo, hi in local])
                        source_slices = plan.index(slice(None), slice(None), [slice(*r) for r in local])
                        target = tuple(slice(None) for _ in shape)
                        grad = [[pre_key], GatherLayout([(0, source_slices, target)], shape)]
                    parts.append((grad, window, tuple(w[2:] for w in windows)))
                out[(ib, ic, *key)] = parts
    return out



def backward(rank: int, grad_outputs, inputs, kernel, strides, padding, data_format, dilation_rate, device, bias,
             activation):
    """``(grad_inputs, grad_kernel, grad_bias)`` as dask arrays (one graph)."""
    kernel = _small(kernel)
    bias = None if bias is None else _small(bias)
    inputs, grad_outputs = _as_dask(inputs), _as_dask(grad_outputs)
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype, kernel.dtype)
    plan = _plan(rank, inputs, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    geo.check_shape("grad_outputs", grad_outputs.shape, plan.problem.output_shape)
    if bias is not None:
        geo.check_shape("bias", bias.shape, (plan.problem.channels * plan.problem.multiplier,))
    graph = _Graph("depthwise-backward")
    graph.operands(plan, kernel, bias)
    blocks = _grad_blocks(graph, plan, grad_outputs, inputs, activation, device, dtype, rank)
    deps = [inputs, grad_outputs]
    grad_kernel, grad_bias = _kernel_grads(graph, plan, blocks, kernel.shape[:rank], device, dtype, rank, deps)
    if activation is not None:  # the input gradient reads the gradient at the pre-activation by output block
        grad_source = graph.array(graph.name("grad-pre"), _output_chunks(plan), dtype, deps)
    else:
        grad_source = grad_outputs
    grad_inputs = _input_grads(graph, plan, grad_source, device, dtype, rank, deps + [grad_source])
    return grad_inputs, grad_kernel, grad_bias



def _kernel_grads(graph: _Graph, plan, blocks, kernel_size, device, dtype, rank, deps):
    """Kernel and bias gradients: one partial per block, added in a fixed tree (``SPLIT_EVERY`` at a time)."""
    import operator

    mult = plan.problem.multiplier
    partial, kname, bname = graph.name("kernel-partial"), graph.name("grad-kernel"), graph.name("grad-bias")
    kernel_size = tuple(kernel_size)
    for ic in range(len(plan.channel_chunks)):
        level = []
        for key, parts in blocks.items():
            if key[1] != ic:
                continue
            for grad, window, pads in parts:
                task_key = (partial, ic, 0, len(level))
                graph.dsk[task_key] = (_kernel_grad_block, grad, window, rank, kernel_size, plan.strides, pads,
                                       plan.data_format, plan.dilations, device, dtype)
                level.append(task_key)
        depth = 0
        while len(level) > 1:
            depth += 1
            groups = [level[i:i + SPLIT_EVERY] for i in range(0, len(level), SPLIT_EVERY)]
            level = []
            for group in groups:
                task_key = (partial, ic, depth, len(level))
                graph.dsk[task_key] = (_add_partials, group)
                level.append(task_key)
        graph.dsk[(kname, *(0,) * rank, ic, 0)] = (operator.getitem, level[0], 0)
        graph.dsk[(bname, ic)] = (operator.getitem, level[0], 1)
    channel_chunks = tuple(c1 - c0 for c0, c1 in plan.channel_chunks)
    kernel_chunks = [(k,) for k in kernel_size] + [channel_chunks, (mult,)]
    grad_kernel = graph.array(kname, kernel_chunks, dtype, deps)
    grad_bias = graph.array(bname, [tuple(c * mult for c in channel_chunks)], dtype, deps)
    return grad_kernel, grad_bias



def _reader_segments(axis, lo: int, hi: int, grad_chunks) -> list[tuple[int, int]]:
    """The outputs that read input positions ``[lo, hi)``, cut at the output gradient's chunk boundaries."""
    t0, t1 = _readers(axis, lo, hi)
    cuts = [t0]
    for c_lo, _ in _offsets(grad_chunks):
        if t0 < c_lo < t1:
            cuts.append(c_lo)
    cuts.append(t1)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]



def _crop_window(window, lo: int, hi: int):
    """A window ``(a, b, before, after)`` cut to positions ``[lo, hi)``, what it loses read as padding zeros."""
    a, b, before, after = window
    a2 = min(max(a, lo), hi)
    b2 = max(min(b, hi), a2)
    return a2, b2, before + (a2 - a), after + (b - b2)


def _input_grads(graph: _Graph, plan, grad_outputs, device, dtype, rank, deps):
    """The input gradient, block by block of the inputs' own chunking (kernels: ``graph``'s operands).

    The outputs that read an input chunk are taken in groups that each lie in one chunk of the output
    gradient (a view of it); each group's window gradient is added into the chunk's.
    """
    import itertools

    mult = plan.problem.multiplier
    grad_chunks = [grad_outputs.chunks[d] for d in plan.spatial_dims]
    per_axis = [[(lo, hi, _reader_segments(axis, lo, hi, g_chunks)) for lo, hi in _offsets(chunks)]
                for axis, chunks, g_chunks in zip(plan.axes, plan.spatial_chunks, grad_chunks)]
    name = graph.name("grad-inputs")
    grads = _Chunks(grad_outputs)
    for ic, (c0, c1) in enumerate(plan.channel_chunks):
        for ib, (b0, b1) in enumerate(plan.batch_chunks):
            for key, entries in _product(per_axis):
                shape = plan.shape(b1 - b0, c1 - c0, [hi - lo for lo, hi, _ in entries])
                parts = []
                for segments in itertools.product(*(e[2] for e in entries)):
                    # each group's window cropped to the chunk, the rest of it read as (explicit) zeros: the
                    # op computes the gradient of exactly the chunk's positions it reaches
                    windows = [_crop_window(_window(axis, t0, t1), lo, hi)
                               for axis, (t0, t1), (lo, hi, _) in zip(plan.axes, segments, entries)]
                    grad = list(grads.keys(_ranges(plan, (b0, b1), (c0 * mult, c1 * mult), segments)))
                    inner = [slice(w[0] - lo, w[1] - lo) for (lo, _, _), w in zip(entries, windows)]
                    crop = plan.index(slice(None), slice(None), inner)
                    parts.append([grad, tuple(w[1] - w[0] for w in windows), tuple(w[2:] for w in windows),
                                  Static(crop)])
                graph.dsk[(name, *plan.index(ib, ic, key))] = (
                    _input_grad_block, parts, graph.kernel_key(ic), rank, plan.strides, plan.data_format,
                    plan.dilations, shape, device, dtype)
    return graph.array(name, plan.chunks, dtype, deps)


def input_grad(rank: int, grad_outputs, kernel, input_shape, strides, padding, data_format, dilation_rate, device):
    """The input gradient alone (``grad_outputs`` a dask array), chunked like ``grad_outputs`` maps back."""
    kernel = _small(kernel)
    dtype = np.result_type(grad_outputs.dtype, kernel.dtype)
    problem = _problem_of(rank, input_shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    geo.check_shape("grad_outputs", grad_outputs.shape, problem.output_shape)
    plan = _Plan(problem, rank, _input_chunks(problem, rank, grad_outputs.chunks))
    graph = _Graph("depthwise-input-grad")
    graph.operands(plan, kernel, None)
    return _input_grads(graph, plan, grad_outputs, device, dtype, rank, [grad_outputs])



def _input_chunks(problem, rank, grad_chunks):
    """Chunks for the inputs of ``problem`` from the output gradient's: batch and channels alike, space evenly."""
    channels_last = problem.channels_last
    channel_dim = rank + 1 if channels_last else 1
    mult = problem.multiplier
    channel_chunks = tuple(c // mult for c in grad_chunks[channel_dim])
    if any(c * mult != g for c, g in zip(channel_chunks, grad_chunks[channel_dim])):
        channel_chunks = (problem.channels,)  # output channel blocks that split a channel's m outputs: one block
    chunks = [grad_chunks[0]] + [None] * (rank + 1)
    chunks[channel_dim] = channel_chunks
    spatial_dims = list(range(1, 1 + rank)) if channels_last else list(range(2, 2 + rank))
    axes = (problem.axis,) if rank == 1 else (problem.height, problem.width)
    for d, axis in zip(spatial_dims, axes):
        n = max(1, len(grad_chunks[d]))
        size = -(-axis.length // n)
        chunks[d] = tuple(min(size, axis.length - i) for i in range(0, axis.length, size)) or (0,)
    return tuple(chunks)



def kernel_grad(rank: int, grad_outputs, inputs, kernel_shape, strides, padding, data_format, dilation_rate, device):
    """``(grad_kernel, grad_bias)`` as dask arrays (``kernel_shape`` validated by the caller)."""
    inputs, grad_outputs = _as_dask(inputs), _as_dask(grad_outputs)
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype)
    plan = _plan(rank, inputs, kernel_shape, strides, padding, data_format, dilation_rate, dtype)
    geo.check_shape("grad_outputs", grad_outputs.shape, plan.problem.output_shape)
    graph = _Graph("depthwise-kernel-grad")
    blocks = _grad_blocks(graph, plan, grad_outputs, inputs, None, device, dtype, rank)
    return _kernel_grads(graph, plan, blocks, kernel_shape[:rank], device, dtype, rank, [inputs, grad_outputs])


__all__ = ["backward", "input_grad", "kernel_grad"]
