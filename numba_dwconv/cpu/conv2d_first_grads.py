"""2D depthwise kernel gradients for channels_first ``(B, C, H, W)``, and the one-pass backward of 'same'.

The kernel gradient is, per tap, one flat dot product of the tap's phase window with the
output gradient in rows of ``pitch`` values (zeros in the extra columns), five taps per pass
(the first pass also sums the output gradient for the bias).  For 'same' with unit strides
both gradients come from one pass that reads each output-gradient plane once.  The phase
planes and the correlation they share with the forward and the input gradient are in
:mod:`numba_dwconv.cpu.conv2d_first`.
"""

from __future__ import annotations

from numba import uint64

from .._entries import call_entry
from .._jit import parallel_kernel, serial_kernel, task_share
from .conv2d_first import _pitched_copy, _scatter_phases, _scatter_unit


@serial_kernel
def _plane_is_finite(x, x0, size):
    """True if no value of ``x[x0 : x0 + size]`` is inf or NaN (``v * 0`` is then 0 everywhere)."""
    zero = x.dtype.type(0)
    check = zero
    for p in range(uint64(size)):
        check += x[x0 + p] * zero
    return check == zero


@serial_kernel
def _five_dots(buf, s0, s1, s2, s3, s4, grad, g0, n):
    """The dots of ``grad[g0:g0 + n]`` with the windows ``buf[s:s + n]``, and its sum, in one pass.

    Six loads per five products (a dot per pass would load twice per product).
    """
    a0 = a1 = a2 = a3 = a4 = total = grad.dtype.type(0)
    for p in range(n):
        g = grad[g0 + p]
        a0 += buf[s0 + p] * g
        a1 += buf[s1 + p] * g
        a2 += buf[s2 + p] * g
        a3 += buf[s3 + p] * g
        a4 += buf[s4 + p] * g
        total += g
    return a0, a1, a2, a3, a4, total


@serial_kernel
def _window_dot_by_rows(buf, start, grad, g0, pitch, out_h, out_w):
    """The dot of a tap window with the pitched gradient over the real output columns only."""
    total = grad.dtype.type(0)
    for oh in range(uint64(out_h)):
        row = oh * uint64(pitch)
        for ow in range(uint64(out_w)):
            total += buf[start + row + ow] * grad[g0 + row + ow]
    return total


@serial_kernel
def _plane_grads(buf, finite, grad, g0, offsets, pitch, out_h, out_w, kernel_partials, k0, k_step, bias_partials,
                 bias_index, n_taps):
    """Bias and tap gradients of one plane: the pitched gradient ``grad[g0:]`` against the phase windows in ``buf``.

    Taps go five to a pass (the last group repeats the last tap; the copies are
    dropped); the first pass also sums the gradient for the bias.  The pitched
    gradient's extra columns are zero; they meet input values that no output of
    the tap reads, so a plane holding inf or NaN
    (``finite`` False) takes the exact row-by-row path.  Tap ``t``'s gradient goes
    to ``kernel_partials[k0 + t*k_step]``.  ``n_taps`` a run-time count (one compiled kernel for every size:
    the passes are long dot products, what unrolling their loop would save is nothing next to them).
    """
    n = uint64((out_h - 1) * pitch + out_w)
    if not finite:
        total_bias = grad.dtype.type(0)
        for p in range(n):
            total_bias += grad[g0 + p]
        bias_partials[bias_index] = total_bias
        for t in range(n_taps):
            kernel_partials[k0 + uint64(t * k_step)] = _window_dot_by_rows(buf, uint64(offsets[t]), grad, g0, pitch,
                                                                           out_h, out_w)
        return
    for t in range(0, n_taps, 5):
        last = n_taps - 1
        d0, d1, d2, d3, d4, total = _five_dots(buf, uint64(offsets[t]), uint64(offsets[min(t + 1, last)]),
                                               uint64(offsets[min(t + 2, last)]), uint64(offsets[min(t + 3, last)]),
                                               uint64(offsets[min(t + 4, last)]), grad, g0, n)
        if t == 0:
            bias_partials[bias_index] = total
        kernel_partials[k0 + uint64(t * k_step)] = d0
        if t + 1 < n_taps:
            kernel_partials[k0 + uint64((t + 1) * k_step)] = d1
        if t + 2 < n_taps:
            kernel_partials[k0 + uint64((t + 2) * k_step)] = d2
        if t + 3 < n_taps:
            kernel_partials[k0 + uint64((t + 3) * k_step)] = d3
        if t + 4 < n_taps:
            kernel_partials[k0 + uint64((t + 4) * k_step)] = d4


