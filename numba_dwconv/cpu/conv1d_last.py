"""1D depthwise kernels for channels_last ``(B, L, C)``: rows of channels, register-blocked over output rows.

Used by the host functions of :mod:`numba_dwconv.cpu.conv1d` (which documents the operations
and the contract: the kernels trust their callers, kernel-gradient partials are summed in a
fixed order).  Rows are C-contiguous, so the innermost loop runs over a block of channels
(vectorised); four output rows share each input row loaded.

The kernels see one input channel per output channel (``m = 1``): with a depth multiplier
the host runs them on channel-repeated inputs (:mod:`numba_dwconv.cpu.channels`).
"""

from __future__ import annotations

from .._jit import parallel_kernel, serial_kernel, task_share
from .channels import repeat_rows, sum_group_rows
from .fused import apply_activation
from .nontemporal import stream_rows


@serial_kernel
def tap_range(t_lo, t_hi, r_lo, r_hi, offset, stride):
    """Sub-range of ``[t_lo, t_hi)`` whose position ``t*stride + offset`` lies in ``[r_lo, r_hi)``."""
    first = -((offset - r_lo) // stride)  # ceil((r_lo - offset) / stride)
    last = -((offset - r_hi) // stride)  # ceil((r_hi - offset) / stride)
    return max(t_lo, first), min(t_hi, last)


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
def _fma4x8(a, v, w, init, bias):
    """``a[r] (+)= sum_n v[r + n] * w[n]`` for 4 accumulator rows and 8 terms: 11 + 8 rows loaded for 32 FMAs.

    The init and accumulate cases are separate loops (a branch in the loop body stops vectorisation).
    """
    a0, a1, a2, a3 = a
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10 = v
    w0, w1, w2, w3, w4, w5, w6, w7 = w
    if init:
        for c in range(a0.shape[0]):
            p0, p1, p2, p3, p4, p5, p6, p7 = w0[c], w1[c], w2[c], w3[c], w4[c], w5[c], w6[c], w7[c]
            e0, e1, e2, e3, e4, e5 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c]
            e6, e7, e8, e9, e10, b = v6[c], v7[c], v8[c], v9[c], v10[c], bias[c]
            a0[c] = b + (((e0 * p0 + e1 * p1) + (e2 * p2 + e3 * p3)) + ((e4 * p4 + e5 * p5) + (e6 * p6 + e7 * p7)))
            a1[c] = b + (((e1 * p0 + e2 * p1) + (e3 * p2 + e4 * p3)) + ((e5 * p4 + e6 * p5) + (e7 * p6 + e8 * p7)))
            a2[c] = b + (((e2 * p0 + e3 * p1) + (e4 * p2 + e5 * p3)) + ((e6 * p4 + e7 * p5) + (e8 * p6 + e9 * p7)))
            a3[c] = b + (((e3 * p0 + e4 * p1) + (e5 * p2 + e6 * p3)) + ((e7 * p4 + e8 * p5) + (e9 * p6 + e10 * p7)))
    else:
        for c in range(a0.shape[0]):
            p0, p1, p2, p3, p4, p5, p6, p7 = w0[c], w1[c], w2[c], w3[c], w4[c], w5[c], w6[c], w7[c]
            e0, e1, e2, e3, e4, e5 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c]
            e6, e7, e8, e9, e10 = v6[c], v7[c], v8[c], v9[c], v10[c]
            a0[c] += ((e0 * p0 + e1 * p1) + (e2 * p2 + e3 * p3)) + ((e4 * p4 + e5 * p5) + (e6 * p6 + e7 * p7))
            a1[c] += ((e1 * p0 + e2 * p1) + (e3 * p2 + e4 * p3)) + ((e5 * p4 + e6 * p5) + (e7 * p6 + e8 * p7))
            a2[c] += ((e2 * p0 + e3 * p1) + (e4 * p2 + e5 * p3)) + ((e6 * p4 + e7 * p5) + (e8 * p6 + e9 * p7))
            a3[c] += ((e3 * p0 + e4 * p1) + (e5 * p2 + e6 * p3)) + ((e7 * p4 + e8 * p5) + (e9 * p6 + e10 * p7))


