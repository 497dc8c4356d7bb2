"""The 2D channels_last forward of wide kernels: eight outputs of a channel vector in registers over all taps.

Used where the tap rows would otherwise go one at a time (:mod:`numba_dwconv.cpu.conv2d_last`: each tap
row loads and stores the output row once more); the host side (when, the arguments) is
:mod:`numba_dwconv.cpu.conv2d_wide`.  Each task (one output row) keeps eight output columns of one
channel vector in registers over every tap, written as explicit vectors (:mod:`numba_dwconv._simd`):
with ``KH`` and ``KW`` run-time counts LLVM's loop vectoriser would vectorise the tap loop instead of
the channel loop.  So one compiled kernel serves every kernel size.

* The input rows a task reads are copied once per thread into its row buffer with the left and right
  padding as zeros (:func:`_chunked_row`; channels repeated for a depth multiplier), chunk major: one
  channel vector's columns are contiguous, so a block's window spreads over the cache's sets (row
  major, with 128 channels every access of a block fell into 8 of the 64 sets of L1).  Tap rows outside
  the input are skipped.
* Eight outputs per block: eight independent chains of multiply-adds keep both FMA units busy (four
  left them waiting on latency), and a window of eight input vectors slides along the taps (one input
  and one tap vector loaded per eight multiply-adds).  The last block of a row overlaps the one before
  when ``out_w`` is not a multiple of eight and stores only its new columns.
* With unit row steps, two output rows whose tap rows are all inside are summed together: each input row
  feeds both (sixteen sums in registers, one window vector loaded per sixteen multiply-adds), the same
  multiply-adds in the same order as one row at a time (7x7 forward 1.08-1.16x).
* The tap rows go in groups (``group``) whose rows and taps of one channel vector fit in L1; between
  groups the partial sums go through the output (stored and reloaded exactly, the same sums in the same
  order).

channels_first inputs and outputs (m = 1) run the same kernel: squares of a channel vector by a column
vector are transposed into the row buffer and out of each task's output row (16x16 values in 64 shuffles,
:func:`numba_dwconv._simd.vtranspose`); a task then is one output row of one chunk of channels, so that
consecutive tasks read and write the same few planes.

Measured against the tap-row passes, one thread, 'same', float32 (GFMA/s on the multiply-adds done):
56x56 C128 31x31 34-45 -> 58-65, 7x7 31-33 -> 35-44.  Requires a channel count (times the multiplier)
that is a multiple of the vector's lanes, unit column stride and dilation, ``out_w >= 8``.
"""

from __future__ import annotations

from numba import uint64

from .._jit import helper_kernel, parallel_kernel, scalar_kernel, serial_kernel, task_share, trip_count
from .._simd import vfma, vload, vload_rows, vstore, vstore_rows, vstore_rows_stream, vtranspose
from .conv2d_last import _part_rows
from .fused import apply_activation

BLOCK_WIDE = 8  # output columns per block
CHUNK_VECTORS = 1  # channel vectors per chunk


