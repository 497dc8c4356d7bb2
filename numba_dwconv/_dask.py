"""The depthwise ops on dask arrays: lazy results, any chunking, exact halos (imported only for dask operands).

Along the batch and channel axes an op maps block by block (kernel and bias sliced to each channel
block).  Along a spatial axis the output is cut where the input is: output block ``[t0, t1)`` starts
at the first output whose window starts in an input chunk, and reads the input window
``[t0*s - pad, (t1-1)*s - pad + extent)`` clipped to the input -- its own chunk plus a halo from the
chunks after it (dask concatenates as many as the halo needs, so chunks smaller than the halo are
fine).  The block then runs the in-memory op on that window with *explicit* padding
(:class:`numba_dwconv._geometry.ExplicitPadding`): zeros only where the window was clipped, which are
exactly the zeros of the whole op's padding, so every block equals the matching part of the
in-memory result, Keras' rules for non-finite numbers on padding included.

Gradients: the input gradient of an input chunk is the input gradient of the forward block problem
of the outputs that read it, cropped to the chunk; kernel and bias gradients are per-block partial
sums added by a tree reduction (``split_every``), deterministic for a given chunking.

Inside a block the kernels use ``numba_dwconv._dask_blocks.BLOCK_THREADS`` threads (default 1: dask
runs blocks on its own threads, one numba thread each avoids oversubscription; ``None`` keeps
numba's setting).  The functions that run on the workers are in :mod:`numba_dwconv._dask_blocks`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _geometry as geo
from ._dask_blocks import (
    GatherLayout,
    _add_partials,
    _forward_block,
    _grad_pre_block,
    _input_grad_block,
    _kernel_grad_block,
)

SPLIT_EVERY = 8  # partial kernel gradients added this many at a time


def is_dask(array) -> bool:
    """Whether ``array`` is a dask array (without importing dask)."""
    return type(array).__module__.startswith("dask.array") and hasattr(array, "chunks")


# ---------------------------------------------------------------------------- geometry of the blocks
def _extent(axis) -> int:
    return (axis.kernel_size - 1) * axis.dilation + 1


def _window(axis, t0: int, t1: int):
    """``(a, b, before, after)``: input positions ``[a, b)`` that outputs ``[t0, t1)`` read, and the zeros around."""
    start = t0 * axis.stride - axis.pad_left
    stop = (t1 - 1) * axis.stride - axis.pad_left + _extent(axis)
    a, b = max(start, 0), min(stop, axis.length)
    if b <= a:  # every tap of these outputs reads padding: an empty window and zeros all along
        a = b = min(max(start, 0), axis.length)
    return a, b, a - start, stop - b


def output_blocks(axis, chunks) -> list[tuple[int, int]]:
    """The output ranges ``[t0, t1)`` of one spatial axis: cut where an output's window starts in a new chunk."""
    cuts, position = {0, axis.out_length}, 0
    for size in chunks[:-1]:
        position += size
        t = -(-(position + axis.pad_left) // axis.stride)
        if 0 < t < axis.out_length:
            cuts.add(t)
    cuts = sorted(cuts)
    return [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]


def _readers(axis, lo: int, hi: int) -> tuple[int, int]:
    """The outputs ``[t0, t1)`` that read some input position in ``[lo, hi)`` (empty: ``t0 >= t1``)."""
    t0 = max(0, -(-(lo + axis.pad_left - _extent(axis) + 1) // axis.stride))
    t1 = min(axis.out_length, (hi - 1 + axis.pad_left) // axis.stride + 1)
    return t0, t1


def _offsets(chunks) -> list[tuple[int, int]]:
    out, position = [], 0
    for size in chunks:
        out.append((position, position + size))
        position += size
    return out


# ---------------------------------------------------------------------------- graph construction
class _Plan:
    """Where a problem's blocks are: the axes of the layout and the chunks of the data along each."""

    def __init__(self, problem, rank: int, chunks):
        self.problem = problem
        self.rank = rank
        self.channels_last = problem.channels_last
        self.axes = (problem.axis,) if rank == 1 else (problem.height, problem.width)
        spatial_dims = list(range(1, 1 + rank)) if self.channels_last else list(range(2, 2 + rank))
        self.channel_dim = rank + 1 if self.channels_last else 1
        self.spatial_dims = spatial_dims
        self.batch_chunks = _offsets(chunks[0])
        self.channel_chunks = _offsets(chunks[self.channel_dim])
        self.spatial_chunks = [chunks[d] for d in spatial_dims]
        self.data_format = "channels_last" if self.channels_last else "channels_first"

    def grid_index(self, ib: int, ic: int, spatial) -> tuple:
        """The block index of an array of this layout from the batch, channel and spatial block indices."""
        return self.index(ib, ic, spatial)

    def index(self, batch: slice, channel: slice, spatial) -> tuple:
        """An index of an array of this layout from the batch, channel and spatial slices."""
        idx = [slice(None)] * (self.rank + 2)
        idx[0], idx[self.channel_dim] = batch, channel
        for d, s in zip(self.spatial_dims, spatial):
            idx[d] = s
        return tuple(idx)

    def shape(self, batch: int, channels: int, spatial) -> tuple:
        shape = [0] * (self.rank + 2)
        shape[0], shape[self.channel_dim] = batch, channels
        for d, n in zip(self.spatial_dims, spatial):
            shape[d] = n
        return tuple(shape)



def _spatial_blocks(plan):
    """Per spatial axis: the output blocks and their windows ``(t0, t1, a, b, before, after)``."""
    per_axis = []
    for axis, chunks in zip(plan.axes, plan.spatial_chunks):
        per_axis.append([(t0, t1, *_window(axis, t0, t1)) for t0, t1 in output_blocks(axis, chunks)])
    return per_axis


class _Split(NamedTuple):
    """An output block ``[t0, t1)`` of one axis split where its outputs start reading the next chunk (the halo).

    ``main``: the window inside the block's own chunk, ``(a, b, before, after)`` with zeros read past
    the chunk (so it yields all ``t1 - t0`` outputs, the last ``t1 - tm`` of them wrong); ``tail``:
    the window of the outputs ``[tm, t1)`` (own chunk's end plus the halo), or None when no output
    reads past the chunk.
    """

    t0: int
    t1: int
    main: tuple
    tm: int
    tail: tuple | None


def _split_blocks(plan):
    """Per spatial axis: the output blocks as :class:`_Split` (the forward reads the chunk itself, halos apart)."""
    per_axis = []
    for axis, chunks in zip(plan.axes, plan.spatial_chunks):
        bounds = _offsets(chunks)
        entries = []
        for t0, t1 in output_blocks(axis, chunks):
            a, b, before, after = _window(axis, t0, t1)
            c_lo, c_hi = next(((lo, hi) for lo, hi in bounds if lo <= a < hi), (a, b))
            if b <= c_hi or a < c_lo:  # inside one chunk (or no chunk to anchor on): the window as it is
                entries.append(_Split(t0, t1, (a, b, before, after), t1, None))
                continue
            stop = (t1 - 1) * axis.stride - axis.pad_left + _extent(axis)
            tm = min(t1, max(t0, (c_hi - _extent(axis) + axis.pad_left) // axis.stride + 1))
            entries.append(_Split(t0, t1, (a, c_hi, before, stop - c_hi), tm, _window(axis, tm, t1)))
        per_axis.append(entries)
    return per_axis


def _small(array, name):
    """A small operand (kernel, bias) as a NumPy array; a dask kernel is computed once, here."""
    if is_dask(array):
        array = array.compute()
    return np.asarray(array)


def forward(rank: int, inputs, kernel, bias, strides, padding, data_format, dilation_rate, device, activation):
    """The forward op on a dask ``inputs``: a dask array of the outputs."""
    from ._opcore import RANK1, RANK2, _problem

    kernel = _small(kernel, "kernel")
    bias = None if bias is None else _small(bias, "bias")
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    problem = _problem(RANK1 if rank == 1 else RANK2, tuple(inputs.shape), kernel.shape, strides, padding,
                       data_format, dilation_rate, dtype)
    if bias is not None:
        geo.check_shape("bias", bias.shape, (problem.channels * problem.multiplier,))
    plan = _Plan(problem, rank, inputs.chunks)
    strides_t = tuple(a.stride for a in plan.axes)
    dilation_t = tuple(a.dilation for a in plan.axes)
    graph = _Graph("depthwise-forward")
    graph.operands(plan, kernel, bias)
    name = graph.name("outputs")
    source = _Chunks(inputs)
    for ic, (c0, c1) in enumerate(plan.channel_chunks):
        for ib, (b0, b1) in enumerate(plan.batch_chunks):
            for key, splits in _product(_split_blocks(plan)):
                full = [(sp.main[0], sp.tail[1] if sp.tail else sp.main[1]) for sp in splits]
                main = list(source.keys(_ranges(plan, (b0, b1), (c0, c1), [sp.main[:2] for sp in splits])))
                tails = []
                for d, sp in enumerate(splits):
                    if sp.tail is None:
                        tails.append(None)
                        continue
                    spatial = [full[e] if e != d else sp.tail[:2] for e in range(rank)]
                    tail_pads = tuple(_full_pads(splits[e]) if e != d else (sp.tail[2], sp.tail[3])
                                      for e in range(rank))
                    tails.append([*source.keys(_ranges(plan, (b0, b1), (c0, c1), spatial)),
                                  _Static((sp.tm - sp.t0, tail_pads))])
                pads = tuple((sp.main[2], sp.main[3]) for sp in splits)
                graph.dsk[(name, *plan.grid_index(ib, ic, key))] = (
                    _forward_block, main, tails, graph.kernel_key(ic), graph.bias_key(ic), rank, strides_t, pads,
                    plan.data_format, dilation_t, activation, device, dtype)
    chunks = _output_chunks(plan)
    for d, blocks in zip(plan.spatial_dims, _split_blocks(plan)):
        chunks[d] = tuple(sp.t1 - sp.t0 for sp in blocks)
    return graph.array(name, chunks, dtype, [inputs])


class _Chunks:
    """The chunks of a dask array by key, and the pieces of them a window covers.

    Blocks take whole chunks and slice them themselves: a slicing task per window would be fused with
    the task that makes the chunk when dask optimises the graph, making (or reading) the chunk again
    for every block that needs a piece of it.
    """

    def __init__(self, array):
        self.name = array.name
        self.offsets = [_offsets(chunks) for chunks in array.chunks]

    def keys(self, ranges):
        """``(chunk keys, layout)`` for the window ``ranges`` (``(lo, hi)`` per axis): task arguments of ``_gather``."""
        import itertools

        per_axis = []
        for offsets, (lo, hi) in zip(self.offsets, ranges):
            per_axis.append([(j, slice(max(lo, c_lo) - c_lo, min(hi, c_hi) - c_lo),
                              slice(max(lo, c_lo) - lo, min(hi, c_hi) - lo))
                             for j, (c_lo, c_hi) in enumerate(offsets) if max(lo, c_lo) < min(hi, c_hi)])
        keys, placements = [], []
        for combo in itertools.product(*per_axis):
            keys.append((self.name, *(j for j, _, _ in combo)))
            placements.append((len(keys) - 1, tuple(c[1] for c in combo), tuple(c[2] for c in combo)))
        return keys, GatherLayout(placements, tuple(hi - lo for lo, hi in ranges))


def _ranges(plan, batch, channels, spatial) -> list:
    """Per axis of the layout, ``(lo, hi)`` from the batch, channel and spatial ranges."""
    ranges = [None] * (plan.rank + 2)
    ranges[0], ranges[plan.channel_dim] = batch, channels
    for d, r in zip(plan.spatial_dims, spatial):
        ranges[d] = r
    return ranges


class _Static:
    """A value dask passes to a task as it is (a plain tuple in a task would be read as a nested task)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return _Static, (self.value,)


def _full_pads(split: _Split) -> tuple[int, int]:
    """The zeros around the whole window of a split block (its own chunk and halo together)."""
    if split.tail is None:
        return split.main[2], split.main[3]
    return split.main[2], split.tail[3]


def _product(per_axis):
    """``((i, j, ...), (block_i, block_j, ...))`` over the product of the axes' block lists."""
    import itertools

    for key in itertools.product(*(range(len(blocks)) for blocks in per_axis)):
        yield key, tuple(blocks[i] for blocks, i in zip(per_axis, key))


class _Graph:
    """One hand-built graph: tasks by key, and the collections it reads (a task per block, chunks by key).

    Building through ``dask.delayed`` cost ~2 ms a block (each call merges its arguments' graphs);
    tasks written by hand cost ~0.05 ms.
    """

    def __init__(self, prefix: str):
        import uuid

        self.token = uuid.uuid4().hex
        self.prefix = prefix
        self.dsk = {}

    def name(self, what: str) -> str:
        return f"{self.prefix}-{what}-{self.token}"

    def operands(self, plan, kernel, bias) -> None:
        """The kernel and bias slices of every channel block, once each (``kernel_key``, ``bias_key``)."""
        mult = plan.problem.multiplier
        for ic, (c0, c1) in enumerate(plan.channel_chunks):
            self.dsk[self.kernel_key(ic)] = np.ascontiguousarray(kernel[..., c0:c1, :])
            self.dsk[self.bias_key(ic)] = None if bias is None else np.ascontiguousarray(bias[c0 * mult:c1 * mult])

    def kernel_key(self, ic: int):
        return (self.name("operands"), "kernel", ic)

    def bias_key(self, ic: int):
        return (self.name("operands"), "bias", ic)

    def array(self, name: str, chunks, dtype, dependencies):
        """The tasks named ``name`` as a dask array (the whole graph goes with it)."""
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        graph = HighLevelGraph.from_collections(name, dict(self.dsk), dependencies=list(dependencies))
        return da.Array(graph, name, tuple(chunks), dtype=dtype, meta=np.empty((0,) * len(chunks), dtype))


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

    strides_t = tuple(a.stride for a in plan.axes)
    dilation_t = tuple(a.dilation for a in plan.axes)
    mult = plan.problem.multiplier
    source, grads = _Chunks(inputs), _Chunks(grad_outputs)
    pre = graph.name("grad-pre")
    out = {}
    for ic, (c0, c1) in enumerate(plan.channel_chunks):
        for ib, (b0, b1) in enumerate(plan.batch_chunks):
            for key, splits in _product(_split_blocks(plan)):
                pre_key = None
                if activation is not None:  # the whole block's gradient at the pre-activation, once
                    full = [_window(axis, sp.t0, sp.t1) for axis, sp in zip(plan.axes, splits)]
                    pre_key = (pre, *plan.grid_index(ib, ic, key))
                    graph.dsk[pre_key] = (
                        _grad_pre_block,
                        list(grads.keys(_ranges(plan, (b0, b1), (c0 * mult, c1 * mult),
                                                [(sp.t0, sp.t1) for sp in splits]))),
                        list(source.keys(_ranges(plan, (b0, b1), (c0, c1), [w[:2] for w in full]))),
                        graph.kernel_key(ic), graph.bias_key(ic), rank, strides_t, tuple(w[2:] for w in full),
                        plan.data_format, dilation_t, activation, device, dtype)
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
    kernel = _small(kernel, "kernel")
    bias = None if bias is None else _small(bias, "bias")
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
        chunks = _output_chunks(plan)
        for d, blocks_d in zip(plan.spatial_dims, _split_blocks(plan)):
            chunks[d] = tuple(sp.t1 - sp.t0 for sp in blocks_d)
        grad_source = graph.array(graph.name("grad-pre"), chunks, dtype, deps)
    else:
        grad_source = grad_outputs
    grad_inputs = _input_grads(graph, plan, grad_source, device, dtype, rank, deps + [grad_source])
    return grad_inputs, grad_kernel, grad_bias


def _output_chunks(plan) -> list:
    """The chunks of the outputs, block by block as :func:`output_blocks` cuts them."""
    mult = plan.problem.multiplier
    chunks = [None] * (plan.rank + 2)
    chunks[0] = tuple(b1 - b0 for b0, b1 in plan.batch_chunks)
    chunks[plan.channel_dim] = tuple((c1 - c0) * mult for c0, c1 in plan.channel_chunks)
    for d, blocks in zip(plan.spatial_dims, _spatial_blocks(plan)):
        chunks[d] = tuple(w[1] - w[0] for w in blocks)
    return chunks


def _as_dask(array):
    if is_dask(array):
        return array
    import dask.array as da

    return da.from_array(np.asarray(array), chunks=np.asarray(array).shape)


def _plan(rank, inputs, kernel_shape, strides, padding, data_format, dilation_rate, dtype):
    from ._opcore import RANK1, RANK2, _problem

    problem = _problem(RANK1 if rank == 1 else RANK2, tuple(inputs.shape), tuple(kernel_shape), strides, padding,
                       data_format, dilation_rate, dtype)
    return _Plan(problem, rank, inputs.chunks)


def _kernel_grads(graph: _Graph, plan, blocks, kernel_size, device, dtype, rank, deps):
    """Kernel and bias gradients: one partial per block, added in a fixed tree (``SPLIT_EVERY`` at a time)."""
    import operator

    mult = plan.problem.multiplier
    strides_t = tuple(a.stride for a in plan.axes)
    dilation_t = tuple(a.dilation for a in plan.axes)
    partial, kname, bname = graph.name("kernel-partial"), graph.name("grad-kernel"), graph.name("grad-bias")
    kernel_size = tuple(kernel_size)
    for ic in range(len(plan.channel_chunks)):
        level = []
        for key, parts in blocks.items():
            if key[1] != ic:
                continue
            for grad, window, pads in parts:
                task_key = (partial, ic, 0, len(level))
                graph.dsk[task_key] = (_kernel_grad_block, grad, window, rank, kernel_size, strides_t, pads,
                                       plan.data_format, dilation_t, device, dtype)
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


def _input_grads(graph: _Graph, plan, grad_outputs, device, dtype, rank, deps):
    """The input gradient, block by block of the inputs' own chunking (kernels: ``graph``'s operands).

    The outputs that read an input chunk are taken in groups that each lie in one chunk of the output
    gradient (a view of it); each group's window gradient is added into the chunk's.
    """
    import itertools

    mult = plan.problem.multiplier
    strides_t = tuple(a.stride for a in plan.axes)
    dilation_t = tuple(a.dilation for a in plan.axes)
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
                    windows = [_window(axis, t0, t1) for axis, (t0, t1) in zip(plan.axes, segments)]
                    grad = list(grads.keys(_ranges(plan, (b0, b1), (c0 * mult, c1 * mult), segments)))
                    inner = [slice(max(lo, w[0]) - lo, max(min(hi, w[1]), max(lo, w[0])) - lo)
                             for (lo, hi, _), w in zip(entries, windows)]
                    outer = [slice(max(lo, w[0]) - w[0], max(min(hi, w[1]), max(lo, w[0])) - w[0])
                             for (lo, hi, _), w in zip(entries, windows)]
                    crop = (plan.index(slice(None), slice(None), inner), plan.index(slice(None), slice(None), outer))
                    parts.append([grad, tuple(w[1] - w[0] for w in windows), tuple(w[2:] for w in windows),
                                  _Static(crop)])
                graph.dsk[(name, *plan.grid_index(ib, ic, key))] = (
                    _input_grad_block, parts, graph.kernel_key(ic), rank, strides_t, plan.data_format, dilation_t,
                    shape, device, dtype)
    chunks = [None] * (rank + 2)
    chunks[0] = tuple(b1 - b0 for b0, b1 in plan.batch_chunks)
    chunks[plan.channel_dim] = tuple(c1 - c0 for c0, c1 in plan.channel_chunks)
    for d, spatial in zip(plan.spatial_dims, plan.spatial_chunks):
        chunks[d] = tuple(spatial)
    return graph.array(name, chunks, dtype, deps)


def input_grad(rank: int, grad_outputs, kernel, input_shape, strides, padding, data_format, dilation_rate, device):
    """The input gradient alone (``grad_outputs`` a dask array), chunked like ``grad_outputs`` maps back."""
    kernel = _small(kernel, "kernel")
    dtype = np.result_type(grad_outputs.dtype, kernel.dtype)
    from ._opcore import RANK1, RANK2, _problem

    problem = _problem(RANK1 if rank == 1 else RANK2, tuple(input_shape), kernel.shape, strides, padding,
                       data_format, dilation_rate, dtype)
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


def kernel_grad(rank: int, grad_outputs, inputs, kernel_size, strides, padding, data_format, dilation_rate, device):
    """``(grad_kernel, grad_bias)`` as dask arrays."""
    inputs, grad_outputs = _as_dask(inputs), _as_dask(grad_outputs)
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype)
    sizes = geo.normalize_tuple(kernel_size, rank, "kernel_size")
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    channels = inputs.shape[-1] if channels_last else inputs.shape[1]
    out_channels = grad_outputs.shape[-1] if channels_last else grad_outputs.shape[1]
    if channels == 0 or out_channels % channels:
        raise ValueError(f"`grad_outputs` must have a positive multiple of the {channels} input channels. "
                         f"Received grad_outputs with shape={tuple(grad_outputs.shape)}")
    kernel_shape = (*sizes, channels, out_channels // channels)
    plan = _plan(rank, inputs, kernel_shape, strides, padding, data_format, dilation_rate, dtype)
    geo.check_shape("grad_outputs", grad_outputs.shape, plan.problem.output_shape)
    graph = _Graph("depthwise-kernel-grad")
    blocks = _grad_blocks(graph, plan, grad_outputs, inputs, None, device, dtype, rank)
    return _kernel_grads(graph, plan, blocks, sizes, device, dtype, rank, [inputs, grad_outputs])


__all__ = ["backward", "forward", "input_grad", "is_dask", "kernel_grad", "output_blocks"]
