"""Huge strides and dilations, kernels larger than the input, many taps, and Keras' padding rule for inf/NaN.

Every result is compared with :mod:`numba_dwconv.reference`, which pads with real
zeros (so ``0 * inf`` is NaN there) and gathers its windows with Python integers
(so no value overflows).
"""

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import reference as ref

LAYOUTS = ["channels_last", "channels_first"]
BIG = 2**62

# (length, K, stride, dilation, padding): large values reduce to small integers (see _geometry.reduce_axis)
AXES = [
    (4, 3, 10**9, 1, "same"),  # one output: the stride is irrelevant
    (4, 3, 1, 10**9, "same"),  # only the middle tap reads inputs
    (4, 3, 1, BIG, "same"),
    (6, 3, 2, 2**63 + 5, "same"),  # beyond int64
    (10, 3, 1000, 6, "same"),  # the live tap starts inside the input (the reduced input is cropped)
    (5, 4, 1, 100, "same"),  # no tap ever reads an input
    (3, 2, 1, 70, "causal"),  # only the last tap reads inputs
    (200, 3, 1, 80, "same"),  # every tap live: padding made explicit
    (5, 4, 1, 3, "same"),  # kernel wider than the input (small values: the kernels' own geometry)
    (3, 3, BIG, BIG, "causal"),
    (7, 2, BIG, 3, "valid"),
]


def _close(got, want, rtol=1e-10, atol=1e-10):
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol, equal_nan=True)


def _data(rng, batch, spatial, channels, layout):
    shape = (batch, *spatial, channels) if layout == "channels_last" else (batch, channels, *spatial)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", AXES)
def test_conv1d_extreme_geometry(axis, layout):
    length, ksize, stride, dilation, padding = axis
    rng = np.random.default_rng(length * 7 + ksize)
    x = _data(rng, 2, (length,), 3, layout)
    kernel = rng.standard_normal((ksize, 3, 2))
    bias = rng.standard_normal(6)
    options = dict(strides=stride, padding=padding, data_format=layout, dilation_rate=dilation)
    for _ in range(2):  # the same answer every time (no kernel compiled for another integer type)
        y = nd.depthwise_conv1d(x, kernel, bias, **options)
        _close(y, ref.conv1d_forward(x, kernel, bias, stride, padding, layout, dilation))
    grad_y = rng.standard_normal(y.shape)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, **options)
    for got, want in zip(grads, ref.conv1d_gradients(grad_y, x, kernel, stride, padding, layout, dilation)):
        _close(got, want)
    _close(nd.depthwise_conv1d_input_grad(grad_y, kernel, length, **options), grads.grad_inputs)
    _close(nd.depthwise_conv1d_kernel_grad(grad_y, x, ksize, **options)[0], grads.grad_kernel)


@pytest.mark.parametrize("layout", LAYOUTS)
# (each pair compiles its own 2D kernels: three pairs cover cropping, dead taps, int64 overflow and valid;
# the other axes run in 1D above)
@pytest.mark.parametrize("rows, cols", [(AXES[3], AXES[4]), (AXES[5], AXES[6]), (AXES[10], AXES[9])])
def test_conv2d_extreme_geometry(rows, cols, layout):
    padding = "valid" if rows[4] == cols[4] == "valid" else "same"  # no causal in 2D
    rng = np.random.default_rng(rows[0] * 31 + cols[0])
    x = _data(rng, 2, (rows[0], cols[0]), 2, layout)
    kernel = rng.standard_normal((rows[1], cols[1], 2, 2))
    bias = rng.standard_normal(4)
    strides, dilation = (rows[2], cols[2]), (rows[3], cols[3])
    options = dict(strides=strides, padding=padding, data_format=layout, dilation_rate=dilation)
    y = nd.depthwise_conv2d(x, kernel, bias, **options)
    _close(y, ref.conv2d_forward(x, kernel, bias, strides, padding, layout, dilation))
    grad_y = rng.standard_normal(y.shape)
    grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, **options)
    for got, want in zip(grads, ref.conv2d_gradients(grad_y, x, kernel, strides, padding, layout, dilation)):
        _close(got, want)


def test_valid_padding_with_huge_dilation_is_a_value_error():
    x = np.ones((1, 8, 2))
    for dilation in (2**40, 2**62, 2**70):
        with pytest.raises(ValueError, match="output size"):
            nd.depthwise_conv1d(x, np.ones((3, 2, 1)), dilation_rate=dilation)


def test_channels_first_scratch_does_not_grow_with_stride():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    kernel = np.ones((3, 3, 1, 1))
    y = nd.depthwise_conv2d(x, kernel, strides=10**9, padding="same", data_format="channels_first")
    _close(y, ref.conv2d_forward(x, kernel, None, 10**9, "same", "channels_first", 1))
    y = nd.depthwise_conv2d(x, kernel, dilation_rate=10**9, padding="same", data_format="channels_first")
    _close(y, ref.conv2d_forward(x, kernel, None, 1, "same", "channels_first", 10**9))


# ---------------------------------------------------------------------------- many taps
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ksize, strides, mult", [((31, 31), 1, 1), ((1, 101), (1, 2), 1), ((101, 1), 2, 1),
                                                  ((3, 3), 1, 120), ((7, 7), 2, 2)])
