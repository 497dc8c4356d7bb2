"""1D channels_first rows of short kernels (unit stride, at most SHORT_TAPS taps) summed in registers.

Used by the channels_first forward and input gradient (:mod:`numba_dwconv.cpu.conv1d_first`).  Each vector
of outputs is a chain of multiply-adds over the taps in order (the taps broadcast once per row), stored as
soon as it is done: past the caches for large outputs, so the stores overlap the loads of the next vectors.
"""

from __future__ import annotations

from numba import uint64

from .._jit import serial_kernel, trip_count
from .._simd import vfma, vload, vsplat, vstore, vstore_stream

# Unit-stride kernels of at most this many taps take :func:`short_row` (eight tap vectors in registers).
SHORT_TAPS = 8


@serial_kernel
def short_row(out, d, n_out, in_row, weights, w_index, w_step, ksize, bias, b_index, offset, step, stream, shift,
               lanes_t):
    """``out[d + t] = bias[b_index] + sum_k weights[w_index + k*w_step] * in_row[t + offset + k*step]``, ``t < n_out``.

    Taps in order as a chain of multiply-adds (each rounded once), taps outside ``in_row`` skipped; ``ksize``
    at most SHORT_TAPS.  ``out``, ``weights`` and ``bias`` flat.  Vectors of outputs whose window lies inside
    the row are summed in registers (the tap vectors broadcast once per row) and stored at once, past the
    caches if ``stream`` (``shift``: where ``out``'s first element sits in its line, see
    :func:`numba_dwconv.cpu.nontemporal.stream_args`; such vectors start on a line): the stores overlap the
    loads of the next vectors (a row computed into a buffer and streamed after moved in bursts, 20-25 %
    slower).  Not streamed, a vector at each end of the inside positions covers what the others leave
    (their values computed twice, the same).  The other positions go one by one, the same chain: results
    do not depend on where the vectors fall.
    """
    lanes = trip_count(lanes_t)
    n_in = in_row.shape[0]
    inside = max(0, -(offset + min(0, (ksize - 1) * step)))  # the first position whose window is inside
    stop = min(n_out, n_in - offset - max(0, (ksize - 1) * step))  # ... and the end of those positions
    first = inside
    if stream:
        first += (lanes - (shift + d + first) % lanes) % lanes  # on a line's start
    last = first + max(0, stop - first) // lanes * lanes
    taps = _tap_vectors(weights, w_index, w_step, ksize, lanes_t)
    start = vsplat(bias, uint64(b_index), lanes_t)
    for t in range(first, last, lanes):
        acc = _short_vector(in_row, t + offset, step, ksize, taps, start, lanes_t)
        if stream:
            vstore_stream(out, uint64(d + t), acc)
        else:
            vstore(out, uint64(d + t), acc)
    done_lo, done_hi = first, last
    if not stream and stop - inside >= lanes:  # the ends of the inside positions: a vector each, overlapping
        for t in (inside, stop - lanes):
            vstore(out, uint64(d + t), _short_vector(in_row, t + offset, step, ksize, taps, start, lanes_t))
        done_lo, done_hi = inside, stop
    t = 0
    while t < n_out:
        if done_lo <= t < done_hi:
            t = done_hi
        else:
            out[d + t] = _short_sum(in_row, weights, w_index, w_step, ksize, bias[b_index], t + offset, step)
            t += 1


@serial_kernel
def _tap_vectors(weights, w_index, w_step, ksize, lanes_t):
    """The (up to eight) taps ``weights[w_index + k*w_step]`` of :func:`short_row`, each broadcast to a vector."""
    last_tap = ksize - 1
    return (vsplat(weights, uint64(w_index), lanes_t),
            vsplat(weights, uint64(w_index + min(1, last_tap) * w_step), lanes_t),
            vsplat(weights, uint64(w_index + min(2, last_tap) * w_step), lanes_t),
            vsplat(weights, uint64(w_index + min(3, last_tap) * w_step), lanes_t),
            vsplat(weights, uint64(w_index + min(4, last_tap) * w_step), lanes_t),
            vsplat(weights, uint64(w_index + min(5, last_tap) * w_step), lanes_t),
            vsplat(weights, uint64(w_index + min(6, last_tap) * w_step), lanes_t),
            vsplat(weights, uint64(w_index + min(7, last_tap) * w_step), lanes_t))


@serial_kernel
def _short_vector(in_row, s, step, ksize, taps, start, lanes_t):
    """The chain of :func:`short_row` for the vector of outputs whose first tap reads ``in_row[s]``."""
    w0, w1, w2, w3, w4, w5, w6, w7 = taps
    acc = vfma(vload(in_row, uint64(s), lanes_t), w0, start)
    if ksize > 1:
        acc = vfma(vload(in_row, uint64(s + step), lanes_t), w1, acc)
    if ksize > 2:
        acc = vfma(vload(in_row, uint64(s + 2 * step), lanes_t), w2, acc)
    if ksize > 3:
        acc = vfma(vload(in_row, uint64(s + 3 * step), lanes_t), w3, acc)
    if ksize > 4:
        acc = vfma(vload(in_row, uint64(s + 4 * step), lanes_t), w4, acc)
    if ksize > 5:
        acc = vfma(vload(in_row, uint64(s + 5 * step), lanes_t), w5, acc)
    if ksize > 6:
        acc = vfma(vload(in_row, uint64(s + 6 * step), lanes_t), w6, acc)
    if ksize > 7:
        acc = vfma(vload(in_row, uint64(s + 7 * step), lanes_t), w7, acc)
    return acc


@serial_kernel
def _short_sum(in_row, weights, w_index, w_step, ksize, value, s, step):
    """One position of :func:`short_row`: the same chain, taps outside the row skipped."""
    n_in = in_row.shape[0]
    for k in range(ksize):
        p = s + k * step
        if 0 <= p < n_in:
            value = vfma(weights[w_index + k * w_step], in_row[p], value)
    return value
