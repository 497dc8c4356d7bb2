"""The channels_last kernel gradient (2D): per-task partials of the kernel and bias sums.

The host (:func:`numba_dwconv.cpu.conv2d.conv2d_kernel_grad`) splits the output rows into a fixed set of
tasks; each task adds its rows into its own partials, summed afterwards in task order (results do not
depend on the number of threads).  Per output row and tap row, blocks of four output columns go through
the block passes of :mod:`numba_dwconv.cpu.conv2d_last_passes` and the edge columns through column passes.

3x3 kernels (unit column steps, whole vectors of channels, ``m = 1``: :func:`fits`) first take the rows
whose three tap rows are all inside the input through :func:`kernel_grad_rows`, with the nine sums of a
channel vector in registers.  The block passes add into the partials in memory: each of a block's sums is
loaded, added to and stored again, and the next block adds to the same sums, so every step waits for the
store before it (B16 112x112 C32 3x3: 15 GFMA/s on one core, where the forward runs 27).  There, per output
column one gradient vector and three input vectors are loaded (a window of three columns slides along each
tap row) for nine multiply-adds and the bias sum, and a row's sums are added to the task's partials at its
end (row by row: the row's inputs stay in the caches for every vector of channels).  The edge columns of
those rows and the other rows take the passes after it.
"""

from __future__ import annotations

from numba import uint64

from .._jit import helper_kernel, parallel_kernel, serial_kernel, task_share, trip_count
from .._simd import lanes_of, vfma, vload, vstore
from .conv2d_last import BLOCK, _block_columns, _part_rows, _repeated_row, _valid_range
from .conv2d_last_passes import _block_grad_pass, _column_grad, _unit_block_grad_taps


def fits(problem) -> bool:
    """Whether the channels_last kernel gradient of ``problem`` (``m = 1`` already) takes this kernel."""
    h, w = problem.height, problem.width
    return (h.kernel_size == 3 and w.kernel_size == 3 and w.stride == 1 and w.dilation == 1
            and problem.multiplier == 1 and problem.channels % len(lanes_of(problem.dtype)) == 0)


@serial_kernel
def _add_sums(partials, at, n, one, a0, a1, a2, lanes_t):
    """``partials[at + k*n : ... + lanes] += a_k`` for k < 3 (one rounding each: ``a * 1 + p``)."""
    vstore(partials, at, vfma(a0, one, vload(partials, at, lanes_t)))
    vstore(partials, at + n, vfma(a1, one, vload(partials, at + n, lanes_t)))
    vstore(partials, at + uint64(2) * n, vfma(a2, one, vload(partials, at + uint64(2) * n, lanes_t)))


