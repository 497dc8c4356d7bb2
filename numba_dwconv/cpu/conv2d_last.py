"""2D depthwise kernels for channels_last ``(B, H, W, C)``: register-blocked passes along rows.

Used by the host functions of :mod:`numba_dwconv.cpu.conv2d` (which documents the
contract: tasks own rows, kernel-gradient partials are summed in a fixed order); the
gather input gradient and the kernel gradient are one kernel,
:mod:`numba_dwconv.cpu.conv2d_last_grads`, built from the passes here and in
:mod:`numba_dwconv.cpu.conv2d_last_kgrad`.

Every task works on one row of its output.  For each input row that a tap row
``i`` reaches, the columns whose taps all fall inside the row go four at a time
through a *block pass*: one loop over the channels (contiguous, vectorised) that
keeps four output columns in registers and applies the ``KW`` taps of row ``i``
to them, so each input vector loaded feeds up to ``KW`` multiply-adds and each
output vector is loaded and stored once per tap row.  Interior columns left over
after the blocks take the taps in one register (unit steps); the edge columns go
through *column passes*, one tap at a time with the padding clipped away (the passes:
:mod:`numba_dwconv.cpu.conv2d_last_passes`; a run-time ``KW``, above 16, goes through the block
passes eight taps at a time with unit steps).  With a
depth multiplier above 1 every column takes the column pass; the host avoids that by
running multipliers as ``m = 1`` problems on channel-repeated inputs
(:mod:`numba_dwconv.cpu.channels`), so these kernels see ``m = 1`` from the public API.

Three numba details make the block pass fast, and the code depends on them:

* ``KW`` is a compile-time constant of the block passes (``len(kw_t)``), so LLVM unrolls
  the tap loop and the channel loop is innermost.  The loops that need it (the block
  passes along a tap row, the all-taps blocks) are compiled per size as entries
  (:mod:`numba_dwconv.cpu.conv2d_last_entries`) that the kernels call by address, so
  the kernels themselves compile once for every size.  The depth multiplier is a
  compile-time count too (``mult_t``): with ``m`` a run-time value the same loops
  measured 15-25 % slower in cache for ``m == 1``.
* Arrays arrive flattened and are indexed with unsigned integers: numba adds a
  negative-index fix-up to every signed index, which stops vectorisation.
* The kernels' and the entries' array arguments are ``noalias`` (see
  :func:`numba_dwconv._jit.parallel_kernel`), without which LLVM needs more run-time overlap
  checks than it will emit and leaves the loop scalar (measured 3 vs 40 GFMA/s).
  Nor is a boolean variable assigned from ``a and b``: numba's alias analysis
  counts the variables merged by the short-circuit as possible aliases and drops
  ``noalias`` for the whole loop (measured: forward 1.4-1.8x slower).  Conditions
  written inside ``if``/``while`` tests are fine.
"""

from __future__ import annotations

from numba import uint64

from .._entries import call_entry
from .._jit import chunk_tasks, first_chunk, next_chunk, parallel_kernel, serial_kernel, task_share, trip_count
from .channels import repeat_rows
from .conv2d_last_passes import (
    _block_pass,
    _column_pass,
    _column_scatter,
    _unit_block_pass,
    _unit_block_taps_runtime,
    _unit_column_pass,
)
from .fused import apply_activation
from .nontemporal import stream_rows

# Consecutive output rows of a task range that take the all-taps blocks in one call: up to ROWS_PER_CALL of
# at most ROWS_PER_CALL_BYTES together (a call's set-up costs 70-95 ns, 3-5 % of a row at B16 56x56 C128
# 3x3 called row by row; the streamed forward computes those rows in its per-part buffer, whose rows should
# stay in L2: 4 rows of 57 KB made B8 28x28 C512 5x5 5 % slower).
ROWS_PER_CALL = 4
ROWS_PER_CALL_BYTES = 64 * 1024
# Output columns a block pass keeps in registers (four accumulators plus a tap
# and an input vector fit the 16 AVX2 registers).
BLOCK = 4


