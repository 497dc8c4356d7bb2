"""The separable ops on dask arrays: depthwise blocks (:mod:`numba_dwconv._dask`), then the pointwise step.

The pointwise step mixes channels, so it is a dask ``tensordot`` over the channel axis (summing
across channel blocks); its gradients too.  The activation runs block by block.
"""

from __future__ import annotations

import numpy as np

from . import _geometry as geo
from ._dask import _as_dask, _small, forward
from ._dask_grads import backward


def _pointwise(rank, depth_channels, pointwise_kernel):
    kernel = _small(pointwise_kernel)
    filters = geo.pointwise_filters(kernel.shape, depth_channels, rank)
    return kernel.reshape(depth_channels, filters), filters


def _channel_dot(array, matrix, channels_last: bool):
    """``array`` with its channel axis multiplied by ``matrix`` (channels in, channels out)."""
    import dask.array as da

    axis = array.ndim - 1 if channels_last else 1
    out = da.tensordot(array, matrix, axes=([axis], [0]))
    return out if channels_last else da.moveaxis(out, -1, 1)


def _along_channels(vector, ndim: int, channels_last: bool):
    """``vector`` shaped to broadcast along the channel axis."""
    return vector if channels_last else vector.reshape((-1,) + (1,) * (ndim - 2))


def separable_forward(rank: int, inputs, depthwise_kernel, pointwise_kernel, bias, strides, padding, data_format,
                      dilation_rate, device, activation):
    """The separable op on a dask ``inputs``: depthwise blocks, then the pointwise step as a dask tensordot."""
    from . import activations

    depthwise_kernel = _small(depthwise_kernel)
    depthwise = forward(rank, inputs, depthwise_kernel, None, strides, padding, data_format, dilation_rate, device,
                        None)
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    pointwise, filters = _pointwise(rank, depthwise_kernel.shape[rank] * depthwise_kernel.shape[rank + 1],
                                    pointwise_kernel)
    out = _channel_dot(depthwise, pointwise.astype(depthwise.dtype), channels_last)
    if bias is not None:
        bias = _small(bias)
        geo.check_shape("bias", bias.shape, (filters,))
        out = out + _along_channels(bias, out.ndim, channels_last)
    dtype = np.result_type(out.dtype, pointwise.dtype, *(() if bias is None else (bias.dtype,)))
    if activation is not None:
        act = activations.get(activation)
        out = out.map_blocks(lambda block: np.asarray(act(block), dtype=dtype), dtype=dtype)
    return out.astype(dtype)


def separable_backward(rank: int, grad_outputs, inputs, depthwise_kernel, pointwise_kernel, strides, padding,
                       data_format, dilation_rate, device, bias, activation):
    """``(grad_inputs, grad_depthwise, grad_pointwise, grad_bias)`` as dask arrays."""
    from . import activations

    inputs, grad_outputs = _as_dask(inputs), _as_dask(grad_outputs)
    depthwise_kernel = _small(depthwise_kernel)
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    depth_channels = depthwise_kernel.shape[rank] * depthwise_kernel.shape[rank + 1]
    pointwise, filters = _pointwise(rank, depth_channels, pointwise_kernel)
    depthwise = forward(rank, inputs, depthwise_kernel, None, strides, padding, data_format, dilation_rate, device,
                        None)
    expected = (*depthwise.shape[:-1], filters) if channels_last else (depthwise.shape[0], filters,
                                                                        *depthwise.shape[2:])
    geo.check_shape("grad_outputs", grad_outputs.shape, expected)
    dtype = np.result_type(grad_outputs.dtype, depthwise.dtype, pointwise.dtype)
    pointwise = pointwise.astype(dtype)
    grad = grad_outputs.astype(dtype)
    if activation is not None:  # the gradient at the pre-activation (pointwise output + bias), recomputed
        derivative = activations.derivative_of(activations.get(activation))
        pre = _channel_dot(depthwise, pointwise, channels_last)
        if bias is not None:
            pre = pre + _along_channels(_small(bias).astype(dtype), pre.ndim, channels_last)
        grad = grad * pre.map_blocks(lambda block: np.asarray(derivative(block), dtype=dtype), dtype=dtype)
    channel_axis = grad.ndim - 1 if channels_last else 1
    others = [a for a in range(grad.ndim) if a != channel_axis]
    import dask.array as da

    grad_pointwise = da.tensordot(depthwise.astype(dtype), grad, axes=(others, others))
    grad_bias = grad.sum(axis=tuple(others))
    grad_depthwise_out = _channel_dot(grad, pointwise.T, channels_last)
    grad_inputs, grad_depthwise, _ = backward(rank, grad_depthwise_out, inputs, depthwise_kernel, strides, padding,
                                              data_format, dilation_rate, device, None, None)
    return grad_inputs, grad_depthwise, grad_pointwise.reshape((1,) * rank + (depth_channels, filters)), grad_bias
