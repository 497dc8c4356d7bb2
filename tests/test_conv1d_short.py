"""The channels_first forward of short kernels (unit stride, K <= 8: cpu/conv1d_short.short_row)."""

import numpy as np
import pytest
from cases import assert_close

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv.cpu import conv1d_short


@pytest.mark.parametrize("length", [5, 16, 17, 40])
@pytest.mark.parametrize("ksize, dilation, padding, mult", [
    (1, 1, "valid", 1), (3, 1, "same", 1), (4, 2, "causal", 2), (8, 1, "same", 1), (5, 3, "same", 1),
    (3, 2, "valid", 2), (7, 1, "causal", 3),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_kernels_match_the_reference(length, ksize, dilation, padding, mult, dtype):
    assert ksize <= conv1d_short.SHORT_TAPS
    rng = np.random.default_rng(length * 10 + ksize)
    x = rng.standard_normal((2, 3, length)).astype(dtype)
    kernel = rng.standard_normal((ksize, 3, mult)).astype(dtype)
    bias = rng.standard_normal(3 * mult).astype(dtype)
    got = nd.depthwise_conv1d(x, kernel, bias, 1, padding, "channels_first", dilation)
    assert_close(got, ref.conv1d_forward(x, kernel, bias, 1, padding, "channels_first", dilation), dtype)


def test_results_do_not_depend_on_where_the_vectors_fall():
    """The same rows at every offset from a line's start (the vectors and the one-by-one positions move): same bits."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 45)).astype(np.float32)
    kernel = rng.standard_normal((5, 4, 1)).astype(np.float32)
    want = nd.depthwise_conv1d(x, kernel, None, 1, "same", "channels_first")
    for shift in range(1, 16):
        buf = np.empty(x.size + 16, np.float32)
        start = ((-buf.ctypes.data % 64) // 4 + shift) % 16
        moved = buf[start:start + x.size].reshape(x.shape)
        moved[...] = x
        np.testing.assert_array_equal(nd.depthwise_conv1d(moved, kernel, None, 1, "same", "channels_first"), want)


def test_an_inf_weight_gives_the_reference_nans_and_infs():
    """An inf weight: NaN where it meets the zero padding (as the reference and Keras), inf elsewhere."""
    x = np.ones((1, 2, 40), np.float32)
    kernel = np.ones((3, 2, 1), np.float32)
    kernel[0, 0, 0] = np.inf
    y = nd.depthwise_conv1d(x, kernel, None, 1, "same", "channels_first")
    with np.errstate(invalid="ignore"):
        want = ref.conv1d_forward(x, kernel, None, 1, "same", "channels_first", 1)
    np.testing.assert_array_equal(y, want)
    assert np.isnan(y[0, 0, 0]) and np.isinf(y[0, 0, 1:]).all()
