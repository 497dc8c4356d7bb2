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

import os
import threading

import numpy as np

ALIGNMENT = 64
MIN_POOLED_BYTES = 1 << 20
DEFAULT_MAX_IDLE_BYTES = 1 << 30

_lock = threading.Lock()
_idle: dict[int, list[np.ndarray]] = {}
_idle_bytes = 0


def max_idle_bytes() -> int:
    """Largest number of bytes the pool keeps idle (``NUMBA_DWCONV_POOL_BYTES``, default 1 GiB)."""
    value = os.environ.get("NUMBA_DWCONV_POOL_BYTES")
    if value is None:
        return DEFAULT_MAX_IDLE_BYTES
    try:
        return max(0, int(value))
    except ValueError:
        raise ValueError(f"NUMBA_DWCONV_POOL_BYTES must be an integer number of bytes. Received {value!r}") from None


def _take_block(nbytes: int) -> np.ndarray:
    global _idle_bytes
    with _lock:
        blocks = _idle.get(nbytes)
        if blocks:
            _idle_bytes -= nbytes
            return blocks.pop()
    return np.empty(nbytes + ALIGNMENT, dtype=np.uint8)


def _give_back(nbytes: int, block: np.ndarray) -> None:
    global _idle_bytes
    with _lock:
        if _idle_bytes + nbytes <= max_idle_bytes():
            _idle.setdefault(nbytes, []).append(block)
            _idle_bytes += nbytes


def release_pool() -> int:
    """Free every idle pooled block; return the number of bytes released."""
    global _idle_bytes
    with _lock:
        released = _idle_bytes
        _idle.clear()
        _idle_bytes = 0
    return released


class _Lease:
    """Owner of one pooled block while arrays use it (exposes ``__array_interface__``)."""

    __slots__ = ("__array_interface__", "_block", "_nbytes")

    def __init__(self, block: np.ndarray, nbytes: int, shape, dtype: np.dtype):
        address = block.ctypes.data
        offset = -address % ALIGNMENT
        self._block = block
        self._nbytes = nbytes
        self.__array_interface__ = {
            "shape": tuple(shape),
            "typestr": dtype.str,
            "data": (address + offset, False),
            "version": 3,
        }

    def __del__(self):
        try:
            _give_back(self._nbytes, self._block)
        except Exception:  # interpreter shutdown: nothing left to give back to
            pass


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised, C-contiguous, 64-byte aligned array (from the pool when large)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < MIN_POOLED_BYTES or max_idle_bytes() == 0:
        return np.empty(shape, dtype=dtype)
    lease = _Lease(_take_block(nbytes), nbytes, shape, dtype)
    return np.asarray(lease)
