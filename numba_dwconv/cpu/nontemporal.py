"""Outputs larger than the caches written with non-temporal ("streaming") stores.

A plain store reads its cache line from memory before writing it, so a kernel that writes a large
output once moves its bytes twice (and a third time when the line is written back).  A kernel that
streams computes a few rows into a small per-thread buffer (in L1/L2), applies the activation there,
and stores them with :func:`numba_dwconv._simd.vstore_stream`, which writes whole lines without reading
them.  Measured (two threads, this package's 1D channels_last forward, ms plain -> streamed): outputs
of 4-32 MB 0.6-0.75x (they stayed in the caches: there a plain store is faster, and the consumer reads
them from the cache), 48 MB 1.27x, 64-128 MB 1.1-1.74x; a copy of 128 MB with vector stores 27 -> 39-40 GB/s.
Streaming the rows of a whole task at its end was slower for long kernels (K = 31 24.8 -> 27.5 ms: the
stores stalled the core in bursts); a few rows at a time they overlap the next rows' arithmetic.  The 1D input
gradients stream the same way (K3: channels_last 16.4 -> 11.1 ms, backward 27.8 -> 22.4; channels_first
11.3 -> 8.8-9.6, backward 25.5 -> 23.0; channels_last with m > 1 sums its rows in groups first: plain).
The 2D channels_last forward streams its output rows (kernels up to 5x5; 49 MB outputs 1.2-1.4x).
"""

from __future__ import annotations

from numba import uint64

from .._jit import scratch, serial_kernel, trip_count
from .._simd import VECTOR_BYTES, lanes_of, vload, vstore_stream

# Outputs of at least this many bytes are streamed (between the 32 MB and 48 MB measured above), by kernels
# of at most STREAM_TAPS taps: longer ones are not memory-bound (K = 31, 128 MB: channels_last 25.3 -> 25.5
# ms, channels_first 21.0 -> 23.9; K = 7 within noise; K = 3 15.3 -> 8.6 and 11.9 -> 9.1).
# Kernels of 20+ taps stream from their own kernel (cpu/conv1d_long.py), each store a whole line already.
STREAM_BYTES = 40 << 20
STREAM_TAPS = 8
# The 2D channels_last forward streams kernels up to 5x5 (B16 56x56 C256 3x3, 51 MB out: see conv2d_last.py).
STREAM_TAPS_2D = 25


def stream_args(out, buffer_elements: int, taps: int, streamable: bool = True, max_taps: int = STREAM_TAPS):
    """``(buffers, shift, lanes_t)`` for a kernel of ``taps`` taps that may stream ``out`` (``buffers`` None: not).

    ``streamable``: False where the kernel cannot stream this call (the arguments it expects, unused).
    ``max_taps``: the most taps that stream (2D kernels: STREAM_TAPS_2D).

    ``buffers``: per part ``buffer_elements`` values (:func:`numba_dwconv._jit.scratch`); ``shift``: the
    place of ``out``'s first element in its ``VECTOR_BYTES`` line, in elements (see :func:`stream_rows`).
    """
    if not streamable or not streams(out.nbytes, taps, max_taps) or out.ctypes.data % out.itemsize:
        return unstreamed(out.dtype)
    return scratch(buffer_elements, out.dtype), (out.ctypes.data % VECTOR_BYTES) // out.itemsize, lanes_of(out.dtype)


def streams(nbytes: int, taps: int, max_taps: int = STREAM_TAPS) -> bool:
    """Whether a kernel of ``taps`` taps streams an output of ``nbytes`` (see STREAM_BYTES)."""
    return nbytes >= STREAM_BYTES and taps <= max_taps


def unstreamed(dtype):
    """:func:`stream_args` of a kernel that does not stream (plain stores)."""
    return None, 0, lanes_of(dtype)


@serial_kernel
def stream_rows(out, d, rows, count, shift, lanes_t):
    """``out.flat[d : d + count] = rows.flat[:count]``: whole vectors with streaming stores, the ends plainly.

    ``out`` and ``rows`` C-contiguous; ``shift`` and ``lanes_t``: see :func:`stream_args`.
    """
    lanes = trip_count(lanes_t)
    head = min(count, (lanes - (shift + d) % lanes) % lanes)
    flat_out = out.reshape(-1)
    flat_rows = rows.reshape(-1)
    for j in range(head):
        flat_out[d + j] = flat_rows[j]
    j = head
    while j + lanes <= count:
        vstore_stream(out, uint64(d + j), vload(rows, uint64(j), lanes_t))
        j += lanes
    for k in range(j, count):
        flat_out[d + k] = flat_rows[k]
