"""Host functions of the multi-threaded CPU 1D depthwise convolution.

Three operations, each with a native loop order per layout (no transposed copies,
no im2col, no padded copy of the input):

* forward: ``y[t, c*m+j] = bias[c*m+j] + sum_i x[t*s + i*d - pad_left, c] * w[i, c, j]``
* input gradient: the transpose of the forward map, computed as a *gather* over
  input positions (or input tiles), so threads never write the same element.
* kernel and bias gradients: per-task partial sums followed by a fixed-order
  reduction (:func:`numba_dwconv.cpu.partials.sum_partials`), so results are bit-identical run to run and
  independent of the number of threads.

The kernels trust their callers (:mod:`numba_dwconv.ops` validates everything and
passes C-contiguous arrays of one float dtype).  The kernels live in
:mod:`numba_dwconv.cpu.conv1d_last` and :mod:`numba_dwconv.cpu.conv1d_first`; their
tunables (rows per task, tile length) are arguments chosen here.
"""

from __future__ import annotations

import numpy as np

from .. import _memory
from .._jit import launch, scratch
from . import conv1d_long, conv1d_pairs
from .conv1d_first import forward_first, input_grad_first, kernel_grad_first, stride_spec
from .conv1d_last import forward_last, input_grad_last, kernel_grad_last
from .conv1d_short import SHORT_TAPS
from .fused import activation as _activation
from .nontemporal import stream_args
from .partials import sum_partials

# Output rows handled by one parallel task (channels_last).
ROWS_PER_TASK = 64

# Positions per channels_first tile (an output tile plus its input window stay
# in L1/L2 across the taps); measured on Zen 5: 2048-8192 within noise for
# K <= 7, 4096 best at K = 31 (256: 17%, 2048: 31%, 4096: 32% of the roofline).
TILE_LENGTH = 4096
# Bytes of x rows plus grad_out rows of one kernel-gradient sub-chunk (L1-sized).
SUB_CHUNK_BYTES = 64 * 1024
# Upper bound on partial sums for the channels_last kernel gradient.  The
# partition depends on the problem shape only, never on the thread count.
MAX_PARTIALS = 64


# --------------------------------------------------------------------------
# Host functions: allocate outputs, choose the layout's kernel and its tunables
# --------------------------------------------------------------------------
def _zero_bias(problem):
    return np.zeros(problem.channels * problem.multiplier, dtype=problem.dtype)


def _window_rows(axis, outputs: int) -> int:
    """Input rows that ``outputs`` consecutive output rows read."""
    return (outputs - 1) * axis.stride + (axis.kernel_size - 1) * axis.dilation + 1


def _rows_buffer(problem, rows):
    """Per-part rows of C*m channels for the channels_last kernels with m > 1; None when m == 1.

    None is a type of its own to numba: the kernels' buffer branches are pruned while they compile,
    so m = 1 calls compile without them (and m > 1 calls compile a kernel of their own).
    """
    if problem.multiplier == 1:
        return None
    width = problem.channels * problem.multiplier
    return scratch(rows * width, problem.dtype).reshape(-1, rows, width)


def conv1d_forward(problem, inputs, kernel, bias, activation=None, grad_outputs=None):
    """Forward pass on C-contiguous NumPy arrays of ``problem.dtype``.

    Parameters
    ----------
    problem : numba_dwconv._geometry.Conv1DProblem
    inputs : ndarray, shape ``problem.input_shape``
    kernel : ndarray, shape (K, C, m)
    bias : ndarray, shape (C*m,), or None
    activation : str, optional
        A name of :data:`numba_dwconv.cpu.fused.NAMES`, applied in the kernels.
    grad_outputs : ndarray, shape ``problem.output_shape``, optional
        With an activation: return ``grad_outputs * activation'(conv + bias)`` instead (the backward
        pass's gradient at the pre-activation).

    Returns
    -------
    ndarray, shape ``problem.output_shape``
    """
    axis = problem.axis
    out = _memory.empty(problem.output_shape, problem.dtype)
    bias = _zero_bias(problem) if bias is None else bias
    act = _activation(activation, problem.dtype, grad_outputs is not None)
    grad = out if grad_outputs is None else grad_outputs
    if conv1d_long.fits(problem, grad_outputs is not None):
        conv1d_long.forward(problem, inputs, kernel, bias, out, act, grad)
    elif conv1d_pairs.fits(problem, act):
        conv1d_pairs.forward(problem, inputs, kernel, bias, out)
    elif problem.channels_last:
        kernel2d = _memory.aligned(kernel).reshape(axis.kernel_size, -1)  # (vectors of taps on cache lines)
        launch(forward_last, inputs, kernel2d, bias, axis.stride, axis.dilation, axis.pad_left, ROWS_PER_TASK, out,
               act, grad, _rows_buffer(problem, _window_rows(axis, ROWS_PER_TASK)),
               *stream_args(out, ROWS_PER_TASK * out.shape[-1], axis.kernel_size))
    else:
        short = axis.stride == 1 and axis.kernel_size <= SHORT_TAPS  # (see forward_first: the other path pruned)
        launch(forward_first, inputs, kernel, bias, stride_spec(axis.stride), axis.dilation, axis.pad_left,
               TILE_LENGTH, out, act, grad, *stream_args(out, out.shape[-1], axis.kernel_size), 1 if short else None,
               None if short else 1)
    return out


