"""The general numba-cuda kernels of 2D depthwise convolution: any size, stride, dilation, multiplier.

:mod:`numba_dwconv.cuda.conv2d` runs these where the 16-byte vector kernels of
:mod:`numba_dwconv.cuda.conv2d_vector` do not apply.  Three layers:

* device functions compute one element: an output (taps read through the
  layout's element access), an input-gradient element (a gather over the taps
  that reach it, so there are no write races), or one kernel-gradient partial;
* kernels only map threads to elements and bounds-check: consecutive threads
  take consecutive elements *in the memory order of the layout*, so stores (and
  most loads) of a warp are coalesced in both layouts; grids loop when the
  problem is larger than the grid;
* host launchers choose the launch configuration (:data:`LAUNCH`) and allocate
  outputs.

The kernel/bias gradient never uses float atomics: each thread sums one (tap,
output channel) pair over a fixed chunk of positions into a partials buffer,
and :func:`~numba_dwconv.cuda.conv1d_generic.sum_partials` (shared with every
kernel gradient) sums the partials in index order.  float16 data is
accumulated in float32.  Padding is read as zeros that are multiplied, so Keras'
rule for non-finite weights and gradients (``0 * inf`` is NaN) holds without a host pass.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import cuda

from .arrays import device_empty
from .conv1d_generic import accumulator_dtype, sum_partials
from .inline import device_function


@dataclass
class LaunchConfig2D:
    """Launch configuration of the 2D kernels (read by the host launchers only).

    Attributes
    ----------
    threads : int
        Threads per block.
    reduce_positions : int
        Output positions (over batch, height and width) one thread sums into one
        kernel-gradient partial.
    max_grid : int
        Upper bound on the number of blocks along a grid axis (kernels loop beyond).
    """

    threads: int = 256
    reduce_positions: int = 2048
    max_grid: int = 65535


LAUNCH = LaunchConfig2D()


@functools.lru_cache(maxsize=None)
def _kernels(acc_name: str, channels_last: bool) -> dict:
    """Build the kernels for one accumulator type and layout."""
    acc_t = numba.float32 if acc_name == "float32" else numba.float64

    # ------------------------------------------------------------------ device functions
    if channels_last:
        @device_function
        def at(a, b, h, w, c):
            return acc_t(a[b, h, w, c])

        @device_function
        def decode(e, shape):
            """(b, h, w, c) of flat element e of a (B, H, W, C) array."""
            c = e % shape[3]
            rest = e // shape[3]
            w = rest % shape[2]
            rest = rest // shape[2]
            return rest // shape[1], rest % shape[1], w, c

        @device_function
        def store(a, b, h, w, c, value):
            a[b, h, w, c] = value
    else:
        @device_function
        def at(a, b, h, w, c):
            return acc_t(a[b, c, h, w])

        @device_function
        def decode(e, shape):
            """(b, h, w, c) of flat element e of a (B, C, H, W) array."""
            w = e % shape[3]
            rest = e // shape[3]
            h = rest % shape[2]
            rest = rest // shape[2]
            return rest // shape[1], h, w, rest % shape[1]

        @device_function
        def store(a, b, h, w, c, value):
            a[b, c, h, w] = value

    @device_function
    def point_forward(x, kernel, b, oh, ow, o, sh, sw, dh, dw, top, left, height, width):
        """Sum over taps (i, k) of x[b, oh*sh + i*dh - top, ow*sw + k*dw - left, c] * kernel[i, k, c, j]."""
        mult = kernel.shape[3]
        c = o // mult
        j = o - c * mult
        acc = acc_t(0)
        for i in range(kernel.shape[0]):
            ih = oh * sh + i * dh - top
            row_inside = ih >= 0 and ih < height
            for k in range(kernel.shape[1]):
                iw = ow * sw + k * dw - left
                if row_inside and iw >= 0 and iw < width:
                    acc += at(x, b, ih, iw, c) * acc_t(kernel[i, k, c, j])
                else:  # padding is a zero that is multiplied (0 * inf is NaN, as in Keras)
                    acc += acc_t(0) * acc_t(kernel[i, k, c, j])
        return acc

    @device_function
    def point_input_grad(grad, kernel, b, ih, iw, c, sh, sw, dh, dw, top, left, out_h, out_w):
        """Sum over the taps that read x[b, ih, iw, c] of grad[b, oh, ow, c*m + j] * kernel[i, k, c, j]."""
        mult = kernel.shape[3]
        acc = acc_t(0)
        for i in range(kernel.shape[0]):
            q = ih + top - i * dh
            oh = q // sh
            if q >= 0 and oh * sh == q and oh < out_h:
                for k in range(kernel.shape[1]):
                    r = iw + left - k * dw
                    ow = r // sw
                    if r >= 0 and ow * sw == r and ow < out_w:
                        for j in range(mult):
                            acc += at(grad, b, oh, ow, c * mult + j) * acc_t(kernel[i, k, c, j])
        return acc

    # ------------------------------------------------------------------ kernels
    @cuda.jit
    def forward(x, kernel, bias, sh, sw, dh, dw, top, left, out):
        start = cuda.grid(1)
        step = cuda.gridsize(1)
        height = x.shape[2] if not channels_last else x.shape[1]
        width = x.shape[3] if not channels_last else x.shape[2]
        for e in range(start, out.size, step):
            b, oh, ow, o = decode(e, out.shape)
            value = acc_t(bias[o]) + point_forward(x, kernel, b, oh, ow, o, sh, sw, dh, dw, top, left, height, width)
            store(out, b, oh, ow, o, value)

    @cuda.jit
    def input_grad(grad, kernel, sh, sw, dh, dw, top, left, grad_in):
        start = cuda.grid(1)
        step = cuda.gridsize(1)
        out_h = grad.shape[2] if not channels_last else grad.shape[1]
        out_w = grad.shape[3] if not channels_last else grad.shape[2]
        for e in range(start, grad_in.size, step):
            b, ih, iw, c = decode(e, grad_in.shape)
            value = point_input_grad(grad, kernel, b, ih, iw, c, sh, sw, dh, dw, top, left, out_h, out_w)
            store(grad_in, b, ih, iw, c, value)

    @cuda.jit
    def kernel_grad_partials(grad, x, sh, sw, dh, dw, top, left, kw, positions_per_chunk, partials):
        """partials[p, slot, o]: slot 0 sums grad (bias), slot 1 + i*KW + k sums x * grad of tap (i, k)."""
        n_slots, out_c = partials.shape[1], partials.shape[2]
        height = x.shape[2] if not channels_last else x.shape[1]
        width = x.shape[3] if not channels_last else x.shape[2]
        out_h = grad.shape[2] if not channels_last else grad.shape[1]
        out_w = grad.shape[3] if not channels_last else grad.shape[2]
        total_positions = grad.shape[0] * out_h * out_w
        mult = out_c // (x.shape[3] if channels_last else x.shape[1])
        for p in range(cuda.blockIdx.y, partials.shape[0], cuda.gridDim.y):
            first = p * positions_per_chunk
            last = min(first + positions_per_chunk, total_positions)
            for idx in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, n_slots * out_c,
                             cuda.gridDim.x * cuda.blockDim.x):
                slot = idx // out_c
                o = idx - slot * out_c
                c = o // mult
                i = (slot - 1) // kw
                k = (slot - 1) - i * kw
                acc = acc_t(0)
                for position in range(first, last):
                    ow = position % out_w
                    rest = position // out_w
                    oh = rest % out_h
                    b = rest // out_h
                    g = at(grad, b, oh, ow, o)
                    if slot == 0:
                        acc += g
                    else:
                        ih = oh * sh + i * dh - top
                        iw = ow * sw + k * dw - left
                        if ih >= 0 and ih < height and iw >= 0 and iw < width:
                            acc += at(x, b, ih, iw, c) * g
                        else:  # padding multiplied as zero (Keras' rule for non-finite gradients)
                            acc += acc_t(0) * g
                partials[p, slot, o] = acc

    return {"forward": forward, "input_grad": input_grad, "kernel_grad_partials": kernel_grad_partials}


# ---------------------------------------------------------------------------- host launchers
def _kernel_set(problem):
    return _kernels(accumulator_dtype(problem.dtype).name, problem.channels_last)


def _axes_args(problem):
    h, w = problem.height, problem.width
    return h.stride, w.stride, h.dilation, w.dilation, h.pad_left, w.pad_left


def _elementwise_grid(n: int, config: LaunchConfig2D) -> int:
    return max(1, min(math.ceil(n / config.threads), config.max_grid))


def conv2d_forward(problem, inputs, kernel, bias, stream=0, config: LaunchConfig2D | None = None):
    """Forward pass on device arrays of ``problem.dtype``; ``bias`` is a device vector (zeros without one)."""
    config = config or LAUNCH
    out = device_empty(problem.output_shape, problem.dtype, stream)
    if out.size:
        kernel_fn = _kernel_set(problem)["forward"]
        kernel_fn[_elementwise_grid(out.size, config), config.threads, stream](inputs, kernel, bias,
                                                                               *_axes_args(problem), out)
    return out


def conv2d_input_grad(problem, grad_outputs, kernel, stream=0, config: LaunchConfig2D | None = None):
    """Gradient with respect to the inputs (a gather per input element)."""
    config = config or LAUNCH
    grad_in = device_empty(problem.input_shape, problem.dtype, stream)
    if grad_in.size:
        kernel_fn = _kernel_set(problem)["input_grad"]
        kernel_fn[_elementwise_grid(grad_in.size, config), config.threads, stream](grad_outputs, kernel,
                                                                                   *_axes_args(problem), grad_in)
    return grad_in


def conv2d_kernel_grad(problem, grad_outputs, inputs, stream=0, config: LaunchConfig2D | None = None):
    """Kernel and bias gradients: per-chunk partials, then a fixed-order sum (no atomics)."""
    config = config or LAUNCH
    kernels = _kernel_set(problem)
    acc_dtype = accumulator_dtype(problem.dtype)
    out_channels = problem.channels * problem.multiplier
    kh, kw = problem.height.kernel_size, problem.width.kernel_size
    n_slots = kh * kw + 1
    positions = problem.batch * problem.height.out_length * problem.width.out_length
    chunks = max(1, math.ceil(positions / config.reduce_positions))
    per_chunk = math.ceil(positions / chunks) if positions else 0
    partials = device_empty((chunks, n_slots, out_channels), acc_dtype, stream)
    grid = (_elementwise_grid(n_slots * out_channels, config), min(chunks, config.max_grid))
    kernels["kernel_grad_partials"][grid, config.threads, stream](grad_outputs, inputs, *_axes_args(problem), kw,
                                                                  per_chunk, partials)
    grad_kernel = device_empty(problem.kernel_shape, problem.dtype, stream)
    grad_bias = device_empty((out_channels,), problem.dtype, stream)
    sum_partials(partials, grad_kernel, grad_bias, np.dtype(problem.dtype).name, stream)
    return grad_kernel, grad_bias
