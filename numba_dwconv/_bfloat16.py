"""bfloat16 as raw 16-bit patterns: the conversions the GPU kernels perform, in NumPy.

bfloat16 is the high half of a float32, so widening is a 16-bit shift (exact) and
narrowing rounds the low half away (to nearest, ties to even).  The GPU codec
(:mod:`numba_dwconv.cuda.vector`) emits the same integer operations; these NumPy
versions let the arithmetic be checked bit for bit without a GPU.
"""

from __future__ import annotations

import numpy as np


def bf16_bits_from_f32(value):
    """The bfloat16 bit pattern nearest to float32 ``value`` (ties to even; NaN -> quiet NaN, sign kept).

    Integer arithmetic only, so CPU (NumPy ``uint32`` arrays or scalars) and GPU give the same bits.
    """
    bits = np.asarray(value, dtype=np.float32).view(np.uint32).astype(np.uint32)
    is_nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet = (bits >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(is_nan, quiet, rounded).astype(np.uint16)


def f32_from_bf16_bits(bits):
    """float32 values of bfloat16 bit patterns (exact: the 16 bits become the high half)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
