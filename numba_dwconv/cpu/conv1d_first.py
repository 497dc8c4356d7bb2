"""1D depthwise kernels for channels_first ``(B, C, L)``: one channel row per task, taps fused over tiles.

Used by the host functions of :mod:`numba_dwconv.cpu.conv1d`.  Rows are contiguous along
the length, so the innermost loop runs over positions with the tap weights broadcast.
"""

from __future__ import annotations

from numba import types
from numba.extending import overload

from .._jit import parallel_kernel, serial_kernel, task_share
from .conv1d_last import _gcd
from .conv1d_last import tap_range as _tap_range
from .conv1d_short import short_row
from .fused import apply_activation
from .nontemporal import stream_rows


# The helpers take the stride last, as a *stride spec* (:func:`stride_spec`): None for a unit
# stride, else the int.  The spec is the step of the helpers' views, so a unit stride compiles
# contiguous views only and a larger one strided views only, each in its own compiled kernel (half
# the code each: the 1D channels_first forward compiled in 3.1 s with both, 1.6 s with one).
# Views start at element 0: a computed signed index such as ``t + offset`` makes numba emit a
# negative-index wraparound select on every access, which stops LLVM from vectorising the loop.
def stride_spec(stride: int):
    """The stride argument of these kernels: None for a unit stride (contiguous views), else the int."""
    return None if stride == 1 else int(stride)


def _stride_of(spec):
    """Inside a kernel: the int stride of a stride spec."""
    raise NotImplementedError("_stride_of is only callable inside numba kernels")


@overload(_stride_of, inline="always")
def _stride_of_impl(spec):
    if isinstance(spec, types.NoneType):
        return lambda spec: 1
    if isinstance(spec, types.Integer):
        return lambda spec: spec
    return None


@serial_kernel
def _window(row, lo, hi, offset, stride):
    """View of ``row[t*stride + offset]`` for ``t`` in ``[lo, hi)`` (empty when ``hi <= lo``)."""
    step = _stride_of(stride)
    start = lo * step + offset
    return row[start : start + (hi - lo - 1) * step + 1 : stride] if hi > lo else row[0:0:stride]


@serial_kernel
def _gather_axpy(out_row, in_row, weight, lo, hi, offset, stride):
    """``out_row[t] += weight * in_row[t*stride + offset]`` for ``t`` in ``[lo, hi)``."""
    if hi <= lo:
        return
    dst = out_row[lo:hi]
    src = _window(in_row, lo, hi, offset, stride)
    for k in range(hi - lo):
        dst[k] += weight * src[k]


@serial_kernel
def _dot(x_row, grad_row, lo, hi, offset, stride):
    """``sum_t x_row[t*stride + offset] * grad_row[t]`` for ``t`` in ``[lo, hi)``."""
    total = grad_row.dtype.type(0)
    if hi <= lo:
        return total
    grad = grad_row[lo:hi]
    src = _window(x_row, lo, hi, offset, stride)
    for k in range(hi - lo):
        total += src[k] * grad[k]
    return total


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
def _gather_taps(out_row, in_row, weights, i, count, offset_step, lo, hi, o0, init, value, stride):
    """``out_row[t] (+)= sum_n weights[i+n] * in_row[t*stride + o0 + n*offset_step]``, ``n < count`` (1-4 or 8).

    For ``t`` in ``[lo, hi)``, where every tap is inside ``in_row``.  With ``init``
    the sum plus ``value`` overwrites ``out_row`` (saving a pass), else it is added.
    """
    last = count - 1
    w = (weights[i], weights[i + min(1, last)], weights[i + min(2, last)], weights[i + min(3, last)],
         weights[i + min(4, last)], weights[i + min(5, last)], weights[i + min(6, last)], weights[i + min(7, last)])
    v0 = _window(in_row, lo, hi, o0, stride)
    v1 = v2 = v3 = v4 = v5 = v6 = v7 = v0  # unused entries: no extra slicing for short groups
    if count > 1:
        v1 = _window(in_row, lo, hi, o0 + offset_step, stride)
    if count > 2:
        v2 = _window(in_row, lo, hi, o0 + 2 * offset_step, stride)
    if count > 3:
        v3 = _window(in_row, lo, hi, o0 + 3 * offset_step, stride)
    if count > 4:
        v4 = _window(in_row, lo, hi, o0 + 4 * offset_step, stride)
        v5 = _window(in_row, lo, hi, o0 + 5 * offset_step, stride)
        v6 = _window(in_row, lo, hi, o0 + 6 * offset_step, stride)
        v7 = _window(in_row, lo, hi, o0 + 7 * offset_step, stride)
    _fused_taps(out_row[lo:hi], (v0, v1, v2, v3, v4, v5, v6, v7), w, count, init, value)


