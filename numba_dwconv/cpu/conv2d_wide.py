"""Host side of the register-tiled 2D kernels of wide kernels (:mod:`numba_dwconv.cpu.conv2d_last_wide`).

:func:`numba_dwconv.cpu.conv2d.conv2d_forward` asks :func:`fits` and runs :func:`forward`; its input gradient
runs the same kernel on :func:`transposed_forward` of its problem.  Problems are channels_last ``m = 1``
problems (:class:`numba_dwconv._geometry.Conv2DProblem`; a multiplier runs over repeated channels), or
channels_first ones with ``m = 1`` that the kernel runs on their planes (:func:`planes_fit`).
"""

from __future__ import annotations

import functools

import numpy as np

from .. import _memory
from .._jit import launch, scratch
from .._simd import lanes_of
from .conv2d_last_wide import BLOCK_WIDE, CHUNK_VECTORS, _forward_wide_last, _kernel_grad_wide_last
from .fused import activation

GROUP_BYTES = 32 << 10  # the tap rows a block takes at once: their chunk of rows and taps fits in L1


def fits(problem, kh_t) -> bool:
    """Whether the channels_last forward of ``problem`` takes the wide kernel.

    Where the tap rows would go one at a time (``kh_t`` a run-time count: more than ALL_TAPS_LIMIT_WIDE taps,
    or 10-25 that do not take the all-taps blocks, see :mod:`numba_dwconv.cpu.conv2d`) with unit column
    steps, rows of whole vectors of channels and a block of outputs per row.
    """
    w = problem.width
    return (not isinstance(kh_t, tuple) and w.stride == 1 and w.dilation == 1 and w.out_length >= BLOCK_WIDE
            and problem.channels % len(lanes_of(problem.dtype)) == 0)


def planes_fit(problem) -> bool:
    """Whether the wide kernel runs a channels_first ``problem`` on its planes (transposing on the way).

    As :func:`fits` for the channels_last problem, with ``m = 1`` and rows and output rows of a vector's
    lanes or more (the transposes take squares of a vector of channels by one of columns).
    """
    lanes = len(lanes_of(problem.dtype))
    return (problem.multiplier == 1 and fits(problem._replace(channels_last=True), problem.height.kernel_size)
            and problem.width.length >= lanes and problem.width.out_length >= lanes)


def forward(problem, rep: int, inputs, kernel, bias, out, act, grad):
    """The wide kernel on ``problem`` (``inputs`` with ``problem.channels // rep`` channels, each repeated ``rep``).

    A channels_first ``problem`` (:func:`planes_fit`) runs on the planes: ``act`` in forward mode only.
    """
    h, w = problem.height, problem.width
    results = None if problem.channels_last else scratch(2 * w.out_length * problem.channels, problem.dtype)
    launch(_forward_wide_last, inputs.reshape(-1), _chunked_taps(problem, kernel), bias, out.reshape(-1),
           problem.batch, h.length, w.length, problem.channels, h.out_length, w.out_length, h.kernel_size,
           w.kernel_size, h.stride, h.dilation, h.pad_left, act, grad.reshape(-1),
           *_row_args(problem, rep, slots=_forward_slots(problem)), lanes_of(problem.dtype), results)


def _tap_rows(problem) -> int:
    """Input rows one output row's taps span."""
    return (problem.height.kernel_size - 1) * problem.height.dilation + 1


def _forward_slots(problem) -> int:
    """Rows the forward's buffer holds: those of one output row's taps, one more where it sums rows in pairs."""
    h = problem.height
    return _tap_rows(problem) + (h.stride == 1 and h.dilation == 1)