@helper_kernel
def kernel_grad_rows(x, grad, partials, bias_partials, consts, a_task, b_task, x_top, g_top, rows, x_row_step,
                     tap_row_step, g_row_step, lo, hi, left, n, lanes_t):
    """``partials[a_task + (3i + k)*n + c] += sum_{r < rows, lo <= ow < hi} x[...] * grad[...]``, every channel c.

    ``x[x_top + r*x_row_step + i*tap_row_step + (ow + k - left)*n + c]`` and ``grad[g_top + r*g_row_step +
    ow*n + c]`` (flat arrays, offsets in elements), and ``bias_partials[b_task + c]`` += the same gradients'
    sum; row by row (a row's sums, then added: its rows stay in the caches for every vector of channels).
    ``consts``: a vector of zeros then one of ones (:func:`numba_dwconv.cpu.conv2d_wide.zeros_and_ones`).
    ``n`` a multiple of the lanes.
    """
    lanes = uint64(trip_count(lanes_t))
    zero = vload(consts, uint64(0), lanes_t)
    one = vload(consts, lanes, lanes_t)
    for r in range(uint64(rows)):
        for c in range(uint64(0), uint64(n), lanes):
            a00, a01, a02, a10, a11, a12, a20, a21, a22, ab = zero, zero, zero, zero, zero, zero, zero, zero, zero, zero
            s0 = x_top + r * x_row_step + uint64(lo - left) * n + c
            s1 = s0 + tap_row_step
            s2 = s1 + tap_row_step
            g = g_top + r * g_row_step + uint64(lo) * n + c
            x00, x01 = vload(x, s0, lanes_t), vload(x, s0 + n, lanes_t)
            x10, x11 = vload(x, s1, lanes_t), vload(x, s1 + n, lanes_t)
            x20, x21 = vload(x, s2, lanes_t), vload(x, s2 + n, lanes_t)
            for q in range(uint64(hi - lo)):
                gv = vload(grad, g + q * n, lanes_t)
                x02 = vload(x, s0 + (q + uint64(2)) * n, lanes_t)
                x12 = vload(x, s1 + (q + uint64(2)) * n, lanes_t)
                x22 = vload(x, s2 + (q + uint64(2)) * n, lanes_t)
                a00, a01, a02 = vfma(x00, gv, a00), vfma(x01, gv, a01), vfma(x02, gv, a02)
                a10, a11, a12 = vfma(x10, gv, a10), vfma(x11, gv, a11), vfma(x12, gv, a12)
                a20, a21, a22 = vfma(x20, gv, a20), vfma(x21, gv, a21), vfma(x22, gv, a22)
                ab = vfma(gv, one, ab)
                x00, x01, x10, x11, x20, x21 = x01, x02, x11, x12, x21, x22
            at = a_task + c
            _add_sums(partials, at, n, one, a00, a01, a02, lanes_t)
            _add_sums(partials, at + uint64(3) * n, n, one, a10, a11, a12, lanes_t)
            _add_sums(partials, at + uint64(6) * n, n, one, a20, a21, a22, lanes_t)
            vstore(bias_partials, b_task + c, vfma(ab, one, vload(bias_partials, b_task + c, lanes_t)))


@serial_kernel
def _edge_grads(x, grad, acc, s_row, g_row, a0, width, out_w, channels, mult, sw, dw, left, lo, ow, kw):
    """The columns outside ``[lo, ow)`` of a kernel-gradient row: column passes, taps clipped."""
    n_out = uint64(channels * mult)
    col = 0
    while col < out_w:
        if lo <= col < ow:
            col = ow
        else:
            col0 = col * sw - left
            k_lo, k_hi = _valid_range(col0, dw, width, kw)  # taps whose column is in the row
            _column_grad(x, grad, acc, s_row, col0, g_row + uint64(col) * n_out, a0, channels, k_lo, k_hi, dw, mult)
            col += 1


@serial_kernel
def _grads_along_row(x, grad, acc, s_row, g_row, a0, width, out_w, channels, mult, sw, dw, left, lo, hi, kw_t):
    """Kernel-gradient twin of :func:`_taps_along_row`: ``acc[k] += sum_ow x[ow*sw + k*dw - left] * grad[ow]``."""
    n_out = uint64(channels * mult)
    ow = lo
    while ow + BLOCK <= hi:
        _block_grad_pass(x, grad, acc, s_row + uint64(ow * sw - left) * n_out, g_row + uint64(ow) * n_out, a0, n_out,
                         sw, dw, kw_t)
        ow += BLOCK
    _edge_grads(x, grad, acc, s_row, g_row, a0, width, out_w, channels, mult, sw, dw, left, lo, ow, trip_count(kw_t))


@serial_kernel
def _unit_grads_along_row(x, grad, acc, s_row, g_row, a0, width, out_w, channels, mult, left, lo, hi, kw_t, first):
    """:func:`_grads_along_row` with unit column steps (see :func:`_unit_taps_along_row`).

    ``first``: where the blocks start, ``lo``, or ``hi`` for a row whose ``[lo, hi)`` is done (then only its
    edge columns are added).
    """
    n_out = uint64(channels * mult)
    ow = first
    while ow + BLOCK <= hi:
        _unit_block_grad_taps(x, grad, acc, s_row + uint64(ow - left) * n_out, g_row + uint64(ow) * n_out, a0, n_out,
                              kw_t)
        ow += BLOCK
    _edge_grads(x, grad, acc, s_row, g_row, a0, width, out_w, channels, mult, 1, 1, left, lo, ow, trip_count(kw_t))


