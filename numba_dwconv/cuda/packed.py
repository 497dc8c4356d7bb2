"""GPU kernels of the causal convolution over packed sequences (``sequence_ids``), both layouts.

The arithmetic of :mod:`numba_dwconv.cpu.packed`: one thread per output element (forward), per
input element (input gradient), and per kernel weight and batch row (kernel-gradient partials,
summed afterwards in a fixed order).  Arrays are indexed as ``(batch, length, channels)`` through
:func:`_at`-style closures chosen per layout.
"""

from __future__ import annotations

import functools

from numba import cuda


@functools.lru_cache(maxsize=None)
def _kernels(channels_last: bool):
    from .inline import device_function

    @device_function
    def at(a, b, t, c):
        return a[b, t, c] if channels_last else a[b, c, t]

    @device_function
    def put(a, b, t, c, v):
        if channels_last:
            a[b, t, c] = v
        else:
            a[b, c, t] = v

    @cuda.jit
    def forward(x, ids, kernel, bias, dilation, out):
        batch, length = ids.shape
        channels = kernel.shape[1]
        ksize, _, mult = kernel.shape
        n_out = channels * mult
        k = cuda.grid(1)
        while k < batch * length * n_out:
            b = k // (length * n_out)
            t = (k // n_out) % length
            o = k % n_out
            c = o // mult
            q = o - c * mult
            sequence = ids[b, t]
            acc = bias[o]
            if sequence < 0:
                acc = 0
            else:
                for i in range(ksize):
                    src = t - (ksize - 1 - i) * dilation
                    if src >= 0 and ids[b, src] == sequence:
                        acc += at(x, b, src, c) * kernel[i, c, q]
            put(out, b, t, o, acc)
            k += cuda.gridsize(1)

    @cuda.jit
    def input_grad(grad, ids, kernel, dilation, grad_in):
        batch, length = ids.shape
        channels = kernel.shape[1]
        ksize, _, mult = kernel.shape
        k = cuda.grid(1)
        while k < batch * length * channels:
            b = k // (length * channels)
            s = (k // channels) % length
            c = k % channels
            sequence = ids[b, s]
            acc = at(grad, b, s, c * mult) * 0
            if sequence >= 0:
                for i in range(ksize):
                    t = s + (ksize - 1 - i) * dilation
                    if t < length and ids[b, t] == sequence:
                        for q in range(mult):
                            acc += at(grad, b, t, c * mult + q) * kernel[i, c, q]
            put(grad_in, b, s, c, acc)
            k += cuda.gridsize(1)

    @cuda.jit
    def kernel_grad(grad, x, ids, dilation, part_kernel, part_bias):
        batch, length = ids.shape
        channels = part_kernel.shape[2]
        ksize, _, mult = part_kernel.shape[1:]
        n_out = channels * mult
        k = cuda.grid(1)
        while k < batch * (ksize + 1) * n_out:
            b = k // ((ksize + 1) * n_out)
            i = (k // n_out) % (ksize + 1)  # i == ksize: the bias
            o = k % n_out
            c = o // mult
            q = o - c * mult
            acc = part_bias[b, o] * 0
            for t in range(length):
                sequence = ids[b, t]
                if sequence < 0:
                    continue
                if i == ksize:
                    acc += at(grad, b, t, o)
                else:
                    src = t - (ksize - 1 - i) * dilation
                    if src >= 0 and ids[b, src] == sequence:
                        acc += at(x, b, src, c) * at(grad, b, t, o)
            if i == ksize:
                part_bias[b, o] = acc
            else:
                part_kernel[b, i, c, q] = acc
            k += cuda.gridsize(1)

    @cuda.jit
    def zero_padding(a, ids):
        batch, length = ids.shape
        n_out = a.size // (batch * length) if batch * length else 0
        k = cuda.grid(1)
        while k < batch * length * n_out:
            b = k // (length * n_out)
            t = (k // n_out) % length
            if ids[b, t] < 0:
                put(a, b, t, k % n_out, 0)
            k += cuda.gridsize(1)

    return forward, input_grad, kernel_grad, zero_padding


def _launch(n: int):
    threads = 128
    return max(1, min(-(-n // threads), 4096)), threads


def forward_packed(x, ids, kernel, bias, dilation, out, channels_last: bool, stream=0):
    """``out`` of the packed forward (device arrays in the layout ``channels_last`` says)."""
    if out.size:
        blocks, threads = _launch(out.size)
        _kernels(channels_last)[0][blocks, threads, stream](x, ids, kernel, bias, dilation, out)


def input_grad_packed(grad, ids, kernel, dilation, grad_in, channels_last: bool, stream=0):
    """``grad_in`` of the packed convolution for the output gradient ``grad``."""
    if grad_in.size:
        blocks, threads = _launch(grad_in.size)
        _kernels(channels_last)[1][blocks, threads, stream](grad, ids, kernel, dilation, grad_in)


def kernel_grad_packed(grad, x, ids, dilation, part_kernel, part_bias, channels_last: bool, stream=0):
    """Kernel and bias gradient partials, one per batch row (``(B, K, C, m)`` and ``(B, C*m)``)."""
    n = part_kernel.size + part_bias.size
    if n:
        blocks, threads = _launch(n)
        _kernels(channels_last)[2][blocks, threads, stream](grad, x, ids, dilation, part_kernel, part_bias)


def zero_padding(array, ids, channels_last: bool, stream=0) -> None:
    """Zero ``array`` (outputs or their gradient) at the positions whose id is negative."""
    if array.size:
        blocks, threads = _launch(array.size)
        _kernels(channels_last)[3][blocks, threads, stream](array, ids)
