"""The passes of the 2D channels_last kernels (:mod:`numba_dwconv.cpu.conv2d_last`) over one block of outputs.

*Block passes* keep four output columns in registers while the taps of one tap row slide over the
input columns (``KW`` a compile-time count, a tuple or an entry's ``StaticCount``, whose ``len`` they
take: the tap loop unrolls, the channel loop stays innermost and vectorises); a run-time ``KW`` goes
through them eight taps at a time.  *Column passes* take one
output column a tap at a time (any ``KW``, any step, clipped taps); the kernel-gradient twins
accumulate ``x * grad`` per tap instead.  Arrays are flat and indexed with unsigned integers (see
the kernels' module for why).
"""

from __future__ import annotations

from numba import uint64

from .._jit import serial_kernel


@serial_kernel
def _block_pass(src, taps, dst, s0, t0, d0, n, col_step, tap_step, kw_t):
    """``dst[d0 + u*n + c] += sum_k src[s0 + (u*col_step + k*tap_step)*n + c] * taps[t0 + k*n + c]``, u < 4, c < n.

    ``len(kw_t)`` is the number of taps (a compile-time count); steps are in columns.
    """
    d1, d2, d3 = d0 + n, d0 + uint64(2) * n, d0 + uint64(3) * n
    for c in range(n):
        a0, a1, a2, a3 = dst[d0 + c], dst[d1 + c], dst[d2 + c], dst[d3 + c]
        for k in range(len(kw_t)):
            w = taps[t0 + uint64(k) * n + c]
            a0 += src[s0 + c + uint64(k * tap_step) * n] * w
            a1 += src[s0 + c + uint64(col_step + k * tap_step) * n] * w
            a2 += src[s0 + c + uint64(2 * col_step + k * tap_step) * n] * w
            a3 += src[s0 + c + uint64(3 * col_step + k * tap_step) * n] * w
        dst[d0 + c], dst[d1 + c], dst[d2 + c], dst[d3 + c] = a0, a1, a2, a3


@serial_kernel
def _unit_block_pass(src, taps, dst, s0, t0, d0, n, kw_t):
    """:func:`_block_pass` for unit steps: a window of four input columns slides along the taps.

    Output column ``u`` meets input column ``u + k`` at tap ``k``, so each input
    vector is loaded once (``KW + 3`` loads for ``4 * KW`` multiply-adds).
    """
    d1, d2, d3 = d0 + n, d0 + uint64(2) * n, d0 + uint64(3) * n
    for c in range(n):
        a0, a1, a2, a3 = dst[d0 + c], dst[d1 + c], dst[d2 + c], dst[d3 + c]
        s = s0 + c
        v0, v1, v2 = src[s], src[s + n], src[s + uint64(2) * n]
        for k in range(len(kw_t)):
            v3 = src[s + uint64(k + 3) * n]
            w = taps[t0 + uint64(k) * n + c]
            a0 += v0 * w
            a1 += v1 * w
            a2 += v2 * w
            a3 += v3 * w
            v0, v1, v2 = v1, v2, v3
        dst[d0 + c], dst[d1 + c], dst[d2 + c], dst[d3 + c] = a0, a1, a2, a3


@serial_kernel
def _block_grad_pass(x, grad, acc, s0, g0, a0, n, col_step, tap_step, kw_t):
    """``acc[a0 + k*n + c] += sum_u x[s0 + (u*col_step + k*tap_step)*n + c] * grad[g0 + u*n + c]``, u < 4."""
    for c in range(n):
        g_0, g_1, g_2, g_3 = grad[g0 + c], grad[g0 + n + c], grad[g0 + uint64(2) * n + c], grad[g0 + uint64(3) * n + c]
        for k in range(len(kw_t)):
            s = s0 + c + uint64(k * tap_step) * n
            acc[a0 + uint64(k) * n + c] += (x[s] * g_0 + x[s + uint64(col_step) * n] * g_1
                                            + x[s + uint64(2 * col_step) * n] * g_2
                                            + x[s + uint64(3 * col_step) * n] * g_3)


@serial_kernel
def _unit_block_grad_pass(x, grad, acc, s0, g0, a0, n, kw_t):
    """:func:`_block_grad_pass` for unit steps: a window of four input columns slides along the taps.

    Tap ``k`` meets input column ``u + k`` at output column ``u``, so each input
    vector is loaded once (``KW + 3`` loads for ``4 * KW`` multiply-adds).
    """
    for c in range(n):
        g_0, g_1, g_2, g_3 = grad[g0 + c], grad[g0 + n + c], grad[g0 + uint64(2) * n + c], grad[g0 + uint64(3) * n + c]
        s = s0 + c
        v0, v1, v2 = x[s], x[s + n], x[s + uint64(2) * n]
        for k in range(len(kw_t)):
            v3 = x[s + uint64(k + 3) * n]
            acc[a0 + uint64(k) * n + c] += v0 * g_0 + v1 * g_1 + v2 * g_2 + v3 * g_3
            v0, v1, v2 = v1, v2, v3


EIGHT_TAPS, FOUR_TAPS, TWO_TAPS, ONE_TAP = (0,) * 8, (0,) * 4, (0,) * 2, (0,)  # compile-time tap counts


