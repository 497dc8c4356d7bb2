"""2D depthwise kernels for channels_first ``(B, C, H, W)``: zero-padded stride-phase planes.

Used by the host functions of :mod:`numba_dwconv.cpu.conv2d` (which documents the
contract: tasks own planes, partials are summed in a fixed order).

Each task owns one plane ``(b, c)``.  The plane is first copied into a scratch
buffer of ``sh * sw`` zero-padded *phase* planes of ``rows x pitch`` values,
``phase[ph * sw + pw][r, q] = xpad[r * sh + ph, q * sw + pw]``, so that every tap
``t = (i, k)`` reads its window with unit steps at a fixed flat offset
``offsets[t]`` (phase, row shift and column shift, computed on the host).  Output
row ``oh`` is then one loop over its columns that applies all ``KH * KW`` taps:
``out[oh, ow] = bias + sum_t buf[offsets[t] + oh * pitch + ow] * w[t]``.  With
unit strides the rows go two at a time: each weight is loaded once for both,
and (no dilation) the input rows they share are loaded once; the sum is split in
two chains (even and odd tap rows) so that it is not one long chain of
dependent multiply-adds.

The numba details of :mod:`numba_dwconv.cpu.conv2d_last` apply here too:

* the tap loop has a compile-time trip count (``len(taps_t)``), so LLVM unrolls it and
  vectorises the column loop, with the tap offsets and weights hoisted out of it (they are
  read from argument arrays); those loops are compiled per kernel size as entries
  (:mod:`numba_dwconv.cpu.conv2d_first_entries`), which the kernels, compiled once, call;
* arrays arrive flat and are indexed with unsigned integers;
* no view of an argument array is created in the parallel loop, so numba marks
  the arguments ``noalias``;
* sums start from ``dtype.type(0)``: numba types ``x[0] * 0.0`` as float64 for a
  float32 ``x``, and a float64 accumulator halves the vector width (it made the
  float32 input gradient and kernel gradient 1.3-1.5x slower).

With unit strides the input gradient is the same correlation over the padded
output gradient with the taps reversed.  With column stride 2 each input value
gathers the taps of its phase class (even and odd columns of a row in one
pass).  With other strides (or a non-finite weight) each tap adds its
contribution into the phase planes, read back afterwards.  The kernel gradient and the
one-pass backward of 'same' are in :mod:`numba_dwconv.cpu.conv2d_first_grads`.
"""

from __future__ import annotations

from numba import uint64

from .._entries import call_entry
from .._jit import parallel_kernel, serial_kernel, task_share, trip_count
from .fused import apply_activation