@parallel_kernel
def _kernel_grad_partials_last(part, parts, grad, x, kernel_partials, bias_partials, batch, height, width, channels,
                               mult_t, out_h, out_w, kh, sh, sw, dh, dw, top, left, rows_per_task, kw_t, rows_buf,
                               held, rep, strided, consts, lanes_t, in_registers):
    """One partial per task (a batch entry and a chunk of output rows), accumulated in a fixed order.

    ``kernel_partials`` is flat (tasks * KH*KW*C*m), ``bias_partials`` (tasks * C*m).  ``rows_buf``, ``held``,
    ``rep`` and ``strided``: as in :func:`numba_dwconv.cpu.conv2d_last._forward_last`.  ``consts``: None
    (the code below pruned), or for kernels three columns wide a zeros-and-ones vector, and then where
    ``in_registers`` (a run-time flag: one compiled kernel for problems that :func:`fits` and those that do
    not) the task's rows whose tap rows are all inside first take :func:`kernel_grad_rows` for the interior
    columns, then their edge columns and the other rows the passes below.
    """
    mult = trip_count(mult_t)
    kw = trip_count(kw_t)
    n_out = channels * mult
    chunks = (out_h + rows_per_task - 1) // rows_per_task
    part_size = uint64(kh * kw * n_out)
    lo, hi = _block_columns(kw_t, sw, dw, left, width, out_w, mult)
    rows_lo, _ = _valid_range(-top, sh, height, out_h)  # output rows whose every tap row is inside
    _, rows_hi = _valid_range((kh - 1) * dh - top, sh, height, out_h)
    src = x
    slots = 1
    if rows_buf is not None:
        src, slots = _part_rows(rows_buf, held, part)
    tasks_lo, tasks_hi = task_share(batch * chunks, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // chunks
        oh0 = (task - b * chunks) * rows_per_task
        a_task = uint64(task) * part_size
        b_task = uint64(task * n_out)
        for p in range(part_size):
            kernel_partials[a_task + p] = 0.0
        for o in range(uint64(n_out)):
            bias_partials[b_task + o] = 0.0
        done_lo, done_hi = oh0, oh0  # rows whose interior columns are done
        if consts is not None:  # (pruned unless three columns wide)
            if in_registers:
                done_lo, done_hi = max(oh0, rows_lo), min(oh0 + rows_per_task, rows_hi)
            if done_hi > done_lo:
                row_size = uint64(width * channels)
                kernel_grad_rows(x, grad, kernel_partials, bias_partials, consts, a_task, uint64(b_task),
                                 uint64(b * height + done_lo * sh - top) * row_size,
                                 uint64(b * out_h + done_lo) * uint64(out_w * n_out), done_hi - done_lo,
                                 uint64(sh) * row_size, uint64(dh) * row_size, uint64(out_w * n_out), lo, hi, left,
                                 uint64(n_out), lanes_t)
        for oh in range(oh0, min(oh0 + rows_per_task, out_h)):
            g_row = uint64(b * out_h + oh) * uint64(out_w * n_out)
            for ow in range(uint64(out_w)):
                if done_lo <= oh < done_hi and lo <= ow < hi:
                    continue  # (summed with the interior)
                for o in range(uint64(n_out)):
                    bias_partials[b_task + o] += grad[g_row + ow * uint64(n_out) + o]
            first = hi if done_lo <= oh < done_hi else lo  # (rows whose interior is done: their edges only)
            for i in range(kh):
                ih = oh * sh + i * dh - top
                if 0 <= ih < height:
                    s_row = uint64(b * height + ih) * uint64(width * channels)
                    if rows_buf is not None:
                        s_row = _repeated_row(x, src, held[part], b * height + ih, ih % slots,
                                              uint64(b * height + ih) * uint64(width * (channels // rep)), width,
                                              channels // rep, rep)
                    if strided is None:
                        _unit_grads_along_row(src, grad, kernel_partials, s_row, g_row, a_task + uint64(i * kw * n_out),
                                              width, out_w, channels, mult, left, lo, hi, kw_t, first)
                    else:
                        _grads_along_row(src, grad, kernel_partials, s_row, g_row, a_task + uint64(i * kw * n_out),
                                         width, out_w, channels, mult, sw, dw, left, lo, hi, kw_t)
