"""CPU kernels of the causal decode step (:func:`numba_dwconv.depthwise_conv1d_update`).

A row ``b`` of the batch reads and updates slot ``slots[b]`` of the state (a negative slot: a
padding row, zero outputs, no slot touched).  With ``P = (K-1)*d`` state positions, the row's
sequence is ``e = [state[slot], x[b]]`` (``P + T`` positions); output ``t`` is the causal
convolution at ``e[P + t]``, which reads ``e[t + i*d]`` for the taps ``i < K``, and the new state
is ``e[T:]`` (the last ``P`` positions).  The host validates everything; rows never share a
slot, so the parts (contiguous ranges of rows) never write one slot twice.
"""

from __future__ import annotations

from .._jit import launch, parallel_kernel, serial_kernel, task_share


def run_update(x, state, kernel, bias, slots, dilation, out, channels_last) -> None:
    """Run the decode step of one layout: ``x``/``out`` 3D, ``kernel`` (K, C, m) C-contiguous, ``bias`` (C*m,)."""
    if channels_last:
        launch(update_last, x, state, kernel.reshape(kernel.shape[0], -1), bias, slots, dilation, out)
    else:
        launch(update_first, x, state, kernel, bias, slots, dilation, out)


@serial_kernel
def _four_taps(acc, base, r0, r1, r2, r3, w0, w1, w2, w3):
    """``acc = base + r0*w0 + r1*w1 + r2*w2 + r3*w3`` over one row of channels (``base`` may be ``acc``)."""
    for c in range(acc.shape[0]):
        acc[c] = base[c] + r0[c] * w0[c] + r1[c] * w1[c] + r2[c] * w2[c] + r3[c] * w3[c]


@serial_kernel
def _two_taps(acc, base, r0, r1, w0, w1):
    for c in range(acc.shape[0]):
        acc[c] = base[c] + r0[c] * w0[c] + r1[c] * w1[c]


@serial_kernel
def _one_tap(acc, base, r0, w0):
    for c in range(acc.shape[0]):
        acc[c] = base[c] + r0[c] * w0[c]


@parallel_kernel
def update_last(part, parts, x, state, kernel, bias, slots, dilation, out):
    """channels_last: ``x`` (B, T, C), ``state`` (S, P, C), ``kernel`` (K, C*m), ``out`` (B, T, C*m).

    ``kernel`` is the ``(K, C, m)`` kernel flattened.  Without a multiplier, the taps go four at a
    time through one output row (one load and store of the row per four taps: the step reads each
    state row once from memory and is bound by moving the state, not by the arithmetic).
    """
    batch, steps, channels = x.shape
    ksize, out_channels = kernel.shape
    mult = out_channels // channels
    positions = state.shape[1]
    tasks_lo, tasks_hi = task_share(batch, part, parts)
    for b in range(tasks_lo, tasks_hi):
        s = slots[b]
        out_b = out[b]
        if s < 0:
            for t in range(steps):
                row_out = out_b[t]
                for o in range(out_channels):
                    row_out[o] = 0
            continue
        state_s = state[s]
        x_b = x[b]
        for t in range(steps):
            acc = out_b[t]
            if mult == 1:
                base = bias
                i = 0
                while i < ksize:
                    j = t + i * dilation
                    r0 = state_s[j] if j < positions else x_b[j - positions]
                    if ksize - i >= 4:
                        j1, j2, j3 = j + dilation, j + 2 * dilation, j + 3 * dilation
                        _four_taps(acc, base, r0,
                                   state_s[j1] if j1 < positions else x_b[j1 - positions],
                                   state_s[j2] if j2 < positions else x_b[j2 - positions],
                                   state_s[j3] if j3 < positions else x_b[j3 - positions],
                                   kernel[i], kernel[i + 1], kernel[i + 2], kernel[i + 3])
                        i += 4
                    elif ksize - i >= 2:
                        j1 = j + dilation
                        _two_taps(acc, base, r0, state_s[j1] if j1 < positions else x_b[j1 - positions],
                                  kernel[i], kernel[i + 1])
                        i += 2
                    else:
                        _one_tap(acc, base, r0, kernel[i])
                        i += 1
                    base = acc
            else:
                for o in range(out_channels):
                    acc[o] = bias[o]
                for i in range(ksize):
                    j = t + i * dilation
                    row = state_s[j] if j < positions else x_b[j - positions]
                    w = kernel[i]
                    for c in range(channels):
                        for q in range(mult):
                            acc[c * mult + q] += row[c] * w[c * mult + q]
        for j in range(positions):  # ascending: position steps + j >= j is read before it is overwritten
            src = steps + j
            dst = state_s[j]
            row = state_s[src] if src < positions else x_b[src - positions]
            for c in range(channels):
                dst[c] = row[c]


@parallel_kernel
def update_first(part, parts, x, state, kernel, bias, slots, dilation, out):
    """channels_first: ``x`` (B, C, T), ``state`` (S, C, P), ``kernel`` (K, C, m), ``out`` (B, C*m, T)."""
    batch, channels, steps = x.shape
    ksize, _, mult = kernel.shape
    positions = state.shape[2]
    tasks_lo, tasks_hi = task_share(batch * channels, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // channels
        c = task - b * channels
        s = slots[b]
        if s < 0:
            for q in range(mult):
                out[b, c * mult + q, :] = 0
            continue
        seq = state[s, c]
        x_c = x[b, c]
        for q in range(mult):
            o = c * mult + q
            out_c = out[b, o]
            for t in range(steps):
                acc = bias[o]
                for i in range(ksize):
                    j = t + i * dilation
                    acc += (seq[j] if j < positions else x_c[j - positions]) * kernel[i, c, q]
                out_c[t] = acc
        for j in range(positions):
            src = steps + j
            seq[j] = seq[src] if src < positions else x_c[src - positions]