@serial_kernel
def _phase_segment(w_count, pitch, sw, left, pw):
    """(first column w, first phase column q, count) of the input columns landing in phase column pw."""
    w0 = (pw - left) % sw
    q0 = (w0 + left) // sw
    count = min((w_count - w0 + sw - 1) // sw, pitch - q0) if w0 < w_count else 0
    return w0, q0, max(count, 0)


@serial_kernel
def _scatter_phases(buf, x, x0, height, width, rows, pitch, sh, sw, top, left):
    """Zero ``buf`` and write the plane ``x[x0 : x0 + height*width]`` into its phase planes at padded (top, left)."""
    for p in range(uint64(buf.size)):
        buf[p] = 0.0
    plane = uint64(rows * pitch)
    pa = left % sw
    qa, qb = left // sw, (left + 1) // sw
    pairs = max(0, min(width // 2, pitch - qb))
    for h in range(height):
        hp = h + top
        if hp >= rows * sh:
            break
        r = hp // sh
        row_phase = uint64(hp - r * sh) * uint64(sw)
        s = x0 + uint64(h * width)
        if sw == 1:
            d = row_phase * plane + uint64(r * pitch + left)
            for t in range(uint64(min(width, pitch - left))):
                buf[d + t] = x[s + t]
        elif sw == 2:  # columns (2t, 2t+1) go to the two phases: one pass, both loads used
            da = (row_phase + uint64(pa)) * plane + uint64(r * pitch + qa)
            db = (row_phase + uint64(1 - pa)) * plane + uint64(r * pitch + qb)
            for t in range(uint64(pairs)):
                buf[da + t] = x[s + t * uint64(2)]
                buf[db + t] = x[s + t * uint64(2) + uint64(1)]
            for w in range(2 * pairs, width):
                q = (w + left) // 2
                if q < pitch:
                    buf[(row_phase + uint64((w + left) % 2)) * plane + uint64(r * pitch + q)] = x[s + uint64(w)]
        else:
            for pw in range(sw):
                w0, q0, count = _phase_segment(width, pitch, sw, left, pw)
                d = (row_phase + uint64(pw)) * plane + uint64(r * pitch + q0)
                for t in range(uint64(count)):
                    buf[d + t] = x[s + uint64(w0) + t * uint64(sw)]


@serial_kernel
def _scatter_unit(buf, x, x0, height, width, rows, pitch, top, left):
    """:func:`_scatter_phases` for unit strides (one phase plane): the kernels of unit strides compile only this."""
    for p in range(uint64(buf.size)):
        buf[p] = 0.0
    for h in range(min(height, rows - top)):
        d = uint64((h + top) * pitch + left)
        s = x0 + uint64(h * width)
        for t in range(uint64(min(width, pitch - left))):
            buf[d + t] = x[s + t]


@serial_kernel
def _gather_phases(buf, grad_in, d0, height, width, rows, pitch, sh, sw, top, left):
    """The inverse of :func:`_scatter_phases`: the plane ``grad_in[d0:]`` read back (zero where no phase holds it)."""
    plane = uint64(rows * pitch)
    for h in range(height):
        hp = h + top
        d = d0 + uint64(h * width)
        for w in range(uint64(width)):
            grad_in[d + w] = 0.0
        if hp >= rows * sh:
            continue
        r = hp // sh
        row_phase = uint64(hp - r * sh) * uint64(sw)
        for pw in range(sw):
            w0, q0, count = _phase_segment(width, pitch, sw, left, pw)
            s = (row_phase + uint64(pw)) * plane + uint64(r * pitch + q0)
            for t in range(uint64(count)):
                grad_in[d + uint64(w0) + t * uint64(sw)] = buf[s + t]


@serial_kernel
def _taps_outer_adds(buf, offsets, r0, kernel, k0, k_step, dst, d0, count, n_taps):
    """``dst[d0 + u] += sum_t buf[offsets[t] + r0 + u] * kernel[k0 + t*k_step]``, one tap at a time along the row.

    The run-time tap count of large kernels: with the row loop innermost it vectorises
    (the row of ``dst`` stays in cache across the taps).
    """
    for t in range(n_taps):
        w = kernel[k0 + uint64(t * k_step)]
        s = uint64(offsets[t]) + r0
        for u in range(uint64(count)):
            dst[d0 + u] += buf[s + u] * w


@serial_kernel
def _row_window_adds(buf, offsets, r0, kernel, k0, k_step, dst, d0, count, taps_t):
    """``dst[d0 + u] += sum_t buf[offsets[t] + r0 + u] * kernel[k0 + t*k_step]`` for ``u < count``, all taps at once.

    ``len(taps_t)`` taps, a compile-time count (:func:`_row_window_adds_runtime`: a run-time one).
    """
    for u in range(uint64(count)):
        total = dst[d0 + u]
        for t in range(len(taps_t)):
            total += buf[uint64(offsets[t]) + r0 + u] * kernel[k0 + uint64(t * k_step)]
        dst[d0 + u] = total


@serial_kernel
def _row_window_adds_runtime(buf, offsets, r0, kernel, k0, k_step, dst, d0, count, n_taps):
    """:func:`_row_window_adds` for a run-time tap count: one tap at a time along the row."""
    _taps_outer_adds(buf, offsets, r0, kernel, k0, k_step, dst, d0, count, n_taps)


@serial_kernel
def _row_window_sums(buf, offsets, r0, kernel, k0, k_step, init, dst, d0, count, taps_t):
    """``dst[d0 + u] = init + sum_t buf[offsets[t] + r0 + u] * kernel[k0 + t*k_step]`` for ``u < count``.

    ``len(taps_t)`` taps, a compile-time count (:func:`_row_window_sums_runtime`: a run-time one).
    """
    for u in range(uint64(count)):
        total = init
        for t in range(len(taps_t)):
            total += buf[uint64(offsets[t]) + r0 + u] * kernel[k0 + uint64(t * k_step)]
        dst[d0 + u] = total


@serial_kernel
def _row_window_sums_runtime(buf, offsets, r0, kernel, k0, k_step, init, dst, d0, count, n_taps):
    """:func:`_row_window_sums` for a run-time tap count: one tap at a time along the row."""
    for u in range(uint64(count)):
        dst[d0 + u] = init
    _taps_outer_adds(buf, offsets, r0, kernel, k0, k_step, dst, d0, count, n_taps)


@serial_kernel
def _two_row_window_sums(buf, r0, pitch, dh, dw, kernel, k0, k_step, init, dst, d0, d_step, count, kh_t, kw_t):
    """Two output rows at once, unit strides: rows ``d0`` and ``d0 + d_step`` of ``dst``, input rows ``pitch`` apart.

    ``dst[d0 + u] = init + sum_{i,k} buf[r0 + i*dh*pitch + k*dw + u] * kernel[k0 + (i*KW + k)*k_step]``, and the
    same one input row further down for the second row.  Each weight is loaded once for both rows, and with
    ``dh == 1`` the input vectors that tap row ``i + 1`` of the first row and tap row ``i`` of the second share
    are loaded once.  KH and KW: ``len(kh_t)``, ``len(kw_t)`` (compile-time counts).
    """
    kw = len(kw_t)
    d1 = d0 + uint64(d_step)
    zero = dst.dtype.type(0)
    for u in range(uint64(count)):
        total0, total1, odd0, odd1 = init, init, zero, zero
        for i in range(len(kh_t)):
            row = r0 + uint64(i * dh * pitch) + u
            for k in range(kw):
                w = kernel[k0 + uint64((i * kw + k) * k_step)]
                if i % 2 == 0:
                    total0 += buf[row + uint64(k * dw)] * w
                    total1 += buf[row + uint64(pitch + k * dw)] * w
                else:
                    odd0 += buf[row + uint64(k * dw)] * w
                    odd1 += buf[row + uint64(pitch + k * dw)] * w
        dst[d0 + u] = total0 + odd0
        dst[d1 + u] = total1 + odd1


@serial_kernel
def _unit_plane_sums(buf, offsets, pitch, dh, dw, kernel, o, n_out, init, dst, d0, out_h, out_w, taps_t, kh_t, kw_t):
    """A whole output plane ``dst[d0:]`` for unit strides: rows two at a time, the last odd one alone.

    Row ``oh`` is ``init + sum_t buf[offsets[t] + oh*pitch + ow] * kernel[t*n_out + o]``
    with ``offsets[t] = i*dh*pitch + k*dw``.  Compile-time counts (entries: conv2d_first_entries).
    """
    paired = out_h - out_h % 2
    for oh in range(0, paired, 2):
        r0 = uint64(oh * pitch)
        d = d0 + uint64(oh * out_w)
        if dh == 1 and dw == 1:  # constant steps: the shared input rows are loaded once
            _two_row_window_sums(buf, r0, pitch, 1, 1, kernel, uint64(o), n_out, init, dst, d, out_w, out_w, kh_t,
                                 kw_t)
        else:
            _two_row_window_sums(buf, r0, pitch, dh, dw, kernel, uint64(o), n_out, init, dst, d, out_w, out_w, kh_t,
                                 kw_t)
    for oh in range(paired, out_h):
        _row_window_sums(buf, offsets, uint64(oh * pitch), kernel, uint64(o), n_out, init, dst,
                         d0 + uint64(oh * out_w), out_w, taps_t)


@parallel_kernel
def _forward_first(part, parts, x, kernel, bias, out, offsets, batch, channels, mult, height, width, out_h, out_w, sh,
                   sw, top, left, rows, pitch, dh, dw, n_taps, act, grad, scratch, strided, plane_fn):
    """One task per input plane ``(b, c)``: its phase planes, then every output row of its ``m`` output planes.

    ``act`` and ``grad`` (flat like ``out``): see :mod:`numba_dwconv.cpu.fused` (applied to each output plane).

    Arrays are flat: ``x`` (B*C*H*W), ``kernel`` (KH*KW*C*m), ``bias`` (C*m),
    ``out`` (B*C*m*out_h*out_w); ``offsets`` (KH*KW) are the taps' flat offsets
    in the phase planes, ``n_taps == KH*KW``.  ``strided``: None for unit strides (then only
    their copy into the planes is compiled), else any int.  ``plane_fn``: the output plane's sums for the
    problem's size and strides (:mod:`numba_dwconv.cpu.conv2d_first_entries`).
    """
    n_out = channels * mult
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        buf = scratch[part]
        if strided is None:
            _scatter_unit(buf, x, uint64(task) * uint64(height * width), height, width, rows, pitch, top, left)
        else:
            _scatter_phases(buf, x, uint64(task) * uint64(height * width), height, width, rows, pitch, sh, sw, top,
                            left)
        for j in range(mult):
            o = c * mult + j
            o0 = uint64(b * n_out + o) * uint64(out_h * out_w)
            call_entry(plane_fn, (buf, offsets, pitch, dh, dw, kernel, o, n_out, bias[o], out, o0, out_h, out_w,
                                  n_taps))
            plane_end = o0 + uint64(out_h * out_w)
            apply_activation(out[o0:plane_end], grad[o0:plane_end], act)


@parallel_kernel
def _input_grad_unit_first(part, parts, grad, flipped, grad_in, offsets, batch, channels, mult, height, width, out_h,
                           out_w, top, left, rows, pitch, dh, dw, n_taps, scratch, plane_fn, adds_fn):
    """Unit strides: ``grad_in`` is the correlation of the padded output gradient with the reversed taps.

    ``flipped`` holds the taps reversed along both axes (all finite: the host
    sends non-finite weights to :func:`_input_grad_strided_first`); ``top``/``left`` are the
    output gradient's padding ``(KH-1)*dh - pad_top`` and ``(KW-1)*dw - pad_left``.
    One task per input plane; its ``m`` output-gradient planes are added in order (the first through
    ``plane_fn``, the others through ``adds_fn``: :mod:`numba_dwconv.cpu.conv2d_first_entries`).
    """
    n_out = channels * mult
    zero = grad_in.dtype.type(0)
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        d0 = uint64(task) * uint64(height * width)
        buf = scratch[part]
        for j in range(mult):
            o = c * mult + j
            _scatter_unit(buf, grad, uint64(b * n_out + o) * uint64(out_h * out_w), out_h, out_w, rows, pitch, top,
                          left)
            if j == 0:
                call_entry(plane_fn, (buf, offsets, pitch, dh, dw, flipped, o, n_out, zero, grad_in, d0, height,
                                      width, n_taps))
            else:
                call_entry(adds_fn, (buf, offsets, pitch, flipped, o, n_out, grad_in, d0, height, width, n_taps))


@serial_kernel
def _class_sum(gbuf, offsets, weight_index, start, s0, kernel, o, n_out, init, taps_t):
    """``init + sum_j gbuf[offsets[start + j] + s0] * kernel[weight_index[start + j]*n_out + o]``.

    ``j`` runs over ``trip_count(taps_t)`` taps (a compile-time constant for small classes).
    """
    total = init
    for j in range(trip_count(taps_t)):
        total += gbuf[uint64(offsets[start + j]) + s0] * kernel[uint64(weight_index[start + j] * n_out + o)]
    return total


@serial_kernel
def _row_pair_sums(gbuf, offsets, weight_index, start_even, start_odd, kernel, o, n_out, s_even, s_odd, grad_in, d,
                   width, first, even_t, odd_t):
    """One input-gradient row for column stride 2: its even and odd columns in one pass (see below).

    Column ``2u`` is the sum over the taps of the class at ``start_even``
    (``trip_count(even_t)`` of them) at ``gbuf[offsets + s_even + u]``, column ``2u + 1``
    the same with the class at ``start_odd`` and ``s_odd``.  Written if ``first``, else added.
    """
    zero = grad_in.dtype.type(0)
    for u in range(uint64(width // 2)):
        de = d + u * uint64(2)
        even = _class_sum(gbuf, offsets, weight_index, start_even, s_even + u, kernel, o, n_out,
                          zero if first else grad_in[de], even_t)
        odd = _class_sum(gbuf, offsets, weight_index, start_odd, s_odd + u, kernel, o, n_out,
                         zero if first else grad_in[de + uint64(1)], odd_t)
        grad_in[de] = even
        grad_in[de + uint64(1)] = odd
    if width % 2:
        u = uint64(width // 2)
        de = d + u * uint64(2)
        grad_in[de] = _class_sum(gbuf, offsets, weight_index, start_even, s_even + u, kernel, o, n_out,
                                 zero if first else grad_in[de], even_t)


@serial_kernel
def _stride2_plane(gbuf, offsets, weight_index, starts, kernel, o, n_out, grad_in, d0, height, width, top, sh, pitch,
                   q_even, q_odd, first, t00, t01, t10, t11):
    """One input-gradient plane of :func:`_input_grad_stride2_first` from the output-gradient plane in ``gbuf``.

    ``t00 .. t11``: the four classes' tap counts (compile-time ones in the entries of
    :mod:`numba_dwconv.cpu.conv2d_first_entries`, run-time ones for large kernels).
    """
    for h in range(height):
        hp = h + top
        r0 = uint64(hp // sh * pitch)
        d = d0 + uint64(h * width)
        if hp % sh == 0:
            _row_pair_sums(gbuf, offsets, weight_index, starts[0], starts[1], kernel, o, n_out, r0 + q_even,
                           r0 + q_odd, grad_in, d, width, first, t00, t01)
        else:
            _row_pair_sums(gbuf, offsets, weight_index, starts[2], starts[3], kernel, o, n_out, r0 + q_even,
                           r0 + q_odd, grad_in, d, width, first, t10, t11)


@parallel_kernel
def _input_grad_stride2_first(part, parts, grad, kernel, grad_in, offsets, weight_index, starts, batch, channels, mult,
                              height, width, out_h, out_w, sh, top, left, pad_h, pad_w, rows, pitch, counts, scratch,
                              plane_fn):
    """Column stride 2 (row stride 1 or 2): each input gradient value gathers its own taps, none is added twice.

    Input value ``(h, w)`` with ``hp = h + top = r*sh + ph`` and
    ``wp = w + left = 2q + pw`` receives exactly the taps ``(i, k)`` with
    ``i*dh % sh == ph`` and ``k*dw % 2 == pw``: a *class* of taps, read from the
    output gradient padded by ``(pad_h, pad_w)`` in a buffer of ``rows x pitch``
    values at ``r*pitch + q + offsets[t]``.  The host orders the classes
    ``(ph, even columns), (ph, odd columns)`` for ``ph = 0, 1`` (``starts`` gives
    where each begins in ``offsets``/``weight_index``, ``counts`` how many taps each has;
    ``weight_index`` is the tap's ``i*KW + k``).  ``plane_fn``: :func:`_stride2_plane` for the problem's
    class sizes (:mod:`numba_dwconv.cpu.conv2d_first_entries`).  The padding meets the weights, so they must
    be finite.
    """
    n_out = channels * mult
    q_even = uint64(left // 2)  # phase column of input column 0 and of column 1
    q_odd = uint64((left + 1) // 2)
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        d0 = uint64(task) * uint64(height * width)
        gbuf = scratch[part]
        for j in range(mult):
            o = c * mult + j
            _scatter_unit(gbuf, grad, uint64(b * n_out + o) * uint64(out_h * out_w), out_h, out_w, rows, pitch, pad_h,
                          pad_w)
            call_entry(plane_fn, (gbuf, offsets, weight_index, starts, kernel, o, n_out, grad_in, d0, height, width,
                                  top, sh, pitch, q_even, q_odd, j == 0, counts))


@serial_kernel
def _pitched_copy(grad, g0, out_h, out_w, pitched, pitch):
    """Rows of the plane ``grad[g0:]`` into rows of ``pitch`` values of ``pitched`` (extra columns untouched)."""
    for oh in range(out_h):
        s = g0 + uint64(oh * out_w)
        d = uint64(oh * pitch)
        for ow in range(uint64(out_w)):
            pitched[d + ow] = grad[s + ow]


@parallel_kernel
def _input_grad_strided_first(part, parts, grad, kernel, grad_in, offsets, batch, channels, mult, height, width, out_h,
                              out_w, sh, sw, top, left, rows, pitch, exact, n_taps, scratch, scratch_pitched):
    """Any strides: each tap adds the output gradient times its weight into its window of the phase planes.

    The pitched output gradient's extra columns are zero; they add zeros for
    finite weights.  With a non-finite weight (``exact``), the taps add row by
    row over the real columns only, as in the reference.
    """
    n_out = channels * mult
    n = uint64((out_h - 1) * pitch + out_w)
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        buf = scratch[part]
        buf[:] = 0
        pitched = scratch_pitched[part]
        pitched[:] = 0
        for j in range(mult):
            o = c * mult + j
            _pitched_copy(grad, uint64(b * n_out + o) * uint64(out_h * out_w), out_h, out_w, pitched, pitch)
            for t in range(n_taps):
                start = uint64(offsets[t])
                weight = kernel[uint64(t * n_out + o)]
                if exact:
                    for oh in range(uint64(out_h)):
                        row = oh * uint64(pitch)
                        for ow in range(uint64(out_w)):
                            buf[start + row + ow] += pitched[row + ow] * weight
                else:
                    for p in range(n):
                        buf[start + p] += pitched[p] * weight
        _gather_phases(buf, grad_in, uint64(task) * uint64(height * width), height, width, rows, pitch, sh, sw, top,
                       left)