@serial_kernel
def _conv_taps(out_row, in_row, weights, t_lo, t_hi, first_offset, offset_step, init, value, stride):
    """``out_row[t] (+)= sum_i weights[i] * in_row[t*stride + first_offset + i*offset_step]``.

    For ``t`` in ``[t_lo, t_hi)``; positions of ``in_row`` outside its bounds read as
    zero.  ``offset_step`` may be negative (the input gradient walks the taps
    backwards).  With ``init`` the result (plus ``value``) overwrites ``out_row``.
    Taps go eight (then up to four) at a time over the positions where the whole
    group is inside; the edge positions take one tap at a time.
    """
    n_in = in_row.shape[0]
    ksize = weights.shape[0]
    step = _stride_of(stride)
    i = 0
    while i < ksize:
        count = 8 if i + 8 <= ksize else min(4, ksize - i)
        o0 = first_offset + i * offset_step
        lo, hi = _tap_range(t_lo, t_hi, 0, n_in, o0, step)
        for n in range(1, count):
            lo_n, hi_n = _tap_range(t_lo, t_hi, 0, n_in, o0 + n * offset_step, step)
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
            _gather_taps(out_row, in_row, weights, i, count, offset_step, lo, hi, o0, init, value, stride)
        for n in range(count):  # positions outside [lo, hi) where tap i+n is inside
            offset = o0 + n * offset_step
            lo_n, hi_n = _tap_range(t_lo, t_hi, 0, n_in, offset, step)
            _gather_axpy(out_row, in_row, weights[i + n], lo_n, min(hi_n, lo), offset, stride)
            _gather_axpy(out_row, in_row, weights[i + n], max(lo_n, hi), hi_n, offset, stride)
        init = False
        i += count
    if init:  # no taps at all
        for t in range(t_lo, t_hi):
            out_row[t] = value


@serial_kernel
def _dot4(x_row, grad_row, lo, hi, o0, o1, o2, o3, stride):
    """The four sums ``sum_t x_row[t*stride + o_n] * grad_row[t]`` for ``t`` in ``[lo, hi)`` (all inside)."""
    zero = grad_row.dtype.type(0)
    d0 = zero
    d1 = zero
    d2 = zero
    d3 = zero
    grad = grad_row[lo:hi]
    v0 = _window(x_row, lo, hi, o0, stride)
    v1 = _window(x_row, lo, hi, o1, stride)
    v2 = _window(x_row, lo, hi, o2, stride)
    v3 = _window(x_row, lo, hi, o3, stride)
    for k in range(hi - lo):
        g = grad[k]
        d0 += v0[k] * g
        d1 += v1[k] * g
        d2 += v2[k] * g
        d3 += v3[k] * g
    return d0, d1, d2, d3


@serial_kernel
def _kernel_grad_taps(out_weights, x_row, grad_row, first_offset, offset_step, stride):
    """``out_weights[i] = sum_t x_row[t*stride + first_offset + i*offset_step] * grad_row[t]`` (outside reads 0)."""
    n_in = x_row.shape[0]
    n_out = grad_row.shape[0]
    ksize = out_weights.shape[0]
    step = _stride_of(stride)
    i = 0
    while i + 4 <= ksize:
        o0 = first_offset + i * offset_step
        lo, hi = _tap_range(0, n_out, 0, n_in, o0, step)
        for n in range(1, 4):
            lo_n, hi_n = _tap_range(0, n_out, 0, n_in, o0 + n * offset_step, step)
            lo = max(lo, lo_n)
            hi = min(hi, hi_n)
        if lo < hi:
            d0, d1, d2, d3 = _dot4(x_row, grad_row, lo, hi, o0, o0 + offset_step, o0 + 2 * offset_step,
                                   o0 + 3 * offset_step, stride)
        else:
            hi = lo
            d0 = d1 = d2 = d3 = grad_row.dtype.type(0)
        out_weights[i] = d0
        out_weights[i + 1] = d1
        out_weights[i + 2] = d2
        out_weights[i + 3] = d3
        for n in range(4):  # positions outside [lo, hi) where tap i+n is inside
            offset = o0 + n * offset_step
            lo_n, hi_n = _tap_range(0, n_out, 0, n_in, offset, step)
            out_weights[i + n] += _dot(x_row, grad_row, lo_n, min(hi_n, lo), offset, stride)
            out_weights[i + n] += _dot(x_row, grad_row, max(lo_n, hi), hi_n, offset, stride)
        i += 4
    for tap in range(i, ksize):  # the taps not covered by four-tap groups
        offset = first_offset + tap * offset_step
        lo, hi = _tap_range(0, n_out, 0, n_in, offset, step)
        out_weights[tap] = _dot(x_row, grad_row, lo, hi, offset, stride)


