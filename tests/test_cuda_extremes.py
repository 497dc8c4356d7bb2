"""The GPU path with huge strides/dilations, many taps and Keras' padding rule, against the reference."""

import numpy as np
import pytest
from cases import host
from gpu import requires_cuda

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda

LAYOUTS = ["channels_last", "channels_first"]


def _close(got, want):
    np.testing.assert_allclose(host(got), want, rtol=1e-10, atol=1e-10, equal_nan=True)


def _data(rng, spatial, channels, layout):
    shape = (2, *spatial, channels) if layout == "channels_last" else (2, channels, *spatial)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("length, ksize, stride, dilation, padding", [
    (4, 3, 10**9, 1, "same"), (6, 3, 2, 2**63 + 5, "same"), (10, 3, 1000, 6, "same"), (3, 2, 1, 70, "causal")])
def test_extreme_geometry_1d_device_arrays(length, ksize, stride, dilation, padding, layout):
    rng = np.random.default_rng(length + ksize)
    x = _data(rng, (length,), 2, layout)
    kernel = rng.standard_normal((ksize, 2, 2))
    options = dict(strides=stride, padding=padding, data_format=layout, dilation_rate=dilation)
    y = nd.depthwise_conv1d(cuda.to_device(x), cuda.to_device(kernel), **options)
    assert not isinstance(y, np.ndarray)
    _close(y, ref.conv1d_forward(x, kernel, None, stride, padding, layout, dilation))
    grad_y = rng.standard_normal(y.shape)
    grads = nd.depthwise_conv1d_backward(cuda.to_device(grad_y), cuda.to_device(x), kernel, **options)
    for got, want in zip(grads, ref.conv1d_gradients(grad_y, x, kernel, stride, padding, layout, dilation)):
        assert not isinstance(got, np.ndarray)
        _close(got, want)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_extreme_geometry_2d_and_many_taps(layout):
    rng = np.random.default_rng(1)
    x = _data(rng, (4, 5), 2, layout)
    kernel = rng.standard_normal((3, 3, 2, 1))
    options = dict(strides=(10**12, 1), dilation_rate=(1, 2**62), padding="same", data_format=layout)
    y = nd.depthwise_conv2d(x, kernel, device="cuda", **options)
    _close(y, ref.conv2d_forward(x, kernel, None, (10**12, 1), "same", layout, (1, 2**62)))
    x = _data(rng, (3, 40), 1, layout)
    kernel = rng.standard_normal((1, 101, 1, 1))
    y = nd.depthwise_conv2d(x, kernel, padding="same", data_format=layout, device="cuda")
    _close(y, ref.conv2d_forward(x, kernel, None, 1, "same", layout))
    grad_y = rng.standard_normal(y.shape)
    grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, padding="same", data_format=layout, device="cuda")
    for got, want in zip(grads, ref.conv2d_gradients(grad_y, x, kernel, 1, "same", layout)):
        _close(got, want)


# (the simulator runs kernels in other threads, where np.errstate does not reach: 0 * inf warns there)
@pytest.mark.filterwarnings("ignore:.*invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_padding_rule_on_the_gpu(layout):
    rng = np.random.default_rng(2)
    with np.errstate(invalid="ignore"):
        x = _data(rng, (7,), 2, layout)
        kernel = rng.standard_normal((3, 2, 1))
        kernel[0, 1, 0] = np.inf
        y = nd.depthwise_conv1d(cuda.to_device(x), cuda.to_device(kernel), padding="same", data_format=layout)
        _close(y, ref.conv1d_forward(x, kernel, None, 1, "same", layout))
        grad_y = rng.standard_normal(x.shape)
        grad_y[(0, 0, 1) if layout == "channels_last" else (0, 1, 0)] = np.inf
        finite = np.ones_like(kernel)
        grads = nd.depthwise_conv1d_backward(grad_y, x, finite, padding="same", data_format=layout, device="cuda")
        for got, want in zip(grads, ref.conv1d_gradients(grad_y, x, finite, 1, "same", layout)):
            _close(got, want)
        x2 = _data(rng, (4, 5), 2, layout)
        kernel2 = rng.standard_normal((3, 3, 2, 2))
        kernel2[2, 2, 0, 1] = -np.inf
        y2 = nd.depthwise_conv2d(x2, kernel2, padding="same", data_format=layout, device="cuda")
        _close(y2, ref.conv2d_forward(x2, kernel2, None, 1, "same", layout))
