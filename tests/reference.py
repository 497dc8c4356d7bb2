"""Slow, obviously correct NumPy reference for 1D depthwise convolution.

Written independently of the kernels and of ``numba_dwconv._geometry``: it
computes the padding straight from SEMANTICS.md, pads the input with real zeros,
works in float64 and channels_last, and loops over the kernel taps, each tap
being a strided slice of the padded input.  Gradients are the chain rule of that
same loop.
"""

import math

import numpy as np


def padding_amounts(length, kernel_size, stride, dilation, padding):
    """(pad_left, pad_right, out_length), straight from SEMANTICS.md."""
    extent = (kernel_size - 1) * dilation + 1
    padding = padding.lower()
    if padding == "valid":
        return 0, 0, (length - extent) // stride + 1
    out_length = math.ceil(length / stride)
    if padding == "same":
        total = max((out_length - 1) * stride + extent - length, 0)
        return total // 2, total - total // 2, out_length
    if padding == "causal":
        return extent - 1, 0, out_length
    raise ValueError(padding)


def _channels_last(array, data_format):
    return array if data_format == "channels_last" else np.swapaxes(array, 1, 2)


def _padded(x, pad_left, pad_right):
    batch, length, channels = x.shape
    xpad = np.zeros((batch, pad_left + length + pad_right, channels))
    xpad[:, pad_left : pad_left + length] = x
    return xpad


def _tap_window(i, dilation, stride, out_length):
    """Positions of the padded input read by tap ``i`` for outputs 0..out_length-1."""
    start = i * dilation
    return slice(start, start + (out_length - 1) * stride + 1, stride)


def conv1d_forward(x, kernel, bias=None, stride=1, padding="valid", data_format="channels_last", dilation=1):
    """``y[b, t, c*m + j] = sum_i xpad[b, t*s + i*d, c] * kernel[i, c, j] (+ bias[c*m + j])`` in float64."""
    x = _channels_last(np.asarray(x, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    batch, length, channels = x.shape
    ksize, _, mult = kernel.shape
    pad_left, pad_right, out_length = padding_amounts(length, ksize, stride, dilation, padding)
    xpad = _padded(x, pad_left, pad_right)
    y = np.zeros((batch, out_length, channels, mult))
    for i in range(ksize):
        window = xpad[:, _tap_window(i, dilation, stride, out_length), :]  # (B, L_out, C)
        y += window[:, :, :, None] * kernel[i][None, None, :, :]
    y = y.reshape(batch, out_length, channels * mult)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return _channels_last(y, data_format)


def conv1d_gradients(grad_y, x, kernel, stride=1, padding="valid", data_format="channels_last", dilation=1):
    """``(grad_x, grad_kernel, grad_bias)`` of ``sum(y * grad_y)``, by the chain rule of the loop above."""
    x = _channels_last(np.asarray(x, dtype=np.float64), data_format)
    grad_y = _channels_last(np.asarray(grad_y, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    batch, length, channels = x.shape
    ksize, _, mult = kernel.shape
    pad_left, pad_right, out_length = padding_amounts(length, ksize, stride, dilation, padding)
    xpad = _padded(x, pad_left, pad_right)
    grad_y4 = grad_y.reshape(batch, out_length, channels, mult)
    grad_xpad = np.zeros_like(xpad)
    grad_kernel = np.zeros_like(kernel)
    for i in range(ksize):
        window = _tap_window(i, dilation, stride, out_length)
        grad_xpad[:, window, :] += np.sum(grad_y4 * kernel[i][None, None, :, :], axis=3)
        grad_kernel[i] = np.sum(xpad[:, window, :, None] * grad_y4, axis=(0, 1))
    grad_x = grad_xpad[:, pad_left : pad_left + length]
    grad_bias = grad_y.sum(axis=(0, 1))
    return _channels_last(grad_x, data_format), grad_kernel, grad_bias


def separable_forward(x, depthwise_kernel, pointwise_kernel, bias=None, stride=1, padding="valid",
                      data_format="channels_last", dilation=1):
    """Depthwise (no bias), then ``out[.., f] = sum_k z[.., k] * pointwise[0, k, f]`` by a loop over k, + bias."""
    z = _channels_last(conv1d_forward(x, depthwise_kernel, None, stride, padding, data_format, dilation), data_format)
    pointwise = np.asarray(pointwise_kernel, dtype=np.float64)[0]
    out = np.zeros(z.shape[:2] + (pointwise.shape[1],))
    for k in range(pointwise.shape[0]):
        out += z[:, :, k : k + 1] * pointwise[k][None, None, :]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return _channels_last(out, data_format)


def separable_gradients(grad_y, x, depthwise_kernel, pointwise_kernel, stride=1, padding="valid",
                        data_format="channels_last", dilation=1):
    """``(grad_x, grad_depthwise, grad_pointwise, grad_bias)`` of ``sum(y * grad_y)`` by the chain rule."""
    z = _channels_last(conv1d_forward(x, depthwise_kernel, None, stride, padding, data_format, dilation), data_format)
    grad_y = _channels_last(np.asarray(grad_y, dtype=np.float64), data_format)
    pointwise = np.asarray(pointwise_kernel, dtype=np.float64)[0]
    grad_pointwise = np.zeros_like(pointwise)
    grad_z = np.zeros_like(z)
    for k in range(pointwise.shape[0]):
        grad_pointwise[k] = np.sum(z[:, :, k : k + 1] * grad_y, axis=(0, 1))
        grad_z[:, :, k] = np.sum(grad_y * pointwise[k][None, None, :], axis=2)
    grad_x, grad_depthwise, _ = conv1d_gradients(_channels_last(grad_z, data_format), x, depthwise_kernel, stride,
                                                  padding, data_format, dilation)
    return grad_x, grad_depthwise, grad_pointwise[None], grad_y.sum(axis=(0, 1))
