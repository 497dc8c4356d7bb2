"""The depthwise ops on dask arrays: lazy results, any chunking, exact halos (imported only for dask operands).

Along the batch and channel axes an op maps block by block (kernel and bias sliced to each channel
block).  Along a spatial axis the output is cut where the input is: output block ``[t0, t1)`` starts
at the first output whose window starts in an input chunk, and reads the input window
``[t0*s - pad, (t1-1)*s - pad + extent)`` clipped to the input -- its own chunk plus a halo from the
chunks after it (as many as the halo needs, so chunks smaller than the halo are fine).  The block
runs the in-memory op on its own chunk (a view) and recomputes only the outputs that read the halo,
from a small gathered window (:class:`_Split`).  Both runs use *explicit* padding
(:class:`numba_dwconv._geometry.ExplicitPadding`): zeros only where a window was clipped, which are
exactly the zeros of the whole op's padding, so every block equals the matching part of the
in-memory result, Keras' rules for non-finite numbers on padding included.

Gradients: the input gradient of an input chunk sums the window gradients of the outputs that read
it, taken in groups that each lie in one chunk of the output gradient; kernel and bias gradients
are per-part partial sums added in a fixed tree, deterministic for a
given chunking (:mod:`numba_dwconv._dask_grads`).  Each op is one hand-built graph (:class:`_Graph`)
whose tasks read chunks by key.

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
    Static,
    _forward_block,
)


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
        self.chunks = tuple(tuple(c) for c in chunks)  # the inputs' (and their gradient's) chunks
        self.channels_last = problem.channels_last
        self.axes = (problem.axis,) if rank == 1 else (problem.height, problem.width)
        spatial_dims = list(range(1, 1 + rank)) if self.channels_last else list(range(2, 2 + rank))
        self.channel_dim = rank + 1 if self.channels_last else 1
        self.spatial_dims = spatial_dims
        self.batch_chunks = _offsets(chunks[0])
        self.channel_chunks = _offsets(chunks[self.channel_dim])
        self.spatial_chunks = [chunks[d] for d in spatial_dims]
        self.data_format = "channels_last" if self.channels_last else "channels_first"
        self.strides = tuple(axis.stride for axis in self.axes)
        self.dilations = tuple(axis.dilation for axis in self.axes)

    def index(self, batch, channel, spatial) -> tuple:
        """An index (slices, or block numbers) of an array of this layout from its batch, channel and spatial parts."""
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


def _small(array):
    """A small operand (kernel, bias) as a NumPy array; a dask kernel is computed once, here."""
    if is_dask(array):
        array = array.compute()
    return np.asarray(array)


def forward(rank: int, inputs, kernel, bias, strides, padding, data_format, dilation_rate, device, activation):
    """The forward op on a dask ``inputs``: a dask array of the outputs."""
    kernel = _small(kernel)
    bias = None if bias is None else _small(bias)
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    plan = _plan(rank, inputs, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    if bias is not None:
        geo.check_shape("bias", bias.shape, (plan.problem.channels * plan.problem.multiplier,))
    split_blocks = _split_blocks(plan)
    graph = _Graph("depthwise-forward")
    graph.operands(plan, kernel, bias)
    name = graph.name("outputs")
    source = _Chunks(inputs)
    for ic, (c0, c1) in enumerate(plan.channel_chunks):
        for ib, (b0, b1) in enumerate(plan.batch_chunks):
            for key, splits in _product(split_blocks):
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
                                  Static((sp.tm - sp.t0, tail_pads))])
                pads = tuple((sp.main[2], sp.main[3]) for sp in splits)
                graph.dsk[(name, *plan.index(ib, ic, key))] = (
                    _forward_block, main, tails, graph.kernel_key(ic), graph.bias_key(ic), rank, plan.strides, pads,
                    plan.data_format, plan.dilations, activation, device, dtype)
    return graph.array(name, _output_chunks(plan), dtype, [inputs])


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


def _output_chunks(plan) -> list:
    """The chunks of the outputs, block by block as :func:`output_blocks` cuts them."""
    mult = plan.problem.multiplier
    chunks = [None] * (plan.rank + 2)
    chunks[0] = tuple(b1 - b0 for b0, b1 in plan.batch_chunks)
    chunks[plan.channel_dim] = tuple((c1 - c0) * mult for c0, c1 in plan.channel_chunks)
    for d, axis, spatial in zip(plan.spatial_dims, plan.axes, plan.spatial_chunks):
        chunks[d] = tuple(t1 - t0 for t0, t1 in output_blocks(axis, spatial))
    return chunks


def _as_dask(array):
    if is_dask(array):
        return array
    import dask.array as da

    array = np.asarray(array)
    return da.from_array(array, chunks=array.shape)


def _problem_of(rank, input_shape, kernel_shape, strides, padding, data_format, dilation_rate, dtype):
    """The problem, validated as the in-memory ops validate it."""
    from ._opcore import RANK1, RANK2, _problem

    return _problem(RANK1 if rank == 1 else RANK2, tuple(input_shape), tuple(kernel_shape), strides, padding,
                    data_format, dilation_rate, dtype)


def _plan(rank, inputs, kernel_shape, strides, padding, data_format, dilation_rate, dtype):
    """The problem of a dask ``inputs`` and where its blocks are."""
    problem = _problem_of(rank, inputs.shape, kernel_shape, strides, padding, data_format, dilation_rate, dtype)
    return _Plan(problem, rank, inputs.chunks)


__all__ = ["forward", "is_dask", "output_blocks"]
