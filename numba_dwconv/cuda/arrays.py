"""Moving operands to the GPU: zero-copy when possible, one copy-and-cast kernel otherwise."""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from .._memory import BlockPool, max_idle_bytes


@cuda.jit
def _copy_cast_3d(src, dst):
    """dst[i, j, k] = src[i, j, k] (any strides, any float dtypes)."""
    k = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    j = cuda.blockIdx.y
    i = cuda.blockIdx.z
    while i < dst.shape[0]:
        jj = j
        while jj < dst.shape[1]:
            kk = k
            while kk < dst.shape[2]:
                dst[i, jj, kk] = src[i, jj, kk]
                kk += cuda.gridDim.x * cuda.blockDim.x
            jj += cuda.gridDim.y
        i += cuda.gridDim.z


def as_device_array(array):
    """A numba device array viewing ``array`` (zero-copy through ``__cuda_array_interface__``)."""
    if hasattr(array, "copy_to_host") and hasattr(array, "is_c_contiguous"):
        return array  # already a numba device array (or a simulator array)
    return cuda.as_cuda_array(array)


def device_operand(array, dtype, stream=0):
    """``array`` as a C-contiguous device array of ``dtype``.

    Device arrays of the right dtype and layout are used as they are (no copy);
    other device arrays go through one copy-and-cast kernel; host arrays are
    converted on the host and transferred.
    """
    dtype = np.dtype(dtype)
    if isinstance(array, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(array, dtype=dtype), stream=stream)
    array = as_device_array(array)
    if array.dtype == dtype and array.is_c_contiguous():
        return array
    if array.ndim != 3:  # a bias vector: small, converted through the host
        host = array.copy_to_host(stream=stream)
        return cuda.to_device(np.ascontiguousarray(host, dtype=dtype), stream=stream)
    out = cuda.device_array(array.shape, dtype=dtype, stream=stream)
    copy_into(array, out, stream)
    return out


def copy_into(src, dst, stream=0) -> None:
    """``dst[...] = src`` for 3D device arrays of one shape (any strides: views of a larger array too)."""
    if dst.size:
        threads = 128
        grid = (
            max(1, min(math.ceil(dst.shape[2] / threads), 65535)),
            max(1, min(dst.shape[1], 65535)),
            max(1, min(dst.shape[0], 65535)),
        )
        _copy_cast_3d[grid, threads, stream](src, dst)


def device_zeros(n: int, dtype, stream=0):
    """A zero vector of ``n`` elements on the device, shared between calls (the kernels only read it).

    The bias of a call without one: made once per size and dtype instead of a transfer per call.
    """
    key = (int(n), np.dtype(dtype).str, getattr(cuda.get_current_device(), "id", 0))  # one per GPU
    zeros = _zeros.get(key)
    if zeros is None:
        zeros = _zeros[key] = cuda.to_device(np.zeros(n, dtype=dtype), stream=stream)
        if stream != 0:
            stream.synchronize()  # ready before any other stream reads it
    return zeros


_zeros: dict = {}


# ---------------------------------------------------------------------------- output pool
# A fresh cudaMalloc per output (and the cudaFree that numba runs later, which
# synchronises the device) costs more than the convolution itself: measured on
# an H200, ~30 us per allocation, and a 134 MB forward call took 0.65 ms between
# events when its bytes move in ~0.07 ms.  Every size is pooled on the GPU.  Freed output blocks are
# therefore kept and handed out again, as PyTorch's and CuPy's caching
# allocators do.  A block is given back only when nothing references the
# memory: each returned array gets its own pointer object, which every view
# keeps alive, and the block returns to the pool when that object is collected.
# Reuse is ordered on the stream it was last used on; a block taken on another
# stream first waits for that stream.
_device_pool = BlockPool()


def release_device_pool() -> int:
    """Free every idle pooled device block; return the number of bytes released."""
    return _device_pool.release()


_live: dict = {}


def _on_free(key):
    _, block, nbytes, stream = _live.pop(key)
    _device_pool.give_back(nbytes, block, stream)


def _c_strides(shape, itemsize):
    strides = []
    step = itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


def device_empty(shape, dtype, stream=0):
    """An uninitialised C-contiguous device array, from the pool when large (real GPUs only)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(v) for v in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes == 0 or max_idle_bytes() == 0 or _simulated():
        return cuda.device_array(shape, dtype=dtype, stream=stream)
    from numba.cuda.cudadrv.devicearray import DeviceNDArray
    from numba.cuda.cudadrv.driver import AutoFreePointer

    taken = _device_pool.take(nbytes)
    if taken is None:
        block = cuda.device_array(nbytes, dtype=np.uint8, stream=stream)
    else:
        block, last_stream = taken
        if last_stream is not stream and last_stream != 0:
            last_stream.synchronize()
    # numba's own ownership scheme: the lease pointer is freed (-> _on_free) when the
    # last OwnedPointer derived from it (the array's, and every view's) is collected.
    key = object()
    lease = AutoFreePointer(block.gpu_data.context, block.gpu_data.device_pointer, nbytes,
                            finalizer=functools.partial(_on_free, key))
    _live[key] = (lease, block, nbytes, stream)
    return DeviceNDArray(shape, _c_strides(shape, dtype.itemsize), dtype, stream=stream, gpu_data=lease.own())


def _simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)
