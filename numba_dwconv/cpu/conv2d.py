"""``@njit(parallel=True)`` kernels for 2D depthwise convolution: forward, input gradient, kernel/bias gradient.

Each layout has its own loop order, and every inner loop runs over the
contiguous axis so that LLVM vectorises it:

* channels_last ``(B, H, W, C)`` (this module): one task per output row
  ``(b, oh)``, initialised with the bias; the columns whose taps all fall inside
  the input go through long fused passes (three taps per pass over blocks of
  columns x channels, the taps tiled once per call), the edge columns tap by tap
  with the padding clipped away.
* channels_first ``(B, C, H, W)`` (:mod:`numba_dwconv.cpu.conv2d_first`): one task
  per plane ``(b, c)``, scattered once into zero-padded stride-phase planes so
  that every tap is one flat unit-stride pass over the plane.

The input gradient mirrors the forward pass: each task owns one input row
(channels_last) or plane (channels_first) of ``grad_inputs``, so there are no
write races.  The kernel/bias gradient writes one partial per task over a
partition that depends on the shape only, summed in index order afterwards:
results are bit-identical from run to run and for any thread count.  The host
functions at the bottom take a :class:`numba_dwconv._geometry.Conv2DProblem`.

Indexing note: numba checks ``a[i + offset]`` for negative indices, which stops
LLVM from vectorising the loop (measured 1.7 vs 17 GFMA/s); the loops index
slices with plain loop counters instead.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import _memory
from .._jit import parallel_kernel, serial_kernel
from .conv2d_first import _forward_first, _input_grad_first, _kernel_grad_first

# Values (columns x channels) of one fused channels_last pass: long contiguous loops, L1-sized taps.
TILED_VALUES = 2048
# Kernel-gradient tasks per call (channels_last): a fixed partition of the output rows.
KERNEL_GRAD_TASKS = 64


@serial_kernel
def _valid_range(offset, stride, length, out_length):
    """Output positions ``o`` in ``[lo, hi)`` whose input position ``o * stride + offset`` lies in ``[0, length)``."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (length - offset + stride - 1) // stride if length > offset else 0
    return lo, max(lo, min(hi, out_length))


@serial_kernel
def _block_taps(target, source, tiled_row, in_start, step, n, kw):
    """``target[p] += sum_k source[in_start + k*step + p] * tiled_row[k, p]`` for ``p < n``, three taps per pass.

    ``target``/``source`` are flattened rows (columns x channels) and ``tiled_row[k]``
    is tap ``k`` repeated over a block of columns, so one long contiguous loop covers
    a block of output columns and three taps (m == 1, unit width stride).  Slices
    keep numba from inserting negative-index checks, which would stop vectorisation.
    """
    k = 0
    while k + 3 <= kw:
        a = in_start + k * step
        s0 = source[a : a + n]
        s1 = source[a + step : a + step + n]
        s2 = source[a + 2 * step : a + 2 * step + n]
        w0 = tiled_row[k, :n]
        w1 = tiled_row[k + 1, :n]
        w2 = tiled_row[k + 2, :n]
        for p in range(n):
            target[p] += s0[p] * w0[p] + s1[p] * w1[p] + s2[p] * w2[p]
        k += 3
    while k < kw:
        a = in_start + k * step
        s0 = source[a : a + n]
        w0 = tiled_row[k, :n]
        for p in range(n):
            target[p] += s0[p] * w0[p]
        k += 1


@serial_kernel
def _interior_columns(kw, sw, dw, left, width, out_w, block):
    """Output columns ``[lo, hi)`` whose every tap reads inside the row; empty when the fused path is off."""
    inner_lo, _ = _valid_range(-left, sw, width, out_w)
    _, inner_hi = _valid_range((kw - 1) * dw - left, sw, width, out_w)
    if block == 0 or inner_lo >= inner_hi:
        return 0, 0
    return inner_lo, inner_hi