@parallel_kernel
def forward_first(part, parts, x, kernel, bias, stride, dilation, pad_left, tile, out, act, grad, stream_buf, shift,
                  lanes_t, short, general):
    """``out = act(conv(x, kernel) + bias)``; one task per (batch, channel) row, in tiles of ``tile`` positions.

    ``stride``: a stride spec (:func:`stride_spec`).  ``act`` and ``grad``: see :mod:`numba_dwconv.cpu.fused`
    (applied to each tile).  ``stream_buf``, ``shift``, ``lanes_t``: see
    :func:`numba_dwconv.cpu.nontemporal.stream_args` (an output row per part): each tile is computed there,
    then streamed out.  ``short``, ``general``: one None, the other any int.  ``short`` (unit stride, at
    most SHORT_TAPS taps): the rows go through :func:`numba_dwconv.cpu.conv1d_short.short_row` (streamed
    from the registers where there is no activation to apply).  The branch of the None one is pruned while
    compiling (numba prunes ``arg is not None`` for a None argument only: with the tiles' code left in, the
    short kernel compiled in 2.9 s instead of 0.9 s).
    """
    batch, channels, _ = x.shape
    mult = kernel.shape[2]
    out_length = out.shape[2]
    flat_out = out.reshape(-1)
    flat_kernel = kernel.reshape(-1)
    ksize = kernel.shape[0]
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        x_row = x[b, c]
        if short is not None:
            for j in range(mult):
                o = c * mult + j
                d = (b * out.shape[1] + o) * out_length
                dst, at, streamed = flat_out, d, False
                if stream_buf is not None:  # streamed from the registers, or (an activation) through the buffer
                    streamed = act[0] == 0
                    if not streamed:
                        dst, at = stream_buf[part], 0
                short_row(dst, at, out_length, x_row, flat_kernel, o, channels * mult, ksize, bias, o, -pad_left,
                           dilation, streamed, shift, lanes_t)
                if not streamed:
                    apply_activation(dst[at:at + out_length], grad[b, o], act)
                    if stream_buf is not None:
                        stream_rows(out, d, dst, out_length, shift, lanes_t)
        if general is not None:
            for t_start in range(0, out_length, tile):
                t_stop = min(t_start + tile, out_length)
                for j in range(mult):
                    o = c * mult + j
                    dst = out[b, o] if stream_buf is None else stream_buf[part]
                    _conv_taps(dst, x_row, kernel[:, c, j], t_start, t_stop, -pad_left, dilation, True, bias[o],
                               stride)
                    apply_activation(dst[t_start:t_stop], grad[b, o][t_start:t_stop], act)
                    if stream_buf is not None:
                        stream_rows(out, (b * out.shape[1] + o) * out_length + t_start, dst[t_start:],
                                    t_stop - t_start, shift, lanes_t)


