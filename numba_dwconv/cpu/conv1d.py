"""Multi-threaded CPU kernels for 1D depthwise convolution.

Three operations, each with a native loop order per layout (no transposed copies,
no im2col, no padded copy of the input):

* forward: ``y[t, c*m+j] = bias[c*m+j] + sum_i x[t*s + i*d - pad_left, c] * w[i, c, j]``
* input gradient: the transpose of the forward map, computed as a *gather* over
  input positions (or input tiles), so threads never write the same element.
* kernel and bias gradients: per-task partial sums followed by a fixed-order
  reduction (:func:`numba_dwconv.cpu.partials.sum_partials`), so results are bit-identical run to run and
  independent of the number of threads.

The kernels trust their callers (:mod:`numba_dwconv.ops` validates everything and
passes C-contiguous arrays of one float dtype).  Tunables (rows per task, tile
length) are arguments chosen by the host functions at the bottom of this module.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import _memory
from .._jit import launch, parallel_kernel, serial_kernel
from .partials import sum_partials

# Output rows handled by one parallel task (channels_last).
ROWS_PER_TASK = 64


# Positions per channels_first tile (an output tile plus its input window stay
# in L1/L2 across the taps); measured on Zen 5: 2048-8192 within noise for
# K <= 7, 4096 best at K = 31 (256: 17%, 2048: 31%, 4096: 32% of the roofline).
TILE_LENGTH = 4096
# Bytes of x rows plus grad_out rows of one kernel-gradient sub-chunk (L1-sized).
SUB_CHUNK_BYTES = 64 * 1024
# Upper bound on partial sums for the channels_last kernel gradient.  The
# partition depends on the problem shape only, never on the thread count.
MAX_PARTIALS = 64


# --------------------------------------------------------------------------
# Small arithmetic helpers (inlined by LLVM into the kernels below)
# --------------------------------------------------------------------------
@serial_kernel
def _tap_range(t_lo, t_hi, r_lo, r_hi, offset, stride):
    """Sub-range of ``[t_lo, t_hi)`` whose position ``t*stride + offset`` lies in ``[r_lo, r_hi)``."""
    first = -((offset - r_lo) // stride)  # ceil((r_lo - offset) / stride)
    last = -((offset - r_hi) // stride)  # ceil((r_hi - offset) / stride)
    return max(t_lo, first), min(t_hi, last)


@serial_kernel
def _accumulate_row(acc, x_row, weights, mult):
    """``acc[c*mult + j] += x_row[c] * weights[c*mult + j]`` for every channel ``c``."""
    if mult == 1:
        for c in range(acc.shape[0]):
            acc[c] += x_row[c] * weights[c]
    else:
        for c in range(x_row.shape[0]):
            value = x_row[c]
            for j in range(mult):
                acc[c * mult + j] += value * weights[c * mult + j]


@serial_kernel
def _contract_row(acc, grad_row, weights, mult):
    """``acc[c] += sum_j grad_row[c*mult + j] * weights[c*mult + j]`` for every channel ``c``."""
    if mult == 1:
        for c in range(acc.shape[0]):
            acc[c] += grad_row[c] * weights[c]
    else:
        for c in range(acc.shape[0]):
            total = acc[c]
            for j in range(mult):
                total += grad_row[c * mult + j] * weights[c * mult + j]
            acc[c] = total


# The helpers below index through views that start at element 0: a computed
# signed index such as ``t + offset`` makes numba emit a negative-index
# wraparound select on every access, which stops LLVM from vectorising the loop.
@serial_kernel
def _window(row, lo, hi, stride, offset):
    """View of ``row[t*stride + offset]`` for ``t`` in ``[lo, hi)`` (empty when ``hi <= lo``)."""
    start = lo * stride + offset
    return row[start : start + (hi - lo - 1) * stride + 1 : stride] if hi > lo else row[0:0:stride]


@serial_kernel
def _gather_axpy(out_row, in_row, weight, lo, hi, stride, offset):
    """``out_row[t] += weight * in_row[t*stride + offset]`` for ``t`` in ``[lo, hi)``."""
    if hi <= lo:
        return
    dst = out_row[lo:hi]
    if stride == 1:
        src = in_row[lo + offset : hi + offset]
        for k in range(hi - lo):
            dst[k] += weight * src[k]
    else:
        src_strided = _window(in_row, lo, hi, stride, offset)
        for k in range(hi - lo):
            dst[k] += weight * src_strided[k]


@serial_kernel
def _scatter_axpy(out_row, in_row, weight, lo, hi, stride, offset):
    """``out_row[t*stride + offset] += weight * in_row[t]`` for ``t`` in ``[lo, hi)``."""
    if hi <= lo:
        return
    src = in_row[lo:hi]
    if stride == 1:
        dst = out_row[lo + offset : hi + offset]
        for k in range(hi - lo):
            dst[k] += weight * src[k]
    else:
        dst_strided = _window(out_row, lo, hi, stride, offset)
        for k in range(hi - lo):
            dst_strided[k] += weight * src[k]


@serial_kernel
def _strided_dot(x_row, grad_row, lo, hi, stride, offset):
    """``sum_t x_row[t*stride + offset] * grad_row[t]`` for ``t`` in ``[lo, hi)``."""
    total = grad_row.dtype.type(0)
    if hi <= lo:
        return total
    grad = grad_row[lo:hi]
    if stride == 1:
        src = x_row[lo + offset : hi + offset]
        for k in range(hi - lo):
            total += src[k] * grad[k]
    else:
        src_strided = _window(x_row, lo, hi, stride, offset)
        for k in range(hi - lo):
            total += src_strided[k] * grad[k]
    return total


# --------------------------------------------------------------------------
# channels_last: x (B, L, C), kernel2d (K, C*m), y (B, L_out, C*m)
#
# Rows are C-contiguous, so the innermost loop runs over a block of channels
# (vectorised).  Channels are processed in blocks small enough that the K input
# rows and K weight rows of a block stay in L1, and taps are summed four at a
# time so each accumulator element is loaded and stored once per four taps.
# --------------------------------------------------------------------------
@serial_kernel
def _fma1(acc, a0, b0):
    for c in range(acc.shape[0]):
        acc[c] += a0[c] * b0[c]


@serial_kernel
def _fma2(acc, a0, b0, a1, b1):
    for c in range(acc.shape[0]):
        acc[c] += a0[c] * b0[c] + a1[c] * b1[c]


@serial_kernel
def _fma4(acc, a0, b0, a1, b1, a2, b2, a3, b3):
    for c in range(acc.shape[0]):
        acc[c] += (a0[c] * b0[c] + a1[c] * b1[c]) + (a2[c] * b2[c] + a3[c] * b3[c])


@serial_kernel
def _sum_of_products(acc, a, a_row, a_step, b, b_row, b_step, count):
    """``acc += sum_n a[a_row + n*a_step] * b[b_row + n*b_step]`` (rows, elementwise) for ``n < count``."""
    n = 0
    while n + 4 <= count:
        _fma4(acc, a[a_row], b[b_row], a[a_row + a_step], b[b_row + b_step],
              a[a_row + 2 * a_step], b[b_row + 2 * b_step], a[a_row + 3 * a_step], b[b_row + 3 * b_step])
        a_row += 4 * a_step
        b_row += 4 * b_step
        n += 4
    if n + 2 <= count:
        _fma2(acc, a[a_row], b[b_row], a[a_row + a_step], b[b_row + b_step])
        a_row += 2 * a_step
        b_row += 2 * b_step
        n += 2
    if n < count:
        _fma1(acc, a[a_row], b[b_row])


@serial_kernel
def _fma4xn(a, v, w, count, init, bias):
    """``a[r] (+)= sum_n v[r + n] * w[n]`` for 4 accumulator rows ``r`` and ``count`` (1 to 4) terms.

    A register block: each of the ``3 + count`` rows of ``v`` and ``count`` rows
    of ``w`` is loaded once for ``4 * count`` multiply-adds.  With ``init`` the
    rows are overwritten with ``bias + ...`` (saving a pass over them).  Every
    case is its own loop: a branch inside a loop body stops its vectorisation.
    """
    a0, a1, a2, a3 = a
    v0, v1, v2, v3, v4, v5, v6 = v
    w0, w1, w2, w3 = w
    if count == 4 and init:
        for c in range(a0.shape[0]):
            p0, p1, p2, p3, b = w0[c], w1[c], w2[c], w3[c], bias[c]
            e0, e1, e2, e3, e4, e5, e6 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c]
            a0[c] = b + ((e0 * p0 + e1 * p1) + (e2 * p2 + e3 * p3))
            a1[c] = b + ((e1 * p0 + e2 * p1) + (e3 * p2 + e4 * p3))
            a2[c] = b + ((e2 * p0 + e3 * p1) + (e4 * p2 + e5 * p3))
            a3[c] = b + ((e3 * p0 + e4 * p1) + (e5 * p2 + e6 * p3))
    elif count == 4:
        for c in range(a0.shape[0]):
            p0, p1, p2, p3 = w0[c], w1[c], w2[c], w3[c]
            e0, e1, e2, e3, e4, e5, e6 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c], v6[c]
            a0[c] += (e0 * p0 + e1 * p1) + (e2 * p2 + e3 * p3)
            a1[c] += (e1 * p0 + e2 * p1) + (e3 * p2 + e4 * p3)
            a2[c] += (e2 * p0 + e3 * p1) + (e4 * p2 + e5 * p3)
            a3[c] += (e3 * p0 + e4 * p1) + (e5 * p2 + e6 * p3)
    elif count == 3 and init:
        for c in range(a0.shape[0]):
            p0, p1, p2, b = w0[c], w1[c], w2[c], bias[c]
            e0, e1, e2, e3, e4, e5 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c]
            a0[c] = b + ((e0 * p0 + e1 * p1) + e2 * p2)
            a1[c] = b + ((e1 * p0 + e2 * p1) + e3 * p2)
            a2[c] = b + ((e2 * p0 + e3 * p1) + e4 * p2)
            a3[c] = b + ((e3 * p0 + e4 * p1) + e5 * p2)
    elif count == 3:
        for c in range(a0.shape[0]):
            p0, p1, p2 = w0[c], w1[c], w2[c]
            e0, e1, e2, e3, e4, e5 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c]
            a0[c] += (e0 * p0 + e1 * p1) + e2 * p2
            a1[c] += (e1 * p0 + e2 * p1) + e3 * p2
            a2[c] += (e2 * p0 + e3 * p1) + e4 * p2
            a3[c] += (e3 * p0 + e4 * p1) + e5 * p2
    elif count == 2 and init:
        for c in range(a0.shape[0]):
            p0, p1, b = w0[c], w1[c], bias[c]
            e0, e1, e2, e3, e4 = v0[c], v1[c], v2[c], v3[c], v4[c]
            a0[c] = b + (e0 * p0 + e1 * p1)
            a1[c] = b + (e1 * p0 + e2 * p1)
            a2[c] = b + (e2 * p0 + e3 * p1)
            a3[c] = b + (e3 * p0 + e4 * p1)
    elif count == 2:
        for c in range(a0.shape[0]):
            p0, p1 = w0[c], w1[c]
            e0, e1, e2, e3, e4 = v0[c], v1[c], v2[c], v3[c], v4[c]
            a0[c] += e0 * p0 + e1 * p1
            a1[c] += e1 * p0 + e2 * p1
            a2[c] += e2 * p0 + e3 * p1
            a3[c] += e3 * p0 + e4 * p1
    elif init:
        for c in range(a0.shape[0]):
            p0, b = w0[c], bias[c]
            a0[c] = b + v0[c] * p0
            a1[c] = b + v1[c] * p0
            a2[c] = b + v2[c] * p0
            a3[c] = b + v3[c] * p0
    else:
        for c in range(a0.shape[0]):
            p0 = w0[c]
            a0[c] += v0[c] * p0
            a1[c] += v1[c] * p0
            a2[c] += v2[c] * p0
            a3[c] += v3[c] * p0


@serial_kernel
def _block4(acc, acc_row, v, v_row, w, w_row, w_step, count, init, bias):
    """``acc[acc_row + r] (+)= sum_n v[v_row + r + n] * w[w_row + n*w_step]``, ``r < 4``, ``n < count <= 4``."""
    last = count - 1
    rows_v = (v[v_row], v[v_row + 1], v[v_row + 2], v[v_row + 3], v[v_row + min(4, last + 3)],
              v[v_row + min(5, last + 3)], v[v_row + min(6, last + 3)])
    rows_w = (w[w_row], w[w_row + min(1, last) * w_step], w[w_row + min(2, last) * w_step],
              w[w_row + min(3, last) * w_step])
    _fma4xn((acc[acc_row], acc[acc_row + 1], acc[acc_row + 2], acc[acc_row + 3]), rows_v, rows_w, count, init, bias)


@serial_kernel
def _sum_taps4(acc, acc_row, v, v_row, w, w_row, w_step, ntaps, init, bias):
    """``acc[acc_row + r] (+)= sum_i v[v_row + r + i] * w[w_row + i*w_step]`` for ``r < 4``, ``i < ntaps``."""
    i = 0
    while i < ntaps:
        count = min(4, ntaps - i)
        _block4(acc, acc_row, v, v_row + i, w, w_row + i * w_step, w_step, count, init, bias)
        init = False
        i += count


@serial_kernel
def _valid_taps(base, dilation, length, ksize):
    """Taps ``i`` in ``[first, last)`` whose row ``base + i*dilation`` lies in ``[0, length)``."""
    first = 0 if base >= 0 else -(base // dilation)  # ceil(-base / dilation)
    last = min(ksize, (length - 1 - base) // dilation + 1)
    return first, max(first, last)


@serial_kernel
def _forward_row(out_b, x_b, kernel2d, bias, t, stride, dilation, pad_left, mult):
    """One output row ``out_b[t]``, every option."""
    acc = out_b[t]
    for o in range(acc.shape[0]):
        acc[o] = bias[o]
    base = t * stride - pad_left
    first, last = _valid_taps(base, dilation, x_b.shape[0], kernel2d.shape[0])
    if mult == 1:
        _sum_of_products(acc, x_b, base + first * dilation, dilation, kernel2d, first, 1, last - first)
    else:
        for i in range(first, last):
            _accumulate_row(acc, x_b[base + i * dilation], kernel2d[i], mult)


@serial_kernel
def _forward_rows4(out_b, x_b, kernel2d, bias, t, pad_left):
    """Output rows ``t..t+3`` (stride 1, dilation 1, m = 1, every tap inside the input)."""
    _sum_taps4(out_b, t, x_b, t - pad_left, kernel2d, 0, 1, kernel2d.shape[0], True, bias)


@parallel_kernel
def _forward_channels_last(x, kernel2d, bias, stride, dilation, pad_left, rows_per_task, out):
    batch, length, channels = x.shape
    ksize, out_channels = kernel2d.shape
    mult = out_channels // channels
    out_length = out.shape[1]
    tiles = -(-out_length // rows_per_task)
    blockable = mult == 1 and stride == 1 and dilation == 1
    for task in numba.prange(batch * tiles):
        b = task // tiles
        t = (task - b * tiles) * rows_per_task
        t_stop = min(t + rows_per_task, out_length)
        x_b = x[b]
        out_b = out[b]
        while t < t_stop:
            # rows t..t+3 read input rows t - pad_left .. t + 3 - pad_left + K - 1
            if blockable and t + 4 <= t_stop and t >= pad_left and t + 3 - pad_left + ksize <= length:
                _forward_rows4(out_b, x_b, kernel2d, bias, t, pad_left)
                t += 4
            else:
                _forward_row(out_b, x_b, kernel2d, bias, t, stride, dilation, pad_left, mult)
                t += 1


@serial_kernel
def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


@serial_kernel
def _input_grad_row(grad_in_b, grad_b, kernel2d, r, stride, dilation, pad_left, mult):
    """One input-gradient row ``grad_in_b[r]``, every option (a gather over the taps that reach row r)."""
    acc = grad_in_b[r]
    for c in range(acc.shape[0]):
        acc[c] = 0
    ksize = kernel2d.shape[0]
    out_length = grad_b.shape[0]
    # Tap i reaches input row r from output row t = (r + pad_left - i*dilation) / stride
    # when that is an integer in [0, out_length).  Those taps are i = first + n*tap_step.
    first = -1
    for i in range(min(ksize, stride)):
        if (r + pad_left - i * dilation) % stride == 0:
            first = i
            break
    if first < 0:
        return
    tap_step = stride // _gcd(stride, dilation)
    row_step = -(tap_step * dilation) // stride
    t_first = (r + pad_left - first * dilation) // stride
    if t_first >= out_length:  # skip the taps whose output row is past the end
        skip = -((out_length - 1 - t_first) // -row_step)
        first += skip * tap_step
        t_first += skip * row_step
    if first >= ksize or t_first < 0:
        return
    count = min(-(-(ksize - first) // tap_step), t_first // -row_step + 1)
    if mult == 1:
        _sum_of_products(acc, grad_b, t_first, row_step, kernel2d, first, tap_step, count)
    else:
        for n in range(count):
            _contract_row(acc, grad_b[t_first + n * row_step], kernel2d[first + n * tap_step], mult)


@serial_kernel
def _input_grad_rows4(grad_in_b, grad_b, kernel2d, zeros, r, pad_left):
    """Input-gradient rows ``r..r+3`` (stride 1, dilation 1, m = 1, every tap inside the output).

    ``grad_in[r + q] = sum_i grad_out[r + q + pad_left - i] * w[i]``; with ``i = K-1-n`` that is
    ``sum_n grad_out[r + pad_left - K + 1 + q + n] * w[K-1-n]``: the forward's block with the
    taps reversed.
    """
    ksize = kernel2d.shape[0]
    _sum_taps4(grad_in_b, r, grad_b, r + pad_left - ksize + 1, kernel2d, ksize - 1, -1, ksize, True, zeros)


@parallel_kernel
def _input_grad_channels_last(grad_out, kernel2d, zeros, stride, dilation, pad_left, rows_per_task, grad_in):
    batch, length, channels = grad_in.shape
    ksize = kernel2d.shape[0]
    mult = kernel2d.shape[1] // channels
    out_length = grad_out.shape[1]
    tiles = -(-length // rows_per_task)
    blockable = mult == 1 and stride == 1 and dilation == 1
    for task in numba.prange(batch * tiles):
        b = task // tiles
        r = (task - b * tiles) * rows_per_task
        r_stop = min(r + rows_per_task, length)
        grad_b = grad_out[b]
        grad_in_b = grad_in[b]
        while r < r_stop:
            # rows r..r+3 read output rows r + pad_left - K + 1 .. r + 3 + pad_left
            if blockable and r + 4 <= r_stop and r + pad_left - ksize + 1 >= 0 and r + 3 + pad_left < out_length:
                _input_grad_rows4(grad_in_b, grad_b, kernel2d, zeros, r, pad_left)
                r += 4
            else:
                _input_grad_row(grad_in_b, grad_b, kernel2d, r, stride, dilation, pad_left, mult)
                r += 1


@serial_kernel
def _fma3x4(a, v, w):
    """``a[r] += sum_n v[r + n] * w[n]`` for 3 accumulator rows and 4 terms (the 3-tap kernel-gradient block)."""
    a0, a1, a2 = a
    v0, v1, v2, v3, v4, v5 = v
    w0, w1, w2, w3 = w
    for c in range(a0.shape[0]):
        p0, p1, p2, p3 = w0[c], w1[c], w2[c], w3[c]
        e0, e1, e2, e3, e4, e5 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c]
        a0[c] += (e0 * p0 + e1 * p1) + (e2 * p2 + e3 * p3)
        a1[c] += (e1 * p0 + e2 * p1) + (e3 * p2 + e4 * p3)
        a2[c] += (e2 * p0 + e3 * p1) + (e4 * p2 + e5 * p3)


@serial_kernel
def _kernel_grad_tap_block(acc_kernel, x_b, grad_b, i, ntaps, t_lo, t_hi, pad_left):
    """Taps ``i..i+ntaps-1`` (``ntaps`` 3 or 4) of the kernel gradient over output rows ``[t_lo, t_hi)``.

    Stride 1, dilation 1, m = 1: ``acc[i + n] += sum_t x[t + i + n - pad_left] * grad_out[t]``,
    as register blocks of 4 rows over the rows where every tap is inside the input,
    one tap at a time elsewhere.
    """
    length = x_b.shape[0]
    lo = max(t_lo, pad_left - i)  # tap i is inside for t >= pad_left - i
    hi = min(t_hi, length + pad_left - i - (ntaps - 1))  # and the last tap for t < this
    hi_blocks = lo + max(0, hi - lo) // 4 * 4
    for t in range(lo, hi_blocks, 4):
        if ntaps == 4:
            _block4(acc_kernel, i, x_b, t + i - pad_left, grad_b, t, 1, 4, False, grad_b[t])
        else:
            v = t + i - pad_left
            _fma3x4((acc_kernel[i], acc_kernel[i + 1], acc_kernel[i + 2]),
                    (x_b[v], x_b[v + 1], x_b[v + 2], x_b[v + 3], x_b[v + 4], x_b[v + 5]),
                    (grad_b[t], grad_b[t + 1], grad_b[t + 2], grad_b[t + 3]))
    for n in range(ntaps):
        offset = i + n - pad_left
        lo_n, hi_n = _tap_range(t_lo, t_hi, 0, length, offset, 1)
        if hi_blocks > lo:
            _sum_of_products(acc_kernel[i + n], x_b, lo_n + offset, 1, grad_b, lo_n, 1, lo - lo_n)
            _sum_of_products(acc_kernel[i + n], x_b, hi_blocks + offset, 1, grad_b, hi_blocks, 1,
                             hi_n - hi_blocks)
        else:
            _sum_of_products(acc_kernel[i + n], x_b, lo_n + offset, 1, grad_b, lo_n, 1, hi_n - lo_n)


@parallel_kernel
def _kernel_grad_channels_last(grad_out, x, stride, dilation, pad_left, rows_per_part, rows_per_sub, part_kernel,
                               part_bias):
    batch, out_length, out_channels = grad_out.shape
    length, channels = x.shape[1], x.shape[2]
    ksize = part_kernel.shape[1]
    mult = out_channels // channels
    parts_per_batch = part_kernel.shape[0] // batch if batch > 0 else 1
    blockable = mult == 1 and stride == 1 and dilation == 1
    for part in numba.prange(part_kernel.shape[0]):
        b = part // parts_per_batch
        t_lo = (part % parts_per_batch) * rows_per_part
        t_hi = min(t_lo + rows_per_part, out_length)
        acc_kernel = part_kernel[part]
        acc_bias = part_bias[part]
        grad_b = grad_out[b]
        x_b = x[b]
        for o in range(out_channels):
            acc_bias[o] = 0
        for i in range(ksize):
            acc = acc_kernel[i]
            for o in range(out_channels):
                acc[o] = 0
        # Sub-chunks of rows small enough that their x and grad_out rows stay in L1
        # across the K taps.  Fixed order, so the result does not depend on threads.
        for sub_lo in range(t_lo, t_hi, rows_per_sub):
            sub_hi = min(sub_lo + rows_per_sub, t_hi)
            for t in range(sub_lo, sub_hi):
                row = grad_b[t]
                for o in range(out_channels):
                    acc_bias[o] += row[o]
            i = 0
            if blockable:
                while i + 3 <= ksize:
                    ntaps = 4 if i + 4 <= ksize else 3
                    _kernel_grad_tap_block(acc_kernel, x_b, grad_b, i, ntaps, sub_lo, sub_hi, pad_left)
                    i += ntaps
            for tap in range(i, ksize):  # the taps not covered by blocks
                offset = tap * dilation - pad_left
                lo, hi = _tap_range(sub_lo, sub_hi, 0, length, offset, stride)
                if mult == 1:
                    _sum_of_products(acc_kernel[tap], x_b, lo * stride + offset, stride, grad_b, lo, 1, hi - lo)
                else:
                    for t in range(lo, hi):
                        _accumulate_row(acc_kernel[tap], x_b[t * stride + offset], grad_b[t], mult)


# --------------------------------------------------------------------------
# channels_first: x (B, C, L), kernel (K, C, m), y (B, C*m, L_out)
#
# Rows are contiguous along the length, so the innermost loop runs over
# positions with the tap weight broadcast.  Taps are handled four at a time
# over the positions where all four are inside the input (each output element
# is then loaded and stored once per four taps); the few edge positions take
# the one-tap path.
# --------------------------------------------------------------------------
@serial_kernel
def _fused_taps(dst, s, w, count, init, value):
    """``dst (+)= sum_n w[n] * s[n]`` for ``n < count`` (1, 2, 3, 4 or 8); with ``init``, ``dst = value + ...``.

    ``s`` is a tuple of 8 equally long views and ``w`` a tuple of 8 weights (the
    entries past ``count`` are ignored).
    """
    n = dst.shape[0]
    s0, s1, s2, s3, s4, s5, s6, s7 = s
    w0, w1, w2, w3, w4, w5, w6, w7 = w
    if count == 8:
        if init:
            for k in range(n):
                dst[k] = value + (((w0 * s0[k] + w1 * s1[k]) + (w2 * s2[k] + w3 * s3[k]))
                                  + ((w4 * s4[k] + w5 * s5[k]) + (w6 * s6[k] + w7 * s7[k])))
        else:
            for k in range(n):
                dst[k] += ((w0 * s0[k] + w1 * s1[k]) + (w2 * s2[k] + w3 * s3[k])) + (
                    (w4 * s4[k] + w5 * s5[k]) + (w6 * s6[k] + w7 * s7[k]))
    elif count == 4:
        if init:
            for k in range(n):
                dst[k] = value + ((w0 * s0[k] + w1 * s1[k]) + (w2 * s2[k] + w3 * s3[k]))
        else:
            for k in range(n):
                dst[k] += (w0 * s0[k] + w1 * s1[k]) + (w2 * s2[k] + w3 * s3[k])
    elif count == 3:
        if init:
            for k in range(n):
                dst[k] = value + ((w0 * s0[k] + w1 * s1[k]) + w2 * s2[k])
        else:
            for k in range(n):
                dst[k] += (w0 * s0[k] + w1 * s1[k]) + w2 * s2[k]
    elif count == 2:
        if init:
            for k in range(n):
                dst[k] = value + (w0 * s0[k] + w1 * s1[k])
        else:
            for k in range(n):
                dst[k] += w0 * s0[k] + w1 * s1[k]
    else:
        if init:
            for k in range(n):
                dst[k] = value + w0 * s0[k]
        else:
            for k in range(n):
                dst[k] += w0 * s0[k]


@serial_kernel
def _gather_taps(out_row, in_row, weights, i, count, offset_step, lo, hi, stride, o0, init, value):
    """``out_row[t] (+)= sum_n weights[i+n] * in_row[t*stride + o0 + n*offset_step]``, ``n < count`` (1-4 or 8).

    For ``t`` in ``[lo, hi)``, where every tap is inside ``in_row``.  With ``init``
    the sum plus ``value`` overwrites ``out_row`` (saving a pass), else it is added.
    Contiguous (stride 1) and strided views are kept in separate branches so that
    each keeps its own array layout (a shared variable would make both strided).
    """
    last = count - 1
    w = (weights[i], weights[i + min(1, last)], weights[i + min(2, last)], weights[i + min(3, last)],
         weights[i + min(4, last)], weights[i + min(5, last)], weights[i + min(6, last)], weights[i + min(7, last)])
    if stride == 1:
        v0 = in_row[lo + o0 : hi + o0]
        v1 = v2 = v3 = v4 = v5 = v6 = v7 = v0  # unused entries: no extra slicing for short groups
        if count > 1:
            v1 = in_row[lo + o0 + offset_step : hi + o0 + offset_step]
        if count > 2:
            v2 = in_row[lo + o0 + 2 * offset_step : hi + o0 + 2 * offset_step]
        if count > 3:
            v3 = in_row[lo + o0 + 3 * offset_step : hi + o0 + 3 * offset_step]
        if count > 4:
            v4 = in_row[lo + o0 + 4 * offset_step : hi + o0 + 4 * offset_step]
            v5 = in_row[lo + o0 + 5 * offset_step : hi + o0 + 5 * offset_step]
            v6 = in_row[lo + o0 + 6 * offset_step : hi + o0 + 6 * offset_step]
            v7 = in_row[lo + o0 + 7 * offset_step : hi + o0 + 7 * offset_step]
        _fused_taps(out_row[lo:hi], (v0, v1, v2, v3, v4, v5, v6, v7), w, count, init, value)
    else:
        u0 = _window(in_row, lo, hi, stride, o0)
        u1 = u2 = u3 = u4 = u5 = u6 = u7 = u0
        if count > 1:
            u1 = _window(in_row, lo, hi, stride, o0 + offset_step)
        if count > 2:
            u2 = _window(in_row, lo, hi, stride, o0 + 2 * offset_step)
        if count > 3:
            u3 = _window(in_row, lo, hi, stride, o0 + 3 * offset_step)
        if count > 4:
            u4 = _window(in_row, lo, hi, stride, o0 + 4 * offset_step)
            u5 = _window(in_row, lo, hi, stride, o0 + 5 * offset_step)
            u6 = _window(in_row, lo, hi, stride, o0 + 6 * offset_step)
            u7 = _window(in_row, lo, hi, stride, o0 + 7 * offset_step)
        _fused_taps(out_row[lo:hi], (u0, u1, u2, u3, u4, u5, u6, u7), w, count, init, value)


@serial_kernel
def _conv_taps(out_row, in_row, weights, t_lo, t_hi, stride, first_offset, offset_step, init, value):
    """``out_row[t] (+)= sum_i weights[i] * in_row[t*stride + first_offset + i*offset_step]``.

    For ``t`` in ``[t_lo, t_hi)``; positions of ``in_row`` outside its bounds read as
    zero.  ``offset_step`` may be negative (the input gradient walks the taps
    backwards).  With ``init`` the result (plus ``value``) overwrites ``out_row``.
    Taps go eight (then up to four) at a time over the positions where the whole
    group is inside; the edge positions take one tap at a time.
    """
    n_in = in_row.shape[0]
    ksize = weights.shape[0]
    i = 0
    while i < ksize:
        count = 8 if i + 8 <= ksize else min(4, ksize - i)
        o0 = first_offset + i * offset_step
        lo, hi = _tap_range(t_lo, t_hi, 0, n_in, o0, stride)
        for n in range(1, count):
            lo_n, hi_n = _tap_range(t_lo, t_hi, 0, n_in, o0 + n * offset_step, stride)
            lo = max(lo, lo_n)
            hi = min(hi, hi_n)
        if hi <= lo:
            lo = hi = t_lo
        if init:  # positions the group does not cover start from `value`
            for t in range(t_lo, lo):
                out_row[t] = value
            for t in range(hi, t_hi):
                out_row[t] = value
        if lo < hi:
            _gather_taps(out_row, in_row, weights, i, count, offset_step, lo, hi, stride, o0, init, value)
        for n in range(count):  # positions outside [lo, hi) where tap i+n is inside
            offset = o0 + n * offset_step
            lo_n, hi_n = _tap_range(t_lo, t_hi, 0, n_in, offset, stride)
            _gather_axpy(out_row, in_row, weights[i + n], lo_n, min(hi_n, lo), stride, offset)
            _gather_axpy(out_row, in_row, weights[i + n], max(lo_n, hi), hi_n, stride, offset)
        init = False
        i += count
    if init:  # no taps at all
        for t in range(t_lo, t_hi):
            out_row[t] = value


@serial_kernel
def _dot4(x_row, grad_row, lo, hi, stride, o0, o1, o2, o3):
    """The four sums ``sum_t x_row[t*stride + o_n] * grad_row[t]`` for ``t`` in ``[lo, hi)`` (all inside)."""
    zero = grad_row.dtype.type(0)
    d0 = zero
    d1 = zero
    d2 = zero
    d3 = zero
    grad = grad_row[lo:hi]
    if stride == 1:
        s0 = x_row[lo + o0 : hi + o0]
        s1 = x_row[lo + o1 : hi + o1]
        s2 = x_row[lo + o2 : hi + o2]
        s3 = x_row[lo + o3 : hi + o3]
        for k in range(hi - lo):
            g = grad[k]
            d0 += s0[k] * g
            d1 += s1[k] * g
            d2 += s2[k] * g
            d3 += s3[k] * g
    else:
        v0 = _window(x_row, lo, hi, stride, o0)
        v1 = _window(x_row, lo, hi, stride, o1)
        v2 = _window(x_row, lo, hi, stride, o2)
        v3 = _window(x_row, lo, hi, stride, o3)
        for k in range(hi - lo):
            g = grad[k]
            d0 += v0[k] * g
            d1 += v1[k] * g
            d2 += v2[k] * g
            d3 += v3[k] * g
    return d0, d1, d2, d3


@serial_kernel
def _kernel_grad_taps(out_weights, x_row, grad_row, stride, first_offset, offset_step):
    """``out_weights[i] = sum_t x_row[t*stride + first_offset + i*offset_step] * grad_row[t]`` (outside reads 0)."""
    n_in = x_row.shape[0]
    n_out = grad_row.shape[0]
    ksize = out_weights.shape[0]
    i = 0
    while i + 4 <= ksize:
        o0 = first_offset + i * offset_step
        lo, hi = _tap_range(0, n_out, 0, n_in, o0, stride)
        for n in range(1, 4):
            lo_n, hi_n = _tap_range(0, n_out, 0, n_in, o0 + n * offset_step, stride)
            lo = max(lo, lo_n)
            hi = min(hi, hi_n)
        if lo < hi:
            d0, d1, d2, d3 = _dot4(x_row, grad_row, lo, hi, stride, o0, o0 + offset_step, o0 + 2 * offset_step,
                                   o0 + 3 * offset_step)
        else:
            hi = lo
            d0 = d1 = d2 = d3 = grad_row.dtype.type(0)
        out_weights[i] = d0
        out_weights[i + 1] = d1
        out_weights[i + 2] = d2
        out_weights[i + 3] = d3
        for n in range(4):  # positions outside [lo, hi) where tap i+n is inside
            offset = o0 + n * offset_step
            lo_n, hi_n = _tap_range(0, n_out, 0, n_in, offset, stride)
            out_weights[i + n] += _strided_dot(x_row, grad_row, lo_n, min(hi_n, lo), stride, offset)
            out_weights[i + n] += _strided_dot(x_row, grad_row, max(lo_n, hi), hi_n, stride, offset)
        i += 4
    for tap in range(i, ksize):  # the taps not covered by four-tap groups
        offset = first_offset + tap * offset_step
        lo, hi = _tap_range(0, n_out, 0, n_in, offset, stride)
        out_weights[tap] = _strided_dot(x_row, grad_row, lo, hi, stride, offset)


@parallel_kernel
def _forward_channels_first(x, kernel, bias, stride, dilation, pad_left, tile, out):
    batch, channels, _ = x.shape
    mult = kernel.shape[2]
    out_length = out.shape[2]
    for task in numba.prange(batch * channels):
        b = task // channels
        c = task - b * channels
        x_row = x[b, c]
        for t_start in range(0, out_length, tile):
            t_stop = min(t_start + tile, out_length)
            for j in range(mult):
                _conv_taps(out[b, c * mult + j], x_row, kernel[:, c, j], t_start, t_stop, stride, -pad_left, dilation,
                           True, bias[c * mult + j])


@parallel_kernel
def _input_grad_channels_first(grad_out, kernel, stride, dilation, pad_left, tile, grad_in):
    batch, channels, length = grad_in.shape
    ksize, _, mult = kernel.shape
    out_length = grad_out.shape[2]
    for task in numba.prange(batch * channels):
        b = task // channels
        c = task - b * channels
        acc = grad_in[b, c]
        for r_start in range(0, length, tile):
            r_stop = min(r_start + tile, length)
            if stride != 1:
                for r in range(r_start, r_stop):
                    acc[r] = 0
            for j in range(mult):
                grad_row = grad_out[b, c * mult + j]
                if stride == 1:
                    # gather form: grad_in[r] += sum_i w[i] * grad_out[r + pad_left - i*dilation]
                    _conv_taps(acc, grad_row, kernel[:, c, j], r_start, r_stop, 1, pad_left, -dilation, j == 0,
                               acc.dtype.type(0))
                else:
                    for i in range(ksize):
                        offset = i * dilation - pad_left
                        lo, hi = _tap_range(0, out_length, r_start, r_stop, offset, stride)
                        _scatter_axpy(acc, grad_row, kernel[i, c, j], lo, hi, stride, offset)


@parallel_kernel
def _kernel_grad_channels_first(grad_out, x, stride, dilation, pad_left, part_kernel, part_bias):
    batch, channels, _ = x.shape
    out_length = grad_out.shape[2]
    mult = part_kernel.shape[3]
    for task in numba.prange(batch * channels):
        b = task // channels
        c = task - b * channels
        x_row = x[b, c]
        for j in range(mult):
            grad_row = grad_out[b, c * mult + j]
            total = grad_row.dtype.type(0)
            for t in range(out_length):
                total += grad_row[t]
            part_bias[b, c * mult + j] = total
            _kernel_grad_taps(part_kernel[b, :, c, j], x_row, grad_row, stride, -pad_left, dilation)


# --------------------------------------------------------------------------
# Host functions: allocate outputs, choose the layout's kernel and its tunables
# --------------------------------------------------------------------------
def _zero_bias(problem):
    return np.zeros(problem.channels * problem.multiplier, dtype=problem.dtype)


def conv1d_forward(problem, inputs, kernel, bias):
    """Forward pass on C-contiguous NumPy arrays of ``problem.dtype``.

    Parameters
    ----------
    problem : numba_dwconv._geometry.Conv1DProblem
    inputs : ndarray, shape ``problem.input_shape``
    kernel : ndarray, shape (K, C, m)
    bias : ndarray, shape (C*m,), or None

    Returns
    -------
    ndarray, shape ``problem.output_shape``
    """
    axis = problem.axis
    out = _memory.empty(problem.output_shape, problem.dtype)
    bias = _zero_bias(problem) if bias is None else bias
    if problem.channels_last:
        kernel2d = kernel.reshape(axis.kernel_size, -1)
        launch(_forward_channels_last, inputs, kernel2d, bias, axis.stride, axis.dilation, axis.pad_left,
                ROWS_PER_TASK, out)
    else:
        launch(_forward_channels_first, inputs, kernel, bias, axis.stride, axis.dilation, axis.pad_left,
                TILE_LENGTH, out)
    return out


def conv1d_input_grad(problem, grad_outputs, kernel):
    """Gradient of ``sum(outputs * grad_outputs)`` with respect to the inputs.

    Returns
    -------
    ndarray, shape ``problem.input_shape``
    """
    axis = problem.axis
    grad_in = _memory.empty(problem.input_shape, problem.dtype)
    if problem.channels_last:
        kernel2d = kernel.reshape(axis.kernel_size, -1)
        zeros = np.zeros(kernel2d.shape[1], dtype=problem.dtype)
        launch(_input_grad_channels_last, grad_outputs, kernel2d, zeros, axis.stride, axis.dilation,
                axis.pad_left, ROWS_PER_TASK, grad_in)
    else:
        launch(_input_grad_channels_first, grad_outputs, kernel, axis.stride, axis.dilation, axis.pad_left,
                TILE_LENGTH, grad_in)
    return grad_in


def conv1d_kernel_grad(problem, grad_outputs, inputs):
    """Gradients of ``sum(outputs * grad_outputs)`` with respect to the kernel and the bias.

    Returns
    -------
    grad_kernel : ndarray, shape (K, C, m)
    grad_bias : ndarray, shape (C*m,)
    """
    axis = problem.axis
    out_channels = problem.channels * problem.multiplier
    if problem.channels_last:
        # Each part covers rows_per_part output rows of one batch entry.
        parts_per_batch = min(max(1, MAX_PARTIALS // max(problem.batch, 1)), -(-axis.out_length // ROWS_PER_TASK))
        rows_per_part = -(-axis.out_length // parts_per_batch)
        n_parts = problem.batch * -(-axis.out_length // rows_per_part)
        part_kernel = np.empty((n_parts, axis.kernel_size, out_channels), dtype=problem.dtype)
        part_bias = np.empty((n_parts, out_channels), dtype=problem.dtype)
        row_bytes = inputs.shape[2] * problem.dtype.itemsize * (1 + problem.multiplier)
        rows_per_sub = max(4, SUB_CHUNK_BYTES // row_bytes // 4 * 4)
        launch(_kernel_grad_channels_last, grad_outputs, inputs, axis.stride, axis.dilation, axis.pad_left,
                rows_per_part, rows_per_sub, part_kernel, part_bias)
    else:
        part_kernel = np.empty((problem.batch,) + problem.kernel_shape, dtype=problem.dtype)
        part_bias = np.empty((problem.batch, out_channels), dtype=problem.dtype)
        launch(_kernel_grad_channels_first, grad_outputs, inputs, axis.stride, axis.dilation, axis.pad_left,
                part_kernel, part_bias)
    grad_kernel = np.empty(problem.kernel_shape, dtype=problem.dtype)
    grad_bias = np.empty(out_channels, dtype=problem.dtype)
    launch(sum_partials, part_kernel.reshape(-1), part_kernel.shape[0], grad_kernel.reshape(-1))
    launch(sum_partials, part_bias.reshape(-1), part_bias.shape[0], grad_bias)
    return grad_kernel, grad_bias
