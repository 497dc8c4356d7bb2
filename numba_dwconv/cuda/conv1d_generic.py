"""numba-cuda kernels for 1D depthwise convolution: the general path (any stride, taps, alignment).

:mod:`numba_dwconv.cuda.conv1d` uses these when the register-window kernels of
:mod:`numba_dwconv.cuda.conv1d_vector` do not apply (strides, channels_last with a depth
multiplier, odd channel counts or unaligned operands, very large windows).

* forward (:func:`_forward_general`): raw pointers and int32 indices (int64 past 2**31
  elements), launched through :mod:`numba_dwconv.cuda.launch`; four outputs per thread.
* input gradient and kernel/bias gradient: array-argument kernels; the contiguous axis of
  each layout maps to ``threadIdx.x`` so that every load and store of a warp is coalesced
  (device functions ``point_*`` do the arithmetic of one element).
* host launchers (:func:`conv1d_forward`, :func:`conv1d_input_grad`,
  :func:`conv1d_kernel_grad`) choose the launch configuration from :data:`LAUNCH` (a
  host-side object: kernels never read globals) and allocate the outputs.

float16 data is read as float16 and accumulated in float32; float64 in float64.
The kernel/bias gradient never uses float atomics: each block writes its partial
sums, reduced inside the block in a fixed order, and :func:`sum_partials` (shared
with the vector path) sums the partials over blocks in index order.  Results are deterministic.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import cuda

from .arrays import device_empty
from .conv1d_vector import VectorKey, vector_kernel
from .inline import device_function
from .launch import Kernel, buffer
from .vector import MAX_INDEX, pointer_type, types
from .vector import codec as get_codec


@dataclass
class LaunchConfig:
    """Launch configuration, read by the host launchers only.

    Attributes
    ----------
    tile_x : int
        Threads along the contiguous axis of a block (channels for channels_last,
        positions for channels_first).
    tile_y : int
        Threads along the other axis of a block (channels_last forward / input grad).
    reduce_rows : int
        Rows (channels_last) or positions (channels_first) whose products one block
        sums into one partial of the kernel gradient.
    max_grid_y : int
        Upper bound on ``gridDim.x``/``gridDim.y`` along the length (and batch) axes;
        larger problems loop inside the kernel.  Measured on an H200 (B8 L16384
        C256 K3 forward): 256 -> 0.36 ms, 4096 -> 0.51 ms (fewer, longer-lived threads).
    """

    tile_x: int = 64
    tile_y: int = 4
    reduce_rows: int = 2048
    max_grid_y: int = 256


LAUNCH = LaunchConfig()


@functools.lru_cache(maxsize=None)
def _kernels(acc_name: str) -> dict:
    """Build the kernels accumulating in ``acc_name`` ("float32" or "float64")."""
    acc_t = numba.float32 if acc_name == "float32" else numba.float64

    # ------------------------------------------------------------------ device functions
    # Loads go to clamped positions unconditionally; what lies outside is selected away:
    # the forward and the kernel gradient multiply padding as an exact zero (0 * inf =
    # NaN, Keras' rule, and an inf next to the padding cannot leak in), the input
    # gradient drops the products of outputs outside (padding is no input).  The input
    # gradient takes taps four at a time: four independent loads per step keep more
    # memory requests in flight than a loop with a branch around each load.
    @device_function
    def masked(value, keep):
        return value if keep else acc_t(0)

    @device_function
    def tap_source(r, i, ksize, stride, dilation, pad_left, out_length):
        """(clamped output row, valid) of tap i reaching input row r."""
        q = r + pad_left - i * dilation
        t = q // stride
        valid = i < ksize and q >= 0 and t * stride == q and t < out_length
        return min(max(t, 0), out_length - 1), valid

    # Layout twins share one body: the factories below take the element access of
    # a layout (``a[b, position, channel]`` or ``a[b, channel, position]``).
    @device_function
    def at_last(a, b, position, channel):
        return acc_t(a[b, position, channel])

    @device_function
    def at_first(a, b, position, channel):
        return acc_t(a[b, channel, position])

    def make_point_input_grad(at):
        @device_function
        def point_input_grad(grad, kernel, b, r, c, stride, dilation, pad_left, out_length):
            """Sum over taps i and multipliers j that reach input row r of grad[t, c*m+j] * kernel[i, c, j]."""
            acc = acc_t(0)
            mult = kernel.shape[2]
            ksize = kernel.shape[0]
            top = ksize - 1
            for i in range(0, ksize, 4):
                t0, k0 = tap_source(r, i, ksize, stride, dilation, pad_left, out_length)
                t1, k1 = tap_source(r, i + 1, ksize, stride, dilation, pad_left, out_length)
                t2, k2 = tap_source(r, i + 2, ksize, stride, dilation, pad_left, out_length)
                t3, k3 = tap_source(r, i + 3, ksize, stride, dilation, pad_left, out_length)
                for j in range(mult):
                    o = c * mult + j
                    v0 = at(grad, b, t0, o) * acc_t(kernel[i, c, j])
                    v1 = at(grad, b, t1, o) * acc_t(kernel[min(i + 1, top), c, j])
                    v2 = at(grad, b, t2, o) * acc_t(kernel[min(i + 2, top), c, j])
                    v3 = at(grad, b, t3, o) * acc_t(kernel[min(i + 3, top), c, j])
                    acc += masked(v0, k0)
                    acc += masked(v1, k1)
                    acc += masked(v2, k2)
                    acc += masked(v3, k3)
            return acc

        return point_input_grad

    point_input_grad_last = make_point_input_grad(at_last)
    point_input_grad_first = make_point_input_grad(at_first)

    # ------------------------------------------------------------------ input gradient
    @cuda.jit
    def input_grad_channels_last(grad, kernel, stride, dilation, pad_left, grad_in):
        c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if c >= grad_in.shape[2]:
            return
        b = cuda.blockIdx.z
        while b < grad_in.shape[0]:
            r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
            while r < grad_in.shape[1]:
                grad_in[b, r, c] = point_input_grad_last(grad, kernel, b, r, c, stride, dilation, pad_left,
                                                         grad.shape[1])
                r += cuda.gridDim.y * cuda.blockDim.y
            b += cuda.gridDim.z

    @cuda.jit
    def input_grad_channels_first(grad, kernel, stride, dilation, pad_left, grad_in):
        b = cuda.blockIdx.z
        while b < grad_in.shape[0]:
            c = cuda.blockIdx.y
            while c < grad_in.shape[1]:
                r = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
                while r < grad_in.shape[2]:
                    grad_in[b, c, r] = point_input_grad_first(grad, kernel, b, r, c, stride, dilation, pad_left,
                                                              grad.shape[2])
                    r += cuda.gridDim.x * cuda.blockDim.x
                c += cuda.gridDim.y
            b += cuda.gridDim.z

    # ------------------------------------------------------------------ kernel/bias gradient, pass 1
    @cuda.jit
    def kernel_grad_partials_last(grad, x, stride, dilation, pad_left, rows_per_block, partials):
        """partials[blk, 0, o] = sum of grad over the block's rows; partials[blk, 1+i, o] = tap i.

        Block (tile_x, tile_y): x -> output channels, y -> row lanes; blockIdx.y -> row chunk.
        Rows are (b, t) pairs flattened; the lanes' sums are combined in lane order.
        """
        lanes = cuda.blockDim.y
        lane = cuda.threadIdx.y
        o = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        out_length = grad.shape[1]
        n_rows = grad.shape[0] * out_length
        length = x.shape[1]
        mult = grad.shape[2] // x.shape[2]
        ksize = partials.shape[1] - 1
        shared = cuda.shared.array(0, dtype=acc_t)
        row_start = cuda.blockIdx.y * rows_per_block
        row_stop = min(row_start + rows_per_block, n_rows)
        inside = o < grad.shape[2]
        c = o // mult
        first = row_start + lane
        b_first = first // out_length
        t_first = first - b_first * out_length
        for k in range(ksize + 1):
            acc = acc_t(0)
            if inside:
                row = first
                b = b_first
                t = t_first
                offset = (k - 1) * dilation - pad_left
                while row < row_stop:
                    g = acc_t(grad[b, t, o])
                    if k == 0:
                        acc += g
                    else:
                        r = t * stride + offset
                        acc += masked(acc_t(x[b, min(max(r, 0), length - 1), c]), r >= 0 and r < length) * g
                    row += lanes
                    t += lanes  # next row of this lane, without a division per row
                    while t >= out_length:
                        t -= out_length
                        b += 1
            shared[lane * cuda.blockDim.x + cuda.threadIdx.x] = acc
            cuda.syncthreads()
            if lane == 0 and inside:
                total = acc_t(0)
                for q in range(lanes):
                    total += shared[q * cuda.blockDim.x + cuda.threadIdx.x]
                partials[cuda.blockIdx.y, k, o] = total
            cuda.syncthreads()

    @cuda.jit
    def kernel_grad_partials_first(grad, x, stride, dilation, pad_left, positions_per_block, partials):
        """partials[b * chunks + chunk, k, o]: like the channels_last pass, along positions.

        Block (tile_x,): threads along positions; blockIdx.x -> chunk, y -> output channel, z -> batch.
        The threads' sums are combined by a fixed tree in shared memory.
        """
        tid = cuda.threadIdx.x
        threads = cuda.blockDim.x
        o = cuda.blockIdx.y
        b = cuda.blockIdx.z
        chunks = cuda.gridDim.x
        mult = grad.shape[1] // x.shape[1]
        c = o // mult
        length = x.shape[2]
        ksize = partials.shape[1] - 1
        shared = cuda.shared.array(0, dtype=acc_t)
        t_start = cuda.blockIdx.x * positions_per_block
        t_stop = min(t_start + positions_per_block, grad.shape[2])
        for k in range(ksize + 1):
            acc = acc_t(0)
            t = t_start + tid
            offset = (k - 1) * dilation - pad_left
            while t < t_stop:
                g = acc_t(grad[b, o, t])
                if k == 0:
                    acc += g
                else:
                    r = t * stride + offset
                    acc += masked(acc_t(x[b, c, min(max(r, 0), length - 1)]), r >= 0 and r < length) * g
                t += threads
            shared[tid] = acc
            cuda.syncthreads()
            width = threads
            while width > 1:  # fixed tree: element i adds element i + half
                half = (width + 1) // 2
                if tid < width - half:
                    shared[tid] += shared[tid + half]
                cuda.syncthreads()
                width = half
            if tid == 0:
                partials[b * chunks + cuda.blockIdx.x, k, o] = shared[0]
            cuda.syncthreads()

    return {
        "input_grad_channels_last": input_grad_channels_last,
        "input_grad_channels_first": input_grad_channels_first,
        "kernel_grad_partials_last": kernel_grad_partials_last,
        "kernel_grad_partials_first": kernel_grad_partials_first,
    }


# ---------------------------------------------------------------------------- host launchers
def accumulator_dtype(dtype) -> np.dtype:
    """float64 accumulates in float64; float32 and float16 in float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _kernel_set(dtype):
    return _kernels(accumulator_dtype(dtype).name)


