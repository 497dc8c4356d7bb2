"""Depth multipliers in channels_last as ``m = 1`` problems: repeat each input channel ``m`` times.

A channels_last depthwise convolution with multiplier ``m`` over ``C`` channels equals the
``m = 1`` convolution over ``C*m`` channels of the input with every channel repeated ``m``
times (output channel ``c*m + j`` reads input channel ``c``), with the kernel reshaped from
``(..., C, m)`` to ``(..., C*m, 1)``.  The input gradient is then the ``m = 1`` input gradient
with each group of ``m`` channels summed, and the kernel gradient is the ``m = 1`` one over the
repeated input.  The ``m = 1`` kernels keep the contiguous channel axis innermost and
vectorise; loops over ``m`` inside them did not (measured on B8 L8192 C256 K5 m2, 1D: 8 % of
the copy roofline against 19 % this way; 2D B8 56x56 C256 3x3: 4 %), and they compile no
extra code per multiplier.  The price is one extra pass over ``m`` times the input.
"""

from __future__ import annotations

from .. import _memory
from .._jit import launch, parallel_kernel, task_share


@parallel_kernel
def _repeat_channels(part, parts, x, mult, out):
    """``out[r, c*mult + j] = x[r, c]`` for every row ``r`` of ``x`` (R, C) and ``out`` (R, C*mult)."""
    rows, channels = x.shape
    tasks_lo, tasks_hi = task_share(rows, part, parts)
    for r in range(tasks_lo, tasks_hi):
        for c in range(channels):
            value = x[r, c]
            for j in range(mult):
                out[r, c * mult + j] = value


@parallel_kernel
def _sum_channel_groups(part, parts, x, mult, out):
    """``out[r, c] = x[r, c*mult] + ... + x[r, c*mult + mult-1]`` (in that order), ``x`` (R, C*mult), ``out`` (R, C)."""
    rows, channels = out.shape
    tasks_lo, tasks_hi = task_share(rows, part, parts)
    for r in range(tasks_lo, tasks_hi):
        for c in range(channels):
            total = x[r, c * mult]
            for j in range(1, mult):
                total += x[r, c * mult + j]
            out[r, c] = total


def single_multiplier(problem):
    """The ``m = 1`` problem over ``C*m`` channels that ``problem`` (channels_last) equals on repeated inputs."""
    return problem._replace(channels=problem.channels * problem.multiplier, multiplier=1)


def repeat_channels(inputs, mult: int):
    """channels_last ``inputs`` (..., C) with each channel repeated ``mult`` times: (..., C*mult), a new array."""
    channels = inputs.shape[-1]
    repeated = _memory.empty(inputs.shape[:-1] + (channels * mult,), inputs.dtype)
    launch(_repeat_channels, inputs.reshape(-1, channels), mult, repeated.reshape(-1, channels * mult))
    return repeated


def sum_channel_groups(grad_repeated, mult: int):
    """(..., C*mult) -> (..., C): each group of ``mult`` consecutive channels summed (the repeat's transpose)."""
    channels = grad_repeated.shape[-1] // mult
    out = _memory.empty(grad_repeated.shape[:-1] + (channels,), grad_repeated.dtype)
    launch(_sum_channel_groups, grad_repeated.reshape(-1, channels * mult), mult, out.reshape(-1, channels))
    return out
