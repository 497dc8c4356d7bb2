"""``@njit(parallel=True)`` kernels for 2D depthwise convolution: forward, input gradient, kernel/bias gradient.

Each layout has its own loop order, and every inner loop runs over the
contiguous axis so that LLVM vectorises it:

* channels_last ``(B, H, W, C)``: one task per output row ``(b, oh)``; the row
  ``out[b, oh]`` (``OW x C*m`` values, a few tens of KB: it stays in L1) is
  initialised with the bias and accumulates every tap ``(i, k)`` as a shifted
  row of the input, vectorised over channels.
* channels_first ``(B, C, H, W)``: one task per plane ``(b, c)``; each output row
  accumulates the taps as shifted input rows, vectorised over the width.

The input gradient mirrors the forward pass: each task owns one input row
(channels_last) or plane (channels_first) of ``grad_inputs`` and adds the output
gradients that reach it along the same taps, so there are no write races.  The kernel/bias gradient writes one partial
per task over a partition that depends on the shape only, summed in index order
afterwards: results are bit-identical from run to run and for any thread count.

Padding never materialises: the kernels clip each tap's range of output
positions to the ones that read inside the input.  The host functions at the
bottom take a :class:`numba_dwconv._geometry.Conv2DProblem`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import _memory
from .._jit import parallel_kernel, serial_kernel

# Kernel-gradient tasks per call (channels_last): a fixed partition of the output rows.
KERNEL_GRAD_TASKS = 64


@serial_kernel
def _valid_range(offset, stride, length, out_length):
    """Output positions ``o`` in ``[lo, hi)`` whose input position ``o * stride + offset`` lies in ``[0, length)``."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (length - offset + stride - 1) // stride if length > offset else 0
    return lo, max(lo, min(hi, out_length))


