"""The 1D channels_last forward of long kernels: eight output rows of a channel vector in registers over all taps.

The general channels_last forward (:func:`numba_dwconv.cpu.conv1d_last.forward_last`) adds up to eight
taps at a time into rows of all channels: each group of taps loads and stores the accumulator rows once
more, and the rows and taps of one block of K = 31 at 512 channels (130 KB) do not fit in L1, so the
loop ran at 42-55 GFMA/s, bound by L2.  This kernel is the 1D form of the 2D wide kernel
(:mod:`numba_dwconv.cpu.conv2d_last_wide`), written with explicit vectors (:mod:`numba_dwconv._simd`):

* A task is a tile of output rows of one batch entry.  It first copies the input rows the tile reads
  (zeros for the padding) into its part's buffer, chunk major: the rows of one vector of channels are
  contiguous (a sequential read of the input, which the hardware prefetches; the tile of one channel
  vector then fits in L1 with its taps).
* Per channel vector, blocks of eight output rows keep eight independent sums in registers over every
  tap while a window of eight input vectors slides along the taps: one input and one tap vector loaded
  per eight multiply-adds, each output vector stored once.  The last block of a tile overlaps the one
  before and stores only its new rows.

``K`` is a run-time count: one compiled kernel for every length.  Used (by :mod:`numba_dwconv.cpu.conv1d`)
for ``K >= LONG_TAPS`` (20) with unit stride and dilation, ``m = 1``, channels a multiple of the vector's lanes
and at least eight output rows.
"""

from __future__ import annotations

import numpy as np
from numba import uint64

from .._jit import launch, parallel_kernel, scratch, serial_kernel, task_share, trip_count
from .._simd import (
    VECTOR_BYTES,
    lanes_of,
    vfma,
    vload,
    vstore,
    vstore_rows,
    vstore_stream,
)
from .conv2d_last_wide import load8, sliding_sums8, transposed_squares
from .conv2d_wide import chunk_major, zeros_and_ones
from .fused import activation, apply_activation
from .nontemporal import STREAM_BYTES

# Kernels at least this long take this module's kernels: measured against the general kernels (A/B, 'same'),
# K = 16 ran 0.80-1.09x at 1-8 MB (the window copy is a pass over the input more), K = 20 1.01-1.07x, K = 31
# 1.3-3x (and 1.4-1.6x from memory).
LONG_TAPS = 20
TILE_ROWS = 256  # output rows per task (the last tile of a row takes what is left: up to 2 * TILE_ROWS - 1)
BLOCK_ROWS = 8  # output rows per block (eight sums in registers)
SUB_ROWS = 256  # rows of a kernel-gradient task copied at a time


def buffer_rows(ksize: int) -> int:
    """Rows of the window a task copies, at most: its longest tile and the taps' reach."""
    return 2 * TILE_ROWS - 1 + ksize - 1


@serial_kernel
def _window(x, buf, b, r0, rows, length, n, lanes_t):
    """Input rows ``[r0, r0 + rows)`` of batch entry ``b`` (zeros outside ``[0, length)``) into ``buf``, chunk major.

    Channel vector ``c`` (its first channel) starts at ``buf[c * rows]``, row ``j`` of it at ``+ j * lanes``.
    """
    lanes = uint64(trip_count(lanes_t))
    for j in range(rows):
        r = r0 + j
        d = uint64(j) * lanes
        if 0 <= r < length:
            s = uint64(b * length + r) * n
            for c in range(uint64(0), n, lanes):
                vstore(buf, c * uint64(rows) + d, vload(x, s + c, lanes_t))
        else:
            for c in range(uint64(0), n, lanes):
                for i in range(lanes):
                    buf[c * uint64(rows) + d + i] = 0.0


@serial_kernel
def _store(out, d, vector, stream):
    """``out[d : d + lanes] = vector``, with a non-temporal store if ``stream`` (``d`` then on a line's start)."""
    if stream:
        vstore_stream(out, d, vector)
    else:
        vstore(out, d, vector)


