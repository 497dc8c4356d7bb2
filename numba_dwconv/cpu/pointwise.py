"""The pointwise (1x1) half of a separable convolution on the CPU: BLAS matrix products.

A 1x1 convolution over ``Cm`` channels into ``filters`` channels is a matrix
product, which BLAS (through ``np.matmul``) already runs near the machine's peak,
with its own threads.  channels_last data ``(B, L, Cm)`` is one ``(B*L, Cm)``
matrix; channels_first data ``(B, Cm, L)`` is a stack of ``(Cm, L)`` matrices
multiplied by the same weights (``np.matmul`` broadcasts the weights over the
batch inside C, no Python loop).  Outputs come from the pooled allocator, like
the depthwise kernels'.

Twin of :mod:`numba_dwconv.cuda.pointwise` (same function names and arguments).
"""

from __future__ import annotations

import numpy as np

from .. import _memory


def pointwise_forward(depthwise_out, weights, bias, channels_last: bool):
    """``out = weights^T . depthwise_out (+ bias)`` per position.

    Parameters
    ----------
    depthwise_out : ndarray, shape (B, L, Cm) or (B, Cm, L), C-contiguous
    weights : ndarray, shape (Cm, filters), C-contiguous
    bias : ndarray, shape (filters,), or None
    channels_last : bool

    Returns
    -------
    out : ndarray, shape (B, L, filters) or (B, filters, L)
    """
    batch = depthwise_out.shape[0]
    filters = weights.shape[1]
    if channels_last:
        length = depthwise_out.shape[1]
        out = _memory.empty((batch, length, filters), weights.dtype)
        rows = batch * length
        np.matmul(depthwise_out.reshape(rows, weights.shape[0]), weights, out=out.reshape(rows, filters))
        if bias is not None:
            out += bias
    else:
        length = depthwise_out.shape[2]
        out = _memory.empty((batch, filters, length), weights.dtype)
        np.matmul(weights.T, depthwise_out, out=out)
        if bias is not None:
            out += bias[:, None]
    return out


def pointwise_backward(grad_outputs, depthwise_out, weights, channels_last: bool):
    """Gradients of :func:`pointwise_forward` for an upstream gradient.

    Returns
    -------
    grad_depthwise_out : ndarray, shape of ``depthwise_out``
    grad_weights : ndarray, shape (Cm, filters)
    grad_bias : ndarray, shape (filters,)
    """
    batch, channels = depthwise_out.shape[0], weights.shape[0]
    if channels_last:
        length = depthwise_out.shape[1]
        rows = batch * length
        grad_2d = grad_outputs.reshape(rows, weights.shape[1])
        grad_depthwise_out = _memory.empty((batch, length, channels), weights.dtype)
        np.matmul(grad_2d, weights.T, out=grad_depthwise_out.reshape(rows, channels))
        grad_weights = depthwise_out.reshape(rows, channels).T @ grad_2d
        grad_bias = grad_2d.sum(axis=0)
    else:
        length = depthwise_out.shape[2]
        grad_depthwise_out = _memory.empty((batch, channels, length), weights.dtype)
        np.matmul(weights, grad_outputs, out=grad_depthwise_out)
        # one (Cm, filters) product per batch entry, summed in batch order
        grad_weights = np.matmul(depthwise_out, grad_outputs.transpose(0, 2, 1)).sum(axis=0)
        grad_bias = grad_outputs.sum(axis=(0, 2))
    return grad_depthwise_out, grad_weights, grad_bias
