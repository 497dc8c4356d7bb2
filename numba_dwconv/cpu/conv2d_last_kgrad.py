"""The channels_last kernel gradient's pieces (2D): passes along a row and 3x3 rows with their sums in registers.

The kernel (:func:`numba_dwconv.cpu.conv2d_last_grads._grads_last`) splits the output rows into a fixed set of
tasks; each task adds its rows into its own partials, summed afterwards in task order (results do not
depend on the number of threads).  Per output row and tap row, blocks of four output columns go through
the block passes of :mod:`numba_dwconv.cpu.conv2d_last_passes` and the edge columns through column passes.

3x3 kernels (unit column steps, whole vectors of channels, ``m = 1``: :func:`fits`) first take the interior
columns of rows whose three tap rows are all inside the input through :func:`kernel_grad_rows`, with the nine
sums of a channel vector in registers.  The block passes add into the partials in memory: each of a block's
sums is loaded, added to and stored again, and the next block adds to the same sums, so every step waits for
the store before it (B16 112x112 C32 3x3: 15 GFMA/s on one core, where the forward runs 27).  There, per
output column one gradient vector and three input vectors are loaded (a window of three columns slides along
each tap row) for nine multiply-adds and the bias sum, and a row's sums are added to the task's partials at
its end.  The edge columns of those rows take the passes after it, row by row.
"""

from __future__ import annotations

from numba import uint64

from .._jit import helper_kernel, serial_kernel, trip_count
from .._simd import lanes_of, vfma, vload, vstore
from .conv2d_last import BLOCK, _valid_range
from .conv2d_last_passes import _block_grad_pass, _column_grad, _unit_block_grad_pass, _unit_block_grad_taps_runtime


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
def _grad_interior(x, grad, acc, s_row, g_row, a0, n_out, sw, dw, left, lo, hi, kw_t):
    """Kernel-gradient twin of :func:`numba_dwconv.cpu.conv2d_last._strided_interior` (compile-time ``KW``).

    ``acc[k] += sum_ow x[ow*sw + k*dw - left] * grad[ow]`` over the whole blocks of ``[lo, hi)``.
    """
    ow = lo
    while ow + BLOCK <= hi:
        _block_grad_pass(x, grad, acc, s_row + uint64(ow * sw - left) * n_out, g_row + uint64(ow) * n_out, a0, n_out,
                         sw, dw, kw_t)
        ow += BLOCK


@serial_kernel
def _unit_grad_interior(x, grad, acc, s_row, g_row, a0, n_out, left, lo, hi, kw_t):
    """:func:`_grad_interior` with unit column steps: a window of input columns slides along the taps."""
    ow = lo
    while ow + BLOCK <= hi:
        _unit_block_grad_pass(x, grad, acc, s_row + uint64(ow - left) * n_out, g_row + uint64(ow) * n_out, a0, n_out,
                              kw_t)
        ow += BLOCK


@serial_kernel
def _unit_grad_interior_runtime(x, grad, acc, s_row, g_row, a0, n_out, left, lo, hi, kw):
    """:func:`_unit_grad_interior` for a run-time ``KW``: the block passes eight taps at a time."""
    ow = lo
    while ow + BLOCK <= hi:
        _unit_block_grad_taps_runtime(x, grad, acc, s_row + uint64(ow - left) * n_out, g_row + uint64(ow) * n_out, a0,
                                      n_out, kw)
        ow += BLOCK
