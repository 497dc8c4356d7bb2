"""The pointwise (1x1) half of a separable convolution on the GPU: one tiled matrix-product kernel.

Every product the pointwise step needs -- forward, the gradient with respect to
its input, the weight gradient and the bias gradient, in both layouts -- is

    out[p, i, j] = sum over k in chunk(p) of A(b, i, k) * B(b, k, j)   (+ bias)

for a stack of ``batch x chunks`` problems, where the operands are read through
small element-access functions (plain, transposed, shared across the batch, or
all ones).  The access functions are passed to one kernel factory
(:func:`_matmul_kernel`), so the four layouts of the data share one body:

* device functions: the access functions;
* kernel: a ``tile x tile`` block stages ``tile``-deep slices of ``A`` and ``B`` in
  shared memory and each thread sums a ``reg x reg`` block of outputs in registers,
  every output in a fixed order (a register-blocked matrix product);
* host launchers: :func:`pointwise_forward` and :func:`pointwise_backward`
  choose the tile (:data:`LAUNCH`) and the split of the reduction axis.

Reductions over the batch or over long position axes (the weight and bias
gradients) write one partial per chunk, summed afterwards in index order by a
second kernel: no float atomics, deterministic results.  float16 data is
accumulated in float32.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import cuda

from .arrays import device_empty
from .conv1d_generic import accumulator_dtype
from .inline import device_function, repeat


@dataclass
class PointwiseLaunch:
    """Launch configuration of the pointwise kernels (read by the host launchers only).

    Attributes
    ----------
    tile : int
        Side of the square thread block, and the depth of the shared-memory operand tiles.
    reg : int
        Each thread computes a ``reg x reg`` block of outputs: a block covers ``tile*reg`` rows and columns.
    reduce_length : int
        Length of the reduction axis that one block sums into one partial when a
        gradient reduces over positions.
    max_grid : int
        Upper bound on the grid along each axis; larger problems loop inside the kernel.
    """

    tile: int = 16
    reg: int = 4
    reduce_length: int = 8192
    max_grid: int = 65535


LAUNCH = PointwiseLaunch()


# ---------------------------------------------------------------------------- device functions
# A(b, i, k) / B(b, k, j) are read from 3D arrays (batch, rows, cols); weights are stored
# once and shared by every batch entry (index 0).
@device_function
def _plain(a, b, i, k):
    return a[b, i, k]


@device_function
def _transposed(a, b, i, k):
    return a[b, k, i]


@device_function
def _shared(a, b, i, k):
    return a[0, i, k]


@device_function
def _shared_transposed(a, b, i, k):
    return a[0, k, i]


@device_function
def _ones(a, b, i, k):
    return 1


_ACCESS = {"plain": _plain, "transposed": _transposed, "shared": _shared,
           "shared_transposed": _shared_transposed, "ones": _ones}
# Whether consecutive k of an access are adjacent in memory (A(b, i, k) and B(b, k, j) alike): the tiles are
# then loaded with k fastest across threads, otherwise with i (A) or j (B) fastest, so loads coalesce.
_K_CONTIGUOUS_A = {"plain": True, "transposed": False, "shared": True, "shared_transposed": False, "ones": True}
_K_CONTIGUOUS_B = {"plain": False, "transposed": True, "shared": False, "shared_transposed": True, "ones": False}


# ---------------------------------------------------------------------------- kernels
@functools.lru_cache(maxsize=None)
def _matmul_kernel(load_a_name: str, load_b_name: str, acc_name: str, tile: int, reg: int):
    """Kernel ``out[p, i, j] = sum_{k in chunk} A(b, i, k) B(b, k, j) + bias``, p = b * chunks + chunk.

    A ``tile x tile`` block computes a ``tile*reg`` square of outputs: per step it stages a ``tile``-deep
    slice of A and B in shared memory (each thread loads ``reg`` elements of each), then every thread
    multiplies ``reg`` values of A by ``reg`` of B into its ``reg x reg`` accumulators.  Thread (ty, tx)
    owns rows ``ty + r*tile`` and columns ``tx + s*tile``: shared reads are conflict-free and stores coalesce.
    Each output is summed in k order: deterministic.
    """
    load_a = _ACCESS[load_a_name]
    load_b = _ACCESS[load_b_name]
    a_k_fast, b_k_fast = _K_CONTIGUOUS_A[load_a_name], _K_CONTIGUOUS_B[load_b_name]
    acc_t = numba.float32 if acc_name == "float32" else numba.float64
    side = tile * reg  # outputs per block along each axis
    threads = tile * tile
    n_acc = reg * reg
    tile_size = tile * side
    u32 = numba.uint32

    @device_function
    def tile_slot(e, k_fast):
        """``(k, row or column)`` in a staged tile of a thread's element ``e``: k fastest when ``k_fast``."""
        if k_fast:
            return e % tile, e // tile
        return e // side, e % side

    @device_function
    def multiply_step(kk, tile_a, tile_b, a_lane, b_lane, ra, rb, total):
        """Depth ``kk`` of the staged tiles into the accumulators (unsigned indices: constant offsets)."""
        for r in range(reg):
            ra[r] = tile_a[u32(a_lane + u32(kk * side + r))]
            rb[r] = tile_b[u32(b_lane + u32(kk * side + r))]
        for r in range(reg):
            for c in range(reg):
                total[r * reg + c] += ra[r] * rb[c]

    multiply_tiles = repeat(multiply_step, tile, 7)

    @cuda.jit
    def matmul(a, b_op, bias, bias_axis, rows, cols, depth, chunk_depth, chunks, out):
        tile_a = cuda.shared.array(tile_size, dtype=acc_t)  # [k * side + i]
        tile_b = cuda.shared.array(tile_size, dtype=acc_t)  # [k * side + j]
        ra = cuda.local.array(reg, dtype=acc_t)
        rb = cuda.local.array(reg, dtype=acc_t)
        total = cuda.local.array(n_acc, dtype=acc_t)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * tile + tx
        a_lane = u32(ty * reg)
        b_lane = u32(tx * reg)
        for p in range(cuda.blockIdx.z, out.shape[0], cuda.gridDim.z):
            b = p // chunks
            k_start = (p - b * chunks) * chunk_depth
            k_stop = min(k_start + chunk_depth, depth)
            for row0 in range(cuda.blockIdx.x * side, rows, cuda.gridDim.x * side):
                for col0 in range(cuda.blockIdx.y * side, cols, cuda.gridDim.y * side):
                    for t in range(n_acc):
                        total[t] = acc_t(0)
                    for k0 in range(k_start, k_stop, tile):
                        for step in range(reg):  # each thread stages reg elements of each operand tile
                            e = tid + step * threads
                            kk, ii = tile_slot(e, a_k_fast)
                            i = row0 + ii
                            ka = k0 + kk
                            tile_a[u32(kk * side + ii)] = (acc_t(load_a(a, b, i, ka)) if i < rows and ka < k_stop
                                                           else acc_t(0))
                            kk, jj = tile_slot(e, b_k_fast)
                            j = col0 + jj
                            kb = k0 + kk
                            tile_b[u32(kk * side + jj)] = (acc_t(load_b(b_op, b, kb, j)) if j < cols and kb < k_stop
                                                           else acc_t(0))
                        cuda.syncthreads()
                        multiply_tiles(tile_a, tile_b, a_lane, b_lane, ra, rb, total)
                        cuda.syncthreads()
                    for r in range(reg):
                        i = row0 + ty * reg + r
                        for c in range(reg):
                            j = col0 + tx * reg + c
                            if i < rows and j < cols:
                                value = total[r * reg + c]
                                if bias_axis == 1:
                                    value += acc_t(bias[i])
                                elif bias_axis == 2:
                                    value += acc_t(bias[j])
                                out[p, i, j] = value

    return matmul