@serial_kernel
def _valid_range(offset, stride, length, out_length):
    """Output positions ``o`` in ``[lo, hi)`` whose input position ``o * stride + offset`` lies in ``[0, length)``."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (length - offset + stride - 1) // stride if length > offset else 0
    return lo, max(lo, min(hi, out_length))


@serial_kernel
def _block_columns(kw, static, sw, dw, left, width, out_w, mult):
    """Output columns ``[lo, hi)`` that go through block passes: those whose every tap reads inside a row of ``width``.

    An empty range when ``mult != 1``, or when ``KW`` is a run-time count (``static`` False: large
    kernels) with a column stride or dilation: the block passes keep their taps in an unrolled inner
    loop, which only a compile-time count makes fast (a run-time ``KW`` with unit steps goes eight
    taps at a time, :func:`_unit_interior_runtime`; its range holds whole blocks only).  The column passes
    put the channel loop innermost (vectorised) for any ``KW``.  The same for every row, so kernels
    compute it once, outside their parallel loop (it costs integer divisions).
    """
    if mult != 1:
        return 0, 0
    if not static:
        if sw != 1 or dw != 1:
            return 0, 0
    lo, _ = _valid_range(-left, sw, width, out_w)
    _, hi = _valid_range((kw - 1) * dw - left, sw, width, out_w)
    hi = max(lo, hi)
    if not static:
        hi = lo + (hi - lo) // BLOCK * BLOCK
    return lo, hi


@serial_kernel
def _edge_columns(src, taps, dst, s_row, t0, d_row, width, out_w, channels, mult, sw, dw, left, lo, ow, kw, done_lo,
                  done_hi):
    """The columns outside the block range ``[lo, ow)`` and ``[done_lo, done_hi)``: column passes, taps clipped."""
    n_out = uint64(channels * mult)
    col = 0
    while col < out_w:  # (jumping over the two ranges: a row of small channel counts costs little else)
        if lo <= col < ow:
            col = ow
        elif done_lo <= col < done_hi:
            col = done_hi
        else:
            col0 = col * sw - left
            k_lo, k_hi = _valid_range(col0, dw, width, kw)  # taps whose column is in the row
            _column_pass(src, taps, dst, s_row, col0, t0, d_row + uint64(col) * n_out, channels, k_lo, k_hi, dw,
                         mult)
            col += 1


@serial_kernel
def _interior_end(lo, hi, strided):
    """Where a tap row's interior ``[lo, hi)`` stops (the edge columns' passes take the rest).

    Unit steps (``strided`` None): at ``hi`` (blocks of four, then single columns); any step: after the last
    block of four.  A run-time ``KW`` rounds ``hi`` to whole blocks (:func:`_block_columns`): the same.
    """
    if strided is None:
        return max(lo, hi)
    return _blocks_end(lo, hi)


@serial_kernel
def _blocks_end(lo, hi):
    """``lo`` plus the whole blocks of four columns in ``[lo, hi)``."""
    return lo + max(0, hi - lo) // BLOCK * BLOCK


@serial_kernel
def _strided_interior(src, taps, dst, s_row, t0, d_row, n_out, sw, dw, left, lo, hi, kw_t):
    """One tap row's block columns, any column step, compile-time ``KW``, four at a time.

    ``dst[ow] += sum_k src[ow*sw + k*dw - left] * taps[k]`` for ``ow`` in ``[lo, _blocks_end(lo, hi))``.
    """
    ow = lo
    while ow + BLOCK <= hi:
        _block_pass(src, taps, dst, s_row + uint64(ow * sw - left) * n_out, t0, d_row + uint64(ow) * n_out, n_out, sw,
                    dw, kw_t)
        ow += BLOCK


@serial_kernel
def _unit_interior(src, taps, dst, s_row, t0, d_row, n_out, left, lo, hi, kw_t):
    """:func:`_strided_interior` with unit column steps, over all of ``[lo, hi)``.

    Input windows slide along the taps in the blocks; the columns left over take the taps in one register each.
    """
    ow = lo
    while ow + BLOCK <= hi:
        _unit_block_pass(src, taps, dst, s_row + uint64(ow - left) * n_out, t0, d_row + uint64(ow) * n_out, n_out,
                         kw_t)
        ow += BLOCK
    while ow < hi:
        _unit_column_pass(src, taps, dst, s_row + uint64(ow - left) * n_out, t0, d_row + uint64(ow) * n_out, n_out,
                          kw_t)
        ow += 1


@serial_kernel
def _unit_interior_runtime(src, taps, dst, s_row, t0, d_row, n_out, left, lo, hi, kw):
    """:func:`_unit_interior` for a run-time ``KW`` (whole blocks only): the block passes eight taps at a time."""
    for ow in range(lo, hi, BLOCK):
        _unit_block_taps_runtime(src, taps, dst, s_row + uint64(ow - left) * n_out, t0, d_row + uint64(ow) * n_out,
                                 n_out, kw)


@serial_kernel
def _blocks(ow_lo, ow_hi, ow_end):
    """``(count, whole)``: the blocks of four that cover ``[ow_lo, ow_end)``.

    ``whole`` of them in ``[ow_lo, ow_hi)``, then one more ending at ``ow_end`` when columns remain (it overlaps the
    one before: those columns are computed again, the same way).  The callers give at least one whole block.
    (Taking the last columns one at a time, or in the tap-row passes at column steps, cost 3-7 % of the 2D
    forwards: 1.04-1.07x, measured.)
    """
    whole = (ow_hi - ow_lo) // BLOCK
    return whole + (1 if ow_end > ow_lo + whole * BLOCK else 0), whole


@serial_kernel
def _block_start(q, whole, ow_lo, ow_end):
    """The first column of block ``q`` of :func:`_blocks`."""
    return ow_lo + q * BLOCK if q < whole else ow_end - BLOCK


@serial_kernel
def _all_taps(src, taps, bias, dst, s_top, d_row, ow_lo, ow_hi, ow_end, n, row_step, left, chunks, kw_t, kh_t):
    """Output columns ``[ow_lo, ow_end)`` complete: ``bias + sum_{i,k} src[...] * taps[i, k]``.

    In blocks of four (:func:`_blocks`: the last may overlap the one before), taps in the same order as the
    tap-row passes': the same bits as theirs.

    Unit column stride and dilation, every tap inside the rows; ``s_top``: the first tap row, ``row_step``:
    elements from one tap row to the next.  Four outputs stay in registers over all ``KH x KW`` taps (both
    compile-time counts, the loops unrolled): each output vector is stored once, each input vector of a
    tap row loaded once per block (measured B16 112x112 C32 3x3: 2.25 -> 1.0 ms for the interior).
    ``chunks``: ``[lo, hi)`` channel ranges, flat pairs covering ``[0, n)``, taken one after another
    (a block's rows stay in L1; they may overlap: each output is computed whole, so twice is harmless).
    """
    count, whole = _blocks(ow_lo, ow_hi, ow_end)
    for j in range(0, chunks.shape[0], 2):
        c_lo, c_hi = chunks[j], chunks[j + 1]
        for q in range(count):
            ow = _block_start(q, whole, ow_lo, ow_end)
            s0 = s_top + uint64(ow - left) * n
            d0 = d_row + uint64(ow) * n
            d1, d2, d3 = d0 + n, d0 + uint64(2) * n, d0 + uint64(3) * n
            for c in range(c_lo, c_hi):
                a0 = bias[c]
                a1 = a0
                a2 = a0
                a3 = a0
                for i in range(len(kh_t)):
                    s = s0 + uint64(i) * row_step + c
                    t = uint64(i * len(kw_t)) * n + c
                    v0, v1, v2 = src[s], src[s + n], src[s + uint64(2) * n]
                    for k in range(len(kw_t)):
                        v3 = src[s + uint64(k + 3) * n]
                        w = taps[t + uint64(k) * n]
                        a0 += v0 * w
                        a1 += v1 * w
                        a2 += v2 * w
                        a3 += v3 * w
                        v0, v1, v2 = v1, v2, v3
                dst[d0 + c] = a0
                dst[d1 + c] = a1
                dst[d2 + c] = a2
                dst[d3 + c] = a3


@serial_kernel
def _column_all_taps(src, taps, bias, dst, s0, d0, t0, n, row_step, t_row, k_step, kw_t, kh_t):
    """``dst[d0 + c] = bias[c] + sum_{i,k} src[s0 + i*row_step + k*k_step + c] * taps[t0 + i*t_row + k*n + c]``.

    One output column over ``KH x KW'`` taps (compile-time counts), the sum in one register: an edge column
    of the rows whose tap rows are all inside, its taps clipped to those inside the row (``s0``: the input
    column of the first, ``k_step``: from one tap's column to the next, ``t0``: its tap column, ``t_row``: a tap
    row's length).  The multiply-adds of the tap-row passes in their order (the bias, then the taps row by row).
    """
    for c in range(n):
        a = bias[c]
        for i in range(len(kh_t)):
            for k in range(len(kw_t)):
                a += (src[s0 + uint64(i) * row_step + uint64(k) * k_step + c]
                      * taps[t0 + uint64(i) * t_row + uint64(k) * n + c])
        dst[d0 + c] = a


@serial_kernel
def _all_taps_strided(src, taps, bias, dst, s_top, d_row, ow_lo, ow_hi, ow_end, n, row_step, left, chunks, sw, dw,
                      kw_t, kh_t):
    """:func:`_all_taps` for any column stride ``sw`` and dilation ``dw``: each input vector loaded per tap.

    The same multiply-adds in the same order as the tap-row passes (bias, then the taps row by row), in
    registers: the input rows of a block are read together and the output row is written once (the passes
    read and write it once per tap row).
    """
    step = uint64(sw) * n
    count, whole = _blocks(ow_lo, ow_hi, ow_end)
    for j in range(0, chunks.shape[0], 2):
        c_lo, c_hi = chunks[j], chunks[j + 1]
        for q in range(count):
            ow = _block_start(q, whole, ow_lo, ow_end)
            s0 = s_top + uint64(ow * sw - left) * n
            d0 = d_row + uint64(ow) * n
            d1, d2, d3 = d0 + n, d0 + uint64(2) * n, d0 + uint64(3) * n
            for c in range(c_lo, c_hi):
                a0 = bias[c]
                a1 = a0
                a2 = a0
                a3 = a0
                for i in range(len(kh_t)):
                    t = uint64(i * len(kw_t)) * n + c
                    for k in range(len(kw_t)):
                        s = s0 + uint64(i) * row_step + uint64(k * dw) * n + c
                        w = taps[t + uint64(k) * n]
                        a0 += src[s] * w
                        a1 += src[s + step] * w
                        a2 += src[s + uint64(2) * step] * w
                        a3 += src[s + uint64(3) * step] * w
                dst[d0 + c] = a0
                dst[d1 + c] = a1
                dst[d2 + c] = a2
                dst[d3 + c] = a3


@serial_kernel
def _all_taps_stride2_width3(src, taps, bias, dst, s_top, d_row, ow_lo, ow_hi, ow_end, n, row_step, left, chunks,
                             kh_t):
    """:func:`_all_taps_strided` for column stride 2, dilation 1 and ``KW = 3`` (MobileNet's downsampling).

    Four outputs read nine input columns per tap row: each is loaded once, not once per tap that reads it
    (27 loads for 36 multiply-adds at 3x3, against 36), the sums in the same order (the same bits).
    """
    count, whole = _blocks(ow_lo, ow_hi, ow_end)
    for j in range(0, chunks.shape[0], 2):
        c_lo, c_hi = chunks[j], chunks[j + 1]
        for q in range(count):
            ow = _block_start(q, whole, ow_lo, ow_end)
            s0 = s_top + uint64(2 * ow - left) * n
            d0 = d_row + uint64(ow) * n
            d1, d2, d3 = d0 + n, d0 + uint64(2) * n, d0 + uint64(3) * n
            for c in range(c_lo, c_hi):
                a0 = bias[c]
                a1 = a0
                a2 = a0
                a3 = a0
                for i in range(len(kh_t)):
                    s = s0 + uint64(i) * row_step + c
                    t = uint64(3 * i) * n + c
                    w0, w1, w2 = taps[t], taps[t + n], taps[t + uint64(2) * n]
                    v0, v1, v2 = src[s], src[s + n], src[s + uint64(2) * n]
                    v3, v4, v5 = src[s + uint64(3) * n], src[s + uint64(4) * n], src[s + uint64(5) * n]
                    v6, v7, v8 = src[s + uint64(6) * n], src[s + uint64(7) * n], src[s + uint64(8) * n]
                    a0 += v0 * w0
                    a1 += v2 * w0
                    a2 += v4 * w0
                    a3 += v6 * w0
                    a0 += v1 * w1
                    a1 += v3 * w1
                    a2 += v5 * w1
                    a3 += v7 * w1
                    a0 += v2 * w2
                    a1 += v4 * w2
                    a2 += v6 * w2
                    a3 += v8 * w2
                dst[d0 + c] = a0
                dst[d1 + c] = a1
                dst[d2 + c] = a2
                dst[d3 + c] = a3


@serial_kernel
def _fill_row_outside(dst, d_row, columns, n, done_lo, done_hi, values):
    """``dst[d_row + col*n + c] = values[c]`` for the ``columns`` of a row outside ``[done_lo, done_hi)``.

    The row's start before the passes add to it (the bias, or zeros); the done columns hold complete
    all-taps results and are jumped over, not tested one by one.
    """
    col = 0
    while col < columns:
        if done_lo <= col < done_hi:
            col = done_hi
        else:
            for c in range(uint64(n)):
                dst[d_row + uint64(col) * uint64(n) + c] = values[c]
            col += 1


@serial_kernel
def _part_rows(rows_buf, held, part):
    """``(rows, slots)``: this part's row buffer and slot count, every slot marked as holding no row yet."""
    for q in range(held.shape[1]):
        held[part, q] = -1
    return rows_buf[part], held.shape[1]


@serial_kernel
def _repeated_row(x, buf, held, key, slot, x_row, width, channels, mult, pad_l=0, pad_r=0):
    """The offset in ``buf`` of input row ``key`` (``x[x_row:]``, width x channels), channels repeated ``mult`` times.

    Copied into ``buf``'s row ``slot`` unless that row already holds it (``held[slot] == key``), after
    ``pad_l`` columns of zeros and before ``pad_r`` (rows of ``pad_l + width + pad_r`` columns).
    """
    cols = uint64(channels * mult)
    row_len = uint64(pad_l + width + pad_r) * cols
    d = uint64(slot) * row_len
    if held[slot] != key:
        body = d + uint64(pad_l) * cols
        end = body + uint64(width) * cols
        for p in range(d, body):
            buf[p] = 0.0
        repeat_rows(buf[body:end].reshape((width, channels * mult)),
                    x[x_row:x_row + uint64(width * channels)].reshape((width, channels)), mult)
        for p in range(end, d + row_len):
            buf[p] = 0.0
        held[slot] = key
    return d


@serial_kernel
def _edge_columns_all_taps(entries, src, taps, bias, dst, s_top, d_row, all_lo, all_end, out_w, n, row_step, sw, dw,
                           left, width, kw, chunks, rows, s_step, d_step):
    """The columns outside ``[all_lo, all_end)`` of ``rows`` all-taps rows, each over the taps inside its row.

    ``entries``: the forward's part entries, whose second half holds the edge columns by tap count
    (:func:`numba_dwconv.cpu.conv2d.part_entries`, which made sure that every edge column's count has one).
    The tap-row passes read and wrote each edge column once per tap row: 4 of 28 columns at 5x5.
    """
    half = len(entries) // 2
    for side in range(2):
        lo, hi = (0, all_lo) if side == 0 else (all_end, out_w)
        for col in range(lo, hi):
            k_lo, k_hi = _valid_range(col * sw - left, dw, width, kw)
            call_entry(entries[half + k_hi - k_lo], (src, taps, bias, dst, s_top, d_row, col, k_lo, kw, n, row_step,
                                                     left, chunks, sw, dw, rows, s_step, d_step))


@parallel_kernel
def _forward_last(part, parts, x, taps, bias, out, batch, height, width, channels, mult_t, out_h, out_w, kh, sh, sw,
                  dh, dw, top, left, kw, act, grad, rows_buf, held, rep, pad_l, pad_r, strided, chunks, stream_buf,
                  shift, lanes_t, rows_fn, all_fn, part_fns, rows_per_call, claims):
    """One task per output row ``(b, oh)``: the bias, then one pass along the row per tap row in range.

    ``act`` and ``grad`` (flat like ``out``): see :mod:`numba_dwconv.cpu.fused` (applied to each row).
    ``strided``: None for unit column steps (stride and dilation 1), else any int (the passes for any step).

    Arrays are flat: ``x`` (B*H*W*C), ``taps`` (KH*KW*C*m), ``bias`` (C*m), ``out`` (B*out_h*out_w*C*m).
    A depth multiplier ``rep`` > 1 runs as ``m = 1`` over ``channels`` = C*rep: ``x`` then has C = channels //
    rep channels, and the input rows a task reads are repeated into its part's ``rows_buf[part]`` (one row
    per slot ``ih % slots``, ``held[part]`` says which row each slot holds, kept for the next row's task);
    ``rows_buf`` and ``held`` are None when ``rep`` is 1 and the rows are not padded.  Rows copied there get
    ``pad_l`` and ``pad_r`` columns of zeros (wide kernels with unit column steps: every output column
    then takes the block passes; read in place, the clipped edge columns took column passes).

    ``rows_fn``: None for a run-time ``KW`` (the passes here, with run-time counts), else the passes for its
    ``KW`` (:func:`numba_dwconv.cpu.conv2d_last_entries.row_entry`).  ``all_fn``: None, or (small kernels,
    ``m = 1``) the all-taps blocks for its ``KH x KW`` (:func:`_all_taps`), which the interior blocks of
    the rows whose tap rows are all inside take; the rest goes tap row by tap row.  ``part_fns``: None with
    ``all_fn`` None, else ``(entries, row_limit, column_limit)`` (:func:`numba_dwconv.cpu.conv2d.part_entries`):
    the all-taps blocks by count of tap rows, which the rows with some but fewer than ``row_limit`` tap rows
    inside (the first and last of a 'same' padding) take for those, and, when ``column_limit`` is not 0, the
    edge columns of the other rows.
    ``stream_buf``, ``shift``, ``lanes_t``: :func:`numba_dwconv.cpu.nontemporal.stream_args` (two output rows
    per part): each row is computed there, activated, and streamed out (large outputs).  Up to
    ``rows_per_call`` consecutive rows of a part that all take the all-taps blocks take them in one call (the
    stream buffer holds as many rows).  ``claims``: the launch's chunks of rows (:func:`numba_dwconv._jit.task_claims`),
    which the parts take from each other at the end (:func:`numba_dwconv._jit.next_chunk`).
    """
    mult = trip_count(mult_t)
    n_out = channels * mult
    row_size = uint64(width * channels)
    width_s, left_s = width, left  # the rows the passes read: in place, or copied with the padding
    if rows_buf is not None:
        width_s, left_s = width + pad_l + pad_r, left - pad_l
    lo, hi = _block_columns(kw, rows_fn is not None, sw, dw, left_s, width_s, out_w, mult)
    all_lo, all_hi, all_end = lo, lo, lo
    if all_fn is not None:
        if mult == 1:  # (any column step: the unit kernels' blocks slide a window, the strided kernels' do not)
            all_hi = lo + (hi - lo) // BLOCK * BLOCK
            all_end = max(all_hi, hi)  # (the last columns too: see _blocks)
    src = x
    slots = 1
    if rows_buf is not None:
        src, slots = _part_rows(rows_buf, held, part)
    dst = out if stream_buf is None else stream_buf[part]
    row_len = uint64(out_w * n_out)
    edges_fit = False  # (the edge columns of the all-taps rows by the part entries: see part_fns)
    if all_fn is not None:
        edges_fit = part_fns[2] > 0
    chunk, own = first_chunk(claims, part, parts)
    while True:
        chunk, own = next_chunk(claims, chunk, own, part, parts)
        if chunk < 0:
            break
        tasks_lo, tasks_hi = chunk_tasks(claims, chunk, batch * out_h)
        task = tasks_lo
        while task < tasks_hi:
            b = task // out_h
            oh = task - b * out_h
            rows = 1
            inside = False
            edges_done = False  # (the edge columns of the rows too: every column done)
            if all_fn is not None:  # (pruned while compiling the kernel for run-time sizes)
                if rows_buf is None:  # (pruned while compiling the depth-multiplier kernel, which reads repeated rows)
                    ih0 = oh * sh - top
                    if all_hi > all_lo and ih0 >= 0 and ih0 + (kh - 1) * dh < height:  # every tap row inside
                        inside = True
                        while (rows < rows_per_call and task + rows < tasks_hi and oh + rows < out_h
                               and ih0 + rows * sh + (kh - 1) * dh < height):
                            rows += 1  # (the next rows' too, in the same call: see _unit_all_taps)
                        call_entry(all_fn, (src, taps, bias, dst, uint64(b * height + ih0) * row_size,
                                            uint64(task) * row_len if stream_buf is None else uint64(0), all_lo, all_hi,
                                            all_end, uint64(n_out), uint64(dh) * row_size, left, chunks, sw, dw, rows,
                                            uint64(sh) * row_size, row_len))
                        if edges_fit:
                            edges_done = True
                            _edge_columns_all_taps(
                                part_fns[0], src, taps, bias, dst, uint64(b * height + ih0) * row_size,
                                uint64(task) * row_len if stream_buf is None else uint64(0), all_lo, all_end, out_w,
                                uint64(n_out), uint64(dh) * row_size, sw, dw, left, width, kw, chunks, rows,
                                uint64(sh) * row_size, row_len)
                    elif all_hi > all_lo:  # (some tap rows inside: the blocks of that many, from the first inside)
                        i_lo, i_hi = _valid_range(ih0, dh, height, kh)
                        if 0 < i_hi - i_lo < part_fns[1]:
                            inside = True
                            call_entry(part_fns[0][i_hi - i_lo], (
                                src, taps[uint64(i_lo * kw) * uint64(n_out):], bias, dst,
                                uint64(b * height + ih0 + i_lo * dh) * row_size,
                                uint64(task) * row_len if stream_buf is None else uint64(0), all_lo, all_hi, all_end,
                                uint64(n_out), uint64(dh) * row_size, left, chunks, sw, dw, 1, uint64(sh) * row_size,
                                row_len))
            for q in range(rows):  # each row's edge columns (or all its columns), activation, stream
                out_row = uint64(task + q) * row_len
                d_row = out_row if stream_buf is None else uint64(q) * row_len
                done_lo, done_hi = 0, 0
                if inside:
                    done_lo, done_hi = (0, out_w) if edges_done else (all_lo, all_end)
                ih0 = (oh + q) * sh - top
                _fill_row_outside(dst, d_row, out_w, n_out, done_lo, done_hi, bias)
                for i in range(kh):
                    ih = ih0 + i * dh
                    if 0 <= ih < height:
                        s_row = uint64(b * height + ih) * row_size
                        if rows_buf is not None:
                            s_row = _repeated_row(x, src, held[part], b * height + ih, ih % slots,
                                                  uint64(b * height + ih) * uint64(width * (channels // rep)), width,
                                                  channels // rep, rep, pad_l, pad_r)
                        first = max(lo, done_hi)
                        t0 = uint64(i * kw * n_out)
                        end = first  # (columns from here on, outside the done ones, take the column passes)
                        if rows_fn is not None:  # (the other branch is pruned while compiling, and the other way round)
                            if first + BLOCK <= hi:  # (fewer than four columns, as after the all-taps blocks without
                                # their last columns: those go with the edges, not through a call)
                                call_entry(rows_fn, (src, taps, dst, s_row, t0, d_row, uint64(n_out), sw, dw, left_s,
                                                     first, hi))
                                end = _interior_end(first, hi, strided)
                        elif strided is None:  # (a run-time KW: blocks eight taps at a time; with a column step none)
                            _unit_interior_runtime(src, taps, dst, s_row, t0, d_row, uint64(n_out), left_s, first, hi,
                                                   kw)
                            end = _interior_end(first, hi, strided)
                        _edge_columns(src, taps, dst, s_row, t0, d_row, width_s, out_w, channels, mult, sw, dw, left_s,
                                      first, end, kw, done_lo, done_hi)
                apply_activation(dst[d_row:d_row + row_len], grad[out_row:out_row + row_len], act)
                if stream_buf is not None:
                    stream_rows(out, out_row, dst[d_row:d_row + row_len], row_len, shift, lanes_t)
            task += rows


@parallel_kernel
def _input_grad_scatter_last(part, parts, grad, taps, grad_in, batch, height, width, channels, mult_t, out_h, out_w, kh,
                             sh, sw, dh, dw, top, left, kw):
    """Any stride and multiplier: one task per input row, each output column's gradient scattered into it."""
    mult = trip_count(mult_t)
    n_out = channels * mult
    row_size = uint64(width * channels)
    tasks_lo, tasks_hi = task_share(batch * height, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // height
        ih = task - b * height
        d_row = uint64(task) * row_size
        for p in range(row_size):
            grad_in[d_row + p] = 0.0
        for i in range(kh):
            q = ih + top - i * dh
            if q >= 0 and q % sh == 0 and q // sh < out_h:
                g_row = uint64(b * out_h + q // sh) * uint64(out_w * n_out)
                for ow in range(out_w):
                    col0 = ow * sw - left
                    k_lo, k_hi = _valid_range(col0, dw, width, kw)  # taps whose column is in the row
                    _column_scatter(grad, taps, grad_in, g_row + uint64(ow * n_out), uint64(i * kw * n_out), d_row,
                                    col0, channels, k_lo, k_hi, dw, mult)