# ---------------------------------------------------------------------------- channels_last
# The kernel arrives flattened to ``(KH, KW, C*m)`` (a free reshape): with m == 1 every tap
# is a contiguous channel vector, and ``a[b, h, w]`` rows are contiguous 1D views, so the
# channel loops below vectorise.
@parallel_kernel
def _forward_last(x, kernel, bias, sh, sw, dh, dw, top, left, out):
    batch, out_h, out_w, out_c = out.shape
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = kernel.shape[0], kernel.shape[1]
    mult = out_c // channels
    for task in prange(batch * out_h):
        b = task // out_h
        oh = task - b * out_h
        for ow in range(out_w):
            target = out[b, oh, ow]
            for o in range(out_c):
                target[o] = bias[o]
        for i in range(kh):
            ih = oh * sh + i * dh - top
            if ih < 0 or ih >= height:
                continue
            for k in range(kw):
                offset = k * dw - left
                lo, hi = _valid_range(offset, sw, width, out_w)
                taps = kernel[i, k]
                for ow in range(lo, hi):
                    source = x[b, ih, ow * sw + offset]
                    target = out[b, oh, ow]
                    if mult == 1:
                        for c in range(channels):
                            target[c] += source[c] * taps[c]
                    else:
                        for o in range(out_c):
                            target[o] += source[o // mult] * taps[o]


@parallel_kernel
def _input_grad_last(grad, kernel, sh, sw, dh, dw, top, left, grad_in):
    """One task per input row ``(b, ih)``: the output rows that tap ``i`` maps onto it, scattered within the row."""
    batch, height, width, channels = grad_in.shape
    out_h, out_w, out_c = grad.shape[1], grad.shape[2], grad.shape[3]
    kh, kw = kernel.shape[0], kernel.shape[1]
    mult = out_c // channels
    for task in prange(batch * height):
        b = task // height
        ih = task - b * height
        for w in range(width):
            target = grad_in[b, ih, w]
            for c in range(channels):
                target[c] = 0.0
        for i in range(kh):
            q = ih + top - i * dh  # = oh * sh for the output row oh that reads row ih through tap i
            if q < 0 or q % sh != 0 or q // sh >= out_h:
                continue
            oh = q // sh
            for k in range(kw):
                offset = k * dw - left
                lo, hi = _valid_range(offset, sw, width, out_w)
                taps = kernel[i, k]
                for ow in range(lo, hi):
                    source = grad[b, oh, ow]
                    target = grad_in[b, ih, ow * sw + offset]
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
def _kernel_grad_partials_last(grad, x, sh, sw, dh, dw, top, left, rows_per_task, kernel_partials, bias_partials):
    batch, out_h, out_w, out_c = grad.shape
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = kernel_partials.shape[1], kernel_partials.shape[2]
    mult = out_c // channels
    chunks = (out_h + rows_per_task - 1) // rows_per_task
    for task in prange(batch * chunks):
        b = task // chunks
        oh0 = (task - b * chunks) * rows_per_task
        part = kernel_partials[task]
        bias_part = bias_partials[task]
        for o in range(out_c):
            bias_part[o] = 0.0
        for i in range(kh):
            for k in range(kw):
                taps = part[i, k]
                for o in range(out_c):
                    taps[o] = 0.0
        for oh in range(oh0, min(oh0 + rows_per_task, out_h)):
            for ow in range(out_w):
                source = grad[b, oh, ow]
                for o in range(out_c):
                    bias_part[o] += source[o]
            for i in range(kh):
                ih = oh * sh + i * dh - top
                if ih < 0 or ih >= height:
                    continue
                for k in range(kw):
                    offset = k * dw - left
                    lo, hi = _valid_range(offset, sw, width, out_w)
                    taps = part[i, k]
                    for ow in range(lo, hi):
                        g = grad[b, oh, ow]
                        xv = x[b, ih, ow * sw + offset]
                        if mult == 1:
                            for c in range(channels):
                                taps[c] += xv[c] * g[c]
                        else:
                            for o in range(out_c):
                                taps[o] += xv[o // mult] * g[o]


# ---------------------------------------------------------------------------- channels_first

@serial_kernel
def _flat_taps_pass(target, source, taps, c, j, row_step, col_step, n):
    """Unit strides: ``target[p] += sum_{i,k} source[p + i*row_step + k*col_step] * taps[i, k, c, j]``, p < n.

    ``source`` is a zero-padded plane and ``target`` a plane of the same row pitch,
    both flattened: a whole plane per tap is one contiguous, vectorised loop
    (columns beyond the output width are computed and never copied out).
    """
    kh, kw = taps.shape[0], taps.shape[1]
    for i in range(kh):
        for k in range(kw):
            start = i * row_step + k * col_step
            window = source[start : start + n]
            weight = taps[i, k, c, j]
            for p in range(n):
                target[p] += window[p] * weight


@serial_kernel
def _padded_copy(padded, plane, top, left):
    """Zero ``padded`` and copy ``plane`` into it at ``(top, left)``."""
    padded[:] = 0.0
    for h in range(plane.shape[0]):
        row = padded[top + h, left : left + plane.shape[1]]
        source = plane[h]
        for w in range(plane.shape[1]):
            row[w] = source[w]

@parallel_kernel
def _forward_first_unit_stride(x, kernel, bias, dh, dw, top, left, out):
    """Strides 1: each plane ``(b, c)`` is copied once into a zero-padded buffer, then one flat pass per tap."""
    batch, out_c, out_h, out_w = out.shape
    channels = x.shape[1]
    kh, kw, _, mult = kernel.shape
    padded_h = out_h + (kh - 1) * dh
    pitch = out_w + (kw - 1) * dw
    n = (out_h - 1) * pitch + out_w
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        padded = np.empty((padded_h, pitch), x.dtype)
        _padded_copy(padded, x[b, c], top, left)
        flat_in = padded.reshape(padded_h * pitch)
        flat_out = np.empty(out_h * pitch, x.dtype)
        for j in range(mult):
            o = c * mult + j
            flat_out[:] = bias[o]
            _flat_taps_pass(flat_out, flat_in, kernel, c, j, dh * pitch, dw, n)
            for oh in range(out_h):
                out[b, o, oh] = flat_out[oh * pitch : oh * pitch + out_w]


@parallel_kernel
def _forward_first(x, kernel, bias, sh, sw, dh, dw, top, left, out):
    """Any strides: per output row, each tap as a (strided) input row segment."""
    batch, out_c, out_h, out_w = out.shape
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, _, mult = kernel.shape
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        plane = x[b, c]
        for j in range(mult):
            o = c * mult + j
            for oh in range(out_h):
                row = out[b, o, oh]
                row[:] = bias[o]
                for i in range(kh):
                    ih = oh * sh + i * dh - top
                    if ih < 0 or ih >= height:
                        continue
                    x_row = plane[ih]
                    for k in range(kw):
                        offset = k * dw - left
                        lo, hi = _valid_range(offset, sw, width, out_w)
                        weight = kernel[i, k, c, j]
                        # slices, not offset indices: numba then knows the indices are not
                        # negative (no wraparound select) and LLVM vectorises the loop
                        target = row[lo:hi]
                        source = x_row[lo * sw + offset : (hi - 1) * sw + offset + 1 : sw]
                        for p in range(hi - lo):
                            target[p] += source[p] * weight


@parallel_kernel
def _input_grad_first_unit_stride(grad, kernel, dh, dw, top, left, grad_in):
    """Strides 1: the input gradient is the zero-padded output gradient correlated with the flipped taps."""
    batch, channels, height, width = grad_in.shape
    kh, kw, _, mult = kernel.shape
    pad_top = (kh - 1) * dh - top
    pad_left = (kw - 1) * dw - left
    padded_h = height + (kh - 1) * dh
    pitch = width + (kw - 1) * dw
    n = (height - 1) * pitch + width
    flipped = kernel[::-1, ::-1]
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        padded = np.empty((padded_h, pitch), grad.dtype)
        flat_in = padded.reshape(padded_h * pitch)
        flat_out = np.zeros(height * pitch, grad.dtype)
        for j in range(mult):
            _padded_copy(padded, grad[b, c * mult + j], pad_top, pad_left)
            _flat_taps_pass(flat_out, flat_in, flipped, c, j, dh * pitch, dw, n)
        for h in range(height):
            grad_in[b, c, h] = flat_out[h * pitch : h * pitch + width]


@parallel_kernel
def _input_grad_first(grad, kernel, sh, sw, dh, dw, top, left, grad_in):
    batch, channels, height, width = grad_in.shape
    out_h, out_w = grad.shape[2], grad.shape[3]
    kh, kw, _, mult = kernel.shape
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        plane = grad_in[b, c]
        plane[:] = 0.0
        for j in range(mult):
            o = c * mult + j
            for oh in range(out_h):
                g_row = grad[b, o, oh]
                for i in range(kh):
                    ih = oh * sh + i * dh - top
                    if ih < 0 or ih >= height:
                        continue
                    target = plane[ih]
                    for k in range(kw):
                        offset = k * dw - left
                        lo, hi = _valid_range(offset, sw, width, out_w)
                        weight = kernel[i, k, c, j]
                        span = target[lo * sw + offset : (hi - 1) * sw + offset + 1 : sw]
                        source = g_row[lo:hi]
                        for p in range(hi - lo):
                            span[p] += source[p] * weight


@parallel_kernel
def _kernel_grad_partials_first(grad, x, sh, sw, dh, dw, top, left, kernel_partials, bias_partials):
    batch, out_c, out_h, out_w = grad.shape
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, _, mult = kernel_partials.shape[1:]
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        plane = x[b, c]
        for j in range(mult):
            o = c * mult + j
            total_bias = 0.0
            for oh in range(out_h):
                for ow in range(out_w):
                    total_bias += grad[b, o, oh, ow]
            bias_partials[b, o] = total_bias
            for i in range(kh):
                for k in range(kw):
                    offset = k * dw - left
                    lo, hi = _valid_range(offset, sw, width, out_w)
                    total = 0.0
                    for oh in range(out_h):
                        ih = oh * sh + i * dh - top
                        if ih < 0 or ih >= height:
                            continue
                        x_span = plane[ih, lo * sw + offset : (hi - 1) * sw + offset + 1 : sw]
                        g_span = grad[b, o, oh, lo:hi]
                        for p in range(hi - lo):
                            total += x_span[p] * g_span[p]
                    kernel_partials[b, i, k, c, j] = total


@parallel_kernel
def _kernel_grad_first_unit_stride(grad, x, dh, dw, top, left, kernel_partials, bias_partials):
    """Strides 1: per plane, each tap's gradient is one flat dot of the zero-padded plane and the output gradient.

    The output gradient is laid out with the padded plane's row pitch, its extra
    columns zero; they multiply input values that no tap of those outputs reads,
    so a plane holding inf or NaN takes the exact row-by-row path instead.
    """
    batch, out_c, out_h, out_w = grad.shape
    channels = x.shape[1]
    kh, kw = kernel_partials.shape[1], kernel_partials.shape[2]
    mult = out_c // channels
    padded_h = out_h + (kh - 1) * dh
    pitch = out_w + (kw - 1) * dw
    n = (out_h - 1) * pitch + out_w
    for task in prange(batch * channels):
        b = task // channels
        c = task - b * channels
        padded = np.empty((padded_h, pitch), x.dtype)
        _padded_copy(padded, x[b, c], top, left)
        flat_x = padded.reshape(padded_h * pitch)
        finite = np.isfinite(x[b, c]).all()
        pitched = np.zeros((out_h, pitch), x.dtype)
        flat_grad = pitched.reshape(out_h * pitch)
        for j in range(mult):
            o = c * mult + j
            g_plane = grad[b, o]
            total_bias = 0.0
            for oh in range(out_h):
                target = pitched[oh, :out_w]
                source = g_plane[oh]
                for ow in range(out_w):
                    target[ow] = source[ow]
                    total_bias += source[ow]
            bias_partials[b, o] = total_bias
            for i in range(kh):
                for k in range(kw):
                    start = i * dh * pitch + k * dw
                    total = 0.0
                    if finite:
                        window = flat_x[start : start + n]
                        for p in range(n):
                            total += window[p] * flat_grad[p]
                    else:
                        for oh in range(out_h):
                            window = padded[oh + i * dh, k * dw : k * dw + out_w]
                            source = g_plane[oh]
                            for ow in range(out_w):
                                total += window[ow] * source[ow]
                    kernel_partials[b, i, k, c, j] = total


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


def _unit_strides(problem) -> bool:
    return problem.height.stride == 1 and problem.width.stride == 1


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
        _forward_last(inputs, _flat_taps(kernel), bias, *_axes_args(problem), out)
    elif _unit_strides(problem):
        _forward_first_unit_stride(inputs, kernel, bias, *_axes_args(problem)[2:], out)
    else:
        _forward_first(inputs, kernel, bias, *_axes_args(problem), out)
    return out


def conv2d_input_grad(problem, grad_outputs, kernel):
    """Gradient with respect to the inputs."""
    grad_in = _memory.empty(problem.input_shape, problem.dtype)
    if grad_in.size == 0:
        return grad_in
    if problem.channels_last:
        _input_grad_last(grad_outputs, _flat_taps(kernel), *_axes_args(problem), grad_in)
    elif _unit_strides(problem):
        _input_grad_first_unit_stride(grad_outputs, kernel, *_axes_args(problem)[2:], grad_in)
    else:
        _input_grad_first(grad_outputs, kernel, *_axes_args(problem), grad_in)
    return grad_in


def conv2d_kernel_grad(problem, grad_outputs, inputs):
    """Kernel and bias gradients: per-task partials, then a fixed-order sum."""
    dtype = problem.dtype
    out_channels = problem.channels * problem.multiplier
    grad_kernel = np.empty(problem.kernel_shape, dtype)
    grad_bias = np.empty(out_channels, dtype)
    if problem.channels_last:
        out_h = problem.height.out_length
        per_entry = max(1, math.ceil(KERNEL_GRAD_TASKS / max(problem.batch, 1)))
        rows_per_task = max(1, math.ceil(out_h / per_entry))
        n_tasks = problem.batch * math.ceil(out_h / rows_per_task)
        kernel_partials = np.empty((n_tasks, problem.height.kernel_size, problem.width.kernel_size, out_channels),
                                   dtype)
        bias_partials = np.empty((n_tasks, out_channels), dtype)
        if n_tasks:
            _kernel_grad_partials_last(grad_outputs, inputs, *_axes_args(problem), rows_per_task, kernel_partials,
                                       bias_partials)
    else:
        kernel_partials = np.empty((problem.batch, *problem.kernel_shape), dtype)
        bias_partials = np.empty((problem.batch, out_channels), dtype)
        if problem.batch and _unit_strides(problem):
            _kernel_grad_first_unit_stride(grad_outputs, inputs, *_axes_args(problem)[2:], kernel_partials,
                                           bias_partials)
        elif problem.batch:
            _kernel_grad_partials_first(grad_outputs, inputs, *_axes_args(problem), kernel_partials, bias_partials)
    _sum_partials(kernel_partials, bias_partials, grad_kernel, grad_bias)
    return grad_kernel, grad_bias