# ---------------------------------------------------------------------------- channels_last
# The kernel arrives flattened to ``(KH, KW, C*m)`` (a free reshape): with m == 1 every tap
# is a contiguous channel vector, and ``a[b, h, w]`` rows are contiguous 1D views, so the
# channel loops below vectorise.
@parallel_kernel
def _forward_last(x, kernel, tiled, block, bias, sh, sw, dh, dw, top, left, out):
    """One task per output row ``(b, oh)``: the bias, then every tap as a shifted input row.

    With ``block > 0`` (m == 1, unit width stride) the columns whose taps all read
    inside the row go ``block`` columns at a time through :func:`_block_taps`.
    """
    batch, out_h, out_w, out_c = out.shape
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = kernel.shape[0], kernel.shape[1]
    mult = out_c // channels
    inner_lo, inner_hi = _interior_columns(kw, sw, dw, left, width, out_w, block)
    step_block = max(block, 1)
    for task in prange(batch * out_h):
        b = task // out_h
        oh = task - b * out_h
        for ow in range(out_w):
            target = out[b, oh, ow]
            for o in range(out_c):
                target[o] = bias[o]
        out_row = out[b, oh].reshape(out_w * out_c)
        for i in range(kh):
            ih = oh * sh + i * dh - top
            if ih < 0 or ih >= height:
                continue
            x_row = x[b, ih].reshape(width * channels)
            for ow0 in range(inner_lo, inner_hi, step_block):
                n = min(step_block, inner_hi - ow0) * channels
                _block_taps(out_row[ow0 * channels : ow0 * channels + n], x_row, tiled[i],
                            (ow0 - left) * channels, dw * channels, n, kw)
            for k in range(kw):
                offset = k * dw - left
                lo, hi = _valid_range(offset, sw, width, out_w)
                taps = kernel[i, k]
                for ow in range(lo, hi):
                    if inner_lo <= ow < inner_hi:
                        continue
                    source = x[b, ih, ow * sw + offset]
                    target = out[b, oh, ow]
                    if mult == 1:
                        for c in range(channels):
                            target[c] += source[c] * taps[c]
                    else:
                        for o in range(out_c):
                            target[o] += source[o // mult] * taps[o]


@parallel_kernel
def _input_grad_last(grad, kernel, tiled, block, sh, sw, dh, dw, top, left, grad_in):
    """One task per input row ``(b, ih)``: the output rows that tap ``i`` maps onto it, added along the row.

    With ``block > 0`` (m == 1, unit width stride) the input columns that every tap
    reaches go through :func:`_block_taps` with a negative step, as in the forward pass.
    """
    batch, height, width, channels = grad_in.shape
    out_h, out_w, out_c = grad.shape[1], grad.shape[2], grad.shape[3]
    kh, kw = kernel.shape[0], kernel.shape[1]
    mult = out_c // channels
    # columns iw with 0 <= iw + left - k*dw < out_w for every k (unit width stride)
    inner_lo = max((kw - 1) * dw - left, 0)
    inner_hi = min(out_w - left, width)
    if block == 0 or inner_lo >= inner_hi:
        inner_lo, inner_hi = 0, 0
    step_block = max(block, 1)
    for task in prange(batch * height):
        b = task // height
        ih = task - b * height
        for w in range(width):
            target = grad_in[b, ih, w]
            for c in range(channels):
                target[c] = 0.0
        in_row = grad_in[b, ih].reshape(width * channels)
        for i in range(kh):
            q = ih + top - i * dh  # = oh * sh for the output row oh that reads row ih through tap i
            if q < 0 or q % sh != 0 or q // sh >= out_h:
                continue
            oh = q // sh
            g_row = grad[b, oh].reshape(out_w * out_c)
            for iw0 in range(inner_lo, inner_hi, step_block):
                n = min(step_block, inner_hi - iw0) * channels
                _block_taps(in_row[iw0 * channels : iw0 * channels + n], g_row, tiled[i],
                            (iw0 + left) * channels, -dw * channels, n, kw)
            for k in range(kw):
                offset = k * dw - left
                lo, hi = _valid_range(offset, sw, width, out_w)
                taps = kernel[i, k]
                for ow in range(lo, hi):
                    iw = ow * sw + offset
                    if inner_lo <= iw < inner_hi:
                        continue
                    source = grad[b, oh, ow]
                    target = grad_in[b, ih, iw]
                    if mult == 1:
                        for c in range(channels):
                            target[c] += source[c] * taps[c]
                    else:
                        for c in range(channels):
                            total = 0.0
                            for j in range(mult):
                                total += source[c * mult + j] * taps[c * mult + j]
                            target[c] += total


@parallel_kernel
def _kernel_grad_partials_last(grad, x, block, sh, sw, dh, dw, top, left, rows_per_task, kernel_partials,
                               bias_partials):
    """One partial per task (a batch entry and a chunk of output rows).

    With ``block > 0`` (m == 1, unit width stride) the interior columns accumulate
    ``x * grad`` into block-long accumulators per tap (long contiguous loops),
    folded into the per-channel partial at the end of the task.
    """
    batch, out_h, out_w, out_c = grad.shape
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = kernel_partials.shape[1], kernel_partials.shape[2]
    mult = out_c // channels
    inner_lo, inner_hi = _interior_columns(kw, sw, dw, left, width, out_w, block)
    step_block = max(block, 1)
    span = step_block * out_c
    chunks = (out_h + rows_per_task - 1) // rows_per_task
    for task in prange(batch * chunks):
        b = task // chunks
        oh0 = (task - b * chunks) * rows_per_task
        part = kernel_partials[task]
        part[:] = 0.0
        acc = np.zeros((kh, kw, span), x.dtype)
        bias_acc = np.zeros(span, x.dtype)
        for oh in range(oh0, min(oh0 + rows_per_task, out_h)):
            g_row = grad[b, oh].reshape(out_w * out_c)
            for ow0 in range(0, out_w, step_block):
                n = min(step_block, out_w - ow0) * out_c
                source = g_row[ow0 * out_c : ow0 * out_c + n]
                for p in range(n):
                    bias_acc[p] += source[p]
            for i in range(kh):
                ih = oh * sh + i * dh - top
                if ih < 0 or ih >= height:
                    continue
                x_row = x[b, ih].reshape(width * channels)
                for ow0 in range(inner_lo, inner_hi, step_block):
                    n = min(step_block, inner_hi - ow0) * channels
                    g_span = g_row[ow0 * channels : ow0 * channels + n]
                    for k in range(kw):
                        start = (ow0 + k * dw - left) * channels
                        x_span = x_row[start : start + n]
                        a = acc[i, k, :n]
                        for p in range(n):
                            a[p] += x_span[p] * g_span[p]
                for k in range(kw):
                    offset = k * dw - left
                    lo, hi = _valid_range(offset, sw, width, out_w)
                    taps = part[i, k]
                    for ow in range(lo, hi):
                        if inner_lo <= ow < inner_hi:
                            continue
                        g = grad[b, oh, ow]
                        xv = x[b, ih, ow * sw + offset]
                        if mult == 1:
                            for c in range(channels):
                                taps[c] += xv[c] * g[c]
                        else:
                            for o in range(out_c):
                                taps[o] += xv[o // mult] * g[o]
        bias_part = bias_partials[task]
        bias_part[:] = 0.0
        for copy in range(step_block):  # fold the block-long accumulators, in a fixed order
            for o in range(out_c):
                bias_part[o] += bias_acc[copy * out_c + o]
            if inner_lo < inner_hi:
                for i in range(kh):
                    for k in range(kw):
                        taps = part[i, k]
                        for c in range(channels):
                            taps[c] += acc[i, k, copy * channels + c]

@parallel_kernel
def _sum_partials(kernel_partials, bias_partials, grad_kernel, grad_bias):
    """Sums over the first axis, in index order (each element is summed by one thread)."""
    flat_partials = kernel_partials.reshape(kernel_partials.shape[0], -1)
    flat_kernel = grad_kernel.reshape(-1)
    for e in prange(flat_kernel.size):
        total = 0.0
        for p in range(flat_partials.shape[0]):
            total += flat_partials[p, e]
        flat_kernel[e] = total
    for o in prange(grad_bias.size):
        total = 0.0
        for p in range(bias_partials.shape[0]):
            total += bias_partials[p, o]
        grad_bias[o] = total


# ---------------------------------------------------------------------------- host functions
def _flat_taps(kernel):
    """``(KH, KW, C, m)`` -> ``(KH, KW, C*m)``: tap ``(i, k)`` of output channel ``c*m + j`` (no copy)."""
    return kernel.reshape(kernel.shape[0], kernel.shape[1], -1)


def _block_size(problem) -> int:
    """Columns per fused channels_last pass (m == 1 and unit width stride only; 0 disables the fused path)."""
    if problem.multiplier != 1 or problem.width.stride != 1:
        return 0
    return max(1, TILED_VALUES // problem.channels)


def _tiled_taps(taps, problem):
    """(taps repeated over a block of columns, block) for the fused channels_last path."""
    block = _block_size(problem)
    if block == 0:
        return np.zeros((1, 1, 1), taps.dtype), 0
    return np.ascontiguousarray(np.tile(taps, (1, 1, block))), block


def _axes_args(problem):
    h, w = problem.height, problem.width
    return h.stride, w.stride, h.dilation, w.dilation, h.pad_left, w.pad_left


def conv2d_forward(problem, inputs, kernel, bias):
    """Forward pass on C-contiguous arrays of ``problem.dtype``; ``bias`` may be None."""
    out = _memory.empty(problem.output_shape, problem.dtype)
    if out.size == 0:
        return out
    if bias is None:
        bias = np.zeros(problem.channels * problem.multiplier, problem.dtype)
    if problem.channels_last:
        taps = _flat_taps(kernel)
        tiled, block = _tiled_taps(taps, problem)
        _forward_last(inputs, taps, tiled, block, bias, *_axes_args(problem), out)
    else:
        _forward_first(inputs, kernel, bias, *_axes_args(problem), out)
    return out


def conv2d_input_grad(problem, grad_outputs, kernel):
    """Gradient with respect to the inputs."""
    grad_in = _memory.empty(problem.input_shape, problem.dtype)
    if grad_in.size == 0:
        return grad_in
    if problem.channels_last:
        taps = _flat_taps(kernel)
        tiled, block = _tiled_taps(taps, problem)
        _input_grad_last(grad_outputs, taps, tiled, block, *_axes_args(problem), grad_in)
    else:
        _input_grad_first(grad_outputs, kernel, *_axes_args(problem), grad_in)
    return grad_in


def conv2d_kernel_grad(problem, grad_outputs, inputs):
    """Kernel and bias gradients: per-task partials, then a fixed-order sum."""
    dtype = problem.dtype
    out_channels = problem.channels * problem.multiplier
    kh, kw = problem.height.kernel_size, problem.width.kernel_size
    grad_kernel = np.empty(problem.kernel_shape, dtype)
    grad_bias = np.empty(out_channels, dtype)
    if problem.channels_last:
        out_h = problem.height.out_length
        per_entry = max(1, math.ceil(KERNEL_GRAD_TASKS / max(problem.batch, 1)))
        rows_per_task = max(1, math.ceil(out_h / per_entry))
        n_tasks = problem.batch * math.ceil(out_h / rows_per_task)
        kernel_partials = np.empty((n_tasks, kh, kw, out_channels), dtype)
        bias_partials = np.empty((n_tasks, out_channels), dtype)
        if n_tasks:
            _kernel_grad_partials_last(grad_outputs, inputs, _block_size(problem), *_axes_args(problem), rows_per_task,
                                       kernel_partials, bias_partials)
    else:
        kernel_partials = np.empty((problem.batch, *problem.kernel_shape), dtype)
        bias_partials = np.empty((problem.batch, out_channels), dtype)
        if problem.batch:
            _kernel_grad_first(grad_outputs, inputs, *_axes_args(problem), kernel_partials, bias_partials)
    _sum_partials(kernel_partials, bias_partials, grad_kernel, grad_bias)
    return grad_kernel, grad_bias
