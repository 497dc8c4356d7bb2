"""Multi-threaded CPU kernels for 1D depthwise convolution.

Three operations, each with a native loop order per layout (no transposed copies,
no im2col, no padded copy of the input):

* forward: ``y[t, c*m+j] = bias[c*m+j] + sum_i x[t*s + i*d - pad_left, c] * w[i, c, j]``
* input gradient: the transpose of the forward map, computed as a *gather* over
  input positions (or input tiles), so threads never write the same element.
* kernel and bias gradients: per-task partial sums followed by a fixed-order
  reduction (:func:`_sum_partials`), so results are bit-identical run to run and
  independent of the number of threads.

The kernels trust their callers (:mod:`numba_dwconv.ops` validates everything and
passes C-contiguous arrays of one float dtype).  Tunables (rows per task, tile
length) are arguments chosen by the host functions at the bottom of this module.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from .._jit import parallel_kernel, serial_kernel

# Output rows handled by one parallel task (channels_last) and length of the
# output tile kept in L1 across the K taps (channels_first).
ROWS_PER_TASK = 64
TILE_LENGTH = 2048
# Upper bound on partial sums for the channels_last kernel gradient.  The
# partition depends on the problem shape only, never on the thread count.
MAX_PARTIALS = 64
# Bytes of input rows plus weight rows of one channel block (channels_last):
# about half of a 48 KiB L1 data cache.
CHANNEL_BLOCK_BYTES = 1 << 40


def channel_block(kernel_size: int, multiplier: int, itemsize: int) -> int:
    """Channels per block so that K input rows and K weight rows of a block fit in L1."""
    per_channel = kernel_size * (1 + multiplier) * itemsize
    return max(16, CHANNEL_BLOCK_BYTES // per_channel // 16 * 16)


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
def _sum_of_products(acc, a, a_row, a_step, b, b_row, b_step, count, lo, hi):
    """``acc += sum_n a[a_row + n*a_step, lo:hi] * b[b_row + n*b_step, lo:hi]`` for ``n < count``."""
    n = 0
    while n + 4 <= count:
        _fma4(acc, a[a_row, lo:hi], b[b_row, lo:hi], a[a_row + a_step, lo:hi], b[b_row + b_step, lo:hi],
              a[a_row + 2 * a_step, lo:hi], b[b_row + 2 * b_step, lo:hi],
              a[a_row + 3 * a_step, lo:hi], b[b_row + 3 * b_step, lo:hi])
        a_row += 4 * a_step
        b_row += 4 * b_step
        n += 4
    if n + 2 <= count:
        _fma2(acc, a[a_row, lo:hi], b[b_row, lo:hi], a[a_row + a_step, lo:hi], b[b_row + b_step, lo:hi])
        a_row += 2 * a_step
        b_row += 2 * b_step
        n += 2
    if n < count:
        _fma1(acc, a[a_row, lo:hi], b[b_row, lo:hi])


@serial_kernel
def _fma4x4(a0, a1, a2, a3, v0, v1, v2, v3, v4, v5, v6, w0, w1, w2, w3):
    """``a_r += sum_n v_(r+n) * w_n`` for four accumulator rows ``r`` and four terms ``n``."""
    for c in range(a0.shape[0]):
        p0 = w0[c]
        p1 = w1[c]
        p2 = w2[c]
        p3 = w3[c]
        e0 = v0[c]
        e1 = v1[c]
        e2 = v2[c]
        e3 = v3[c]
        e4 = v4[c]
        e5 = v5[c]
        e6 = v6[c]
        a0[c] += (e0 * p0 + e1 * p1) + (e2 * p2 + e3 * p3)
        a1[c] += (e1 * p0 + e2 * p1) + (e3 * p2 + e4 * p3)
        a2[c] += (e2 * p0 + e3 * p1) + (e4 * p2 + e5 * p3)
        a3[c] += (e3 * p0 + e4 * p1) + (e5 * p2 + e6 * p3)


@serial_kernel
def _block4x4(acc, acc_row, v, v_row, w, w_row, w_step, lo, hi):
    """``acc[acc_row + r] += sum_n v[v_row + r + n] * w[w_row + n*w_step]`` for ``r, n < 4``, channels ``lo:hi``.

    A 4x4 register block: each of the 7 ``v`` rows and 4 ``w`` rows is loaded
    once for 16 multiply-adds, instead of twice per multiply-add.
    """
    _fma4x4(acc[acc_row, lo:hi], acc[acc_row + 1, lo:hi], acc[acc_row + 2, lo:hi], acc[acc_row + 3, lo:hi],
            v[v_row, lo:hi], v[v_row + 1, lo:hi], v[v_row + 2, lo:hi], v[v_row + 3, lo:hi],
            v[v_row + 4, lo:hi], v[v_row + 5, lo:hi], v[v_row + 6, lo:hi],
            w[w_row, lo:hi], w[w_row + w_step, lo:hi], w[w_row + 2 * w_step, lo:hi], w[w_row + 3 * w_step, lo:hi])


@serial_kernel
def _valid_taps(base, dilation, length, ksize):
    """Taps ``i`` in ``[first, last)`` whose row ``base + i*dilation`` lies in ``[0, length)``."""
    first = 0 if base >= 0 else -(base // dilation)  # ceil(-base / dilation)
    last = min(ksize, (length - 1 - base) // dilation + 1)
    return first, max(first, last)


@serial_kernel
def _forward_row(out_b, x_b, kernel2d, bias, t, stride, dilation, pad_left, mult, c_lo, c_hi):
    """One output row ``out_b[t]`` over input channels ``c_lo:c_hi``, every option."""
    acc = out_b[t, c_lo * mult : c_hi * mult]
    bias_block = bias[c_lo * mult : c_hi * mult]
    for o in range(acc.shape[0]):
        acc[o] = bias_block[o]
    base = t * stride - pad_left
    first, last = _valid_taps(base, dilation, x_b.shape[0], kernel2d.shape[0])
    if mult == 1:
        _sum_of_products(acc, x_b, base + first * dilation, dilation, kernel2d, first, 1, last - first, c_lo, c_hi)
    else:
        for i in range(first, last):
            _accumulate_row(acc, x_b[base + i * dilation, c_lo:c_hi], kernel2d[i, c_lo * mult : c_hi * mult], mult)


@serial_kernel
def _forward_rows4(out_b, x_b, kernel2d, bias, t, pad_left, c_lo, c_hi):
    """Output rows ``t..t+3`` (stride 1, dilation 1, m = 1, every tap inside the input)."""
    ksize = kernel2d.shape[0]
    bias_block = bias[c_lo:c_hi]
    for r in range(4):
        acc = out_b[t + r, c_lo:c_hi]
        for c in range(acc.shape[0]):
            acc[c] = bias_block[c]
    i = 0
    while i + 4 <= ksize:
        _block4x4(out_b, t, x_b, t - pad_left + i, kernel2d, i, 1, c_lo, c_hi)
        i += 4
    for r in range(4):
        _sum_of_products(out_b[t + r, c_lo:c_hi], x_b, t + r - pad_left + i, 1, kernel2d, i, 1, ksize - i, c_lo, c_hi)


@parallel_kernel
def _forward_channels_last(x, kernel2d, bias, stride, dilation, pad_left, rows_per_task, channel_block, out):
    batch, length, channels = x.shape
    ksize, out_channels = kernel2d.shape
    mult = out_channels // channels
    out_length = out.shape[1]
    tiles = -(-out_length // rows_per_task)
    blocks = -(-channels // channel_block)
    blockable = mult == 1 and stride == 1 and dilation == 1
    for task in numba.prange(batch * tiles):
        b = task // tiles
        t_start = (task - b * tiles) * rows_per_task
        t_stop = min(t_start + rows_per_task, out_length)
        x_b = x[b]
        out_b = out[b]
        # A task owns whole rows (contiguous memory); channel blocks are looped inside it.
        for block in range(blocks):
            c_lo = block * channel_block
            c_hi = min(c_lo + channel_block, channels)
            t = t_start
            while t < t_stop:
                # rows t..t+3 read input rows t - pad_left .. t + 3 - pad_left + K - 1
                if blockable and t + 4 <= t_stop and t >= pad_left and t + 3 - pad_left + ksize <= length:
                    _forward_rows4(out_b, x_b, kernel2d, bias, t, pad_left, c_lo, c_hi)
                    t += 4
                else:
                    _forward_row(out_b, x_b, kernel2d, bias, t, stride, dilation, pad_left, mult, c_lo, c_hi)
                    t += 1


@parallel_kernel
def _input_grad_channels_last(grad_out, kernel2d, stride, dilation, pad_left, rows_per_task, channel_block, grad_in):
    batch, length, channels = grad_in.shape
    ksize = kernel2d.shape[0]
    mult = kernel2d.shape[1] // channels
    out_length = grad_out.shape[1]
    tiles = -(-length // rows_per_task)
    blocks = -(-channels // channel_block)
    for task in numba.prange(batch * tiles * blocks):
        b = task // (tiles * blocks)
        tile = (task // blocks) % tiles
        c_lo = (task % blocks) * channel_block
        c_hi = min(c_lo + channel_block, channels)
        g_b = grad_out[b]
        for r in range(tile * rows_per_task, min((tile + 1) * rows_per_task, length)):
            acc = grad_in[b, r, c_lo:c_hi]
            for c in range(acc.shape[0]):
                acc[c] = 0
            # Tap i reaches input row r from output row t = (r + pad_left - i*dilation) / stride
            # when that is an integer in [0, out_length).  Valid taps are i = first + n*tap_step.
            first = -1
            for i in range(min(ksize, stride)):
                q = r + pad_left - i * dilation
                if q % stride == 0:
                    first = i
                    break
            if first < 0:
                continue
            tap_step = stride // _gcd(stride, dilation)
            row_step = -(tap_step * dilation) // stride
            t_first = (r + pad_left - first * dilation) // stride
            # skip taps whose output row is past the end, stop at the first one before row 0
            if t_first >= out_length:
                skip = -((out_length - 1 - t_first) // -row_step)  # ceil((t_first - out_length + 1) / -row_step)
                first += skip * tap_step
                t_first += skip * row_step
            count = 0
            if first < ksize and t_first >= 0:
                count = min(-(-(ksize - first) // tap_step), t_first // -row_step + 1)
            if mult == 1:
                _sum_of_products(acc, g_b, t_first, row_step, kernel2d, first, tap_step, count, c_lo, c_hi)
            else:
                for n in range(count):
                    _contract_row(acc, g_b[t_first + n * row_step, c_lo * mult : c_hi * mult],
                                  kernel2d[first + n * tap_step, c_lo * mult : c_hi * mult], mult)


@serial_kernel
def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


@parallel_kernel
def _kernel_grad_channels_last(grad_out, x, stride, dilation, pad_left, rows_per_part, channel_block,
                               part_kernel, part_bias):
    batch, out_length, out_channels = grad_out.shape
    length, channels = x.shape[1], x.shape[2]
    ksize = part_kernel.shape[1]
    mult = out_channels // channels
    parts_per_batch = part_kernel.shape[0] // batch if batch > 0 else 1
    blocks = -(-channels // channel_block)
    for task in numba.prange(part_kernel.shape[0] * blocks):
        part = task // blocks
        c_lo = (task % blocks) * channel_block
        c_hi = min(c_lo + channel_block, channels)
        o_lo, o_hi = c_lo * mult, c_hi * mult
        b = part // parts_per_batch
        t_lo = (part % parts_per_batch) * rows_per_part
        t_hi = min(t_lo + rows_per_part, out_length)
        acc_kernel = part_kernel[part]
        acc_bias = part_bias[part, o_lo:o_hi]
        acc_bias[:] = 0
        g_b = grad_out[b]
        x_b = x[b]
        for t in range(t_lo, t_hi):
            row = g_b[t, o_lo:o_hi]
            for o in range(o_hi - o_lo):
                acc_bias[o] += row[o]
        for i in range(ksize):
            acc = acc_kernel[i, o_lo:o_hi]
            acc[:] = 0
            offset = i * dilation - pad_left
            lo, hi = _tap_range(t_lo, t_hi, 0, length, offset, stride)
            if mult == 1:
                _sum_of_products(acc, x_b, lo * stride + offset, stride, g_b, lo, 1, hi - lo, c_lo, c_hi)
            else:
                for t in range(lo, hi):
                    _accumulate_row(acc, x_b[t * stride + offset, c_lo:c_hi], g_b[t, o_lo:o_hi], mult)


# --------------------------------------------------------------------------
# channels_first: x (B, C, L), kernel (K, C, m), y (B, C*m, L_out)
# --------------------------------------------------------------------------
@parallel_kernel
def _forward_channels_first(x, kernel, bias, stride, dilation, pad_left, tile, out):
    batch, channels, length = x.shape
    ksize, _, mult = kernel.shape
    out_length = out.shape[2]
    for task in numba.prange(batch * channels):
        b = task // channels
        c = task - b * channels
        x_row = x[b, c]
        for t_start in range(0, out_length, tile):
            t_stop = min(t_start + tile, out_length)
            for j in range(mult):
                out_row = out[b, c * mult + j]
                for t in range(t_start, t_stop):
                    out_row[t] = bias[c * mult + j]
                for i in range(ksize):
                    offset = i * dilation - pad_left
                    lo, hi = _tap_range(t_start, t_stop, 0, length, offset, stride)
                    _gather_axpy(out_row, x_row, kernel[i, c, j], lo, hi, stride, offset)


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
            acc[r_start:r_stop] = 0
            for j in range(mult):
                grad_row = grad_out[b, c * mult + j]
                for i in range(ksize):
                    offset = i * dilation - pad_left
                    lo, hi = _tap_range(0, out_length, r_start, r_stop, offset, stride)
                    _scatter_axpy(acc, grad_row, kernel[i, c, j], lo, hi, stride, offset)


@parallel_kernel
def _kernel_grad_channels_first(grad_out, x, stride, dilation, pad_left, part_kernel, part_bias):
    batch, channels, length = x.shape
    out_length = grad_out.shape[2]
    ksize, mult = part_kernel.shape[1], part_kernel.shape[3]
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
            for i in range(ksize):
                offset = i * dilation - pad_left
                lo, hi = _tap_range(0, out_length, 0, length, offset, stride)
                part_kernel[b, i, c, j] = _strided_dot(x_row, grad_row, lo, hi, stride, offset)


# --------------------------------------------------------------------------
# Fixed-order reduction of partial sums
# --------------------------------------------------------------------------
@parallel_kernel
def _sum_partials(parts, out):
    """``out[k] = parts[0, k] + parts[1, k] + ...`` summed in index order."""
    n_parts, size = parts.shape
    block = 512
    for blk in numba.prange(-(-size // block)):
        start = blk * block
        stop = min(start + block, size)
        out[start:stop] = 0
        for p in range(n_parts):
            row = parts[p]
            for k in range(start, stop):
                out[k] += row[k]


# --------------------------------------------------------------------------
# Host functions: allocate outputs, choose the layout's kernel and its tunables
# --------------------------------------------------------------------------
_launch_lock = threading.Lock()


def _launch(kernel, *args) -> None:
    """Run a parallel kernel; serialise callers if numba's thread pool is not thread-safe.

    The OpenMP and TBB threading layers accept concurrent calls from several Python
    threads; the fallback ``workqueue`` layer does not, so there calls take turns.
    """
    try:
        threadsafe = numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet in this process
        threadsafe = False
    if threadsafe:
        kernel(*args)
    else:
        with _launch_lock:
            kernel(*args)


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
    out = np.empty(problem.output_shape, dtype=problem.dtype)
    bias = _zero_bias(problem) if bias is None else bias
    if problem.channels_last:
        kernel2d = kernel.reshape(axis.kernel_size, -1)
        block = channel_block(axis.kernel_size, problem.multiplier, problem.dtype.itemsize)
        _launch(_forward_channels_last, inputs, kernel2d, bias, axis.stride, axis.dilation, axis.pad_left,
                ROWS_PER_TASK, block, out)
    else:
        _launch(_forward_channels_first, inputs, kernel, bias, axis.stride, axis.dilation, axis.pad_left,
                TILE_LENGTH, out)
    return out


def conv1d_input_grad(problem, grad_outputs, kernel):
    """Gradient of ``sum(outputs * grad_outputs)`` with respect to the inputs.

    Returns
    -------
    ndarray, shape ``problem.input_shape``
    """
    axis = problem.axis
    grad_in = np.empty(problem.input_shape, dtype=problem.dtype)
    if problem.channels_last:
        kernel2d = kernel.reshape(axis.kernel_size, -1)
        block = channel_block(axis.kernel_size, problem.multiplier, problem.dtype.itemsize)
        _launch(_input_grad_channels_last, grad_outputs, kernel2d, axis.stride, axis.dilation, axis.pad_left,
                ROWS_PER_TASK, block, grad_in)
    else:
        _launch(_input_grad_channels_first, grad_outputs, kernel, axis.stride, axis.dilation, axis.pad_left,
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
        block = channel_block(axis.kernel_size, problem.multiplier, problem.dtype.itemsize)
        _launch(_kernel_grad_channels_last, grad_outputs, inputs, axis.stride, axis.dilation, axis.pad_left,
                rows_per_part, block, part_kernel, part_bias)
    else:
        part_kernel = np.empty((problem.batch,) + problem.kernel_shape, dtype=problem.dtype)
        part_bias = np.empty((problem.batch, out_channels), dtype=problem.dtype)
        _launch(_kernel_grad_channels_first, grad_outputs, inputs, axis.stride, axis.dilation, axis.pad_left,
                part_kernel, part_bias)
    grad_kernel = np.empty(problem.kernel_shape, dtype=problem.dtype)
    grad_bias = np.empty(out_channels, dtype=problem.dtype)
    _launch(_sum_partials, part_kernel.reshape(part_kernel.shape[0], grad_kernel.size), grad_kernel.reshape(-1))
    _launch(_sum_partials, part_bias, grad_bias)
    return grad_kernel, grad_bias
