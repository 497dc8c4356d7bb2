"""Launching the pointer-argument kernels: compiled once, arguments packed once per call, no re-typing.

numba-cuda's ``kernel[grid, block](*args)`` types every argument and marshals each
array into ~7-11 kernel parameters on every call (measured ~1.5 us per parameter).
The kernels of :mod:`numba_dwconv.cuda.conv1d_vector` take raw device pointers and
int32 scalars instead, and are compiled eagerly for that one signature, so a launch
needs no typing at all.  Where the installed numba-cuda launches through
``cuda.core`` (0.2x and later), :class:`Kernel` calls ``cuda.core.launch`` itself with the
kernel handle fetched once and a cached launch configuration; otherwise (older
numba-cuda, or ``NUMBA_DWCONV_FAST_LAUNCH=0``) it uses numba-cuda's own launch of the
specialised kernel, which packs the same arguments.

Under numba's CUDA simulator the "pointers" are the flat arrays themselves
(:func:`buffer`): the same kernel source runs in Python.
"""

from __future__ import annotations

import ctypes
import math
import os

from numba import cuda

from .vector import SIMULATED, types


def buffer(array):
    """What a kernel receives for ``array`` (C-contiguous): its device address, or the flat array when simulated."""
    if SIMULATED:
        return array.reshape(-1)
    return device_address(array)


def grid_blocks(n: int, per_block: int, limit: int) -> int:
    """Blocks covering ``n`` items at ``per_block`` each, at least 1 and at most ``limit`` (kernels loop beyond)."""
    return max(1, min(math.ceil(n / per_block), limit))


def pow2_at_least(n: int, cap: int) -> int:
    """The smallest power of two >= ``n``, capped at ``cap`` (a block dimension sized to the work)."""
    size = 1
    while size < n and size < cap:
        size *= 2
    return size


def device_address(array) -> int:
    """The device address of the first element of a numba device array (views included)."""
    return int(array.device_ctypes_pointer.value or 0)


def aligned(array, nbytes: int = 16) -> bool:
    """Whether ``array``'s data starts on an ``nbytes`` boundary (simulated arrays: their host memory's)."""
    if SIMULATED:
        return array.__array_interface__["data"][0] % nbytes == 0
    return device_address(array) % nbytes == 0


class Kernel:
    """A kernel compiled for one signature, launched with :meth:`launch`.

    Parameters
    ----------
    pyfunc : function
        The kernel's Python source.
    signature : tuple of numba types
        Pointer (``CPointer``) and ``int32`` arguments.
    """

    def __init__(self, pyfunc, signature):
        self.pyfunc = pyfunc
        self.signature = tuple(signature)
        if SIMULATED:
            self.dispatcher = cuda.jit(pyfunc)
            self._fast = None
        else:
            self.dispatcher = cuda.jit(self.signature)(pyfunc)  # compiles now, once
            self._fast = _fast_launcher(self.dispatcher, self.signature)

    def launch(self, grid, block, stream, shared_bytes, args):
        """Run on ``grid`` x ``block`` threads (tuples) on ``stream`` with ``args`` (from :func:`buffer` and ints)."""
        if self._fast is not None:
            self._fast(grid, block, stream, shared_bytes, args)
        else:
            self.dispatcher[grid, block, stream, shared_bytes](*args)


def _fast_launcher(dispatcher, signature):
    """A launch function calling ``cuda.core.launch`` directly, or None where numba-cuda works otherwise."""
    if os.environ.get("NUMBA_DWCONV_FAST_LAUNCH", "1") == "0":
        return None
    try:
        from cuda.core import LaunchConfig
        from cuda.core import launch as core_launch
        from numba.cuda.cudadrv import driver

        overload = next(iter(dispatcher.overloads.values()))
        library = overload._codelibrary
        library.get_cufunc().kernel  # noqa: B018 - the attribute this path relies on exists
        to_stream = driver._to_core_stream
    except Exception:  # another numba-cuda: its own launch path packs the same arguments
        return None
    scalars = {types.int32: ctypes.c_int32, types.int64: ctypes.c_int64}
    packers = tuple(scalars.get(ty, int) for ty in signature)  # pointers: plain ints, as numba-cuda passes them
    configs: dict = {}
    handles: dict = {}  # per GPU: a module is loaded into each device's context

    def launch(grid, block, stream, shared_bytes, args):
        key = (grid, block, shared_bytes)
        config = configs.get(key)
        if config is None:
            config = configs[key] = LaunchConfig(grid=grid, block=block, shmem_size=shared_bytes)
        device = cuda.get_current_device().id
        handle = handles.get(device)
        if handle is None:
            handle = handles[device] = library.get_cufunc().kernel
        core_launch(to_stream(stream), config, handle, *[pack(a) for pack, a in zip(packers, args)])

    return launch
