"""2D depthwise kernels for channels_first ``(B, C, H, W)``: stride-phase planes, one flat pass per tap.

Used by the host functions of :mod:`numba_dwconv.cpu.conv2d` (which documents the
contract: tasks own planes, partials are summed in a fixed order).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import parallel_kernel, serial_kernel


# ---------------------------------------------------------------------------- channels_first
# Each task owns one plane (b, c).  The plane is scattered once into ``sh * sw``
# zero-padded *phase* planes, ``phases[ph * sw + pw, r, q] = xpad[r * sh + ph, q * sw + pw]``:
# tap (i, k) then reads phase ((i*dh) % sh, (k*dw) % sw) shifted by ((i*dh) // sh,
# (k*dw) // sw) with unit strides, so every tap is one flat, contiguous, vectorised
# loop over the whole plane (rows share one pitch; the columns past the output width
# are computed and never used).  Strides 1 are the case of a single phase.
@serial_kernel
def _phase_shape(out_h, out_w, kh, kw, sh, sw, dh, dw):
    """(rows, pitch) of the phase planes covering every tap of every output."""
    padded_h = (out_h - 1) * sh + (kh - 1) * dh + 1
    padded_w = (out_w - 1) * sw + (kw - 1) * dw + 1
    return (padded_h + sh - 1) // sh, (padded_w + sw - 1) // sw


@serial_kernel
def _phase_segment(w_count, pitch, sw, left, pw):
    """(first column w, first phase column q, count) of the input columns landing in phase column pw."""
    w0 = (pw - left) % sw
    q0 = (w0 + left) // sw
    count = min((w_count - w0 + sw - 1) // sw, pitch - q0) if w0 < w_count else 0
    return w0, q0, max(count, 0)


@serial_kernel
def _scatter_phases(phases, plane, sh, sw, top, left):
    """Zero ``phases`` and write ``plane`` into them at padded offset (top, left); True if the plane is finite."""
    flat = phases.reshape(phases.size)
    for t in range(flat.size):  # explicit loops: numba's slice assignment costs ~50 ns per call
        flat[t] = 0.0
    rows, pitch = phases.shape[1], phases.shape[2]
    check = 0.0  # stays 0 unless some value is inf or NaN (x * 0 is then NaN)
    for h in range(plane.shape[0]):
        hp = h + top
        if hp >= rows * sh:
            break
        target_rows = phases[(hp % sh) * sw : (hp % sh) * sw + sw, hp // sh]
        for pw in range(sw):
            w0, q0, count = _phase_segment(plane.shape[1], pitch, sw, left, pw)
            target = target_rows[pw, q0 : q0 + count]
            if sw == 1:  # a plain slice is contiguous to numba: the copy vectorises
                source = plane[h, w0 : w0 + count]
                for t in range(count):
                    target[t] = source[t]
                    check += source[t] * 0.0
            else:
                strided = plane[h, w0 : w0 + count * sw : sw]
                for t in range(count):
                    target[t] = strided[t]
                    check += strided[t] * 0.0
    return check == 0.0


@serial_kernel
def _gather_phases(phases, plane, sh, sw, top, left):
    """The inverse of :func:`_scatter_phases`: ``plane`` read back from the phases (zero where none lands)."""
    rows, pitch = phases.shape[1], phases.shape[2]
    for h in range(plane.shape[0]):
        row = plane[h]
        for w in range(plane.shape[1]):
            row[w] = 0.0
    for h in range(plane.shape[0]):
        hp = h + top
        if hp >= rows * sh:
            break
        source_rows = phases[(hp % sh) * sw : (hp % sh) * sw + sw, hp // sh]
        for pw in range(sw):
            w0, q0, count = _phase_segment(plane.shape[1], pitch, sw, left, pw)
            source = source_rows[pw, q0 : q0 + count]
            if sw == 1:
                target = plane[h, w0 : w0 + count]
                for t in range(count):
                    target[t] = source[t]
            else:
                strided = plane[h, w0 : w0 + count * sw : sw]
                for t in range(count):
                    strided[t] = source[t]


@serial_kernel
def _tap_start(i, k, sh, sw, dh, dw, pitch, plane_size):
    """Flat start, in the stacked phase planes, of tap (i, k)'s window."""
    phase = ((i * dh) % sh) * sw + (k * dw) % sw
    return phase * plane_size + ((i * dh) // sh) * pitch + (k * dw) // sw


@parallel_kernel
def _forward_first(x, kernel, bias, sh, sw, dh, dw, top, left, out):
    batch, out_c, out_h, out_w = out.shape
    channels = x.shape[1]
    kh, kw, _, mult = kernel.shape
    rows, pitch = _phase_shape(out_h, out_w, kh, kw, sh, sw, dh, dw)
    n = (out_h - 1) * pitch + out_w
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        phases = np.empty((sh * sw, rows, pitch), x.dtype)
        _scatter_phases(phases, x[b, c], sh, sw, top, left)
        flat_in = phases.reshape(sh * sw * rows * pitch)
        flat_out = np.empty(out_h * pitch, x.dtype)
        for j in range(mult):
            o = c * mult + j
            value = bias[o]
            for p in range(flat_out.size):
                flat_out[p] = value
            for i in range(kh):
                for k in range(kw):
                    start = _tap_start(i, k, sh, sw, dh, dw, pitch, rows * pitch)
                    window = flat_in[start : start + n]
                    weight = kernel[i, k, c, j]
                    for p in range(n):
                        flat_out[p] += window[p] * weight
            for oh in range(out_h):
                target = out[b, o, oh]
                source = flat_out[oh * pitch : oh * pitch + out_w]
                for ow in range(out_w):
                    target[ow] = source[ow]


@serial_kernel
def _pitched_copy(pitched, plane):
    """``plane`` (out_h, out_w) into the left of ``pitched`` (out_h, pitch), whose other columns stay zero."""
    for oh in range(plane.shape[0]):
        target = pitched[oh, : plane.shape[1]]
        source = plane[oh]
        for ow in range(plane.shape[1]):
            target[ow] = source[ow]


@parallel_kernel
def _input_grad_first(grad, kernel, sh, sw, dh, dw, top, left, grad_in):
    """The transpose of the forward pass: each tap adds the output gradient into its phase window.

    The output gradient's columns past the output width are zero, so they add
    zeros (for finite weights) to the phase planes.
    """
    batch, channels = grad_in.shape[0], grad_in.shape[1]
    out_h, out_w = grad.shape[2], grad.shape[3]
    kh, kw, _, mult = kernel.shape
    rows, pitch = _phase_shape(out_h, out_w, kh, kw, sh, sw, dh, dw)
    n = (out_h - 1) * pitch + out_w
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        phases = np.zeros((sh * sw, rows, pitch), grad.dtype)
        flat_phases = phases.reshape(sh * sw * rows * pitch)
        pitched = np.zeros((out_h, pitch), grad.dtype)
        flat_grad = pitched.reshape(out_h * pitch)
        for j in range(mult):
            _pitched_copy(pitched, grad[b, c * mult + j])
            for i in range(kh):
                for k in range(kw):
                    start = _tap_start(i, k, sh, sw, dh, dw, pitch, rows * pitch)
                    window = flat_phases[start : start + n]
                    weight = kernel[i, k, c, j]
                    for p in range(n):
                        window[p] += flat_grad[p] * weight
        _gather_phases(phases, grad_in[b, c], sh, sw, top, left)


@parallel_kernel
def _kernel_grad_first(grad, x, sh, sw, dh, dw, top, left, kernel_partials, bias_partials):
    """Per plane, each tap's gradient is one flat dot of its phase window and the pitched output gradient.

    The pitched gradient's extra columns are zero; they meet input values that no
    output of the tap reads, so a plane holding inf or NaN takes the exact
    row-by-row path instead.
    """
    batch, out_c, out_h, out_w = grad.shape
    channels = x.shape[1]
    kh, kw = kernel_partials.shape[1], kernel_partials.shape[2]
    mult = out_c // channels
    rows, pitch = _phase_shape(out_h, out_w, kh, kw, sh, sw, dh, dw)
    n = (out_h - 1) * pitch + out_w
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        phases = np.empty((sh * sw, rows, pitch), x.dtype)
        finite = _scatter_phases(phases, x[b, c], sh, sw, top, left)
        flat_x = phases.reshape(sh * sw * rows * pitch)
        pitched = np.zeros((out_h, pitch), x.dtype)
        flat_grad = pitched.reshape(out_h * pitch)
        for j in range(mult):
            o = c * mult + j
            g_plane = grad[b, o]
            _pitched_copy(pitched, g_plane)
            total_bias = 0.0
            for p in range(n):
                total_bias += flat_grad[p]
            bias_partials[b, o] = total_bias
            for i in range(kh):
                for k in range(kw):
                    start = _tap_start(i, k, sh, sw, dh, dw, pitch, rows * pitch)
                    total = 0.0
                    if finite:
                        window = flat_x[start : start + n]
                        for p in range(n):
                            total += window[p] * flat_grad[p]
                    else:
                        for oh in range(out_h):
                            window = flat_x[start + oh * pitch : start + oh * pitch + out_w]
                            source = g_plane[oh]
                            for ow in range(out_w):
                                total += window[ow] * source[ow]
                    kernel_partials[b, i, k, c, j] = total
