"""The separable convolution on the GPU path, checked against numba_dwconv.reference (simulator in CI)."""

import itertools
import random

import numpy as np
import pytest
from cases import assert_close, host
from gpu import SIMULATOR, requires_cuda
from test_separable import check_separable, make_separable

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda

GRID = list(itertools.product(["valid", "same", "causal"], [1, 2], [1, 2], [1, 2], ["channels_last", "channels_first"],
                              [np.float32, np.float64]))
if SIMULATOR:  # a fixed random sample (each simulated GPU thread runs as Python)
    GRID = random.Random(1).sample(GRID, 8)


@pytest.mark.parametrize(("padding", "stride", "dilation", "mult", "data_format", "dtype"), GRID)
def test_grid_numpy_in_numpy_out(padding, stride, dilation, mult, data_format, dtype):
    rng = np.random.default_rng(hash((padding, stride, dilation, mult, data_format)) % 2**32)
    case = make_separable(rng, 2, 13, 3, 3, mult, 6, data_format, dtype)
    check_separable(*case, stride, padding, data_format, dilation, dtype, rng, device="cuda")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_device_arrays_stay_on_the_device(data_format):
    rng = np.random.default_rng(11)
    x, depthwise, pointwise, bias = make_separable(rng, 2, 11, 3, 2, 2, 5, data_format, np.float32)
    y = nd.separable_conv1d(cuda.to_device(x), depthwise, pointwise, bias, 1, "same", data_format)
    assert not isinstance(y, np.ndarray)
    assert_close(y, ref.separable_forward(x, depthwise, pointwise, bias, 1, "same", data_format), np.float32)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    grads = nd.separable_conv1d_backward(cuda.to_device(grad_y), cuda.to_device(x), depthwise, pointwise, 1, "same",
                                         data_format)
    want = ref.separable_gradients(grad_y, x, depthwise, pointwise, 1, "same", data_format)
    for got, expected in zip(grads, want):
        assert not isinstance(got, np.ndarray)
        assert_close(got, expected, np.float32)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_float16_and_batch_zero(data_format):
    rng = np.random.default_rng(12)
    x, depthwise, pointwise, bias = make_separable(rng, 2, 9, 2, 3, 1, 3, data_format, np.float16)
    y = nd.separable_conv1d(x, depthwise, pointwise, bias, padding="causal", data_format=data_format, device="cuda")
    assert y.dtype == np.float16
    assert_close(y, ref.separable_forward(x, depthwise, pointwise, bias, 1, "causal", data_format), np.float16)
    empty = x[:0]
    y0 = nd.separable_conv1d(empty, depthwise, pointwise, bias, data_format=data_format, device="cuda")
    assert y0.shape == ((0, 7, 3) if data_format == "channels_last" else (0, 3, 7))
    grads = nd.separable_conv1d_backward(np.zeros(y0.shape, np.float16), empty, depthwise, pointwise,
                                         data_format=data_format, device="cuda")
    for grad, operand in zip(grads, (empty, depthwise, pointwise, bias)):
        np.testing.assert_array_equal(host(grad), np.zeros_like(operand))


def test_gpu_gradients_are_deterministic():
    rng = np.random.default_rng(13)
    x, depthwise, pointwise, _ = make_separable(rng, 3, 30, 3, 3, 1, 4, "channels_last", np.float32)
    grad_y = rng.standard_normal((3, 30, 4)).astype(np.float32)
    first = nd.separable_conv1d_backward(grad_y, x, depthwise, pointwise, padding="same", device="cuda")
    again = nd.separable_conv1d_backward(grad_y, x, depthwise, pointwise, padding="same", device="cuda")
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