def kernel_grad_fits(problem) -> bool:
    """Whether the channels_last kernel gradient of ``problem`` takes the wide kernel.

    Kernels of 7+ columns or 26+ taps, unit column steps, whole vectors of channels, and a width the groups
    of eight taps cover with at most 40 % extra taps (each group costs eight taps' multiply-adds: KW = 9
    computes 16, and measured 3.61 -> 4.08 ms at B8 56x56 C128, where 7x7 gained 2.88 -> 2.17).
    """
    h, w = problem.height, problem.width
    covered = -(-w.kernel_size // 8) * 8
    return ((w.kernel_size >= 7 or h.kernel_size * w.kernel_size > 25) and covered <= 1.4 * w.kernel_size
            and w.stride == 1 and w.dilation == 1 and problem.channels % len(lanes_of(problem.dtype)) == 0)


def kernel_grad(problem, rep: int, grad_outputs, inputs, kernel_partials, bias_partials, rows_per_task: int):
    """The wide kernel gradient's partials: one per run of ``rows_per_task`` output rows of a batch entry."""
    h, w = problem.height, problem.width
    rows = (rows_per_task - 1) * h.stride + (h.kernel_size - 1) * h.dilation + 1
    rows_buf, held, _, pad_l, pad_r, _ = _row_args(problem, rep, slots=rows, taps=max(w.kernel_size, 8))
    launch(_kernel_grad_wide_last, grad_outputs.reshape(-1), inputs.reshape(-1), kernel_partials.reshape(-1),
           bias_partials.reshape(-1), problem.batch, h.length, w.length, problem.channels, h.out_length,
           w.out_length, h.kernel_size, w.kernel_size, h.stride, h.dilation, h.pad_left, rows_per_task, rows_buf,
           held, rep, pad_l, pad_r, zeros_and_ones(problem.dtype), lanes_of(problem.dtype))


def transposed_forward(problem):
    """The input gradient of a channels_last ``problem`` with unit strides as a forward problem, or None.

    ``grad_in[ih, iw] = sum_{i,k} grad[ih - top' + i*dh, iw - left' + k*dw] * flipped[i, k]`` with ``top' =
    (KH-1)*dh - pad_top`` (and ``left'`` alike): a forward over the output gradient (``out_h x out_w``) whose
    outputs are the input's ``H x W``.  None where a stride is not 1 or ``top'``/``left'`` would be negative
    (explicit padding past the kernel's reach).  It multiplies the output gradient's zero padding by the
    weights: for finite weights only (an inf weight would make NaN inputs the gradient never reaches).
    """
    h, w = problem.height, problem.width
    if h.stride != 1 or w.stride != 1:
        return None
    axes = []
    for axis in (h, w):
        before = (axis.kernel_size - 1) * axis.dilation - axis.pad_left
        if before < 0:
            return None
        axes.append(axis._replace(length=axis.out_length, pad_left=before, out_length=axis.length,
                                  pad_right=(axis.kernel_size - 1) * axis.dilation - axis.pad_right))
    return problem._replace(height=axes[0], width=axes[1])


@functools.lru_cache(maxsize=64)  # (asked twice per backward: whether to fuse, then by the input gradient)
def planes_transposed(problem):
    """:func:`transposed_forward` of a channels_first ``problem`` with ``m = 1`` where :func:`planes_fit`, else None."""
    transposed = transposed_forward(problem) if problem.multiplier == 1 else None
    return transposed if transposed is not None and planes_fit(transposed) else None


def input_grad(transposed, grad_outputs, kernel, grad_in):
    """The input gradient (``m = 1``, finite ``kernel``) as the wide forward of ``transposed``.

    ``transposed``: :func:`transposed_forward` of the problem (either layout).
    """
    forward(transposed, 1, grad_outputs, np.ascontiguousarray(kernel[::-1, ::-1]),
            np.zeros(transposed.channels, transposed.dtype), grad_in, activation(None, transposed.dtype), grad_in)


def _chunk(problem) -> int:
    """Channels per chunk of the kernel's rows and taps."""
    return len(lanes_of(problem.dtype)) * CHUNK_VECTORS


def _row_args(problem, rep: int, slots: int | None = None, taps: int | None = None):
    """``(rows_buf, held, rep, pad_l, pad_r, group)`` of the kernels: per-thread padded rows, chunk major.

    ``slots``: rows held (default: the rows of one output row's taps); ``taps``: the columns of taps the
    padding makes room for (default KW).
    """
    w = problem.width
    pad_l = w.pad_left
    pad_r = max(0, (w.out_length - 1) + ((taps or w.kernel_size) - 1) - pad_l - (w.length - 1))
    slots = slots or _tap_rows(problem)
    chunk = _chunk(problem)
    padded_channels = -(-problem.channels // chunk) * chunk
    rows_buf = scratch(slots * (pad_l + w.length + pad_r) * padded_channels, problem.dtype)
    row_bytes = (pad_l + w.length + pad_r + w.kernel_size) * chunk * problem.dtype.itemsize
    group = max(1, GROUP_BYTES // row_bytes)
    return rows_buf, scratch(slots, np.int64), rep, pad_l, pad_r, group


def _chunked_taps(problem, kernel):
    """``kernel`` (KH, KW, n, 1), flat and chunk major as the kernel reads it."""
    return chunk_major(kernel.reshape(-1, problem.channels), _chunk(problem))


@functools.lru_cache(maxsize=8)
def zeros_and_ones(dtype):
    """A vector's lanes of zeros, then of ones (the kernel gradients' start and bias-sum vectors; read-only)."""
    lanes = len(lanes_of(dtype))
    consts = np.concatenate([np.zeros(lanes, dtype), np.ones(lanes, dtype)])
    consts.flags.writeable = False
    return consts


def chunk_major(taps, chunk: int):
    """``taps`` (T, n) flat and chunk major: per chunk of ``chunk`` channels its T rows (n padded with zeros)."""
    n = taps.shape[1]
    padded = -(-n // chunk) * chunk
    if padded != n:
        taps = np.concatenate([taps, np.zeros((taps.shape[0], padded - n), taps.dtype)], axis=1)
    return _memory.aligned(taps.reshape(taps.shape[0], padded // chunk, chunk).transpose(1, 0, 2)).reshape(-1)