@parallel_kernel
def _kernel_grad_first(part, parts, grad, x, kernel_partials, bias_partials, offsets, batch, channels, mult, height,
                       width, out_h, out_w, sh, sw, top, left, rows, pitch, n_taps, scratch, scratch_pitched):
    """Per plane, each tap's gradient is one flat dot of its phase window and the pitched output gradient.

    ``kernel_partials`` is flat (B * KH*KW * C*m), ``bias_partials`` (B * C*m).
    """
    n_out = channels * mult
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        x0 = uint64(task) * uint64(height * width)
        buf = scratch[part]
        _scatter_phases(buf, x, x0, height, width, rows, pitch, sh, sw, top, left)
        finite = _plane_is_finite(x, x0, height * width)
        pitched = scratch_pitched[part]
        pitched[:] = 0
        for j in range(mult):
            o = c * mult + j
            _pitched_copy(grad, uint64(b * n_out + o) * uint64(out_h * out_w), out_h, out_w, pitched, pitch)
            _plane_grads(buf, finite, pitched, uint64(0), offsets, pitch, out_h, out_w, kernel_partials,
                         uint64(b * n_taps * n_out + o), n_out, bias_partials, uint64(b * n_out + o), n_taps)


@parallel_kernel
def _backward_same_unit_first(part, parts, grad, x, flipped, grad_in, kernel_partials, bias_partials, offsets, batch,
                              channels, mult, height, width, top, left, rows, pitch, dh, dw, n_taps, scratch,
                              scratch_g, plane_fn, adds_fn):
    """All gradients in one pass over the planes, for unit strides and outputs the size of the inputs ('same').

    The input planes' phase buffer and the output gradient's padded buffer then
    have the same rows, pitch and tap offsets, and the padded output gradient,
    read from its first real value, is the pitched gradient of the kernel
    gradient (its padding columns are the zero extra columns).  Each output
    gradient plane is read from memory once, for both gradients.  ``flipped``
    must be finite (see :func:`numba_dwconv.cpu.conv2d_first._input_grad_unit_first`, which also says what
    ``plane_fn`` and ``adds_fn`` do).
    """
    n_out = channels * mult
    zero = grad_in.dtype.type(0)
    kh_pad = (rows - height) - top  # the output gradient's padding: (KH-1)*dh - top, and the same for the width
    kw_pad = (pitch - width) - left
    g_first = uint64(kh_pad * pitch + kw_pad)
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        x0 = uint64(task) * uint64(height * width)
        xbuf = scratch[part]
        _scatter_unit(xbuf, x, x0, height, width, rows, pitch, top, left)
        finite = _plane_is_finite(x, x0, height * width)
        gbuf = scratch_g[part]
        for j in range(mult):
            o = c * mult + j
            _scatter_unit(gbuf, grad, uint64(b * n_out + o) * uint64(height * width), height, width, rows, pitch,
                          kh_pad, kw_pad)
            if j == 0:
                call_entry(plane_fn, (gbuf, offsets, pitch, dh, dw, flipped, o, n_out, zero, grad_in, x0, height,
                                      width, n_taps))
            else:
                call_entry(adds_fn, (gbuf, offsets, pitch, flipped, o, n_out, grad_in, x0, height, width, n_taps))
            _plane_grads(xbuf, finite, gbuf, g_first, offsets, pitch, height, width, kernel_partials,
                         uint64(b * n_taps * n_out + o), n_out, bias_partials, uint64(b * n_out + o), n_taps)
