"""Moving operands to the GPU: zero-copy when possible, one copy-and-cast kernel otherwise."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda


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
    if out.size:
        threads = 128
        grid = (
            max(1, min(math.ceil(out.shape[2] / threads), 65535)),
            max(1, min(out.shape[1], 65535)),
            max(1, min(out.shape[0], 65535)),
        )
        _copy_cast_3d[grid, threads, stream](array, out)
    return out


def device_zeros(n: int, dtype, stream=0):
    """A zero vector of ``n`` elements on the device."""
    return cuda.to_device(np.zeros(n, dtype=dtype), stream=stream)
