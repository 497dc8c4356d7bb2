"""Host functions of the multi-threaded 2D CPU kernels: forward, input gradient, kernel/bias gradient.

Each layout has its own loop order, and every inner loop runs over the
contiguous axis so that LLVM vectorises it:

* channels_last ``(B, H, W, C)`` (:mod:`numba_dwconv.cpu.conv2d_last`): one task
  per output row ``(b, oh)``; each tap row in range is one register-blocked pass
  along the row (four output columns per channel vector), edge columns tap by
  tap with the padding clipped away.
* channels_first ``(B, C, H, W)`` (:mod:`numba_dwconv.cpu.conv2d_first`): one task
  per plane ``(b, c)``, copied once into zero-padded stride-phase planes so that
  every output row is one vectorised loop applying all ``KH * KW`` taps at fixed
  offsets (computed on the host: :mod:`numba_dwconv.cpu.conv2d_first_plan`).

The input gradient mirrors the forward pass: each task owns one input row
(channels_last) or plane (channels_first) of ``grad_inputs``, so there are no
write races.  The kernel/bias gradient writes one partial per task over a
partition that depends on the shape only, summed in index order afterwards:
results are bit-identical from run to run and for any thread count.  With unit
strides both layouts have a backward in one pass (:func:`conv2d_backward`), giving
the same results as the two gradients computed apart.  The host functions below
take a :class:`numba_dwconv._geometry.Conv2DProblem`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _memory
from .._jit import SERIAL_BYTES, launch, scratch, static_count, task_claims
from .._simd import VECTOR_BYTES, lanes_of
from . import conv2d_first_entries, conv2d_last_entries, conv2d_last_kgrad, conv2d_wide
from .channels import single_multiplier, sum_channel_groups, swap_layout
from .conv2d_first import _forward_first, _input_grad_stride2_first, _input_grad_strided_first, _input_grad_unit_first
from .conv2d_first_grads import _backward_same_unit_first, _kernel_grad_first
from .conv2d_first_plan import (
    STATIC_SIZE_LIMIT,
    _first_args,
    _phase_scratch,
    _phases,
    _pitched_scratch,
    _tap_classes,
)
from .conv2d_last import ROWS_PER_CALL, ROWS_PER_CALL_BYTES, _forward_last, _input_grad_scatter_last
from .conv2d_last_grads import _grads_last
from .fused import activation as _activation
from .nontemporal import STREAM_TAPS_2D, stream_args
from .partials import sum_partials

# Kernel-gradient tasks per call (channels_last): a fixed partition of the output rows.
KERNEL_GRAD_TASKS = 64
# Compile-time counts (one compiled kernel per size, tap loops unrolled) only where they pay; larger kernels all
# share one kernel compiled with run-time counts (see _jit.static_count), whose loops keep the long axis innermost.
# channels_last: KW and m up to STATIC_SIZE_LIMIT (conv2d_first_plan: the limits of both layouts' counts).
# channels_first kernels with more taps than this run the wide kernel on the planes (conv2d_wide.planes_fit:
# it transposes squares of values on the way; B8 forward 56x56 C128 7x7 5.1 -> 2.4 ms, 28x28 C256 13x13
# 4.0 -> 2.7-3.0, input gradient 7.2 -> 2.6 and 20.5 -> 3.2) or, where it cannot, the channels_last kernels
# on transposed copies (6x6 to 7x7 1.1-4.5x faster than the channels_first kernels at C 128-512, 13x13 and
# 31x31 1.4-4.6x; 5x5 2x slower either way at C128).
VIA_LAST_TAPS = 30
# channels_last forward and input gradient: kernels of at most this many taps keep four outputs in
# registers over all taps; with unit column steps up to ALL_TAPS_LIMIT_WIDE taps when there are at most
# NARROW_CHANNELS channels, or the vectors of the rows they read can be loaded on 64-byte boundaries (see
# _all_taps_plan; the unrolled loop body grows with KH*KW, so larger kernels always take the tap-row passes).
ALL_TAPS_LIMIT = 9
ALL_TAPS_LIMIT_WIDE = 25
NARROW_CHANNELS = 256
# Channels per chunk of the all-taps blocks: the KH x (KW + 3) input vectors and KH x KW tap vectors of a
# block then stay in L1 (5x5 at C = 512 unchunked: 130 KB a block, slower than the tap-row passes).
ALL_TAPS_CHANNELS = 128
# Kernels at least this wide (taken tap row by tap row) pad the input rows they read: see _forward_row_args.
PAD_ROWS_WIDTH = 7


def _static_last(problem) -> bool:
    """Whether the channels_last kernels get KW and m as compile-time constants."""
    return max(problem.width.kernel_size, problem.multiplier) <= STATIC_SIZE_LIMIT


# ---------------------------------------------------------------------------- host functions
def _last_dims(problem):
    """Leading scalar arguments of the channels_last kernels: sizes, then the input row geometry."""
    h, w = problem.height, problem.width
    return problem.batch, h.length, w.length, problem.channels


def _all_taps_plan(problem, array, address=None):
    """``(kh_t, chunks)`` of a channels_last forward or gathered input gradient reading ``array`` (m = 1).

    ``address``: where ``array``'s data starts, if known (else asked of ``array`` only where it matters).

    ``kh_t``: KH, a compile-time count where all taps go at once (see ALL_TAPS_LIMIT); ``chunks``: the
    all-taps blocks' channel ranges (:func:`_all_taps_chunks`).  ``array`` is what the kernel slides its
    taps over (the forward's input, the input gradient's output gradient).  The all-taps blocks load each
    input vector of a block once per tap row (KH x (KW + 3) loads for 4 x KH x KW multiply-adds): where
    those vectors straddle cache lines they slow more than the tap-row passes.  So 10 to
    ALL_TAPS_LIMIT_WIDE taps above NARROW_CHANNELS channels go at once only where the rows' vectors can be
    loaded on 64-byte boundaries (:func:`_first_aligned_channel`), from the first aligned channel on.
    Measured forward, B8 28x28 5x5, 16 bytes off (NumPy's arrays; ms, tap-row passes -> all taps from
    channel 0 -> all taps from the aligned channel): C512 1.55 -> 1.74 -> 1.41-1.48, C384 1.24-1.26 ->
    1.02-1.04; aligned: C512 1.42 -> 1.34, C384 1.10 -> 0.87.  Fewer taps or channels load from channel 0
    (there the extra chunks cost more than alignment saves: B16 56x56 C128 3x3 1.25 -> 1.66-1.94 ms, B16
    28x28 C256 5x5 1.25 -> 1.30).  Every way sums in the same order: the choice never shows in a result.
    Column steps other than 1 take the strided all-taps blocks (each input vector loaded per tap) up to
    ALL_TAPS_LIMIT taps only, never by alignment: their sums may round apart from the passes' (LLVM reassociates
    the two loops' chains differently: 5x5 at stride 2 did), and a result must not depend on where its input
    lies.  (At 5x5 they were no faster than the passes, B16 56x56 C128 stride 2 1.24 against 1.22 ms, C256
    2.49 against 2.24, dilation 2 1.89 against 1.84, and their unrolled 100 multiply-adds took 0.9 s to compile.)
    """
    h, w = problem.height.kernel_size, problem.width.kernel_size
    taps, start = h * w, 0
    small = taps <= ALL_TAPS_LIMIT or (taps <= ALL_TAPS_LIMIT_WIDE and problem.channels <= NARROW_CHANNELS
                                       and _strided(problem.width) is None)
    if all_taps_by_alignment(problem):
        start = _first_aligned_channel(array.ctypes.data if address is None else address, problem.dtype.itemsize,
                                       problem.channels)
        small = start is not None
    lanes = len(lanes_of(problem.dtype))
    return static_count(h, _static_last(problem) and small), _all_taps_chunks(problem.channels, start or 0, lanes)


def all_taps_by_alignment(problem) -> bool:
    """Whether :func:`_all_taps_plan` chooses by where the array lies (10 to ALL_TAPS_LIMIT_WIDE taps, wide rows)."""
    taps = problem.height.kernel_size * problem.width.kernel_size
    return (ALL_TAPS_LIMIT < taps <= ALL_TAPS_LIMIT_WIDE and problem.channels > NARROW_CHANNELS
            and _strided(problem.width) is None)


def _first_aligned_channel(address: int, itemsize: int, channels: int):
    """The first channel of each row (rows of ``channels`` from ``address``) on a 64-byte boundary, or None.

    0 for rows that start on one (PyTorch's tensors, this library's large outputs).  NumPy's large arrays
    start 16 bytes past a boundary: then 12 (float32) when a row is a multiple of 64 bytes long, None
    when it is not (the rows do not share one such channel).
    """
    if address % VECTOR_BYTES == 0:
        return 0
    if address % itemsize or (channels * itemsize) % VECTOR_BYTES:
        return None
    return (-address) % VECTOR_BYTES // itemsize


@functools.lru_cache(maxsize=64)
def _all_taps_chunks(channels: int, start: int, lanes: int) -> np.ndarray:
    """The all-taps blocks' channel ranges: flat ``[lo, hi)`` pairs of at most ALL_TAPS_CHANNELS covering the row.

    From channel ``start`` (:func:`_first_aligned_channel`) on, the ranges start on 64-byte boundaries;
    one vector of ``lanes`` at each end of the row covers what is left, overlapping them (each output is
    computed whole, the same way: computed twice is harmless).  A read-only array, shared between calls.
    """
    bounds = []
    lo, end = 0, channels
    if start and channels >= 2 * lanes + start:
        bounds += [0, lanes]
        lo, end = start, start + (channels - start) // lanes * lanes
    for chunk in range(lo, end, ALL_TAPS_CHANNELS):
        bounds += [chunk, min(end, chunk + ALL_TAPS_CHANNELS)]
    if end < channels:
        bounds += [channels - lanes, channels]
    chunks = np.array(bounds, dtype=np.uint64)
    chunks.flags.writeable = False
    return chunks


def _size_entries(problem, kh_t):
    """``(rows_fn, all_fn)``: the size-specialised passes of a channels_last forward or input gradient.

    (:mod:`numba_dwconv.cpu.conv2d_last_entries`: compiled per kernel size, while the kernels compile once.)

    None for run-time sizes (the kernels' own passes); ``all_fn`` None unless ``kh_t`` (:func:`_all_taps_plan`)
    is a compile-time count.
    """
    if not _static_last(problem):
        return None, None
    dtype, strided = problem.dtype, _strided(problem.width) is not None
    rows_fn = conv2d_last_entries.row_entry(dtype, problem.width.kernel_size, strided)
    if not isinstance(kh_t, tuple):
        return rows_fn, None
    return rows_fn, conv2d_last_entries.all_taps_entry(dtype, len(kh_t), problem.width.kernel_size, strided)


PART_SLOTS = 8  # entries of each half of part_entries (counts up to 7; rows or columns with more take the passes)


@functools.lru_cache(maxsize=64)
def part_entries(problem, kh_t):
    """``(entries, row_limit, column_limit)``: the forward's all-taps blocks for the rows and columns at the edges.

    None where the forward has no all-taps blocks (``kh_t`` a run-time count: :func:`_size_entries`).  Element
    ``j < PART_SLOTS`` of ``entries`` runs the blocks over ``j`` tap rows (the rows with only some tap rows
    inside, for ``j < row_limit``: a 'same' padding's first and last), element ``PART_SLOTS + j`` computes an edge
    column over ``j`` taps of each row (the rows whose tap rows are all inside, every edge column of a row having
    fewer than ``column_limit`` taps and some).  Only the counts the problem needs are compiled, the
    other elements hold the full blocks and are never called.  The rows and columns that took the tap-row passes
    read and wrote their outputs once per tap row: 2 of every 56 rows and columns at 3x3 and 56x56, 4 of 28 at
    5x5 (the same sums in the same order: the same bits; the module forwards 1.02-1.08x with the rows').  Each
    entry compiles in ~0.45 s once per machine, so outputs under SERIAL_BYTES (one thread; the first calls of
    small problems) keep the passes (the limits 0).  Kept per problem: working the counts out took 10-17 us of
    every forward call's host time (measured).
    """
    if not _static_last(problem) or not isinstance(kh_t, tuple):
        return None
    h, w = problem.height, problem.width
    strided = _strided(w) is not None
    full = conv2d_last_entries.all_taps_entry(problem.dtype, h.kernel_size, w.kernel_size, strided)
    if math.prod(problem.output_shape) * problem.dtype.itemsize < SERIAL_BYTES:
        return (full,) * (2 * PART_SLOTS), 0, 0
    rows = _edge_counts(h, min(h.kernel_size, PART_SLOTS))
    columns = _edge_counts(w, PART_SLOTS)
    if not columns or columns != _edge_counts(w, 1 << 30) or _outside(w):  # (every edge column with its entry, or
        columns = set()  # none: the kernel does not test them one by one)
    entries = [conv2d_last_entries.all_taps_entry(problem.dtype, j, w.kernel_size, strided) if j in rows else full
               for j in range(PART_SLOTS)]
    entries += [conv2d_last_entries.edge_column_entry(problem.dtype, h.kernel_size, j) if j in columns else full
                for j in range(PART_SLOTS)]
    return tuple(entries), PART_SLOTS, (PART_SLOTS if columns else 0)


def _outside(axis) -> bool:
    """Whether an output along ``axis`` has no tap inside the input (paddings wider than the kernel's reach)."""
    reach = (axis.kernel_size - 1) * axis.dilation
    return axis.pad_left > reach or (axis.out_length - 1) * axis.stride - axis.pad_left >= axis.length


def _edge_counts(axis, limit: int) -> set:
    """The counts of taps inside the input of the outputs along ``axis`` that have some but not all, under ``limit``."""
    counts = set()
    reach = (axis.kernel_size - 1) * axis.dilation
    ends = range(min(axis.out_length, axis.kernel_size * axis.dilation + 1))
    for o in [*ends, *(axis.out_length - 1 - e for e in ends)]:
        i0 = o * axis.stride - axis.pad_left
        if i0 < 0 or i0 + reach >= axis.length:
            inside = sum(1 for i in range(axis.kernel_size) if 0 <= i0 + i * axis.dilation < axis.length)
            if 0 < inside < min(axis.kernel_size, limit):
                counts.add(inside)
    return counts


def _grad_row_entry(problem):
    """The kernel gradient's size-specialised tap-row passes (see :func:`_size_entries`), None for a run-time KW."""
    if not _static_last(problem):
        return None
    return conv2d_last_entries.grad_row_entry(problem.dtype, problem.width.kernel_size,
                                              _strided(problem.width) is not None)


def _multiplier_t(problem):
    """The depth multiplier as a :func:`static_count` argument (a compile-time constant when small)."""
    return static_count(problem.multiplier, _static_last(problem))


def _repeat_args(problem, rep: int, slots: bool = True, pads=(0, 0)):
    """``(rows_buf, held, rep)`` of the channels_last kernels for a multiplier ``rep`` run as the m = 1 ``problem``.

    Each part repeats the input rows its tasks read into its own rows (one per slot ``ih % slots``, as many
    slots as a window of tap rows spans), reused by the next output row; nothing is repeated in memory as a
    whole (see :mod:`numba_dwconv.cpu.channels`).  With ``slots=False``: ``(rows_buf, rep)``, one row per
    part (the input gradient's).  ``pads``: columns of zeros the rows get on the left and right (the
    forward's padded rows, below).  ``rep == 1`` without pads: None for the arrays.
    """
    n = (problem.height.kernel_size - 1) * problem.height.dilation + 1 if slots else 1
    buffered = rep > 1 or any(pads)
    row = (pads[0] + problem.width.length + pads[1]) * problem.channels
    rows_buf = scratch(n * row, problem.dtype) if buffered else None
    if not slots:
        return rows_buf, rep
    return rows_buf, (scratch(n, np.int64) if buffered else None), rep


def _forward_row_args(problem, rep: int, kh_t):
    """``(rows_buf, held, rep, pad_l, pad_r)`` of the channels_last forward (``problem``: m = 1, see _repeat_args).

    ``kh_t``: from the forward's :func:`_all_taps_plan`.

    Kernels at least PAD_ROWS_WIDTH wide that take the tap rows one at a time (and any multiplier), with unit
    column steps, read their input rows from the part's row buffer, copied with the left and right padding
    as zeros: every output column then goes through the block passes.
    """
    w = problem.width
    wide = w.kernel_size >= PAD_ROWS_WIDTH and not isinstance(kh_t, tuple)
    pads = (0, 0)
    if _strided(w) is None and (rep > 1 or wide):
        pads = (w.pad_left, max(0, (w.out_length - 1) + (w.kernel_size - 1) - w.pad_left - (w.length - 1)))
    return (*_repeat_args(problem, rep, pads=pads), *pads)


def _strided(axis):
    """The channels_last kernels' ``strided`` argument: None for unit column steps (they compile only those passes)."""
    return None if axis.stride == 1 and axis.dilation == 1 else 1


def _as_single_multiplier(kernel):
    """A channels_last multiplier kernel (KH, KW, C, m) as the m = 1 kernel (KH, KW, C*m, 1) of repeated inputs."""
    return kernel.reshape(kernel.shape[0], kernel.shape[1], -1, 1)


def conv2d_forward(problem, inputs, kernel, bias, activation=None, grad_outputs=None):
    """Forward pass on C-contiguous arrays of ``problem.dtype``; ``bias`` may be None.

    ``activation`` and ``grad_outputs`` as in :func:`numba_dwconv.cpu.conv1d.conv1d_forward`.
    """
    kernel = _memory.aligned(kernel)  # (vectors of taps on cache lines)
    large_first = _large_first(problem)
    if large_first and (grad_outputs is not None or not conv2d_wide.planes_fit(problem)):
        return _forward_first_via_last(problem, inputs, kernel, bias, activation, grad_outputs)
    rep = 1
    if problem.channels_last and problem.multiplier > 1:  # as m = 1 over C*m channels: see _repeat_args
        rep, problem, kernel = problem.multiplier, single_multiplier(problem), _as_single_multiplier(kernel)
    out = _memory.empty(problem.output_shape, problem.dtype)
    if out.size == 0:
        return out
    if bias is None:
        bias = np.zeros(problem.channels * problem.multiplier, problem.dtype)
    h, w = problem.height, problem.width
    act = _activation(activation, problem.dtype, grad_outputs is not None)
    grad = out.reshape(-1) if grad_outputs is None else grad_outputs.reshape(-1)
    if problem.channels_last:
        kh_t, chunks = _all_taps_plan(problem, inputs)
        if conv2d_wide.fits(problem, kh_t):
            conv2d_wide.forward(problem, rep, inputs, kernel, bias, out, act, grad)
            return out
        rows = rows_per_call(problem)
        stream = stream_args(out, rows * w.out_length * out.shape[-1], h.kernel_size * w.kernel_size,
                             max_taps=STREAM_TAPS_2D)
        mid, tail = forward_last_args(problem, rep, kh_t, chunks, act, stream, rows)
        launch(_forward_last, inputs.reshape(-1), kernel.reshape(-1), bias, out.reshape(-1), *mid, grad, *tail,
               claims=task_claims(problem.batch * h.out_length))
    elif large_first:  # the wide kernel on the planes
        conv2d_wide.forward(problem, 1, inputs, kernel, bias, out, act, grad)
    else:
        args, phases = _first_args(problem)
        unit = h.stride == 1 and w.stride == 1
        launch(_forward_first, inputs.reshape(-1), kernel.reshape(-1), bias, out.reshape(-1), *args, h.dilation,
               w.dilation, phases.taps, act, grad, _phase_scratch(problem, phases), None if unit else 1,
               conv2d_first_entries.plane_entry(problem, unit))
    return out


def rows_per_call(problem) -> int:
    """Output rows of a channels_last forward task range that one all-taps call takes (see ROWS_PER_CALL)."""
    row_bytes = problem.width.out_length * problem.channels * problem.multiplier * problem.dtype.itemsize
    return max(1, min(ROWS_PER_CALL, ROWS_PER_CALL_BYTES // max(row_bytes, 1)))


def forward_last_args(problem, rep: int, kh_t, chunks, act, stream, rows: int):
    """``(mid, tail)``: :func:`_forward_last`'s arguments between ``out`` and ``grad``, and after ``grad``.

    ``kh_t``, ``chunks``: :func:`_all_taps_plan`; ``act``: :func:`numba_dwconv.cpu.fused.activation`; ``stream``:
    :func:`numba_dwconv.cpu.nontemporal.stream_args`; ``rows``: :func:`rows_per_call` (``problem``: m = 1, a
    multiplier ``rep`` run as channels repeated, see :func:`_repeat_args`).
    """
    h, w = problem.height, problem.width
    mid = (*_last_dims(problem), _multiplier_t(problem), h.out_length, w.out_length, h.kernel_size, h.stride,
           w.stride, h.dilation, w.dilation, h.pad_left, w.pad_left, w.kernel_size, act)
    return mid, (*_forward_row_args(problem, rep, kh_t), _strided(w), chunks, *stream, *_size_entries(problem, kh_t),
                 part_entries(problem, kh_t), rows)


def _large_first(problem) -> bool:
    """Whether ``problem`` is a channels_first one of more than VIA_LAST_TAPS taps (the wide kernels' problems)."""
    return not problem.channels_last and problem.height.kernel_size * problem.width.kernel_size > VIA_LAST_TAPS


def _forward_first_via_last(problem, inputs, kernel, bias, activation, grad_outputs):
    """channels_first forward of a large kernel (run-time tap counts): the channels_last kernels on transposed copies.

    Where the wide kernel cannot run on the planes (:func:`conv2d_wide.planes_fit`), or for an activation's
    gradient.
    The channels_first kernels with run-time counts take the taps one pass over the plane each; the
    channels_last ones keep the channel loop innermost for any size.  Measured with both layout copies
    (multi-threaded, :func:`swap_layout`): 13x13 at 28x28 C256 17.6 -> 3.8 ms, 31x31 at 56x56 C128
    92.9 -> 35 ms, 7x7 at 28x28 C256 5.3 -> 1.9 ms; 5x5 stays (1.4 ms against 2.8 this way): see
    VIA_LAST_TAPS.
    """
    last = problem._replace(channels_last=True)
    x_last = swap_layout(inputs, True)
    g_last = None if grad_outputs is None else swap_layout(grad_outputs, True)
    y_last = conv2d_forward(last, x_last, kernel, bias, activation, g_last)
    del x_last, g_last  # (back to the pool for the next copy)
    return swap_layout(y_last, False)


def conv2d_input_grad(problem, grad_outputs, kernel):
    """Gradient with respect to the inputs."""
    rep = 1
    if problem.channels_last and problem.multiplier > 1:
        if problem.width.stride != 1:  # the scatter kernel: on the gradient of channel-repeated inputs, then summed
            grad_repeated = conv2d_input_grad(single_multiplier(problem), grad_outputs, _as_single_multiplier(kernel))
            return sum_channel_groups(grad_repeated, problem.multiplier)
        grad_in = _memory.empty(problem.input_shape, problem.dtype)  # C channels
        rep, problem, kernel = problem.multiplier, single_multiplier(problem), _as_single_multiplier(kernel)
    else:
        grad_in = _memory.empty(problem.input_shape, problem.dtype)
    if grad_in.size == 0:
        return grad_in
    if problem.channels_last:
        h, w = problem.height, problem.width
        if problem.multiplier == 1 and w.stride == 1:
            flipped = _memory.aligned(kernel[::-1, ::-1]).reshape(-1)
            zeros = np.zeros(problem.channels, problem.dtype)
            kh_t, chunks = _all_taps_plan(problem, grad_outputs)
            # (m > 1: the gather, then the group sums)
            transposed = _wide_input_grad(problem, kernel, kh_t) if rep == 1 else None
            if transposed is not None:
                conv2d_wide.input_grad(transposed, grad_outputs, kernel, grad_in)
                return grad_in
            rows_per_task, _ = _kernel_grad_tasks(problem)
            in_rows_buf, rep = _repeat_args(problem, rep, slots=False)
            launch(_grads_last, grad_outputs.reshape(-1), None, flipped, zeros, grad_in.reshape(-1), None, None,
                   *_last_dims(problem), (0,), h.out_length, w.out_length, h.kernel_size, h.stride, 1, h.dilation,
                   w.dilation, h.pad_left, w.pad_left, w.kernel_size, rows_per_task, _strided(w), rep, in_rows_buf,
                   chunks, None, None, None, None, 0, *_size_entries(problem, kh_t), None)
        else:
            launch(_input_grad_scatter_last, grad_outputs.reshape(-1), kernel.reshape(-1), grad_in.reshape(-1),
                   *_last_dims(problem), _multiplier_t(problem), h.out_length, w.out_length, h.kernel_size, h.stride,
                   w.stride, h.dilation, w.dilation, h.pad_left, w.pad_left, w.kernel_size)
    else:
        _input_grad_first(problem, grad_outputs, kernel, grad_in)
    return grad_in


def _wide_input_grad(problem, kernel, kh_t):
    """The transposed problem of the wide channels_last input gradient (``m = 1``), or None where it does not run.

    (The transposed forward reads the output gradient's zero padding times the weights: finite ones only, as
    channels_first's correlation.)
    """
    transposed = conv2d_wide.transposed_forward(problem)
    if transposed is not None and conv2d_wide.fits(transposed, kh_t) and np.isfinite(kernel).all():
        return transposed
    return None


def _correlation_entries(problem):
    """``(plane_fn, adds_fn)`` of the channels_first unit-stride input gradient.

    An output-gradient plane's correlation written, and added (:mod:`numba_dwconv.cpu.conv2d_first_entries`).
    """
    return conv2d_first_entries.plane_entry(problem, True), conv2d_first_entries.plane_adds_entry(problem)


def _input_grad_first(problem, grad_outputs, kernel, grad_in):
    """channels_first input gradient: correlation (unit strides), tap classes (column stride 2), else tap by tap.

    Large kernels with unit strides and m = 1 take the wide kernel on the planes
    (:func:`conv2d_wide.planes_transposed`).

    The first two read the output gradient's zero padding times the weights; a
    non-finite weight takes the tap-by-tap path over the real output columns
    only, so inf/NaN reach exactly the inputs the reference gives them to.
    """
    h, w = problem.height, problem.width
    top = (h.kernel_size - 1) * h.dilation - h.pad_left  # the output gradient's padding in the correlation
    left = (w.kernel_size - 1) * w.dilation - w.pad_left
    finite = np.isfinite(kernel).all()
    transposed = conv2d_wide.planes_transposed(problem) if finite and _large_first(problem) else None
    if transposed is not None:
        conv2d_wide.input_grad(transposed, grad_outputs, kernel, grad_in)
    elif h.stride == 1 and w.stride == 1 and top >= 0 and left >= 0 and finite:
        phases = _phases(h.length, w.length, h.kernel_size, w.kernel_size, 1, 1, h.dilation, w.dilation)
        flipped = np.ascontiguousarray(kernel[::-1, ::-1]).reshape(-1)
        launch(_input_grad_unit_first, grad_outputs.reshape(-1), flipped, grad_in.reshape(-1), phases.offsets,
               problem.batch, problem.channels, problem.multiplier, h.length, w.length, h.out_length, w.out_length, top,
               left, phases.rows, phases.pitch, h.dilation, w.dilation, phases.taps,
               scratch(phases.rows * phases.pitch, problem.dtype), *_correlation_entries(problem))
    elif h.stride <= 2 and w.stride == 2 and finite:
        classes = _tap_classes(h, w)
        launch(_input_grad_stride2_first, grad_outputs.reshape(-1), kernel.reshape(-1), grad_in.reshape(-1),
               classes.offsets, classes.weight_index, classes.starts, problem.batch, problem.channels,
               problem.multiplier, h.length, w.length, h.out_length, w.out_length, h.stride, h.pad_left, w.pad_left,
               classes.pad_h, classes.pad_w, classes.rows, classes.pitch, classes.taps,
               scratch(classes.rows * classes.pitch, problem.dtype),
               conv2d_first_entries.stride2_entry(problem, tuple(classes.taps.tolist())))
    else:
        args, phases = _first_args(problem)
        launch(_input_grad_strided_first, grad_outputs.reshape(-1), kernel.reshape(-1), grad_in.reshape(-1), *args,
               not finite, phases.taps, _phase_scratch(problem, phases), _pitched_scratch(problem, phases))


def conv2d_kernel_grad(problem, grad_outputs, inputs):
    """Kernel and bias gradients: per-task partials, then a fixed-order sum."""
    rep, kernel_shape = 1, problem.kernel_shape
    if problem.channels_last and problem.multiplier > 1:  # as m = 1 over C*m channels, see _repeat_args
        rep, problem = problem.multiplier, single_multiplier(problem)
    dtype = problem.dtype
    out_channels = problem.channels * problem.multiplier
    kh, kw = problem.height.kernel_size, problem.width.kernel_size
    if problem.channels_last:
        h, w = problem.height, problem.width
        rows_per_task, n_tasks = _kernel_grad_tasks(problem)
        kernel_partials = np.empty((n_tasks, kh, kw, out_channels), dtype)
        bias_partials = np.empty((n_tasks, out_channels), dtype)
        if n_tasks and conv2d_wide.kernel_grad_fits(problem):
            conv2d_wide.kernel_grad(problem, rep, grad_outputs, inputs, kernel_partials, bias_partials, rows_per_task)
        elif n_tasks:
            kg_rows_buf, held, rep = _repeat_args(problem, rep)
            launch(_grads_last, grad_outputs.reshape(-1), inputs.reshape(-1), None, None, None,
                   kernel_partials.reshape(-1), bias_partials.reshape(-1), *_last_dims(problem), _multiplier_t(problem),
                   h.out_length, w.out_length, kh, h.stride, w.stride, h.dilation, w.dilation, h.pad_left, w.pad_left,
                   w.kernel_size, rows_per_task, _strided(w), rep, None, None, kg_rows_buf, held,
                   *_grad3_args(problem, rep), None, None, _grad_row_entry(problem))
    elif _large_first(problem) and problem.multiplier == 1 and conv2d_wide.kernel_grad_fits(last := problem._replace(
            channels_last=True)):  # the wide kernel on transposed copies (channels_first: one pass per tap)
        return conv2d_kernel_grad(last, swap_layout(grad_outputs, True), swap_layout(inputs, True))
    else:
        kernel_partials = np.empty((problem.batch, *problem.kernel_shape), dtype)
        bias_partials = np.empty((problem.batch, out_channels), dtype)
        if problem.batch:
            args, phases = _first_args(problem)
            launch(_kernel_grad_first, grad_outputs.reshape(-1), inputs.reshape(-1), kernel_partials.reshape(-1),
                   bias_partials.reshape(-1), *args, phases.taps, _phase_scratch(problem, phases),
                   _pitched_scratch(problem, phases))
    grad_kernel, grad_bias = _summed_partials(problem, kernel_partials, bias_partials)
    return grad_kernel.reshape(kernel_shape), grad_bias


def _kernel_grad_tasks(problem):
    """``(rows_per_task, n_tasks)`` of the channels_last kernel gradient: ~KERNEL_GRAD_TASKS chunks of output rows."""
    per_entry = max(1, math.ceil(KERNEL_GRAD_TASKS / max(problem.batch, 1)))
    rows_per_task = max(1, math.ceil(problem.height.out_length / per_entry))
    return rows_per_task, problem.batch * math.ceil(problem.height.out_length / rows_per_task)


def _grad3_args(problem, rep: int):
    """``(consts, lanes_t, in_registers)`` of the channels_last kernel gradient (see its kernel).

    ``consts`` is an array for every kernel of compile-time sizes (the kernel compiles once for all of them:
    whether a problem fits, a 3x3 one by its channels, is a run-time flag), else None.
    """
    consts = conv2d_wide.zeros_and_ones(problem.dtype) if _static_last(problem) else None
    return consts, lanes_of(problem.dtype), int(rep == 1 and conv2d_last_kgrad.fits(problem))


def _summed_partials(problem, kernel_partials, bias_partials):
    """``(grad_kernel, grad_bias)``: the per-task partials summed over their first axis, in index order."""
    grad_kernel = np.empty(problem.kernel_shape, problem.dtype)
    grad_bias = np.empty(problem.channels * problem.multiplier, problem.dtype)
    launch(sum_partials, kernel_partials.reshape(-1), kernel_partials.shape[0], grad_kernel.reshape(-1))
    launch(sum_partials, bias_partials.reshape(-1), bias_partials.shape[0], grad_bias)
    return grad_kernel, grad_bias


def conv2d_backward(problem, grad_outputs, kernel, inputs):
    """``(grad_inputs, grad_kernel, grad_bias)``: one pass for unit strides (channels_first: 'same'), else two."""
    h, w = problem.height, problem.width
    if problem.channels_last:
        grads = _backward_last_one_pass(problem, grad_outputs, kernel, inputs)
        if grads is None:
            grads = (conv2d_input_grad(problem, grad_outputs, kernel),
                     *conv2d_kernel_grad(problem, grad_outputs, inputs))
        return grads
    fused = (h.stride == 1 and w.stride == 1 and h.out_length == h.length
             and w.out_length == w.length and problem.batch > 0 and problem.channels > 0
             and np.isfinite(kernel).all()
             and not (_large_first(problem) and conv2d_wide.planes_transposed(problem) is not None))
    if not fused:
        return (conv2d_input_grad(problem, grad_outputs, kernel), *conv2d_kernel_grad(problem, grad_outputs, inputs))
    dtype = problem.dtype
    out_channels = problem.channels * problem.multiplier
    phases = _phases(h.length, w.length, h.kernel_size, w.kernel_size, 1, 1, h.dilation, w.dilation)
    grad_in = _memory.empty(problem.input_shape, dtype)
    kernel_partials = np.empty((problem.batch, *problem.kernel_shape), dtype)
    bias_partials = np.empty((problem.batch, out_channels), dtype)
    flipped = np.ascontiguousarray(kernel[::-1, ::-1]).reshape(-1)
    launch(_backward_same_unit_first, grad_outputs.reshape(-1), inputs.reshape(-1), flipped, grad_in.reshape(-1),
           kernel_partials.reshape(-1), bias_partials.reshape(-1), phases.offsets, problem.batch, problem.channels,
           problem.multiplier, h.length, w.length, h.pad_left, w.pad_left, phases.rows, phases.pitch, h.dilation,
           w.dilation, phases.taps, scratch(phases.rows * phases.pitch, dtype),
           scratch(phases.rows * phases.pitch, dtype), *_correlation_entries(problem))
    return (grad_in, *_summed_partials(problem, kernel_partials, bias_partials))


def _backward_last_one_pass(problem, grad_outputs, kernel, inputs):
    """The channels_last gradients in one pass (:mod:`numba_dwconv.cpu.conv2d_last_grads`), or None.

    Unit strides and column dilation, ``m = 1``, and neither gradient taking the wide kernels; the results
    are those of :func:`conv2d_input_grad` and :func:`conv2d_kernel_grad` (the same rows, bit for bit).
    """
    h, w = problem.height, problem.width
    if (problem.multiplier != 1 or h.stride != 1 or w.stride != 1 or w.dilation != 1
            or min(problem.batch, problem.channels, h.length, w.length, h.out_length, w.out_length) == 0
            or conv2d_wide.kernel_grad_fits(problem)):
        return None
    kh_t, chunks = _all_taps_plan(problem, grad_outputs)
    if _wide_input_grad(problem, kernel, kh_t) is not None:
        return None
    rows_per_task, n_tasks = _kernel_grad_tasks(problem)
    grad_in = _memory.empty(problem.input_shape, problem.dtype)
    kernel_partials = np.empty((n_tasks, *problem.kernel_shape), problem.dtype)
    bias_partials = np.empty((n_tasks, problem.channels), problem.dtype)
    flipped = _memory.aligned(kernel[::-1, ::-1]).reshape(-1)
    zeros = np.zeros(problem.channels, problem.dtype)
    launch(_grads_last, grad_outputs.reshape(-1), inputs.reshape(-1), flipped, zeros, grad_in.reshape(-1),
           kernel_partials.reshape(-1), bias_partials.reshape(-1), *_last_dims(problem), (0,),
           h.out_length, w.out_length, h.kernel_size, 1, 1, h.dilation, 1, h.pad_left, w.pad_left, w.kernel_size,
           rows_per_task, None, 1, None, chunks, None, None, *_grad3_args(problem, 1), *_size_entries(problem, kh_t),
           _grad_row_entry(problem))
    return (grad_in, *_summed_partials(problem, kernel_partials, bias_partials))
