"""The size-specialised parts of the 2D channels_last kernels, compiled per kernel size and called by address.

The tap loops of the block passes and of the all-taps blocks unroll over a compile-time ``KW`` (and
``KH``).  They are compiled here as :mod:`numba_dwconv._entries` functions, one per size, and the kernels
(:func:`numba_dwconv.cpu.conv2d_last._forward_last`, :func:`numba_dwconv.cpu.conv2d_last_grads._grads_last`)
call them through their addresses: a kernel compiles once for every size, a new size compiles only these
few small functions.  Each entry forwards to the pass it names; the unit and strided ones take the same
arguments (the unit ones ignore the steps), so a kernel calls either through one call site.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import types, uint64

from .._entries import entry, entry_kernel, flat_array
from .conv2d_last import (
    _all_taps,
    _all_taps_stride2_width3,
    _all_taps_strided,
    _column_all_taps,
    _strided_interior,
    _unit_interior,
)
from .conv2d_last_kgrad import _grad_interior, _unit_grad_interior


@entry_kernel
def _unit_rows(src, taps, dst, s_row, t0, d_row, n_out, sw, dw, left, lo, hi, kw_c):
    """:func:`numba_dwconv.cpu.conv2d_last._unit_interior` for one ``KW`` (``sw``, ``dw``: 1, unread)."""
    _unit_interior(src, taps, dst, s_row, t0, d_row, n_out, left, lo, hi, kw_c)


@entry_kernel
def _strided_rows(src, taps, dst, s_row, t0, d_row, n_out, sw, dw, left, lo, hi, kw_c):
    """:func:`numba_dwconv.cpu.conv2d_last._strided_interior` for one ``KW``."""
    _strided_interior(src, taps, dst, s_row, t0, d_row, n_out, sw, dw, left, lo, hi, kw_c)


@entry_kernel
def _unit_grad_rows(x, grad, acc, s_row, g_row, a0, n_out, sw, dw, left, lo, hi, kw_c):
    """:func:`numba_dwconv.cpu.conv2d_last_kgrad._unit_grad_interior` for one ``KW`` (``sw``, ``dw``: 1, unread)."""
    _unit_grad_interior(x, grad, acc, s_row, g_row, a0, n_out, left, lo, hi, kw_c)


@entry_kernel
def _strided_grad_rows(x, grad, acc, s_row, g_row, a0, n_out, sw, dw, left, lo, hi, kw_c):
    """:func:`numba_dwconv.cpu.conv2d_last_kgrad._grad_interior` for one ``KW``."""
    _grad_interior(x, grad, acc, s_row, g_row, a0, n_out, sw, dw, left, lo, hi, kw_c)


@entry_kernel
def _unit_all_taps(src, taps, bias, dst, s_top, d_row, ow_lo, ow_hi, ow_end, n, row_step, left, chunks, sw, dw, rows,
                   s_step, d_step, kw_c, kh_c):
    """:func:`numba_dwconv.cpu.conv2d_last._all_taps` for one ``KH x KW`` (``sw``, ``dw``: 1, unread).

    ``rows`` output rows, ``s_step`` and ``d_step`` elements apart in ``src`` and ``dst`` (a call's set-up costs
    70-95 ns: the forward hands over up to ROWS_PER_CALL rows at once, see conv2d_last).
    """
    for r in range(uint64(rows)):
        _all_taps(src, taps, bias, dst, s_top + r * s_step, d_row + r * d_step, ow_lo, ow_hi, ow_end, n, row_step,
                  left, chunks, kw_c, kh_c)


@entry_kernel
def _strided_all_taps(src, taps, bias, dst, s_top, d_row, ow_lo, ow_hi, ow_end, n, row_step, left, chunks, sw, dw,
                      rows, s_step, d_step, kw_c, kh_c):
    """:func:`numba_dwconv.cpu.conv2d_last._all_taps_strided` for one ``KH x KW``.

    ``rows``: see :func:`_unit_all_taps`.
    """
    if len(kw_c) == 3 and sw == 2 and dw == 1:
        for r in range(uint64(rows)):
            _all_taps_stride2_width3(src, taps, bias, dst, s_top + r * s_step, d_row + r * d_step, ow_lo, ow_hi,
                                     ow_end, n, row_step, left, chunks, kh_c)
    else:
        for r in range(uint64(rows)):
            _all_taps_strided(src, taps, bias, dst, s_top + r * s_step, d_row + r * d_step, ow_lo, ow_hi, ow_end, n,
                              row_step, left, chunks, sw, dw, kw_c, kh_c)


@entry_kernel
def _edge_column(src, taps, bias, dst, s_top, d_row, ow_lo, ow_hi, ow_end, n, row_step, left, chunks, sw, dw, rows,
                 s_step, d_step, kw_c, kh_c):
    """:func:`numba_dwconv.cpu.conv2d_last._column_all_taps` for one ``KH x KW'``, called as the all-taps blocks are.

    Output column ``ow_lo`` of ``rows`` rows over the taps ``[ow_hi, ow_hi + KW')`` of kernel rows ``ow_end`` (the
    kernel's ``KW``) long, at column stride ``sw`` and dilation ``dw``; ``chunks``: unread.  (The blocks' arguments,
    so that the forward keeps these entries with the blocks' in one tuple of one type.)
    """
    col0 = uint64(ow_lo * sw - left + ow_hi * dw)
    for r in range(uint64(rows)):
        _column_all_taps(src, taps, bias, dst, s_top + r * s_step + col0 * n, d_row + r * d_step + uint64(ow_lo) * n,
                         uint64(ow_hi) * n, n, row_step, uint64(ow_end) * n, uint64(dw) * n, kw_c, kh_c)


@functools.lru_cache(maxsize=None)
def row_entry(dtype, kw: int, strided: bool):
    """A tap row's block columns for compile-time ``KW``, unit or strided (the caller's edge columns take the rest).

    Arguments ``(src, taps, dst, s_row, t0, d_row, n_out, sw, dw, left, lo, hi)``.
    """
    a, i, u = flat_array(dtype), types.int64, types.uint64
    argtypes = (a, a, a, u, u, u, u, i, i, i, i, i)
    return entry(_strided_rows if strided else _unit_rows, argtypes, kw)


@functools.lru_cache(maxsize=None)
def grad_row_entry(dtype, kw: int, strided: bool):
    """:func:`row_entry` for the kernel gradient's tap rows.

    Arguments ``(x, grad, acc, s_row, g_row, a0, n_out, sw, dw, left, lo, hi)``.
    """
    a, i, u = flat_array(dtype), types.int64, types.uint64
    argtypes = (a, a, a, u, u, u, u, i, i, i, i, i)
    return entry(_strided_grad_rows if strided else _unit_grad_rows, argtypes, kw)


@functools.lru_cache(maxsize=None)
def all_taps_entry(dtype, kh: int, kw: int, strided: bool):
    """The all-taps blocks for compile-time ``KH x KW``, unit or strided.

    Arguments ``(src, taps, bias, dst, s_top, d_row, ow_lo, ow_hi, ow_end, n, row_step, left, chunks, sw, dw, rows,
    s_step, d_step)``: ``rows`` consecutive output rows.
    """
    return entry(_strided_all_taps if strided else _unit_all_taps, _all_taps_argtypes(dtype), kw, kh)


@functools.lru_cache(maxsize=None)
def edge_column_entry(dtype, kh: int, kw: int):
    """An edge column over compile-time ``KH x KW'`` taps (:func:`_edge_column`): the all-taps blocks' arguments."""
    return entry(_edge_column, _all_taps_argtypes(dtype), kw, kh)


def _all_taps_argtypes(dtype):
    a, i, u = flat_array(dtype), types.int64, types.uint64
    return (a, a, a, a, u, u, i, i, i, u, u, i, flat_array(np.uint64), i, i, i, u, u)