@functools.lru_cache(maxsize=None)
def _sum_partials_kernel(acc_name: str):
    acc_t = numba.float32 if acc_name == "float32" else numba.float64

    @cuda.jit
    def sum_partials(partials, out):
        """out[i, j] = sum_p partials[p, i, j], in index order."""
        idx = cuda.grid(1)
        cols = out.shape[1]
        if idx >= out.shape[0] * cols:
            return
        i = idx // cols
        j = idx - i * cols
        total = acc_t(0)
        for p in range(partials.shape[0]):
            total += partials[p, i, j]
        out[i, j] = total

    return sum_partials


# ---------------------------------------------------------------------------- host launchers
def _as3d(array):
    """A (batch, rows, cols) view of a C-contiguous 2D or 3D device array (no copy)."""
    return array.reshape((1,) + tuple(array.shape)) if array.ndim == 2 else array


def _matmul(access, a, b_op, rows, cols, depth, batch, dtype, stream, *, bias=None, bias_axis=0, reduce=False,
            config=None):
    """Run the product kernel; with ``reduce`` the batch and chunks of ``depth`` are summed (two passes)."""
    config = config or LAUNCH
    acc_dtype = accumulator_dtype(dtype)
    chunks = max(1, math.ceil(depth / config.reduce_length)) if reduce else 1
    chunk_depth = math.ceil(depth / chunks) if depth else 0
    n_partials = batch * chunks
    target_dtype = acc_dtype if reduce else dtype
    out = device_empty((n_partials, rows, cols), target_dtype, stream)
    if out.size:
        kernel = _matmul_kernel(access[0], access[1], acc_dtype.name, config.tile, config.reg)
        side = config.tile * config.reg
        grid = tuple(min(n, config.max_grid)
                     for n in (math.ceil(rows / side), math.ceil(cols / side), n_partials))
        bias_arg = bias if bias is not None else out  # unread when bias_axis == 0
        kernel[grid, (config.tile, config.tile), stream](a, b_op, bias_arg, bias_axis, rows, cols, depth, chunk_depth,
                                                         chunks, out)
    if not reduce:
        return out
    total = device_empty((rows, cols), dtype, stream)
    if total.size:
        threads = config.tile * config.tile
        if n_partials == 0:  # an empty batch: the sums are zero
            out = cuda.to_device(np.zeros((1, rows, cols), acc_dtype), stream=stream)
        _sum_partials_kernel(acc_dtype.name)[math.ceil(total.size / threads), threads, stream](out, total)
    return total


