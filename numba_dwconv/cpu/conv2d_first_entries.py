"""The size-specialised plane sums of the 2D channels_first kernels, compiled per kernel size, called by address.

An output plane's rows apply all ``KH * KW`` taps in one loop whose tap loop unrolls over a compile-time
count (:mod:`numba_dwconv.cpu.conv2d_first`).  Those plane loops are :mod:`numba_dwconv._entries` functions,
compiled once per size; the kernels (the forward, the unit-stride input gradient and the one-pass backward)
compile once for every size and call them.  Every plane entry takes the same arguments, so a kernel calls
whichever the host chose through one call site: two rows at a time (unit strides), row by row (any
strides), or the taps one at a time along each row (large kernels, a run-time count, compiled once).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import from_dtype, types, uint64

from .._entries import entry, entry_kernel, flat_array
from .conv2d_first import (
    _row_window_adds,
    _row_window_adds_runtime,
    _row_window_sums,
    _row_window_sums_runtime,
    _stride2_plane,
    _unit_plane_sums,
)
from .conv2d_first_plan import _static_first


@entry_kernel
def _unit_plane(buf, offsets, pitch, dh, dw, kernel, o, n_out, init, dst, d0, out_h, out_w, n_taps, taps_c, kh_c,
                kw_c):
    """:func:`numba_dwconv.cpu.conv2d_first._unit_plane_sums` for one size (``n_taps``: ``len(taps_c)``, unread)."""
    _unit_plane_sums(buf, offsets, pitch, dh, dw, kernel, o, n_out, init, dst, d0, out_h, out_w, taps_c, kh_c, kw_c)


@entry_kernel
def _rows_plane(buf, offsets, pitch, dh, dw, kernel, o, n_out, init, dst, d0, out_h, out_w, n_taps, taps_c, kh_c,
                kw_c):
    """Any strides, one size: each output row all taps at once (``dh``, ``dw``, ``n_taps``, KH, KW unread)."""
    for oh in range(out_h):
        _row_window_sums(buf, offsets, uint64(oh * pitch), kernel, uint64(o), n_out, init, dst,
                         d0 + uint64(oh * out_w), out_w, taps_c)


@entry_kernel
def _runtime_plane(buf, offsets, pitch, dh, dw, kernel, o, n_out, init, dst, d0, out_h, out_w, n_taps):
    """Any strides and size (a run-time ``n_taps``): each output row one tap at a time."""
    for oh in range(out_h):
        _row_window_sums_runtime(buf, offsets, uint64(oh * pitch), kernel, uint64(o), n_out, init, dst,
                                 d0 + uint64(oh * out_w), out_w, n_taps)


@entry_kernel
def _plane_adds(buf, offsets, pitch, kernel, o, n_out, dst, d0, out_h, out_w, n_taps, taps_c):
    """The plane's sums added into ``dst`` (not written), one size (``n_taps``: unread)."""
    for oh in range(out_h):
        _row_window_adds(buf, offsets, uint64(oh * pitch), kernel, uint64(o), n_out, dst, d0 + uint64(oh * out_w),
                         out_w, taps_c)


@entry_kernel
def _runtime_plane_adds(buf, offsets, pitch, kernel, o, n_out, dst, d0, out_h, out_w, n_taps):
    """:func:`_plane_adds` for a run-time ``n_taps``."""
    for oh in range(out_h):
        _row_window_adds_runtime(buf, offsets, uint64(oh * pitch), kernel, uint64(o), n_out, dst,
                                 d0 + uint64(oh * out_w), out_w, n_taps)


@entry_kernel
def _stride2(gbuf, offsets, weight_index, starts, kernel, o, n_out, grad_in, d0, height, width, top, sh, pitch, q_even,
             q_odd, first, counts, c00, c01, c10, c11):
    """:func:`numba_dwconv.cpu.conv2d_first._stride2_plane` for one set of class sizes (``counts``: unread)."""
    _stride2_plane(gbuf, offsets, weight_index, starts, kernel, o, n_out, grad_in, d0, height, width, top, sh, pitch,
                   q_even, q_odd, first, c00, c01, c10, c11)


@entry_kernel
def _stride2_runtime(gbuf, offsets, weight_index, starts, kernel, o, n_out, grad_in, d0, height, width, top, sh, pitch,
                     q_even, q_odd, first, counts):
    """:func:`_stride2` with the class sizes read from ``counts`` (large kernels)."""
    _stride2_plane(gbuf, offsets, weight_index, starts, kernel, o, n_out, grad_in, d0, height, width, top, sh, pitch,
                   q_even, q_odd, first, counts[0], counts[1], counts[2], counts[3])


def plane_entry(problem, unit: bool):
    """The plane sums of ``problem``'s size; ``unit``: two rows at a time (unit strides), else row by row.

    Arguments ``(buf, offsets, pitch, dh, dw, kernel, o, n_out, init, dst, d0, out_h, out_w, n_taps)``.
    """
    h, w = problem.height.kernel_size, problem.width.kernel_size
    return _plane_entry(np.dtype(problem.dtype), h, w, unit, _static_first(problem))


def plane_adds_entry(problem):
    """The plane sums added into the destination, for ``problem``'s size.

    Arguments ``(buf, offsets, pitch, kernel, o, n_out, dst, d0, out_h, out_w, n_taps)``.
    """
    taps = problem.height.kernel_size * problem.width.kernel_size
    return _plane_adds_entry(np.dtype(problem.dtype), taps, _static_first(problem))


def stride2_entry(problem, counts: tuple):
    """The input-gradient plane of column stride 2 for the four tap classes of ``counts`` (see ``_stride2``)."""
    return _stride2_entry(np.dtype(problem.dtype), counts, _static_first(problem))


@functools.lru_cache(maxsize=None)
def _stride2_entry(dtype, counts: tuple, static: bool):
    a, i, u, n = flat_array(dtype), types.int64, types.uint64, flat_array(np.int64)
    argtypes = (a, n, n, n, a, i, i, a, u, i, i, i, i, i, u, u, types.boolean, n)
    return entry(_stride2, argtypes, *counts) if static else entry(_stride2_runtime, argtypes)


@functools.lru_cache(maxsize=None)
def _plane_entry(dtype, kh: int, kw: int, unit: bool, static: bool):
    a, i, u, x = flat_array(dtype), types.int64, types.uint64, from_dtype(dtype)
    argtypes = (a, flat_array(np.int64), i, i, i, a, i, i, x, a, u, i, i, i)
    if not static:
        return entry(_runtime_plane, argtypes)
    return entry(_unit_plane if unit else _rows_plane, argtypes, kh * kw, kh, kw)


@functools.lru_cache(maxsize=None)
def _plane_adds_entry(dtype, taps: int, static: bool):
    a, i, u = flat_array(dtype), types.int64, types.uint64
    argtypes = (a, flat_array(np.int64), i, a, i, i, a, u, i, i, i)
    return entry(_plane_adds, argtypes, taps) if static else entry(_runtime_plane_adds, argtypes)