def conv1d_input_grad(problem, grad_outputs, kernel):
    """Gradient of ``sum(outputs * grad_outputs)`` with respect to the inputs.

    Returns
    -------
    ndarray, shape ``problem.input_shape``
    """
    axis = problem.axis
    flipped = conv1d_long.transposed(problem)
    if flipped is not None and np.isfinite(kernel).all():  # long kernels: a forward with the taps reversed
        grad_in = _memory.empty(problem.input_shape, problem.dtype)
        conv1d_long.input_grad(flipped, grad_outputs, kernel, grad_in)
        return grad_in
    if problem.channels_last:
        # the gradient of the channel-repeated inputs (C*m channels), each group of m summed per task
        kernel2d = kernel.reshape(axis.kernel_size, -1)
        zeros = np.zeros(kernel2d.shape[1], dtype=problem.dtype)
        grad_in = _memory.empty(problem.input_shape, problem.dtype)
        rows_buf = _rows_buffer(problem, ROWS_PER_TASK)
        stream = stream_args(grad_in, ROWS_PER_TASK * grad_in.shape[-1], axis.kernel_size, rows_buf is None)
        launch(input_grad_last, grad_outputs, kernel2d, zeros, axis.stride, axis.dilation, axis.pad_left,
               ROWS_PER_TASK, grad_in, rows_buf, *stream)
        return grad_in
    grad_in = _memory.empty(problem.input_shape, problem.dtype)
    phase_buf = scratch(axis.stride * (-(-axis.length // axis.stride) + 1), problem.dtype) if axis.stride > 1 else None
    short = axis.stride == 1 and axis.kernel_size <= SHORT_TAPS and problem.multiplier == 1
    launch(input_grad_first, grad_outputs, kernel, stride_spec(axis.stride), axis.dilation, axis.pad_left,
           TILE_LENGTH, grad_in, phase_buf, *stream_args(grad_in, grad_in.shape[-1], axis.kernel_size),
           np.zeros(1, problem.dtype) if short else None, None if short else 1)
    return grad_in


def conv1d_kernel_grad(problem, grad_outputs, inputs):
    """Gradients of ``sum(outputs * grad_outputs)`` with respect to the kernel and the bias.

    Returns
    -------
    grad_kernel : ndarray, shape (K, C, m)
    grad_bias : ndarray, shape (C*m,)
    """
    axis = problem.axis
    out_channels = problem.channels * problem.multiplier
    if conv1d_long.kernel_grad_fits(problem):
        part_kernel, part_bias = conv1d_long.kernel_grad(problem, grad_outputs, inputs, MAX_PARTIALS)
    elif problem.channels_last:
        # Each part covers rows_per_part output rows of one batch entry.
        parts_per_batch = min(max(1, MAX_PARTIALS // max(problem.batch, 1)), -(-axis.out_length // ROWS_PER_TASK))
        rows_per_part = -(-axis.out_length // parts_per_batch)
        n_parts = problem.batch * -(-axis.out_length // rows_per_part)
        part_kernel = np.empty((n_parts, axis.kernel_size, out_channels), dtype=problem.dtype)
        part_bias = np.empty((n_parts, out_channels), dtype=problem.dtype)
        row_bytes = 2 * out_channels * problem.dtype.itemsize  # an input row (repeated) and a gradient row
        rows_per_sub = max(4, SUB_CHUNK_BYTES // row_bytes // 4 * 4)
        launch(kernel_grad_last, grad_outputs, inputs, axis.stride, axis.dilation, axis.pad_left, rows_per_part,
               rows_per_sub, part_kernel, part_bias, _rows_buffer(problem, _window_rows(axis, rows_per_sub)))
    else:
        part_kernel = np.empty((problem.batch,) + problem.kernel_shape, dtype=problem.dtype)
        part_bias = np.empty((problem.batch, out_channels), dtype=problem.dtype)
        launch(kernel_grad_first, grad_outputs, inputs, stride_spec(axis.stride), axis.dilation, axis.pad_left,
               part_kernel, part_bias)
    grad_kernel = np.empty(problem.kernel_shape, dtype=problem.dtype)
    grad_bias = np.empty(out_channels, dtype=problem.dtype)
    launch(sum_partials, part_kernel.reshape(-1), part_kernel.shape[0], grad_kernel.reshape(-1))
    launch(sum_partials, part_bias.reshape(-1), part_bias.shape[0], grad_bias)
    return grad_kernel, grad_bias
