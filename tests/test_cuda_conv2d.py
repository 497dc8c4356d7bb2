"""2D depthwise and separable convolution on the GPU path, against numba_dwconv.reference (simulator in CI)."""

import itertools
import random

import numpy as np
import pytest
from cases import assert_close, host
from gpu import SIMULATOR, requires_cuda
from test_conv2d import check_all_2d, make_case2d

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda

GRID = list(itertools.product(["valid", "same"], [(1, 1), (2, 1), (2, 2)], [(1, 1), (1, 2)], [1, 2],
                              ["channels_last", "channels_first"], [np.float32, np.float64]))
if SIMULATOR:  # a fixed random sample (each simulated GPU thread runs as Python)
    GRID = random.Random(2).sample(GRID, 6)


@pytest.mark.parametrize(("padding", "stride", "dilation", "mult", "data_format", "dtype"), GRID)
def test_grid_numpy_in_numpy_out(padding, stride, dilation, mult, data_format, dtype):
    rng = np.random.default_rng(hash((padding, stride, dilation, mult, data_format)) % 2**32)
    x, kernel, bias = make_case2d(rng, 2, 6, 5, 2, (3, 2), mult, data_format, dtype)
    check_all_2d(x, kernel, bias, stride, padding, data_format, dilation, dtype, rng, device="cuda")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_device_arrays_float16_and_separable(data_format):
    rng = np.random.default_rng(6)
    x, kernel, bias = make_case2d(rng, 2, 5, 6, 2, (3, 3), 1, data_format, np.float16)
    y = nd.depthwise_conv2d(cuda.to_device(x), kernel, bias, 1, "same", data_format)
    assert not isinstance(y, np.ndarray) and y.dtype == np.float16
    assert_close(y, ref.conv2d_forward(x, kernel, bias, 1, "same", data_format), np.float16)
    x64 = x.astype(np.float64)
    pointwise = rng.standard_normal((1, 1, 2, 3))
    y = nd.separable_conv2d(x64, kernel.astype(np.float64), pointwise, None, 2, "same", data_format, device="cuda")
    assert_close(y, ref.separable2d_forward(x64, kernel, pointwise, None, 2, "same", data_format), np.float64)
    grads = nd.separable_conv2d_backward(np.ones_like(y), x64, kernel.astype(np.float64), pointwise, 2, "same",
                                         data_format, device="cuda")
    want = ref.separable2d_gradients(np.ones_like(y), x64, kernel, pointwise, 2, "same", data_format)
    for got, expected in zip(grads, want):
        assert_close(host(got), expected, np.float64)


def test_layer_on_the_gpu():
    layer = nd.DepthwiseConv2D(3, padding="same", activation="relu", dtype="float64", device="cuda")
    x = np.random.default_rng(7).standard_normal((2, 5, 5, 2))
    y = layer(x)
    np.testing.assert_allclose(y, np.maximum(ref.conv2d_forward(x, layer.kernel, layer.bias, 1, "same"), 0),
                               rtol=1e-12, atol=1e-12)
    grad_x = layer.backward(np.ones_like(y))
    assert grad_x.shape == x.shape and [g.shape for g in layer.gradients] == [(3, 3, 2, 1), (2,)]