def pointwise_forward(depthwise_out, weights, bias, channels_last: bool, stream=0):
    """``out = weights^T . depthwise_out (+ bias)`` per position, on device arrays.

    Parameters
    ----------
    depthwise_out : device array, shape (B, L, Cm) or (B, Cm, L), C-contiguous
    weights : device array, shape (Cm, filters), C-contiguous
    bias : device array, shape (filters,), or None
    channels_last : bool
    stream : numba.cuda stream or 0

    Returns
    -------
    out : device array, shape (B, L, filters) or (B, filters, L)
    """
    dtype = weights.dtype
    batch = depthwise_out.shape[0]
    channels, filters = weights.shape
    w3 = _as3d(weights)
    bias_axis = 0 if bias is None else (2 if channels_last else 1)
    if channels_last:  # (B*L, Cm) @ (Cm, F)
        length = depthwise_out.shape[1]
        rows = batch * length
        out = _matmul(("plain", "shared"), depthwise_out.reshape(1, rows, channels), w3, rows, filters, channels, 1,
                      dtype, stream, bias=bias, bias_axis=bias_axis)
        return out.reshape(batch, length, filters)
    length = depthwise_out.shape[2]  # per batch entry: (F, Cm) @ (Cm, L)
    return _matmul(("shared_transposed", "plain"), w3, depthwise_out, filters, length, channels, batch, dtype, stream,
                   bias=bias, bias_axis=bias_axis)


def pointwise_backward(grad_outputs, depthwise_out, weights, channels_last: bool, stream=0):
    """Gradients of :func:`pointwise_forward` for an upstream gradient, on device arrays.

    Returns
    -------
    grad_depthwise_out : device array, shape of ``depthwise_out``
    grad_weights : device array, shape (Cm, filters)
    grad_bias : device array, shape (filters,)
    """
    dtype = weights.dtype
    batch = depthwise_out.shape[0]
    channels, filters = weights.shape
    w3 = _as3d(weights)
    if channels_last:
        length = depthwise_out.shape[1]
        rows = batch * length
        grad_2d = grad_outputs.reshape(1, rows, filters)
        z_2d = depthwise_out.reshape(1, rows, channels)
        grad_z = _matmul(("plain", "shared_transposed"), grad_2d, w3, rows, channels, filters, 1, dtype, stream)
        grad_z = grad_z.reshape(batch, length, channels)
        # (Cm, B*L) @ (B*L, F) and (1, B*L) @ (B*L, F), the long axis split into chunks
        grad_w = _matmul(("transposed", "plain"), z_2d, grad_2d, channels, filters, rows, 1, dtype, stream,
                         reduce=True)
        grad_b = _matmul(("ones", "plain"), grad_2d, grad_2d, 1, filters, rows, 1, dtype, stream, reduce=True)
        return grad_z, grad_w, grad_b.reshape(filters)
    length = depthwise_out.shape[2]
    # per batch entry: (Cm, F) @ (F, L); (Cm, L) @ (L, F) and (F, L) @ (L, 1) summed over the batch
    grad_z = _matmul(("shared", "plain"), w3, grad_outputs, channels, length, filters, batch, dtype, stream)
    grad_w = _matmul(("plain", "transposed"), depthwise_out, grad_outputs, channels, filters, length, batch, dtype,
                     stream, reduce=True)
    grad_b = _matmul(("plain", "ones"), grad_outputs, grad_outputs, filters, 1, length, batch, dtype, stream,
                     reduce=True)
    return grad_z, grad_w, grad_b.reshape(filters)
