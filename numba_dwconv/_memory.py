"""Output buffers for the CPU kernels: 64-byte aligned, recycled once freed.

A large NumPy allocation is a fresh ``mmap``: the first write to every page
faults, and the kernel zeroes the page before our kernel writes it.  For a
memory-bound convolution that is one extra pass over the output (measured: a
134 MB forward call took 11.3 ms, of which 3.8 ms were page faults).  Training
loops call the same shapes over and over, so freed output buffers are kept in
a small pool and handed out again.

An array returned to the user is a view of a :class:`_Lease`; the lease holds a
raw block and gives it back to the pool when the last array (or view) using it
is garbage-collected, so a block is never reused while anything can still see
it.  Only blocks of at least ``MIN_POOLED_BYTES`` are pooled, and at most
``max_idle_bytes()`` bytes are kept idle (environment variable
``NUMBA_DWCONV_POOL_BYTES``; ``0`` disables the pool).  :func:`release_pool`
frees every idle block.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np

ALIGNMENT = 64
MIN_POOLED_BYTES = 1 << 20
DEFAULT_MAX_IDLE_BYTES = 1 << 30

def max_idle_bytes() -> int:
    """Largest number of bytes a pool keeps idle (``NUMBA_DWCONV_POOL_BYTES``, default 1 GiB)."""
    value = os.environ.get("NUMBA_DWCONV_POOL_BYTES")
    if value is None:
        return DEFAULT_MAX_IDLE_BYTES
    try:
        return max(0, int(value))
    except ValueError:
        raise ValueError(f"NUMBA_DWCONV_POOL_BYTES must be an integer number of bytes. Received {value!r}") from None


class BlockPool:
    """Idle blocks by size, thread-safe, holding at most :func:`max_idle_bytes` bytes.

    Shared by the host pool below and the device pool of :mod:`numba_dwconv.cuda.arrays`;
    a block is stored with a ``tag`` (the device pool records the stream it was last used on).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: dict[int, list] = {}
        self._idle_bytes = 0

    def take(self, nbytes: int):
        """An idle ``(block, tag)`` of ``nbytes`` bytes, or None."""
        with self._lock:
            blocks = self._idle.get(nbytes)
            if not blocks:
                return None
            self._idle_bytes -= nbytes
            return blocks.pop()

    def give_back(self, nbytes: int, block, tag=None) -> None:
        """Keep ``block`` for reuse, unless that would exceed the idle limit (then drop it)."""
        with self._lock:
            if self._idle_bytes + nbytes <= max_idle_bytes():
                self._idle.setdefault(nbytes, []).append((block, tag))
                self._idle_bytes += nbytes

    def release(self) -> int:
        """Drop every idle block; return the number of bytes released."""
        with self._lock:
            released = self._idle_bytes
            self._idle.clear()
            self._idle_bytes = 0
        return released


_host_pool = BlockPool()


def release_pool() -> int:
    """Free every idle pooled host block; return the number of bytes released."""
    return _host_pool.release()


class _Lease:
    """Owner of one pooled block while arrays use it (exposes ``__array_interface__``)."""

    __slots__ = ("__array_interface__", "_block", "_start", "_nbytes")

    def __init__(self, block: np.ndarray, start: int, nbytes: int, shape: tuple, typestr: str):
        self._block = block
        self._start = start
        self._nbytes = nbytes
        self.__array_interface__ = {"shape": shape, "typestr": typestr, "data": (start, False), "version": 3}

    def __del__(self):
        try:
            _host_pool.give_back(self._nbytes, self._block, self._start)
        except Exception:  # interpreter shutdown: nothing left to give back to
            pass


def aligned(array: np.ndarray) -> np.ndarray:
    """``array`` if C-contiguous and 64-byte aligned, else such a copy (for small operands: the kernels' taps).

    NumPy aligns small arrays to 16 bytes only; a vector of taps loaded from a misaligned array straddles
    two cache lines (measured: B8 28x28 C512 5x5 channels_last forward 0.965 -> 1.070 ms with the taps 32
    bytes off a line, the inputs aligned).
    """
    if array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0:
        return array
    block = np.empty(array.nbytes + ALIGNMENT, dtype=np.uint8)
    offset = -block.ctypes.data % ALIGNMENT
    copy = block[offset:offset + array.nbytes].view(array.dtype).reshape(array.shape)
    copy[...] = array
    return copy


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised, C-contiguous array: from the pool and 64-byte aligned when large.

    Arrays under ``MIN_POOLED_BYTES`` come from ``np.empty``, aligned only as NumPy aligns them.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # (np.prod costs ~5 us: a small call notices)
    if nbytes < MIN_POOLED_BYTES or max_idle_bytes() == 0:
        return np.empty(shape, dtype=dtype)
    return pooled(nbytes, tuple(shape), dtype.str)


def pooled(nbytes: int, shape: tuple, typestr: str) -> np.ndarray:
    """:func:`empty` of a size already known to be pooled: ``nbytes`` bytes, a ``shape`` tuple, NumPy's ``typestr``.

    For a caller that allocates one size again and again (a prepared forward): after a large call each step of
    :func:`empty` costs microseconds, ~4 us of its 10 for what such a caller knows already (measured).  With the
    pool disabled the block is dropped when freed (``give_back`` keeps nothing).
    """
    taken = _host_pool.take(nbytes)  # (block, where its aligned bytes start: asking the block costs ~10 us cold)
    if taken:
        block, start = taken
    else:
        block = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        address = block.ctypes.data
        start = address + (-address % ALIGNMENT)
    return np.asarray(_Lease(block, start, nbytes, shape, typestr))