@serial_kernel
def _block8(acc, acc_row, v, v_row, w, w_row, w_step, init, bias):
    """``acc[acc_row + r] (+)= sum_n v[v_row + r + n] * w[w_row + n*w_step]``, ``r < 4``, ``n < 8``."""
    _fma4x8((acc[acc_row], acc[acc_row + 1], acc[acc_row + 2], acc[acc_row + 3]),
            (v[v_row], v[v_row + 1], v[v_row + 2], v[v_row + 3], v[v_row + 4], v[v_row + 5], v[v_row + 6],
             v[v_row + 7], v[v_row + 8], v[v_row + 9], v[v_row + 10]),
            (w[w_row], w[w_row + w_step], w[w_row + 2 * w_step], w[w_row + 3 * w_step], w[w_row + 4 * w_step],
             w[w_row + 5 * w_step], w[w_row + 6 * w_step], w[w_row + 7 * w_step]), init, bias)


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
def _forward_row(out_b, x_b, kernel2d, bias, t, stride, dilation, pad_left):
    """One output row ``out_b[t]``, every option."""
    acc = out_b[t]
    for o in range(acc.shape[0]):
        acc[o] = bias[o]
    base = t * stride - pad_left
    first, last = _valid_taps(base, dilation, x_b.shape[0], kernel2d.shape[0])
    _sum_of_products(acc, x_b, base + first * dilation, dilation, kernel2d, first, 1, last - first)


@serial_kernel
def _forward_rows4(out_b, x_b, kernel2d, bias, t, pad_left):
    """Output rows ``t..t+3`` (stride 1, dilation 1, m = 1, every tap inside the input).

    Taps eight at a time while eight remain (fewer accumulator loads and stores per multiply-add:
    K = 31 forward 15 % faster), then up to four.  Only the forward has the eight-tap block: in the
    input gradient it cost 0.9 s more compile time for the backward's first call.
    """
    ksize = kernel2d.shape[0]
    i = 0
    init = True
    while i + 8 <= ksize:
        _block8(out_b, t, x_b, t - pad_left + i, kernel2d, i, 1, init, bias)
        init = False
        i += 8
    if i < ksize:
        _sum_taps4(out_b, t, x_b, t - pad_left + i, kernel2d, i, 1, ksize - i, init, bias)


@serial_kernel
def _repeated_window(x_b, buf, t_lo, t_hi, stride, dilation, pad_left, ksize, mult):
    """The input rows that outputs ``[t_lo, t_hi)`` read, each channel repeated ``mult`` times, copied into ``buf``.

    Returns ``(rows, pad)``: the copy (row 0 is input row ``r0``) and the padding that makes the
    kernels' row arithmetic on it equal theirs on ``x_b`` (``pad_left + r0``).
    """
    length = x_b.shape[0]
    r0 = min(max(0, t_lo * stride - pad_left), length)
    r1 = max(r0, min(length, (t_hi - 1) * stride - pad_left + (ksize - 1) * dilation + 1))
    rows = buf[: r1 - r0]
    repeat_rows(rows, x_b[r0:r1], mult)
    return rows, pad_left + r0


