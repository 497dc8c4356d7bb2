"""1D depthwise-separable convolution on the CPU, checked against numba_dwconv.reference."""

import itertools

import numpy as np
import pytest
from cases import assert_close
from hypothesis import given
from hypothesis import strategies as st

import numba_dwconv as nd
from numba_dwconv import reference as ref


def make_separable(rng, batch, length, channels, ksize, mult, filters, data_format, dtype):
    x = rng.standard_normal((batch, length, channels)).astype(dtype)
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    depthwise = rng.standard_normal((ksize, channels, mult)).astype(dtype)
    pointwise = rng.standard_normal((1, channels * mult, filters)).astype(dtype)
    bias = rng.standard_normal(filters).astype(dtype)
    return x, depthwise, pointwise, bias


def check_separable(x, depthwise, pointwise, bias, stride, padding, data_format, dilation, dtype, rng, **kw):
    y = nd.separable_conv1d(x, depthwise, pointwise, bias, stride, padding, data_format, dilation, **kw)
    assert y.dtype == dtype
    assert_close(y, ref.separable_forward(x, depthwise, pointwise, bias, stride, padding, data_format, dilation),
                 dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = ref.separable_gradients(grad_y, x, depthwise, pointwise, stride, padding, data_format, dilation)
    grads = nd.separable_conv1d_backward(grad_y, x, depthwise, pointwise, stride, padding, data_format, dilation,
                                         **kw)
    assert isinstance(grads, nd.SeparableGrads)
    for got, expected in zip(grads, want):
        assert got.shape == expected.shape
        assert got.dtype == dtype
        assert_close(got, expected, dtype)


GRID = list(itertools.product(["valid", "same", "causal"], [1, 2], [1, 3], [1, 2], ["channels_last", "channels_first"],
                              [np.float32, np.float64]))


@pytest.mark.parametrize(("padding", "stride", "dilation", "mult", "data_format", "dtype"), GRID)
def test_grid_against_reference(padding, stride, dilation, mult, data_format, dtype):
    rng = np.random.default_rng(hash((padding, stride, dilation, mult, data_format)) % 2**32)
    case = make_separable(rng, 2, 19, 3, 3, mult, 5, data_format, dtype)
    check_separable(*case, stride, padding, data_format, dilation, dtype, rng)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_no_bias_and_large_shape(data_format):
    rng = np.random.default_rng(7)
    x, depthwise, pointwise, _ = make_separable(rng, 3, 700, 24, 7, 2, 40, data_format, np.float32)
    check_separable(x, depthwise, pointwise, None, 1, "same", data_format, 1, np.float32, rng)


@given(
    batch=st.integers(0, 3), length=st.integers(1, 30), channels=st.integers(1, 6), ksize=st.integers(1, 5),
    mult=st.integers(1, 3), filters=st.integers(1, 6), stride=st.integers(1, 3), dilation=st.integers(1, 3),
    padding=st.sampled_from(["same", "causal", "valid"]), data_format=st.sampled_from(["channels_last",
                                                                                        "channels_first"]),
    seed=st.integers(0, 2**31),
)
def test_random_shapes(batch, length, channels, ksize, mult, filters, stride, dilation, padding, data_format, seed):
    if padding == "valid" and (ksize - 1) * dilation + 1 > length:
        return
    rng = np.random.default_rng(seed)
    case = make_separable(rng, batch, length, channels, ksize, mult, filters, data_format, np.float64)
    check_separable(*case, stride, padding, data_format, dilation, np.float64, rng)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_gradients_by_finite_differences(data_format):
    rng = np.random.default_rng(3)
    x, depthwise, pointwise, bias = make_separable(rng, 2, 9, 3, 3, 2, 4, data_format, np.float64)
    args = (2, "same", data_format, 2)
    grad_y = rng.standard_normal(nd.separable_conv1d(x, depthwise, pointwise, bias, *args).shape)
    grads = nd.separable_conv1d_backward(grad_y, x, depthwise, pointwise, *args)
    operands = [x, depthwise, pointwise, bias]
    eps = 1e-6
    for index, grad in enumerate(grads):
        direction = rng.standard_normal(operands[index].shape)
        plus = [o.copy() for o in operands]
        minus = [o.copy() for o in operands]
        plus[index] += eps * direction
        minus[index] -= eps * direction
        numeric = (np.sum(nd.separable_conv1d(*plus, *args) * grad_y)
                   - np.sum(nd.separable_conv1d(*minus, *args) * grad_y)) / (2 * eps)
        np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-7, atol=1e-8)


def test_inputs_unchanged_and_promotion():
    rng = np.random.default_rng(1)
    x, depthwise, pointwise, bias = make_separable(rng, 2, 12, 3, 3, 1, 2, "channels_last", np.float32)
    pointwise64 = pointwise.astype(np.float64)
    copies = [a.copy() for a in (x, depthwise, pointwise64, bias)]
    y = nd.separable_conv1d(x, depthwise, pointwise64, bias, padding="causal")
    assert y.dtype == np.float64
    nd.separable_conv1d_backward(np.ones_like(y), x, depthwise, pointwise64, padding="causal")
    for original, copy in zip((x, depthwise, pointwise64, bias), copies):
        np.testing.assert_array_equal(original, copy)


def test_causal_never_reads_the_future():
    rng = np.random.default_rng(2)
    x, depthwise, pointwise, bias = make_separable(rng, 1, 16, 2, 3, 1, 3, "channels_last", np.float64)
    y = nd.separable_conv1d(x, depthwise, pointwise, bias, padding="causal", dilation_rate=2)
    x2 = x.copy()
    x2[:, 9:] = 1e6
    y2 = nd.separable_conv1d(x2, depthwise, pointwise, bias, padding="causal", dilation_rate=2)
    np.testing.assert_array_equal(y[:, :9], y2[:, :9])
    assert not np.allclose(y[:, 9:], y2[:, 9:])


BAD = [
    ({"pointwise_kernel": np.zeros((2, 6, 4))}, ValueError, "pointwise_kernel"),
    ({"pointwise_kernel": np.zeros((1, 5, 4))}, ValueError, "(1, 5, 4)"),
    ({"pointwise_kernel": np.zeros((6, 4))}, ValueError, "pointwise_kernel"),
    ({"pointwise_kernel": np.zeros((1, 6, 4), dtype=np.int64)}, TypeError, "pointwise_kernel"),
    ({"depthwise_kernel": np.zeros((3, 4, 2))}, ValueError, "depthwise_kernel"),
    ({"bias": np.zeros(5)}, ValueError, "bias"),
    ({"padding": "full"}, ValueError, "full"),
    ({"strides": 0}, ValueError, "strides"),
]


@pytest.mark.parametrize(("override", "error", "fragment"), BAD)
def test_bad_arguments(override, error, fragment):
    args = {"inputs": np.zeros((2, 10, 3)), "depthwise_kernel": np.zeros((3, 3, 2)),
            "pointwise_kernel": np.zeros((1, 6, 4)), "bias": np.zeros(4)}
    args.update(override)
    with pytest.raises(error, match=None) as info:
        nd.separable_conv1d(**args)
    assert fragment in str(info.value)


def test_backward_checks_grad_outputs_shape():
    x = np.zeros((2, 10, 3))
    with pytest.raises(ValueError, match="grad_outputs"):
        nd.separable_conv1d_backward(np.zeros((2, 8, 6)), x, np.zeros((3, 3, 2)), np.zeros((1, 6, 4)))
