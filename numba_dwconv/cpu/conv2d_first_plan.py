"""Host-side geometry of the channels_first 2D kernels: stride-phase planes and the taps' offsets into them.

The channels_first kernels (:mod:`numba_dwconv.cpu.conv2d_first`, :mod:`numba_dwconv.cpu.conv2d_first_grads`)
copy each input plane into zero-padded stride-phase planes, so that every output row is one vectorised loop
applying all ``KH * KW`` taps at fixed offsets; the offsets and the planes' sizes are computed here, once per
call, and the host functions of :mod:`numba_dwconv.cpu.conv2d` pass them on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._jit import scratch

# Compile-time counts (one compiled kernel per size, tap loops unrolled) only where they pay.  channels_last:
# KW and m up to STATIC_SIZE_LIMIT.  channels_first: KH and KW up to it and KH*KW up to STATIC_TAPS_LIMIT
# (measured, 28x28 C256 forward: 7x7 with its 49 taps unrolled 48 ms, taps outermost 15 ms; 5x5 unrolled
# 5.9 ms, taps outermost 18 ms).
STATIC_SIZE_LIMIT = 16
STATIC_TAPS_LIMIT = 25


def _static_first(problem) -> bool:
    """Whether the channels_first kernels get KH, KW and KH*KW as compile-time constants."""
    h, w = problem.height.kernel_size, problem.width.kernel_size
    return max(h, w) <= STATIC_SIZE_LIMIT and h * w <= STATIC_TAPS_LIMIT


class _Phases(NamedTuple):
    """Scratch geometry of the channels_first kernels (see :mod:`numba_dwconv.cpu.conv2d_first`)."""

    rows: int
    pitch: int
    offsets: np.ndarray  # flat offset of each tap's window, taps in (KH, KW) order
    taps: int  # KH*KW (compile-time counts are the entries' business: conv2d_first_entries)


def _phases(out_h, out_w, kh, kw, sh, sw, dh, dw):
    """Phase planes covering every tap of every output, and the taps' offsets into them."""
    rows = ((out_h - 1) * sh + (kh - 1) * dh + sh) // sh
    pitch = ((out_w - 1) * sw + (kw - 1) * dw + sw) // sw
    offsets = np.array([(((i * dh) % sh) * sw + (k * dw) % sw) * rows * pitch + (i * dh) // sh * pitch + (k * dw) // sw
                        for i in range(kh) for k in range(kw)], dtype=np.int64)
    return _Phases(rows, pitch, offsets, kh * kw)


def _first_args(problem):
    """``(args, phases)``: the geometry arguments of the channels_first forward pass and kernel gradient."""
    h, w = problem.height, problem.width
    phases = _phases(h.out_length, w.out_length, h.kernel_size, w.kernel_size, h.stride, w.stride, h.dilation,
                     w.dilation)
    return ((phases.offsets, problem.batch, problem.channels, problem.multiplier, h.length, w.length, h.out_length,
             w.out_length, h.stride, w.stride, h.pad_left, w.pad_left, phases.rows, phases.pitch), phases)


def _phase_scratch(problem, phases):
    """Per-part buffers for one input plane's ``sh * sw`` phase planes (``phases`` from :func:`_first_args`)."""
    return scratch(problem.height.stride * problem.width.stride * phases.rows * phases.pitch, problem.dtype)


def _pitched_scratch(problem, phases):
    """Per-part buffers for one output-gradient plane at the phase planes' pitch."""
    return scratch(problem.height.out_length * phases.pitch, problem.dtype)


class _TapClasses(NamedTuple):
    """Geometry of :func:`numba_dwconv.cpu.conv2d_first._input_grad_stride2_first`."""

    pad_h: int  # the output gradient's padding in its buffer
    pad_w: int
    rows: int
    pitch: int
    offsets: np.ndarray  # per tap, grouped by class: flat offset into the padded output gradient
    weight_index: np.ndarray  # per tap: i*KW + k
    starts: np.ndarray  # where each of the four classes begins
    taps: np.ndarray  # the four classes' tap counts


def _tap_classes(h, w):
    """The taps grouped by the input phase they reach (row stride ``h.stride`` <= 2, column stride 2)."""
    sh = h.stride
    pad_h = (h.kernel_size - 1) * h.dilation // sh
    pad_w = (w.kernel_size - 1) * w.dilation // 2
    rows = max((h.length - 1 + h.pad_left) // sh + 1, h.out_length) + pad_h
    pitch = max((w.length - 1 + w.pad_left) // 2 + 1, w.out_length) + pad_w
    offsets, weight_index, starts, taps = [], [], [], []
    for ph in range(2):
        for pw in (w.pad_left % 2, 1 - w.pad_left % 2):  # the phase column of input columns 0, 2, ... then 1, 3, ...
            starts.append(len(offsets))
            members = [(i, k) for i in range(h.kernel_size) for k in range(w.kernel_size)
                       if (i * h.dilation) % sh == ph and (k * w.dilation) % 2 == pw]
            offsets += [(pad_h - i * h.dilation // sh) * pitch + pad_w - k * w.dilation // 2 for i, k in members]
            weight_index += [i * w.kernel_size + k for i, k in members]
            taps.append(len(members))
    return _TapClasses(pad_h, pad_w, rows, pitch, np.array(offsets, np.int64), np.array(weight_index, np.int64),
                       np.array(starts, np.int64), np.array(taps, np.int64))