@parallel_kernel
def forward_last(part, parts, x, kernel2d, bias, stride, dilation, pad_left, rows_per_task, out, act, grad, rows_buf,
                 stream_buf, shift, lanes_t):
    """``out = act(conv(x, kernel2d) + bias)``; one task per ``rows_per_task`` output rows of one batch entry.

    ``x`` has C channels and ``kernel2d`` C*m columns (``rows_buf``: None when m = 1).  With m > 1 each task
    first copies the input rows it reads, each channel repeated m times, into its part's ``rows_buf[part]``
    (at least ``(rows_per_task - 1) * stride + (K - 1) * dilation + 1`` rows of C*m), then runs the m = 1
    loops on them (no repeated copy of the whole input in memory).  ``act`` and ``grad``: see
    :mod:`numba_dwconv.cpu.fused` (applied to each task's rows).  ``stream_buf``, ``shift``, ``lanes_t``:
    :func:`numba_dwconv.cpu.nontemporal.stream_args` (``rows_per_task`` rows of C*m): the rows are computed
    there and streamed out four at a time.
    """
    batch, length, channels = x.shape
    ksize, out_channels = kernel2d.shape
    mult = out_channels // channels
    out_length = out.shape[1]
    tiles = -(-out_length // rows_per_task)
    blockable = stride == 1 and dilation == 1
    tasks_lo, tasks_hi = task_share(batch * tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // tiles
        t = (task - b * tiles) * rows_per_task
        t_stop = min(t + rows_per_task, out_length)
        t_start = t
        x_b = x[b]
        pad = pad_left
        if rows_buf is not None:
            x_b, pad = _repeated_window(x[b], rows_buf[part], t, t_stop, stride, dilation, pad_left, ksize, mult)
        rows = x_b.shape[0]
        out_b = out[b]
        if stream_buf is not None:  # (the rows into a tile, then streamed out)
            out_b = stream_buf[part].reshape((rows_per_task, out_channels))
            pad -= t_start * stride
            t, t_stop = 0, t_stop - t_start
        flushed = 0
        while t < t_stop:
            # rows t..t+3 read input rows t - pad .. t + 3 - pad + K - 1
            if blockable and t + 4 <= t_stop and t >= pad and t + 3 - pad + ksize <= rows:
                _forward_rows4(out_b, x_b, kernel2d, bias, t, pad)
                t += 4
            else:
                _forward_row(out_b, x_b, kernel2d, bias, t, stride, dilation, pad)
                t += 1
            if stream_buf is not None and (t - flushed >= 4 or t == t_stop):  # (streamed while the next rows compute)
                apply_activation(out_b[flushed:t], grad[b][t_start + flushed:t_start + t], act)
                stream_rows(out, (b * out_length + t_start + flushed) * out_channels, out_b[flushed:],
                            (t - flushed) * out_channels, shift, lanes_t)
                flushed = t
        if stream_buf is None:
            apply_activation(out_b[t_start:t_stop], grad[b][t_start:t_stop], act)


@serial_kernel
def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


@serial_kernel
def _input_grad_row(acc, grad_b, kernel2d, r, stride, dilation, pad_left):
    """The input-gradient row ``r`` into ``acc``, every option (a gather over the taps that reach row r)."""
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
    _sum_of_products(acc, grad_b, t_first, row_step, kernel2d, first, tap_step, count)


@serial_kernel
def _input_grad_rows4(dst, dst_row, grad_b, kernel2d, zeros, r, pad_left):
    """Input-gradient rows ``r..r+3`` into ``dst[dst_row..dst_row+3]`` (stride 1, dilation 1, every tap inside).

    ``grad_in[r + q] = sum_i grad_out[r + q + pad_left - i] * w[i]``; with ``i = K-1-n`` that is
    ``sum_n grad_out[r + pad_left - K + 1 + q + n] * w[K-1-n]``: the forward's block with the
    taps reversed.
    """
    ksize = kernel2d.shape[0]
    _sum_taps4(dst, dst_row, grad_b, r + pad_left - ksize + 1, kernel2d, ksize - 1, -1, ksize, True, zeros)


@parallel_kernel
def input_grad_last(part, parts, grad_out, kernel2d, zeros, stride, dilation, pad_left, rows_per_task, grad_in,
                    rows_buf, stream_buf, shift, lanes_t):
    """``grad_in`` = the transposed convolution of ``grad_out`` (a gather per input row; ``zeros``: C*m zeros).

    ``grad_in`` has C channels and ``kernel2d`` C*m columns (``rows_buf``: None when m = 1).  With m > 1 a task
    gathers its rows of C*m
    channels into its part's ``rows_buf[part]`` (``rows_per_task`` rows), then sums each group of m into
    ``grad_in``.  ``stream_buf``, ``shift``, ``lanes_t`` (m = 1 only): as in :func:`forward_last`.
    """
    batch, length, channels = grad_in.shape
    ksize, out_channels = kernel2d.shape
    mult = out_channels // channels
    out_length = grad_out.shape[1]
    tiles = -(-length // rows_per_task)
    blockable = stride == 1 and dilation == 1
    tasks_lo, tasks_hi = task_share(batch * tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // tiles
        r = (task - b * tiles) * rows_per_task
        r_start = r
        r_stop = min(r + rows_per_task, length)
        grad_b = grad_out[b]
        dst = grad_in[b]
        base = 0
        if rows_buf is not None:  # gather into the part's rows, row r_start first
            dst = rows_buf[part]
            base = r_start
        elif stream_buf is not None:  # (into a tile, streamed out)
            dst = stream_buf[part].reshape((rows_per_task, channels))
            base = r_start
        flushed = r_start
        while r < r_stop:
            # rows r..r+3 read output rows r + pad_left - K + 1 .. r + 3 + pad_left
            if blockable and r + 4 <= r_stop and r + pad_left - ksize + 1 >= 0 and r + 3 + pad_left < out_length:
                _input_grad_rows4(dst, r - base, grad_b, kernel2d, zeros, r, pad_left)
                r += 4
            else:
                _input_grad_row(dst[r - base], grad_b, kernel2d, r, stride, dilation, pad_left)
                r += 1
            if stream_buf is not None and rows_buf is None and (r - flushed >= 4 or r == r_stop):
                stream_rows(grad_in, (b * length + flushed) * channels, dst[flushed - base:], (r - flushed) * channels,
                            shift, lanes_t)
                flushed = r
        if rows_buf is not None:
            sum_group_rows(grad_in[b][r_start:r_stop], dst, mult)


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
        lo_n, hi_n = tap_range(t_lo, t_hi, 0, length, offset, 1)
        if hi_blocks > lo:
            _sum_of_products(acc_kernel[i + n], x_b, lo_n + offset, 1, grad_b, lo_n, 1, lo - lo_n)
            _sum_of_products(acc_kernel[i + n], x_b, hi_blocks + offset, 1, grad_b, hi_blocks, 1,
                             hi_n - hi_blocks)
        else:
            _sum_of_products(acc_kernel[i + n], x_b, lo_n + offset, 1, grad_b, lo_n, 1, hi_n - lo_n)


@parallel_kernel
def kernel_grad_last(part, parts, grad_out, x, stride, dilation, pad_left, rows_per_part, rows_per_sub, part_kernel,
                     part_bias, rows_buf):
    """Kernel and bias gradient partials, one row of ``part_kernel``/``part_bias`` per part of the output rows.

    ``x`` has C channels and ``grad_out`` C*m (``rows_buf``: None when m = 1).  With m > 1 each sub-chunk's
    input rows are first copied, each channel repeated m times, into this part's ``rows_buf[part]`` (as the
    forward does).
    """
    batch, out_length, out_channels = grad_out.shape
    mult = out_channels // x.shape[2]
    ksize = part_kernel.shape[1]
    parts_per_batch = part_kernel.shape[0] // batch if batch > 0 else 1
    blockable = stride == 1 and dilation == 1
    tasks_lo, tasks_hi = task_share(part_kernel.shape[0], part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // parts_per_batch
        t_lo = (task % parts_per_batch) * rows_per_part
        t_hi = min(t_lo + rows_per_part, out_length)
        acc_kernel = part_kernel[task]
        acc_bias = part_bias[task]
        grad_b = grad_out[b]
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
            x_b = x[b]
            pad = pad_left
            if rows_buf is not None:
                x_b, pad = _repeated_window(x[b], rows_buf[part], sub_lo, sub_hi, stride, dilation, pad_left, ksize,
                                            mult)
            rows = x_b.shape[0]
            i = 0
            if blockable:
                while i + 3 <= ksize:
                    ntaps = 4 if i + 4 <= ksize else 3
                    _kernel_grad_tap_block(acc_kernel, x_b, grad_b, i, ntaps, sub_lo, sub_hi, pad)
                    i += ntaps
            for tap in range(i, ksize):  # the taps not covered by blocks
                offset = tap * dilation - pad
                lo, hi = tap_range(sub_lo, sub_hi, 0, rows, offset, stride)
                _sum_of_products(acc_kernel[tap], x_b, lo * stride + offset, stride, grad_b, lo, 1, hi - lo)