@serial_kernel
def _padded_part_rows(rows_buf, held, part, n, ch, wp, pad_l, width):
    """``(rows, slots)`` of :func:`numba_dwconv.cpu.conv2d_last._part_rows`, each row's padding columns zeroed.

    The padding columns ``[0, pad_l)`` and ``[pad_l + width, wp)`` of every chunk's row (see :func:`_chunked_row`)
    are never copied into, so they are zeroed once per launch.
    """
    src, slots = _part_rows(rows_buf, held, part)
    for plane in range(((n + ch - 1) // ch) * uint64(slots)):
        base = uint64(plane) * uint64(wp) * uint64(ch)
        for p in range(uint64(pad_l) * uint64(ch)):
            src[base + p] = 0.0
        for p in range(uint64(pad_l + width) * uint64(ch), uint64(wp) * uint64(ch)):
            src[base + p] = 0.0
    return src, slots


@serial_kernel
def transposed_squares(src, s0, s_pos, s_row, dst, d0, d_pos, d_row, count, stream, lanes_t):
    """``count`` positions of ``lanes`` rows moved transposed, a square of ``lanes`` x ``lanes`` values at a time.

    Position ``p`` of source row ``j`` is ``src[s0 + p*s_pos + j*s_row]``; it goes to ``dst[d0 + j*d_pos +
    p*d_row]`` (:func:`numba_dwconv._simd.vtranspose`).  ``count`` at least ``lanes``: the last square overlaps
    the one before (the same values again).  ``stream``: the squares that do not overlap go past the caches
    (:func:`numba_dwconv._simd.vstore_rows_stream`: ``dst`` rows then start lines there).
    """
    lanes = trip_count(lanes_t)
    p = 0
    while p < count:
        p0 = min(p, count - lanes)
        square = vtranspose(vload_rows(src, s0 + uint64(p0) * s_pos, s_row, lanes_t))
        if stream and p0 == p:
            vstore_rows_stream(dst, d0 + uint64(p0) * d_pos, d_row, square)
        else:
            vstore_rows(dst, d0 + uint64(p0) * d_pos, d_row, square)
        p = p0 + lanes


@serial_kernel
def _chunked_row(x, buf, held, b, ih, q_lo, q_count, height, width, c_in, rep, n, ch, slots, wp, pad_l, lanes_t,
                 planes):
    """Chunks ``[q_lo, q_lo + q_count)`` of input row ``ih`` of batch entry ``b`` into their slot of ``buf``.

    ``buf`` holds, per chunk ``q`` of ``ch`` channels, ``slots`` rows of ``wp`` columns of ``ch`` values (chunk
    major: the columns of one chunk are ``ch`` values apart, so a block's window spreads over the cache's
    sets); the row goes to slot ``ih % slots``, columns ``[pad_l, pad_l + width)``.  Nothing is copied if
    ``held`` says that slot holds the row (and chunks) already.  Channels are repeated ``rep`` times.
    ``planes`` None: ``x`` is channels_last (a row is width x c_in); else channels_first (``rep`` 1,
    ``width >= lanes``): squares of one vector of channels by one of columns are transposed on the way
    (:func:`numba_dwconv._simd.vtranspose`; the last square of a row overlaps the one before).
    """
    chunks = (n + ch - 1) // ch
    key = (b * (chunks // q_count) + q_lo // q_count) * height + ih
    slot = ih % slots
    if held[slot] == key:
        return
    if planes is not None:
        lanes = uint64(trip_count(lanes_t))
        plane_x = uint64(height * width)
        for q in range(q_lo, q_lo + q_count):
            d = (uint64(q * slots + slot) * uint64(wp) + uint64(pad_l)) * uint64(ch)
            for v in range(uint64(0), uint64(min(ch, n - q * ch)), lanes):
                s = (uint64(b * c_in + q * ch) + v) * plane_x + uint64(ih * width)
                transposed_squares(x, s, uint64(1), plane_x, buf, d + v, uint64(ch), uint64(ch), width, False, lanes_t)
        held[slot] = key
        return
    x_row = uint64(b * height + ih) * uint64(width * c_in)
    for q in range(q_lo, q_lo + q_count):
        c_lo = q * ch
        count = min(ch, n - c_lo)
        d = (uint64(q * slots + slot) * uint64(wp) + uint64(pad_l)) * uint64(ch)
        if rep == 1:
            for col in range(uint64(width)):
                s = x_row + col * uint64(c_in) + uint64(c_lo)
                for j in range(uint64(count)):
                    buf[d + col * uint64(ch) + j] = x[s + j]
        else:
            for col in range(uint64(width)):
                s = x_row + col * uint64(c_in)
                for j in range(uint64(count)):
                    buf[d + col * uint64(ch) + j] = x[s + (uint64(c_lo) + j) // uint64(rep)]
    held[slot] = key


@serial_kernel
def _window7(win, s, win_step, lanes_t):
    """The first seven vectors ``win[s + j*win_step :]`` of a sliding window of eight (:func:`sliding_sums8`)."""
    return (vload(win, s, lanes_t), vload(win, s + win_step, lanes_t), vload(win, s + uint64(2) * win_step, lanes_t),
            vload(win, s + uint64(3) * win_step, lanes_t), vload(win, s + uint64(4) * win_step, lanes_t),
            vload(win, s + uint64(5) * win_step, lanes_t), vload(win, s + uint64(6) * win_step, lanes_t))


@scalar_kernel
def _fma8(w, v0, v1, v2, v3, v4, v5, v6, v7, a0, a1, a2, a3, a4, a5, a6, a7):
    """``a_j + v_j * w`` for the eight sums of a register block (one rounding each)."""
    return (vfma(v0, w, a0), vfma(v1, w, a1), vfma(v2, w, a2), vfma(v3, w, a3), vfma(v4, w, a4), vfma(v5, w, a5),
            vfma(v6, w, a6), vfma(v7, w, a7))


@serial_kernel
def sliding_sums8(win, s, win_step, other, t, other_step, count, a0, a1, a2, a3, a4, a5, a6, a7, lanes_t):
    """``a_j + sum_{k < count} win[s + (k + j)*win_step :] * other[t + k*other_step :]`` for ``j < 8``: eight sums.

    The register block of the wide kernels: eight independent chains of multiply-adds, a window of eight
    vectors of ``win`` sliding along ``k`` (one ``win`` and one ``other`` vector loaded per eight multiply-adds).
    The forwards slide over input columns or rows with the taps as ``other``; the kernel gradients over input
    columns or rows with the output gradient as ``other`` (then ``k`` runs over the outputs, ``j`` the taps).
    ``count`` a signed integer.
    """
    v0, v1, v2, v3, v4, v5, v6 = _window7(win, s, win_step, lanes_t)
    for k in range(count):
        v7 = vload(win, s + uint64(k + 7) * win_step, lanes_t)
        w = vload(other, t + uint64(k) * other_step, lanes_t)
        a0, a1, a2, a3, a4, a5, a6, a7 = _fma8(w, v0, v1, v2, v3, v4, v5, v6, v7, a0, a1, a2, a3, a4, a5, a6, a7)
        v0, v1, v2, v3, v4, v5, v6 = v1, v2, v3, v4, v5, v6, v7
    return a0, a1, a2, a3, a4, a5, a6, a7


@serial_kernel
def load8(array, d, step, lanes_t):
    """The eight vectors ``array[d + j*step :]``, ``j < 8``: a register block's sums, reloaded."""
    return (vload(array, d, lanes_t), vload(array, d + step, lanes_t), vload(array, d + uint64(2) * step, lanes_t),
            vload(array, d + uint64(3) * step, lanes_t), vload(array, d + uint64(4) * step, lanes_t),
            vload(array, d + uint64(5) * step, lanes_t), vload(array, d + uint64(6) * step, lanes_t),
            vload(array, d + uint64(7) * step, lanes_t))


@serial_kernel
def sliding_sums8_pair(win, s, win_step, taps, t, t_prev, step, count, a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3,
                       b4, b5, b6, b7, lanes_t):
    """:func:`sliding_sums8` for two sets of sums over one window: ``a`` with the taps at ``t``, ``b`` at ``t_prev``.

    One input row feeds two output rows (its tap row ``i`` for the first, ``i - 1`` for the next): each window
    vector loaded serves sixteen multiply-adds.  Each sum gets the same multiply-adds in the same order as
    from :func:`sliding_sums8`.
    """
    v0, v1, v2, v3, v4, v5, v6 = _window7(win, s, win_step, lanes_t)
    for k in range(count):
        v7 = vload(win, s + uint64(k + 7) * win_step, lanes_t)
        w = vload(taps, t + uint64(k) * step, lanes_t)
        u = vload(taps, t_prev + uint64(k) * step, lanes_t)
        a0, a1, a2, a3, a4, a5, a6, a7 = _fma8(w, v0, v1, v2, v3, v4, v5, v6, v7, a0, a1, a2, a3, a4, a5, a6, a7)
        b0, b1, b2, b3, b4, b5, b6, b7 = _fma8(u, v0, v1, v2, v3, v4, v5, v6, v7, b0, b1, b2, b3, b4, b5, b6, b7)
        v0, v1, v2, v3, v4, v5, v6 = v1, v2, v3, v4, v5, v6, v7
    return a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7


@serial_kernel
def _store8(dst, d, step, skip, a0, a1, a2, a3, a4, a5, a6, a7):
    """``dst[d + j*step :] = a_j`` for the eight vectors, ``j >= skip`` (a last block overlapping the one before)."""
    if skip < 1:
        vstore(dst, d, a0)
    if skip < 2:
        vstore(dst, d + step, a1)
    if skip < 3:
        vstore(dst, d + uint64(2) * step, a2)
    if skip < 4:
        vstore(dst, d + uint64(3) * step, a3)
    if skip < 5:
        vstore(dst, d + uint64(4) * step, a4)
    if skip < 6:
        vstore(dst, d + uint64(5) * step, a5)
    if skip < 7:
        vstore(dst, d + uint64(6) * step, a6)
    vstore(dst, d + uint64(7) * step, a7)


@serial_kernel
def _pairs_rows(oh, out_h, sh, dh, top, kh, height, slots):
    """Whether output row ``oh`` (even) and the next are summed together (see :func:`_forward_wide_last`).

    Unit row stride and dilation, every tap row of both inside the input, and a slot for each of their
    ``KH + 1`` input rows.
    """
    ih0 = oh * sh - top
    return (sh == 1 and dh == 1 and slots > kh and oh % 2 == 0 and oh + 1 < out_h and ih0 >= 0
            and ih0 + kh < height)


@helper_kernel  # (compiled on its own: inlined at numba's level it doubled the kernel's first compile)
def _paired_block(src, taps, bias, dst, d, next_row, n, cb, s0, t0, ch, plane, slot, slots, g_lo, g_hi, first_group,
                  kw, skip, lanes_t):
    """Eight columns of two output rows (``d`` and ``d + next_row``; channels from ``cb``) over taps ``[g_lo, g_hi)``.

    Input rows ``g_lo .. g_hi`` (slots from ``slot`` on, ``s0`` the block's offset in slot 0): each feeds the
    first output row with its tap row and the second with the one before (:func:`sliding_sums8_pair`).  From the
    bias in ``first_group``, else from the sums stored by the group before; stored back.
    """
    if first_group:
        a0 = vload(bias, cb, lanes_t)
        a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
        b0, b1, b2, b3, b4, b5, b6, b7 = a0, a0, a0, a0, a0, a0, a0, a0
    else:
        a0, a1, a2, a3, a4, a5, a6, a7 = load8(dst, d, n, lanes_t)
        b0, b1, b2, b3, b4, b5, b6, b7 = load8(dst, d + next_row, n, lanes_t)
    row_taps = uint64(kw) * ch
    a0, a1, a2, a3, a4, a5, a6, a7 = sliding_sums8(src, s0 + uint64(slot) * plane, ch, taps,
                                                   t0 + uint64(g_lo) * row_taps, ch, kw, a0, a1, a2, a3, a4, a5, a6,
                                                   a7, lanes_t)
    for i in range(g_lo + 1, g_hi):
        slot += 1
        if slot >= slots:
            slot -= slots
        t = t0 + uint64(i) * row_taps
        (a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6,
         b7) = sliding_sums8_pair(src, s0 + uint64(slot) * plane, ch, taps, t, t - row_taps, ch, kw, a0, a1, a2, a3,
                                  a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7, lanes_t)
    slot += 1
    if slot >= slots:
        slot -= slots
    b0, b1, b2, b3, b4, b5, b6, b7 = sliding_sums8(src, s0 + uint64(slot) * plane, ch, taps,
                                                   t0 + uint64(g_hi - 1) * row_taps, ch, kw, b0, b1, b2, b3, b4, b5,
                                                   b6, b7, lanes_t)
    _store8(dst, d, n, skip, a0, a1, a2, a3, a4, a5, a6, a7)
    _store8(dst, d + next_row, n, skip, b0, b1, b2, b3, b4, b5, b6, b7)


@parallel_kernel
def _forward_wide_last(part, parts, x, taps, bias, out, batch, height, width, channels, out_h, out_w, kh, kw, sh, dh,
                       top, act, grad, rows_buf, held, rep, pad_l, pad_r, group, lanes_t, results):
    """``out[b, oh, ow] = act(bias + sum_{i,k} row(oh*sh - top + i*dh)[ow + k] * taps[i, k])``, a task per output row.

    (On planes, ``results`` below: a task per output row and chunk of channels.)

    Arrays are flat: ``x`` (B*H*W*(channels // rep)), ``bias`` (channels), ``out`` (B*out_h*out_w*channels);
    ``taps`` chunk major like the rows (:func:`_chunked_row`): per chunk of ``lanes * CHUNK_VECTORS``
    channels, the KH*KW taps of those channels.  ``channels`` is C*m (a multiplier ``rep`` = m runs as m = 1
    over repeated channels).  ``rows_buf[part]`` holds ``held.shape[1]`` rows (slot ``ih % slots``) of
    ``pad_l + width + pad_r`` columns per chunk, ``pad_l`` the left padding.  ``act``, ``grad``: see
    :mod:`numba_dwconv.cpu.fused`.  ``lanes_t``: :func:`numba_dwconv._simd.lanes_of`.

    Two output rows whose tap rows are all inside (unit row stride and dilation, rows ``oh`` even and ``oh + 1``,
    ``KH + 1`` slots) are one task's: each input row feeds both, one with its tap row and the next with the one
    before (:func:`_paired_block`; a window vector loaded per sixteen multiply-adds, and each input row read
    half as often), the sums in the same order as one row at a time.  The second row's task has nothing to do.

    ``results``: None, or per part room for two output rows (``out_w * channels`` each) when ``x`` and ``out`` are
    channels_first (B*channels*H*W and B*channels*out_h*out_w; ``rep`` 1, ``width`` and ``out_w`` at least
    ``lanes``; forward mode: ``grad`` is not read): the rows are transposed into the buffer
    (:func:`_chunked_row`), each task's row is summed channels_last there and transposed into the planes.
    """
    lanes = uint64(trip_count(lanes_t))
    n = uint64(channels)
    ch = lanes * uint64(CHUNK_VECTORS)
    c_in = channels // rep
    wp = pad_l + width + pad_r
    src, slots = _padded_part_rows(rows_buf, held, part, n, ch, wp, pad_l, width)
    dst = out if results is None else results[part]
    plane_out = uint64(out_h * out_w)
    plane = uint64(wp) * ch  # one row of one chunk
    taps_per_chunk = uint64(kh * kw) * ch
    last_block = out_w - BLOCK_WIDE
    chunks = (channels + ch - 1) // ch
    q_count = chunks if results is None else 1  # the chunks of a task (planes: a task's rows stay in few pages)
    groups = chunks // q_count
    tasks_lo, tasks_hi = task_share(batch * groups * out_h, part, parts)
    row_out = uint64(out_w) * n
    for task in range(tasks_lo, tasks_hi):
        bq = task // out_h
        oh = task - bq * out_h
        if oh % 2 == 1 and _pairs_rows(oh - 1, out_h, sh, dh, top, kh, height, slots):
            continue  # (summed with the row before, by that row's task)
        pair = _pairs_rows(oh, out_h, sh, dh, top, kh, height, slots)
        b = bq // groups
        q_lo = (bq - b * groups) * q_count
        ih0 = oh * sh - top
        i_lo = 0
        while i_lo < kh and ih0 + i_lo * dh < 0:
            i_lo += 1
        i_hi = kh
        while i_hi > i_lo and ih0 + (i_hi - 1) * dh >= height:
            i_hi -= 1
        for i in range(i_lo, i_hi + pair):  # the rows in the buffer (of both output rows)
            ih = ih0 + i * dh
            _chunked_row(x, src, held[part], b, ih, q_lo, q_count, height, width, c_in, rep, channels, ch, slots, wp,
                         pad_l, lanes_t, results)
        d_row = uint64(b * out_h + oh) * uint64(out_w) * n if results is None else uint64(0)
        for c_lo in range(uint64(q_lo) * ch, min(n, uint64(q_lo + q_count) * ch), ch):
            q = c_lo // ch
            rows_q = q * uint64(slots) * plane
            taps_q = q * taps_per_chunk
            for cb in range(c_lo, min(n, c_lo + ch), lanes):
                for g_lo in range(i_lo, max(i_lo + 1, i_hi), group):  # (one pass for the bias if no row is in range)
                    g_hi = min(i_hi, g_lo + group)
                    g_slot = (ih0 + g_lo * dh) % slots if g_hi > g_lo else 0
                    ow = 0
                    while ow < out_w:
                        skip = 0  # leading columns not stored: the last block overlaps the one before
                        if ow > last_block:
                            skip = ow - last_block
                            ow = last_block
                        d = d_row + uint64(ow) * n + cb
                        if pair:
                            _paired_block(src, taps, bias, dst, d, row_out, n, cb,
                                          rows_q + uint64(ow) * ch + (cb - c_lo), taps_q + (cb - c_lo), ch, plane,
                                          g_slot, slots, g_lo, g_hi, g_lo == i_lo, kw, skip, lanes_t)
                            ow += BLOCK_WIDE + skip
                            continue
                        if g_lo == i_lo:
                            a0 = vload(bias, cb, lanes_t)
                            a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
                        else:
                            a0, a1, a2, a3, a4, a5, a6, a7 = load8(dst, d, n, lanes_t)
                        slot = g_slot
                        for i in range(g_lo, g_hi):
                            s = rows_q + uint64(slot) * plane + uint64(ow) * ch + (cb - c_lo)
                            t = taps_q + uint64(i * kw) * ch + (cb - c_lo)
                            slot += dh  # (the slot of the next tap row: no division in the loop)
                            if slot >= slots:
                                slot -= slots
                            a0, a1, a2, a3, a4, a5, a6, a7 = sliding_sums8(src, s, ch, taps, t, ch, kw, a0, a1, a2, a3,
                                                                           a4, a5, a6, a7, lanes_t)
                        _store8(dst, d, n, skip, a0, a1, a2, a3, a4, a5, a6, a7)
                        ow += BLOCK_WIDE + skip
        row_end = d_row + uint64(1 + pair) * row_out
        if results is None:
            apply_activation(out[d_row:row_end], grad[d_row:row_end], act)
        else:
            apply_activation(dst[:row_end], dst[:row_end], act)
            for cb in range(uint64(q_lo) * ch, min(n, uint64(q_lo + q_count) * ch), lanes):  # squares into the planes
                for r in range(1 + pair):
                    transposed_squares(dst, uint64(r) * row_out + cb, n, n, out,
                                       (uint64(b) * n + cb) * plane_out + uint64((oh + r) * out_w), uint64(1),
                                       plane_out, out_w, False, lanes_t)



@parallel_kernel
def _kernel_grad_wide_last(part, parts, grad, x, kernel_partials, bias_partials, batch, height, width, channels, out_h,
                           out_w, kh, kw, sh, dh, top, rows_per_task, rows_buf, held, rep, pad_l, pad_r, consts,
                           lanes_t):
    """One partial per task (a batch entry and ``rows_per_task`` output rows): eight taps in registers over the rows.

    ``kernel_partials`` (tasks * KH*KW*channels, flat), ``bias_partials`` (tasks * channels); ``grad`` like
    the forward's ``out``, ``x`` like its input (``channels // rep`` channels).  The input rows a task reads are
    copied (:func:`_chunked_row`) into ``rows_buf[part]`` (``held.shape[1]`` rows, slot ``ih % slots``), then per
    channel vector, tap row and group of eight taps (the last group overlapping the one before, storing only
    its new taps): ``acc[k] = sum_{oh, ow} row(oh*sh - top + i*dh)[ow + k] * grad[oh, ow]``, one input and one
    gradient vector loaded per eight multiply-adds.  Sums in a fixed order: the result does not depend on the
    thread count.  ``pad_r`` leaves room for eight taps even when ``kw < 8`` (the extra ones are not stored).
    ``consts``: ``lanes`` zeros, then ``lanes`` ones.
    """
    lanes = uint64(trip_count(lanes_t))
    n = uint64(channels)
    ch = lanes * uint64(CHUNK_VECTORS)
    c_in = channels // rep
    wp = pad_l + width + pad_r
    src, slots = _padded_part_rows(rows_buf, held, part, n, ch, wp, pad_l, width)
    plane = uint64(wp) * ch
    part_size = uint64(kh * kw) * n
    runs = (out_h + rows_per_task - 1) // rows_per_task
    last_group = max(0, kw - 8)
    tasks_lo, tasks_hi = task_share(batch * runs, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // runs
        r_lo = (task - b * runs) * rows_per_task
        r_hi = min(r_lo + rows_per_task, out_h)
        kp = uint64(task) * part_size
        for oh in range(r_lo, r_hi):  # the rows in the buffer (a slot per row the run reads)
            for i in range(kh):
                ih = oh * sh - top + i * dh
                if 0 <= ih < height:
                    _chunked_row(x, src, held[part], b, ih, 0, (channels + ch - 1) // ch, height, width, c_in,
                                 rep, channels, ch, slots, wp, pad_l, lanes_t, None)
        for cb in range(uint64(0), n, lanes):
            q = cb // ch
            rows_q = q * uint64(slots) * plane + (cb - q * ch)
            zero = vload(consts, 0, lanes_t)
            one = vload(consts, lanes, lanes_t)
            bsum = zero
            for oh in range(r_lo, r_hi):
                g_row = (uint64(b * out_h + oh)) * uint64(out_w) * n + cb
                for ow in range(uint64(out_w)):
                    bsum = vfma(one, vload(grad, g_row + ow * n, lanes_t), bsum)
            vstore(bias_partials, uint64(task) * n + cb, bsum)
            for i in range(kh):
                k0 = 0
                done = 0
                while done < kw:
                    k0 = min(k0, last_group)
                    a0, a1, a2, a3, a4, a5, a6, a7 = zero, zero, zero, zero, zero, zero, zero, zero
                    for oh in range(r_lo, r_hi):
                        ih = oh * sh - top + i * dh
                        if 0 <= ih < height:
                            s = rows_q + uint64(ih % slots) * plane + uint64(k0) * ch
                            g = (uint64(b * out_h + oh)) * uint64(out_w) * n + cb
                            a0, a1, a2, a3, a4, a5, a6, a7 = sliding_sums8(src, s, ch, grad, g, n, out_w, a0, a1, a2,
                                                                           a3, a4, a5, a6, a7, lanes_t)
                    d = kp + (uint64(i * kw + k0)) * n + cb
                    if done <= k0 < kw:
                        vstore(kernel_partials, d, a0)
                    if done <= k0 + 1 < kw:
                        vstore(kernel_partials, d + n, a1)
                    if done <= k0 + 2 < kw:
                        vstore(kernel_partials, d + uint64(2) * n, a2)
                    if done <= k0 + 3 < kw:
                        vstore(kernel_partials, d + uint64(3) * n, a3)
                    if done <= k0 + 4 < kw:
                        vstore(kernel_partials, d + uint64(4) * n, a4)
                    if done <= k0 + 5 < kw:
                        vstore(kernel_partials, d + uint64(5) * n, a5)
                    if done <= k0 + 6 < kw:
                        vstore(kernel_partials, d + uint64(6) * n, a6)
                    if done <= k0 + 7 < kw:
                        vstore(kernel_partials, d + uint64(7) * n, a7)
                    done = min(kw, k0 + 8)
                    k0 += 8