@parallel_kernel
def forward_long_last(part, parts, x, taps, bias, out, batch, length, channels, out_length, ksize, pad_left, act, grad,
                      rows_buf, stream, lanes_t):
    """``out[b, t] = act(bias + sum_k x[b, t + k - pad_left] * taps[k])``, a task per tile of output rows.

    Arrays are flat: ``x`` (B*L*C), ``bias`` (C), ``out`` and ``grad`` (B*out_length*C), ``taps`` chunk
    major (per vector of channels, its K tap vectors: :func:`chunked_taps`).  ``rows_buf[part]`` holds
    :func:`buffer_rows` rows of C.  ``act``, ``grad``: see :mod:`numba_dwconv.cpu.fused`.  ``out_length``
    is at least BLOCK_ROWS.
    """
    lanes = uint64(trip_count(lanes_t))
    n = uint64(channels)
    buf = rows_buf[part]
    tiles = max(1, out_length // TILE_ROWS)
    tasks_lo, tasks_hi = task_share(batch * tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // tiles
        tile = task - b * tiles
        t0 = tile * TILE_ROWS
        t1 = out_length if tile == tiles - 1 else t0 + TILE_ROWS
        rows = t1 - t0 + ksize - 1
        _window(x, buf, b, t0 - pad_left, rows, length, n, lanes_t)
        last = t1 - t0 - BLOCK_ROWS
        d_tile = uint64(b * out_length + t0) * n
        for c in range(uint64(0), n, lanes):
            s_c = c * uint64(rows)
            t = c * uint64(ksize)
            o = 0
            while o < t1 - t0:
                skip = 0  # leading rows not stored: the last block overlaps the one before
                if o > last:
                    skip = o - last
                    o = last
                a = vload(bias, c, lanes_t)
                a0, a1, a2, a3, a4, a5, a6, a7 = sliding_sums8(buf, s_c + uint64(o) * lanes, lanes, taps, t, lanes,
                                                               ksize, a, a, a, a, a, a, a, a, lanes_t)
                d = d_tile + uint64(o) * n + c
                if skip < 1:
                    _store(out, d, a0, stream)
                if skip < 2:
                    _store(out, d + n, a1, stream)
                if skip < 3:
                    _store(out, d + uint64(2) * n, a2, stream)
                if skip < 4:
                    _store(out, d + uint64(3) * n, a3, stream)
                if skip < 5:
                    _store(out, d + uint64(4) * n, a4, stream)
                if skip < 6:
                    _store(out, d + uint64(5) * n, a5, stream)
                if skip < 7:
                    _store(out, d + uint64(6) * n, a6, stream)
                _store(out, d + uint64(7) * n, a7, stream)
                o += BLOCK_ROWS + skip
        d_end = d_tile + uint64(t1 - t0) * n
        apply_activation(out[d_tile:d_end], grad[d_tile:d_end], act)


@serial_kernel
def _window_planes(x, buf, b, c, r0, rows, length, n, lanes_t):
    """:func:`_window` of channels_first ``x``: channels ``[c, c + lanes)``, squares transposed on the way.

    ``buf`` gets the rows of that channel vector (row ``j`` at ``j * lanes``).  The in-range part goes
    in squares of ``lanes`` positions by ``lanes`` channels (the last overlapping the one before), or
    value by value when it is shorter than a square.
    """
    lanes = uint64(trip_count(lanes_t))
    lo = min(max(r0, 0), length)
    hi = max(lo, min(r0 + rows, length))
    for j in range(rows):
        if r0 + j < lo or r0 + j >= hi:
            for i in range(lanes):
                buf[uint64(j) * lanes + i] = 0.0
    plane = uint64(b) * n + c
    if hi - lo >= lanes:
        transposed_squares(x, plane * uint64(length) + uint64(lo), uint64(1), uint64(length), buf,
                           uint64(lo - r0) * lanes, lanes, lanes, hi - lo, False, lanes_t)
    else:
        for p in range(lo, hi):
            for i in range(lanes):
                buf[uint64(p - r0) * lanes + i] = x[(plane + i) * uint64(length) + uint64(p)]


@parallel_kernel
def forward_long_first(part, parts, x, taps, bias, out, batch, length, channels, out_length, ksize, pad_left, act,
                       rows_buf, results, stream, lanes_t):
    """:func:`forward_long_last` on channels_first arrays, a task per tile of output positions of a channel vector.

    ``x`` (B*C*L) and ``out`` (B*C*out_length) flat; ``rows_buf[part]`` holds :func:`buffer_rows` rows of one
    channel vector, ``results[part]`` as many.  The window comes in transposed (:func:`_window_planes`); the
    tile's sums go to ``results`` (a row per position), get the activation there (``act`` in forward mode),
    and are transposed into the planes in squares (the last overlapping the one before: ``out_length`` is
    at least the vector's lanes), past the caches if ``stream`` (``out`` on a line's start, ``out_length``
    whole vectors: then every square but an overlapping last one starts lines).  Consecutive tasks are
    consecutive tiles of the same planes.
    """
    lanes = uint64(trip_count(lanes_t))
    n = uint64(channels)
    buf = rows_buf[part]
    res = results[part]
    tiles = max(1, out_length // TILE_ROWS)
    vectors = channels // lanes
    tasks_lo, tasks_hi = task_share(batch * vectors * tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        bv = task // tiles
        tile = task - bv * tiles
        b = bv // vectors
        c = uint64(bv - b * vectors) * lanes
        t0 = tile * TILE_ROWS
        t1 = out_length if tile == tiles - 1 else t0 + TILE_ROWS
        count = t1 - t0
        rows = count + ksize - 1
        _window_planes(x, buf, b, c, t0 - pad_left, rows, length, n, lanes_t)
        last = count - BLOCK_ROWS
        for o0 in range(0, count, BLOCK_ROWS):
            o = min(o0, last)  # (the last block overlaps the one before: its sums land on the same rows)
            a = vload(bias, c, lanes_t)
            sums = sliding_sums8(buf, uint64(o) * lanes, lanes, taps, c * uint64(ksize), lanes, ksize, a, a, a, a, a, a,
                                 a, a, lanes_t)
            vstore_rows(res, uint64(o) * lanes, lanes, sums)
        apply_activation(res[:uint64(count) * lanes], res[:uint64(count) * lanes], act)
        transposed_squares(res, uint64(0), lanes, lanes, out, (uint64(b) * n + c) * uint64(out_length) + uint64(t0),
                           uint64(1), uint64(out_length), count, stream, lanes_t)



@parallel_kernel
def kernel_grad_long(part, parts, x, g, kernel_partials, bias_partials, batch, length, channels, out_length, ksize,
                     pad_left, rows_per_task, xbufs, gbufs, planes, consts, lanes_t):
    """Per task (``rows_per_task`` rows of a batch entry) ``sum_t x[b, t + k - pad_left] * g[b, t]`` and ``sum_t g``.

    ``kernel_partials`` (tasks*K*C) and ``bias_partials`` (tasks*C), flat.  A task goes through its rows
    SUB_ROWS at a time: the input rows they read and the gradient rows are copied chunk major into the part's
    ``xbufs``/``gbufs`` (``planes``: channels_first arrays, per channel vector, transposed on the way), then per
    channel vector and group of eight taps (the last group overlapping the one before and storing only its
    new taps) the sums run in registers over the rows (:func:`~numba_dwconv.cpu.conv2d_last_wide.sliding_sums8`),
    through the partials between sub-tiles.  Sums in a fixed order: results do not depend on the thread count.
    ``consts``: a vector of zeros and one of ones.
    """
    lanes = uint64(trip_count(lanes_t))
    n = uint64(channels)
    xbuf = xbufs[part]
    gbuf = gbufs[part]
    zero = vload(consts, 0, lanes_t)
    one = vload(consts, lanes, lanes_t)
    per_entry = (out_length + rows_per_task - 1) // rows_per_task
    tasks_lo, tasks_hi = task_share(batch * per_entry, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // per_entry
        t0 = (task - b * per_entry) * rows_per_task
        t1 = min(out_length, t0 + rows_per_task)
        k_base = uint64(task) * uint64(ksize) * n
        for sub in range(t0, t1, SUB_ROWS):
            count = min(SUB_ROWS, t1 - sub)
            rows = count + ksize - 1
            if not planes:
                _window(x, xbuf, b, sub - pad_left, rows, length, n, lanes_t)
                _window(g, gbuf, b, sub, count, out_length, n, lanes_t)
            for c in range(uint64(0), n, lanes):
                xs, gs = uint64(0), uint64(0)
                if planes:
                    _window_planes(x, xbuf, b, c, sub - pad_left, rows, length, n, lanes_t)
                    _window_planes(g, gbuf, b, c, sub, count, out_length, n, lanes_t)
                else:
                    xs, gs = c * uint64(rows), c * uint64(count)
                bias_at = uint64(task) * n + c
                ab = zero if sub == t0 else vload(bias_partials, bias_at, lanes_t)
                for t in range(count):
                    ab = vfma(one, vload(gbuf, gs + uint64(t) * lanes, lanes_t), ab)  # (an exact product: a sum)
                vstore(bias_partials, bias_at, ab)
                k_done = 0
                while k_done < ksize:
                    k0 = min(k_done, ksize - 8)  # (the last group overlaps the one before)
                    d = k_base + uint64(k0) * n + c
                    a0, a1, a2, a3, a4, a5, a6, a7 = zero, zero, zero, zero, zero, zero, zero, zero
                    if sub > t0:
                        a0, a1, a2, a3, a4, a5, a6, a7 = load8(kernel_partials, d, n, lanes_t)
                    sums = sliding_sums8(xbuf, xs + uint64(k0) * lanes, lanes, gbuf, gs, lanes, count, a0, a1, a2, a3,
                                         a4, a5, a6, a7, lanes_t)
                    skip = k_done - k0
                    for j in range(skip, 8):
                        vstore(kernel_partials, d + uint64(j) * n, sums[j])
                    k_done = k0 + 8


# ---------------------------------------------------------------------------- host side
def fits(problem, fused: bool = False) -> bool:
    """Whether the forward of the 1D ``problem`` takes this module's kernels.

    ``fused``: the call computes the gradient at an activation's input (``grad_outputs`` given), which
    only the channels_last kernel does; channels_first needs ``out_length`` of at least a vector's lanes.
    """
    axis = problem.axis
    lanes = len(lanes_of(problem.dtype))
    if not problem.channels_last and (fused or axis.out_length < lanes):
        return False
    return (problem.multiplier == 1 and axis.kernel_size >= LONG_TAPS and axis.stride == 1 and axis.dilation == 1
            and axis.out_length >= BLOCK_ROWS and problem.channels % lanes == 0)


def chunked_taps(kernel):
    """``kernel`` (K, C, 1) flat and chunk major: per vector of channels, its K tap vectors."""
    return chunk_major(kernel.reshape(kernel.shape[0], -1), len(lanes_of(kernel.dtype)))


def forward(problem, inputs, kernel, bias, out, act, grad):
    """The forward of ``problem`` (:func:`fits`); ``out`` and ``grad`` of the output's shape."""
    axis = problem.axis
    lanes_t = lanes_of(problem.dtype)
    args = (inputs.reshape(-1), chunked_taps(kernel), bias, out.reshape(-1), inputs.shape[0], axis.length,
            problem.channels, axis.out_length, axis.kernel_size, axis.pad_left, act)
    if problem.channels_last:
        launch(forward_long_last, *args, grad.reshape(-1),
               scratch(buffer_rows(axis.kernel_size) * problem.channels, problem.dtype), _streams(out, act), lanes_t)
    else:
        launch(forward_long_first, *args, scratch(buffer_rows(axis.kernel_size) * len(lanes_t), problem.dtype),
               scratch((2 * TILE_ROWS - 1) * len(lanes_t), problem.dtype),
               _streams(out, act) and axis.out_length % len(lanes_t) == 0, lanes_t)


def _streams(out, act) -> bool:
    """Whether the kernel stores ``out`` past the caches: large, on a line boundary, and no activation to apply."""
    return out.nbytes >= STREAM_BYTES and out.ctypes.data % VECTOR_BYTES == 0 and act[0] == 0


def transposed(problem):
    """The input gradient of ``problem`` as a forward problem this module runs, or None.

    ``grad_in[i] = sum_k grad[i + k - before] * kernel[K-1-k]`` with ``before = K-1 - pad_left``: a forward
    over the output gradient with the taps reversed, whose outputs are the input's positions.  None where
    the problem has a stride, a dilation or a multiplier, ``before`` would be negative (explicit padding past
    the kernel's reach), or :func:`fits` says no.
    """
    axis = problem.axis
    before = axis.kernel_size - 1 - axis.pad_left
    if axis.stride != 1 or axis.dilation != 1 or problem.multiplier != 1 or before < 0:
        return None
    flipped = problem._replace(axis=axis._replace(length=axis.out_length, out_length=axis.length, pad_left=before,
                                                  pad_right=axis.kernel_size - 1 - axis.pad_right))
    return flipped if fits(flipped) else None


def input_grad(flipped, grad_outputs, kernel, grad_in):
    """The input gradient into ``grad_in`` as the forward of ``flipped`` (:func:`transposed`), for finite ``kernel``.

    (The forward multiplies the output gradient's zero padding by the weights: an inf weight would make NaNs
    where the gradient has no term.)
    """
    forward(flipped, grad_outputs, np.ascontiguousarray(kernel[::-1]), np.zeros(flipped.channels, flipped.dtype),
            grad_in, activation(None, flipped.dtype), grad_in)


def kernel_grad_fits(problem) -> bool:
    """Whether the kernel gradient of the 1D ``problem`` takes :func:`kernel_grad_long`."""
    axis = problem.axis
    return (problem.multiplier == 1 and axis.kernel_size >= LONG_TAPS and axis.stride == 1 and axis.dilation == 1
            and problem.channels % len(lanes_of(problem.dtype)) == 0 and axis.out_length > 0)


def kernel_grad(problem, grad_outputs, inputs, max_partials: int):
    """``(kernel_partials, bias_partials)`` of :func:`kernel_grad_long`: at most about ``max_partials`` tasks."""
    axis = problem.axis
    per_entry = min(max(1, max_partials // max(problem.batch, 1)), -(-axis.out_length // SUB_ROWS))
    rows_per_task = -(-axis.out_length // per_entry)
    tasks = problem.batch * -(-axis.out_length // rows_per_task)
    n = problem.channels
    lanes = len(lanes_of(problem.dtype))
    width = lanes if not problem.channels_last else n  # the buffers hold a channel vector or whole rows
    kernel_partials = np.empty((tasks, axis.kernel_size, n, 1), problem.dtype)
    bias_partials = np.empty((tasks, n), problem.dtype)
    launch(kernel_grad_long, inputs.reshape(-1), grad_outputs.reshape(-1), kernel_partials.reshape(-1),
           bias_partials.reshape(-1), problem.batch, axis.length, n, axis.out_length, axis.kernel_size, axis.pad_left,
           rows_per_task, scratch((SUB_ROWS + axis.kernel_size - 1) * width, problem.dtype),
           scratch(SUB_ROWS * width, problem.dtype), not problem.channels_last, zeros_and_ones(problem.dtype),
           lanes_of(problem.dtype))
    return kernel_partials, bias_partials