@serial_kernel
def _unit_block_taps_runtime(src, taps, dst, s0, t0, d0, n, kw):
    """A run-time ``KW``: :func:`_unit_block_pass` eight taps at a time (then 4, 2, 1), each a compile-time count.

    (One output-vector load and store per eight taps instead of per tap in a column pass: B8 56x56
    C128 31x31 forward 64 -> 51 ms, backward 117 -> 90 ms; the clipped edge columns still take column passes.)
    """
    k = 0
    while k + 8 <= kw:
        _unit_block_pass(src, taps, dst, s0 + uint64(k) * n, t0 + uint64(k) * n, d0, n, EIGHT_TAPS)
        k += 8
    if k + 4 <= kw:
        _unit_block_pass(src, taps, dst, s0 + uint64(k) * n, t0 + uint64(k) * n, d0, n, FOUR_TAPS)
        k += 4
    if k + 2 <= kw:
        _unit_block_pass(src, taps, dst, s0 + uint64(k) * n, t0 + uint64(k) * n, d0, n, TWO_TAPS)
        k += 2
    if k < kw:
        _unit_block_pass(src, taps, dst, s0 + uint64(k) * n, t0 + uint64(k) * n, d0, n, ONE_TAP)



@serial_kernel
def _unit_block_grad_taps_runtime(x, grad, acc, s0, g0, a0, n, kw):
    """:func:`_unit_block_taps_runtime` for the kernel gradient: eight taps at a time."""
    k = 0
    while k + 8 <= kw:
        _unit_block_grad_pass(x, grad, acc, s0 + uint64(k) * n, g0, a0 + uint64(k) * n, n, EIGHT_TAPS)
        k += 8
    if k + 4 <= kw:
        _unit_block_grad_pass(x, grad, acc, s0 + uint64(k) * n, g0, a0 + uint64(k) * n, n, FOUR_TAPS)
        k += 4
    if k + 2 <= kw:
        _unit_block_grad_pass(x, grad, acc, s0 + uint64(k) * n, g0, a0 + uint64(k) * n, n, TWO_TAPS)
        k += 2
    if k < kw:
        _unit_block_grad_pass(x, grad, acc, s0 + uint64(k) * n, g0, a0 + uint64(k) * n, n, ONE_TAP)



@serial_kernel
def _unit_column_pass(src, taps, dst, s0, t0, d0, n, kw_t):
    """One output column of :func:`_unit_block_pass`: ``dst[d0 + c] += sum_k src[s0 + k*n + c] * taps[t0 + k*n + c]``.

    For the interior columns left over after the blocks: the sum stays in a
    register across the taps.
    """
    for c in range(n):
        a = dst[d0 + c]
        for k in range(len(kw_t)):
            a += src[s0 + c + uint64(k) * n] * taps[t0 + uint64(k) * n + c]
        dst[d0 + c] = a


@serial_kernel
def _column_pass(src, taps, dst, row, col0, t0, d0, channels, k_lo, k_hi, dw, mult):
    """``dst[d0 + o] += sum_k src[row + (col0 + k*dw)*channels + o // mult] * taps[t0 + k*channels*mult + o]``."""
    n_out = uint64(channels * mult)
    for k in range(k_lo, k_hi):
        s = row + uint64(col0 + k * dw) * uint64(channels)
        t = t0 + uint64(k) * n_out
        if mult == 1:
            for c in range(n_out):
                dst[d0 + c] += src[s + c] * taps[t + c]
        else:
            for o in range(n_out):
                dst[d0 + o] += src[s + o // uint64(mult)] * taps[t + o]


@serial_kernel
def _column_scatter(grad, taps, grad_in, g0, t0, row, col0, channels, k_lo, k_hi, dw, mult):
    """The transpose of :func:`_column_pass`: one output column's gradient added into the input columns it read."""
    n_out = uint64(channels * mult)
    for k in range(k_lo, k_hi):
        d = row + uint64(col0 + k * dw) * uint64(channels)
        t = t0 + uint64(k) * n_out
        if mult == 1:
            for c in range(n_out):
                grad_in[d + c] += grad[g0 + c] * taps[t + c]
        else:
            for c in range(uint64(channels)):
                total = grad_in.dtype.type(0)
                for j in range(uint64(mult)):
                    total += grad[g0 + c * uint64(mult) + j] * taps[t + c * uint64(mult) + j]
                grad_in[d + c] += total


@serial_kernel
def _column_grad(x, grad, acc, row, col0, g0, a0, channels, k_lo, k_hi, dw, mult):
    """``acc[a0 + k*n_out + o] += x[row + (col0 + k*dw)*channels + o // mult] * grad[g0 + o]`` for the taps in range."""
    n_out = uint64(channels * mult)
    for k in range(k_lo, k_hi):
        s = row + uint64(col0 + k * dw) * uint64(channels)
        a = a0 + uint64(k) * n_out
        if mult == 1:
            for c in range(n_out):
                acc[a + c] += x[s + c] * grad[g0 + c]
        else:
            for o in range(n_out):
                acc[a + o] += x[s + o // uint64(mult)] * grad[g0 + o]
