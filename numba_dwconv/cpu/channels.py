"""Depth multipliers in channels_last as ``m = 1`` problems: repeat each input channel ``m`` times.

A channels_last depthwise convolution with multiplier ``m`` over ``C`` channels equals the
``m = 1`` convolution over ``C*m`` channels of the input with every channel repeated ``m``
times (output channel ``c*m + j`` reads input channel ``c``), with the kernel reshaped from
``(..., C, m)`` to ``(..., C*m, 1)``.  The input gradient is then the ``m = 1`` input gradient
with each group of ``m`` channels summed, and the kernel gradient is the ``m = 1`` one over the
repeated input.  The ``m = 1`` kernels keep the contiguous channel axis innermost and
vectorise; loops over ``m`` inside them did not (measured on B8 L8192 C256 K5 m2, 1D: 8 % of
the copy roofline against 19 % this way; 2D B8 56x56 C256 3x3: 4 %), and they compile no
extra code per multiplier.  Nothing is repeated in memory as a whole: each task repeats the input
rows it reads (or sums the gradient rows it wrote) in a per-part buffer (:func:`repeat_rows`,
:func:`sum_group_rows`), except the 2D input gradient with a column stride > 1, which sums the
gradient of the repeated inputs afterwards (:func:`sum_channel_groups`).

Also here: :func:`swap_layout`, a multi-threaded channels_first <-> channels_last copy.
"""

from __future__ import annotations

import math

import numpy as np
from numba import uint64

from .. import _memory
from .._jit import launch, parallel_kernel, serial_kernel, task_share


@serial_kernel
def repeat_rows(dst, src, mult):
    """``dst[q, c*mult + j] = src[q, c]`` for each row ``q`` of ``src`` (R, C), ``j < mult``.

    Multipliers 2 and 4 have loops of their own: constant-stride stores that LLVM vectorises as
    interleaved groups (the general loop runs one element at a time, as slow as the convolution).
    """
    for q in range(src.shape[0]):
        d = dst[q]
        s = src[q]
        if mult == 1:  # (a plain copy: the padded rows of wide kernels)
            for c in range(s.shape[0]):
                d[c] = s[c]
        elif mult == 2:
            for c in range(s.shape[0]):
                d[2 * c] = s[c]
                d[2 * c + 1] = s[c]
        elif mult == 4:
            for c in range(s.shape[0]):
                d[4 * c] = s[c]
                d[4 * c + 1] = s[c]
                d[4 * c + 2] = s[c]
                d[4 * c + 3] = s[c]
        else:
            for c in range(s.shape[0]):
                value = s[c]
                for j in range(mult):
                    d[c * mult + j] = value


@serial_kernel
def sum_group_rows(dst, src, mult):
    """``dst[q, c] = src[q, c*mult] + ... + src[q, c*mult + mult-1]`` (in that order) for every row of ``dst``."""
    for q in range(dst.shape[0]):
        d = dst[q]
        s = src[q]
        if mult == 2:
            for c in range(d.shape[0]):
                d[c] = s[2 * c] + s[2 * c + 1]
        elif mult == 4:
            for c in range(d.shape[0]):
                d[c] = ((s[4 * c] + s[4 * c + 1]) + s[4 * c + 2]) + s[4 * c + 3]
        else:
            for c in range(d.shape[0]):
                total = s[c * mult]
                for j in range(1, mult):
                    total += s[c * mult + j]
                d[c] = total


@parallel_kernel
def _sum_channel_groups(part, parts, x, mult, out):
    """:func:`sum_group_rows` over the rows of ``x`` (R, C*mult) into ``out`` (R, C)."""
    lo, hi = task_share(out.shape[0], part, parts)
    sum_group_rows(out[lo:hi], x[lo:hi], mult)


def single_multiplier(problem):
    """The ``m = 1`` problem over ``C*m`` channels that ``problem`` (channels_last) equals on repeated inputs."""
    return problem._replace(channels=problem.channels * problem.multiplier, multiplier=1)


def sum_channel_groups(grad_repeated, mult: int):
    """(..., C*mult) -> (..., C): each group of ``mult`` consecutive channels summed (the repeat's transpose)."""
    channels = grad_repeated.shape[-1] // mult
    out = _memory.empty(grad_repeated.shape[:-1] + (channels,), grad_repeated.dtype)
    launch(_sum_channel_groups, grad_repeated.reshape(-1, channels * mult), mult, out.reshape(-1, channels))
    return out


# ---------------------------------------------------------------------------- layout changes
TRANSPOSE_TILE = 16


@parallel_kernel
def _transpose_planes(part, parts, src, dst, batch, rows, cols):
    """``dst[b, j, i] = src[b, i, j]`` for flat ``src`` (batch, rows, cols): 16 x 16 tiles, tasks of 16 rows.

    A tile's 16 source rows and 16 destination rows stay in L1 (numpy's strided copy of the same
    transpose measured 2.5-6x slower on one thread: B8 C256 28x28 to channels_first 1.87 -> 0.49 ms).
    """
    tile = TRANSPOSE_TILE
    row_tiles = (rows + tile - 1) // tile
    tasks_lo, tasks_hi = task_share(batch * row_tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // row_tiles
        r0 = (task - b * row_tiles) * tile
        r1 = min(rows, r0 + tile)
        base = uint64(b) * uint64(rows * cols)
        for c0 in range(0, cols, tile):
            c1 = min(cols, c0 + tile)
            if r1 - r0 == tile and c1 - c0 == tile:  # (constant trip counts: unrolled)
                for j in range(tile):
                    for i in range(tile):
                        dst[base + uint64((c0 + j) * rows + r0 + i)] = src[base + uint64((r0 + i) * cols + c0 + j)]
            else:
                for j in range(c0, c1):
                    for i in range(r0, r1):
                        dst[base + uint64(j * rows + i)] = src[base + uint64(i * cols + j)]


def swap_layout(array, to_channels_last: bool):
    """A C-contiguous copy of ``array`` (batch, channels, *spatial) in channels_last, or back (``False``)."""
    batch = array.shape[0]
    if to_channels_last:
        shape = (batch, *array.shape[2:], array.shape[1])
        rows, cols = array.shape[1], math.prod(array.shape[2:])
    else:
        shape = (batch, array.shape[-1], *array.shape[1:-1])
        rows, cols = math.prod(array.shape[1:-1]), array.shape[-1]
    out = _memory.empty(shape, array.dtype)
    if out.size:
        launch(_transpose_planes, np.ascontiguousarray(array).reshape(-1), out.reshape(-1), batch, rows, cols)
    return out