@serial_kernel
def _phase_input_grad(grad_row, weights, phase, r_start, r_stop, step, dilation, pad_left, gcd, buf, init):
    """Input-gradient positions ``r = phase + step*u`` of ``[r_start, r_stop)`` from one output-gradient row.

    Those positions are reached by the taps ``i = i0 + n*(step // gcd)`` only, from output positions
    ``u + (phase + pad_left - i0*dilation) // step - n*(dilation // gcd)``: a unit-stride gather over
    ``grad_row`` into ``buf[u]`` (``init``: overwrite, else add; zeros when no tap reaches the phase).
    """
    ksize = weights.shape[0]
    tap_step = step // gcd
    u_lo = max(0, -((phase - r_start) // step))  # ceil((r_start - phase) / step)
    u_hi = max(u_lo, -((phase - r_stop) // step))
    for i0 in range(min(tap_step, ksize)):
        if (phase + pad_left - i0 * dilation) % step == 0:
            _conv_taps(buf, grad_row, weights[i0::tap_step], u_lo, u_hi, (phase + pad_left - i0 * dilation) // step,
                       -(dilation // gcd), init, buf.dtype.type(0), None)
            return
    if init:
        for u in range(u_lo, u_hi):
            buf[u] = 0


@parallel_kernel
def input_grad_first(part, parts, grad_out, kernel, stride, dilation, pad_left, tile, grad_in, phase_buf, stream_buf,
                     shift, lanes_t, short, general):
    """``grad_in`` = the transposed convolution of ``grad_out``; one task per (batch, channel) row.

    A unit stride (spec) gathers the taps into each tile.  A larger one takes the tile's positions by
    phase (position mod stride): each phase is a unit-stride gather over the output gradient with its
    own taps, into its row of the part's ``phase_buf[part]`` (``stride`` rows of at least
    ``ceil(length / stride)``, flat; None for a unit stride), then the phases are interleaved into the tile.
    ``stream_buf``, ``shift``, ``lanes_t``: as in :func:`forward_first`.  ``short``, ``general``: as in
    :func:`forward_first` (``short`` also needs m = 1; it is a one-element array of zeros, the sums' start).
    """
    batch, channels, length = grad_in.shape
    mult = kernel.shape[2]
    step = _stride_of(stride)
    gcd = _gcd(step, dilation)
    flat_grad_in = grad_in.reshape(-1)
    flat_kernel = kernel.reshape(-1)
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        if short is not None:  # gather form: grad_in[r] = sum_i w[i] * grad_out[r + pad_left - i*dilation]
            short_row(flat_grad_in, (b * channels + c) * length, length, grad_out[b, c], flat_kernel, c, channels,
                       kernel.shape[0], short, 0, pad_left, -dilation, stream_buf is not None, shift, lanes_t)
        if general is not None:
            acc = grad_in[b, c] if stream_buf is None else stream_buf[part]
            for r_start in range(0, length, tile):
                r_stop = min(r_start + tile, length)
                if stride is None:
                    for j in range(mult):
                        # gather form: grad_in[r] += sum_i w[i] * grad_out[r + pad_left - i*dilation]
                        _conv_taps(acc, grad_out[b, c * mult + j], kernel[:, c, j], r_start, r_stop, pad_left,
                                   -dilation, j == 0, acc.dtype.type(0), stride)
                else:
                    _strided_input_grad_tile(acc, grad_out[b], kernel[:, c], c, r_start, r_stop, step, dilation,
                                             pad_left, gcd, phase_buf[part])
                if stream_buf is not None:
                    stream_rows(grad_in, (b * channels + c) * length + r_start, acc[r_start:], r_stop - r_start, shift,
                                lanes_t)


@serial_kernel
def _strided_input_grad_tile(acc, grad_b, weights, c, r_start, r_stop, step, dilation, pad_left, gcd, buf):
    """The positions ``[r_start, r_stop)`` of ``acc`` for a stride ``step`` > 1: the phases, then interleaved."""
    mult = weights.shape[1]
    n_u = buf.shape[0] // step
    phases = min(step, r_stop - r_start)
    for q in range(phases):  # phase q of the tile: positions r_start + q + step*k
        row = buf[q * n_u:(q + 1) * n_u]
        for j in range(mult):
            _phase_input_grad(grad_b[c * mult + j], weights[:, j], (r_start + q) % step, r_start, r_stop, step,
                              dilation, pad_left, gcd, row, j == 0)
    dst = acc[r_start:r_stop]
    if step == 2 and phases == 2:  # one interleaving loop (vectorised)
        e = buf[0:n_u][-((r_start % 2 - r_start) // 2):]
        o = buf[n_u:2 * n_u][-(((r_start + 1) % 2 - r_start) // 2):]
        pairs = (r_stop - r_start) // 2
        for k in range(pairs):
            dst[2 * k] = e[k]
            dst[2 * k + 1] = o[k]
        if (r_stop - r_start) % 2:
            dst[2 * pairs] = e[pairs]
        return
    for q in range(phases):
        ph = (r_start + q) % step
        u = -((ph - r_start) // step)
        row = buf[q * n_u:(q + 1) * n_u]
        for r in range(q, r_stop - r_start, step):
            dst[r] = row[u]
            u += 1


@parallel_kernel
def kernel_grad_first(part, parts, grad_out, x, stride, dilation, pad_left, part_kernel, part_bias):
    """Kernel and bias gradient partials of each batch entry (``part_kernel[b]``, ``part_bias[b]``)."""
    batch, channels, _ = x.shape
    out_length = grad_out.shape[2]
    mult = part_kernel.shape[3]
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        x_row = x[b, c]
        for j in range(mult):
            grad_row = grad_out[b, c * mult + j]
            total = grad_row.dtype.type(0)
            for t in range(out_length):
                total += grad_row[t]
            part_bias[b, c * mult + j] = total
            _kernel_grad_taps(part_kernel[b, :, c, j], x_row, grad_row, -pad_left, dilation, stride)

