"""The 1D channels_last forward with a depth multiplier of 2: both outputs of a channel from one input load.

The general channels_last path runs a multiplier as the ``m = 1`` problem over ``C*m`` channels of
channel-repeated input rows (:mod:`numba_dwconv.cpu.channels`): each task copies its input window, each
channel twice, into a per-part buffer, computes its rows there and streams them out of a second buffer.
Those two buffers (128 KB each at ``C = 256``) go through L2 for every task, and the forward ran at 57-99 % of
the copy roofline where channels_first, reading the same input and writing the same output, ran at 145-170 %
(B8 L8192 C256 K5).  Here each input vector of ``lanes`` channels is loaded once per tap, repeated into the
two vectors of outputs it feeds (:func:`numba_dwconv._simd.vrepeat2`: two shuffles), and the sums go from
registers to the output, with non-temporal stores when it is large: 8.0-10.7 -> 4.3 ms there (2 threads).

For ``m = 2``, whole vectors of channels, no fused activation (the host checks :func:`fits`); the taps of each
output run in order from the bias, as in the reference.
"""

from __future__ import annotations

from numba import uint64

from .. import _memory
from .._jit import launch, parallel_kernel, task_share
from .._simd import VECTOR_BYTES, lanes_of, vfma, vload, vrepeat2, vstore, vstore_stream
from .conv1d_last import tap_range
from .nontemporal import STREAM_BYTES

ROWS_PER_TASK = 64


def fits(problem, act) -> bool:
    """Whether the channels_last forward of ``problem`` takes this kernel.

    ``act``: the kernels' activation argument (:func:`numba_dwconv.cpu.fused.activation`), ``(0, 0)`` for none.
    """
    return (problem.channels_last and problem.multiplier == 2 and tuple(act) == (0, 0)
            and problem.channels % len(lanes_of(problem.dtype)) == 0)


@parallel_kernel
def _forward_pairs_last(part, parts, x, w, bias, out, batch, length, channels, out_length, stride, dilation, pad_left,
                        ksize, stream, lanes_t):
    """``out[b, t, 2c + j] = bias[2c + j] + sum_k x[b, t*stride + k*dilation - pad_left, c] * w[k, 2c + j]``.

    Flat arrays: ``x`` (B*L*C), ``w`` (K*2C), ``bias`` (2C), ``out`` (B*out_length*2C).  One task per
    ROWS_PER_TASK output rows of a batch entry; ``stream``: non-temporal stores (every row on a line's start).
    """
    lanes = uint64(len(lanes_t))
    n_out = uint64(2 * channels)
    tiles = (out_length + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    tasks_lo, tasks_hi = task_share(batch * tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // tiles
        t_lo = (task - b * tiles) * ROWS_PER_TASK
        for t in range(t_lo, min(t_lo + ROWS_PER_TASK, out_length)):
            first = t * stride - pad_left
            k_lo, k_hi = tap_range(0, ksize, 0, length, first, dilation)  # taps whose row is in the input
            d = uint64(b * out_length + t) * n_out
            for c in range(uint64(0), uint64(channels), lanes):
                a_lo = vload(bias, c + c, lanes_t)
                a_hi = vload(bias, c + c + lanes, lanes_t)
                for k in range(k_lo, k_hi):
                    x_lo, x_hi = vrepeat2(vload(x, uint64(b * length + first + k * dilation) * uint64(channels) + c,
                                                lanes_t))
                    a_lo = vfma(x_lo, vload(w, uint64(k) * n_out + c + c, lanes_t), a_lo)
                    a_hi = vfma(x_hi, vload(w, uint64(k) * n_out + c + c + lanes, lanes_t), a_hi)
                if stream:
                    vstore_stream(out, d + c + c, a_lo)
                    vstore_stream(out, d + c + c + lanes, a_hi)
                else:
                    vstore(out, d + c + c, a_lo)
                    vstore(out, d + c + c + lanes, a_hi)


def forward(problem, inputs, kernel, bias, out):
    """The forward of a problem that :func:`fits` into ``out`` (C-contiguous arrays of ``problem.dtype``)."""
    axis = problem.axis
    stream = (out.nbytes >= STREAM_BYTES and out.ctypes.data % VECTOR_BYTES == 0
              and (out.shape[-1] * out.itemsize) % VECTOR_BYTES == 0)
    launch(_forward_pairs_last, inputs.reshape(-1), _memory.aligned(kernel).reshape(-1), bias, out.reshape(-1),
           problem.batch, axis.length, problem.channels, axis.out_length, axis.stride, axis.dilation, axis.pad_left,
           axis.kernel_size, stream, lanes_of(problem.dtype))