def _grid(n: int, per_block: int, config: LaunchConfig) -> int:
    """Blocks along a grid axis: enough to cover ``n``, at most ``config.max_grid_y`` (kernels loop)."""
    return max(1, min(math.ceil(n / per_block), config.max_grid_y))


def _launch_over_positions(kernels, op, problem, channels, positions, config, stream, args):
    """Launch ``op``'s kernel for the layout: the contiguous axis on ``threadIdx.x``, batch on ``gridDim.z``.

    channels_last: blocks of (tile_x channels, tile_y positions); channels_first: tile_x
    positions per block, one channel per ``blockIdx.y``.  ``positions`` counts thread rows
    (already divided by the outputs each thread computes).
    """
    batches = _grid(problem.batch, 1, config)
    if problem.channels_last:
        grid = (math.ceil(channels / config.tile_x), _grid(positions, config.tile_y, config), batches)
        kernels[op + "_channels_last"][grid, (config.tile_x, config.tile_y), stream](*args)
    else:
        grid = (_grid(positions, config.tile_x, config), _grid(channels, 1, config), batches)
        kernels[op + "_channels_first"][grid, config.tile_x, stream](*args)


def _forward_general(dtype: str, channels_last: bool, wide: bool):
    """``(python function, signature)`` of the general forward: any stride, dilation, taps, multiplier, alignment.

    Raw pointers and ``int32`` (``int64`` when ``wide``) indices.  Each thread computes four outputs ``step``
    apart along the length (``step`` = the grid's extent there, so each store of a warp stays coalesced),
    sharing the weight loads and the index arithmetic; windows inside the row take an unchecked path, edge
    windows read padding as zero (multiplied: Keras' rule).
    """
    cd = get_codec(dtype)
    acc, load1, store1 = cd.acc, cd.load1, cd.store1
    ix = types.int64 if wide else types.int32

    def forward_general(x, w, bias, out, batch, chans, mult, length, out_length, taps, stride, dil, pad):
        zero = acc(0)
        out_ch = ix(chans * mult)
        if channels_last:  # threads x along output channels, y along positions
            o_first, o_step = ix(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x), out_ch
            t_first = ix(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y)
            step = ix(cuda.gridDim.y * cuda.blockDim.y)
            x_r, o_r = ix(chans), out_ch
        else:  # threads x along positions, grid y along output channels
            o_first, o_step = ix(cuda.blockIdx.y), ix(cuda.gridDim.y)
            t_first = ix(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
            step = ix(cuda.gridDim.x * cuda.blockDim.x)
            x_r, o_r = ix(1), ix(1)
        d_x = ix(dil * x_r)
        u_x = ix(step * stride * x_r)  # input distance between a thread's four outputs
        w_step = ix(chans * mult)
        reach = ix(3 * step * stride + (taps - 1) * dil)
        b = ix(cuda.blockIdx.z)
        while b < batch:
            o = o_first
            while o < out_ch:
                c = ix(o // mult)
                start = load1(bias, o)
                if channels_last:
                    x_base, o_base = ix(ix(b * length) * chans + c), ix(ix(b * out_length) * out_ch + o)
                else:
                    x_base, o_base = ix(ix(b * chans + c) * length), ix(ix(b * out_ch + o) * out_length)
                t = t_first
                while t < out_length:
                    a0, a1, a2, a3 = start, start, start, start
                    r0 = ix(t * stride - pad)
                    wi = o  # w[i, c, j] = w[i * C*m + o]
                    if r0 >= 0 and ix(r0 + reach) < length:  # interior: no checks
                        q = ix(x_base + r0 * x_r)
                        for _ in range(taps):
                            wv = load1(w, wi)
                            a0 += load1(x, q) * wv
                            a1 += load1(x, ix(q + u_x)) * wv
                            a2 += load1(x, ix(q + 2 * u_x)) * wv
                            a3 += load1(x, ix(q + 3 * u_x)) * wv
                            q = ix(q + d_x)
                            wi = ix(wi + w_step)
                    else:
                        r_step = ix(step * stride)
                        for i in range(taps):
                            wv = load1(w, wi)
                            r = ix(r0 + i * dil)
                            v0 = load1(x, ix(x_base + r * x_r)) if r >= 0 and r < length else zero
                            r = ix(r + r_step)
                            v1 = load1(x, ix(x_base + r * x_r)) if r >= 0 and r < length else zero
                            r = ix(r + r_step)
                            v2 = load1(x, ix(x_base + r * x_r)) if r >= 0 and r < length else zero
                            r = ix(r + r_step)
                            v3 = load1(x, ix(x_base + r * x_r)) if r >= 0 and r < length else zero
                            a0 += v0 * wv
                            a1 += v1 * wv
                            a2 += v2 * wv
                            a3 += v3 * wv
                            wi = ix(wi + w_step)
                    store1(out, ix(o_base + t * o_r), a0)
                    if ix(t + step) < out_length:
                        store1(out, ix(o_base + (t + step) * o_r), a1)
                    if ix(t + 2 * step) < out_length:
                        store1(out, ix(o_base + (t + 2 * step) * o_r), a2)
                    if ix(t + 3 * step) < out_length:
                        store1(out, ix(o_base + (t + 3 * step) * o_r), a3)
                    t = ix(t + 4 * step)
                o = ix(o + o_step)
            b = ix(b + cuda.gridDim.z)

    ptr = pointer_type(dtype)
    return forward_general, (ptr,) * 4 + (ix,) * 9


@functools.lru_cache(maxsize=None)
def _general_forward_kernel(dtype: str, channels_last: bool, wide: bool) -> Kernel:
    return Kernel(*_forward_general(dtype, channels_last, wide))


def conv1d_forward(problem, inputs, kernel, bias, stream=0, config: LaunchConfig | None = None):
    """Forward pass on device arrays of ``problem.dtype``; returns a new device array.

    ``bias`` is a device array of shape (C*m,) (zeros when the caller had none).
    """
    config = config or LAUNCH
    out = device_empty(problem.output_shape, problem.dtype, stream)
    axis = problem.axis
    out_channels = problem.channels * problem.multiplier
    if out.size == 0:
        return out
    wide = max(out.size, int(np.prod(problem.input_shape))) > MAX_INDEX
    rows = math.ceil(axis.out_length / 4)  # four outputs per thread
    batches = _grid(problem.batch, 1, config)
    if problem.channels_last:
        grid = (math.ceil(out_channels / config.tile_x), _grid(rows, config.tile_y, config), batches)
        block = (config.tile_x, config.tile_y, 1)
    else:
        grid = (_grid(rows, config.tile_x, config), min(out_channels, 65535), batches)
        block = (config.tile_x, 1, 1)
    args = (problem.batch, problem.channels, problem.multiplier, axis.length, axis.out_length, axis.kernel_size,
            axis.stride, axis.dilation, axis.pad_left)
    _general_forward_kernel(np.dtype(problem.dtype).name, problem.channels_last, wide).launch(
        grid, block, stream, 0, (buffer(inputs), buffer(kernel), buffer(bias), buffer(out)) + args)
    return out


def conv1d_input_grad(problem, grad_outputs, kernel, stream=0, config: LaunchConfig | None = None):
    """Gradient with respect to the inputs; returns a new device array."""
    config = config or LAUNCH
    kernels = _kernel_set(problem.dtype)
    grad_in = device_empty(problem.input_shape, problem.dtype, stream)
    axis = problem.axis
    if grad_in.size == 0:
        return grad_in
    _launch_over_positions(
        kernels, "input_grad", problem, problem.channels, axis.length, config, stream,
        (grad_outputs, kernel, axis.stride, axis.dilation, axis.pad_left, grad_in),
    )
    return grad_in


def conv1d_kernel_grad(problem, grad_outputs, inputs, stream=0, config: LaunchConfig | None = None):
    """Kernel and bias gradients (two passes, no atomics); returns two new device arrays."""
    config = config or LAUNCH
    kernels = _kernel_set(problem.dtype)
    acc_dtype = accumulator_dtype(problem.dtype)
    axis = problem.axis
    out_channels = problem.channels * problem.multiplier
    grad_kernel = device_empty(problem.kernel_shape, problem.dtype, stream)
    grad_bias = device_empty((out_channels,), problem.dtype, stream)
    n_slots = axis.kernel_size + 1
    if problem.channels_last:
        n_rows = problem.batch * axis.out_length
        chunks = _grid(n_rows, config.reduce_rows, config) if n_rows else 0
        rows_per_block = math.ceil(n_rows / chunks) if chunks else 0
        partials = device_empty((chunks, n_slots, out_channels), acc_dtype, stream)
        if chunks:
            block = (config.tile_x, config.tile_y)
            grid = (math.ceil(out_channels / config.tile_x), chunks)
            shared_bytes = config.tile_x * config.tile_y * acc_dtype.itemsize
            kernels["kernel_grad_partials_last"][grid, block, stream, shared_bytes](
                grad_outputs, inputs, axis.stride, axis.dilation, axis.pad_left, rows_per_block, partials
            )
    else:
        # one partial per (batch entry, chunk of positions); batch and channels need no grid loop
        # as long as they fit the grid (checked here, clear error otherwise).
        chunks = _grid(axis.out_length, config.reduce_rows, config)
        positions_per_block = math.ceil(axis.out_length / chunks)
        if out_channels > 65535 or problem.batch > 65535:
            raise ValueError(
                "channels_first kernel gradient on the GPU supports at most 65535 output channels and batch "
                f"entries. Received batch={problem.batch}, output channels={out_channels}"
            )
        partials = device_empty((problem.batch * chunks, n_slots, out_channels), acc_dtype, stream)
        if problem.batch:
            grid = (chunks, out_channels, problem.batch)
            shared_bytes = config.tile_x * acc_dtype.itemsize
            kernels["kernel_grad_partials_first"][grid, config.tile_x, stream, shared_bytes](
                grad_outputs, inputs, axis.stride, axis.dilation, axis.pad_left, positions_per_block, partials
            )
    sum_partials(partials, grad_kernel, grad_bias, np.dtype(problem.dtype).name, stream)
    return grad_kernel, grad_bias


SUM_THREADS = 256


@functools.lru_cache(maxsize=None)
def _sum_partials_kernel(storage: str) -> Kernel:
    return Kernel(*vector_kernel(VectorKey("sum_partials", storage, 0, 1, 0, 1, "both", 1, 1)))


def sum_partials(partials, grad_kernel, grad_bias, storage: str, stream=0) -> None:
    """Kernel and bias gradients from ``(P, taps + 1, C*m)`` block partials, summed over P in index order.

    The second pass of every kernel gradient (1D and 2D, general and vector paths): one launch,
    deterministic.  Slot 0 is the bias; slot ``1 + t`` tap ``t`` in the kernel's own flat order.
    ``storage`` names the gradients' storage type (e.g. "bfloat16" for raw 16-bit data).
    """
    n_partials, slots, out_ch = partials.shape
    _sum_partials_kernel(storage).launch(
        (math.ceil(slots * out_ch / SUM_THREADS), 1, 1), (SUM_THREADS, 1, 1), stream, 0,
        (buffer(partials), buffer(grad_kernel), buffer(grad_bias), n_partials, slots, out_ch))


def fused_backward(kernel: Kernel, plan, problem, grad_outputs, inputs, weights, parts: str, storage: str, stream=0):
    """Run a fused vector backward kernel (1D or 2D) and sum its partials: ``(grad_in, grad_kernel, grad_bias)``.

    ``plan`` is the kernel's ``(grid, block, int32 arguments, partial rows)``; ``parts`` "input" or "kernel"
    leaves the other results None (and their operands unread).  The partials hold one slot per tap plus
    the bias, so their count follows from the kernel's shape.
    """
    grid, block, args, n_partials = plan
    out_ch = problem.channels * problem.multiplier
    slots = math.prod(problem.kernel_shape[:-2]) + 1
    grad_in = device_empty(problem.input_shape, problem.dtype, stream) if parts != "kernel" else None
    partials = (device_empty((n_partials, slots, out_ch), accumulator_dtype(problem.dtype), stream)
                if parts != "input" else None)
    anything = grad_outputs  # a valid pointer for the operands a part does not read or write
    operands = (grad_outputs, inputs, weights, grad_in, partials)
    kernel.launch(grid, block, stream, 0, tuple(buffer(a if a is not None else anything) for a in operands) + args)
    if partials is None:
        return grad_in, None, None
    grad_kernel = device_empty(problem.kernel_shape, problem.dtype, stream)
    grad_bias = device_empty((out_ch,), problem.dtype, stream)
    sum_partials(partials, grad_kernel, grad_bias, storage, stream)
    return grad_in, grad_kernel, grad_bias