def test_conv2d_many_taps(ksize, strides, mult, layout):
    rng = np.random.default_rng(sum(ksize))
    spatial = (max(ksize[0] // 3, 5), max(ksize[1] + 9, 9))
    x = _data(rng, 1, spatial, 2, layout)
    kernel = rng.standard_normal((*ksize, 2, mult))
    options = dict(strides=strides, padding="same", data_format=layout)
    y = nd.depthwise_conv2d(x, kernel, **options)
    _close(y, ref.conv2d_forward(x, kernel, None, strides, "same", layout, 1))
    grad_y = rng.standard_normal(y.shape)
    grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, **options)
    for got, want in zip(grads, ref.conv2d_gradients(grad_y, x, kernel, strides, "same", layout, 1)):
        _close(got, want)


def test_conv1d_many_taps_and_multiplier():
    rng = np.random.default_rng(5)
    for layout in LAYOUTS:
        x = _data(rng, 1, (150,), 2, layout)
        kernel = rng.standard_normal((129, 2, 101))
        y = nd.depthwise_conv1d(x, kernel, padding="same", data_format=layout)
        _close(y, ref.conv1d_forward(x, kernel, None, 1, "same", layout, 1))


# ---------------------------------------------------------------------------- padding rule
@pytest.fixture
def nan_products():
    """The reference multiplies padding zeros by inf on purpose (NumPy would warn)."""
    with np.errstate(invalid="ignore"):
        yield


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_nonfinite_weight_on_padding_gives_nan_1d(bad, layout, nan_products):
    rng = np.random.default_rng(3)
    x = _data(rng, 2, (9,), 3, layout)
    for padding, stride, dilation in [("same", 1, 1), ("causal", 2, 2), ("valid", 1, 1), ("same", 1, 10**9)]:
        kernel = rng.standard_normal((3, 3, 2))
        kernel[0, 1, 1] = bad
        kernel[2, 0, 0] = bad
        options = dict(strides=stride, padding=padding, data_format=layout, dilation_rate=dilation)
        y = nd.depthwise_conv1d(x, kernel, **options)
        _close(y, ref.conv1d_forward(x, kernel, None, stride, padding, layout, dilation))
        grad_y = rng.standard_normal(y.shape)
        for got, want in zip(nd.depthwise_conv1d_backward(grad_y, x, kernel, **options),
                             ref.conv1d_gradients(grad_y, x, kernel, stride, padding, layout, dilation)):
            _close(got, want)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_nonfinite_weight_on_padding_gives_nan_2d(layout, nan_products):
    rng = np.random.default_rng(4)
    x = _data(rng, 2, (6, 7), 2, layout)
    for strides in [1, 2, (1, 2)]:
        kernel = rng.standard_normal((3, 3, 2, 2))
        kernel[0, 0, 0, 1] = np.inf
        kernel[1, 2, 1, 0] = np.nan
        kernel[2, 1, 1, 1] = -np.inf
        options = dict(strides=strides, padding="same", data_format=layout)
        y = nd.depthwise_conv2d(x, kernel, **options)
        _close(y, ref.conv2d_forward(x, kernel, None, strides, "same", layout, 1))
        grad_y = rng.standard_normal(y.shape)
        for got, want in zip(nd.depthwise_conv2d_backward(grad_y, x, kernel, **options),
                             ref.conv2d_gradients(grad_y, x, kernel, strides, "same", layout, 1)):
            _close(got, want)
        y = nd.separable_conv2d(x, kernel, np.ones((1, 1, 4, 3)), **options)
        _close(y, ref.separable2d_forward(x, kernel, np.ones((1, 1, 4, 3)), None, strides, "same", layout, 1))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_nonfinite_output_gradient_on_padding_gives_nan_kernel_gradient(layout, nan_products):
    rng = np.random.default_rng(6)
    x = _data(rng, 2, (8,), 2, layout)
    kernel = rng.standard_normal((3, 2, 1))
    grad_y = rng.standard_normal(x.shape)
    position = (0, 0, 1) if layout == "channels_last" else (0, 1, 0)  # output 0 of channel 1: taps 0 read padding
    grad_y[position] = np.inf
    got = nd.depthwise_conv1d_backward(grad_y, x, kernel, padding="same", data_format=layout)
    want = ref.conv1d_gradients(grad_y, x, kernel, 1, "same", layout, 1)
    assert np.isnan(want[1][0, 1, 0])
    for g, w in zip(got, want):
        _close(g, w)
    _close(nd.depthwise_conv1d_kernel_grad(grad_y, x, 3, padding="same", data_format=layout)[0], want[1])
    x2 = _data(rng, 2, (8, 8), 2, layout)
    grad_y2 = np.zeros_like(x2)
    grad_y2[(0, 7, 7, 0) if layout == "channels_last" else (0, 0, 7, 7)] = -np.inf
    kernel2 = rng.standard_normal((3, 3, 2, 1))
    got = nd.depthwise_conv2d_backward(grad_y2, x2, kernel2, padding="same", data_format=layout)
    for g, w in zip(got, ref.conv2d_gradients(grad_y2, x2, kernel2, 1, "same", layout, 1)):
        _close(g, w)
