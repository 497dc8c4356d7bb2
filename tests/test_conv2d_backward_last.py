"""The channels_last backward in one pass (cpu/conv2d_last_grads.py): input and kernel gradient rows in turns."""

import numba
import numpy as np
import pytest
from cases import assert_close
from test_conv2d_wide import _reference_gradients

import numba_dwconv as nd
from numba_dwconv._geometry import ExplicitPadding
from numba_dwconv.cpu import conv2d


@pytest.fixture
def one_pass(monkeypatch):
    """A list that records, per backward call, whether the one-pass kernel ran."""
    taken = []
    original = conv2d._backward_last_one_pass

    def spy(*args):
        grads = original(*args)
        taken.append(grads is not None)
        return grads

    monkeypatch.setattr(conv2d, "_backward_last_one_pass", spy)
    return taken


def _operands(rng, shape, kernel_hw, strides, padding, dilation, dtype, mult=1):
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((*kernel_hw, shape[-1], mult)).astype(dtype)
    y = nd.depthwise_conv2d(x, kernel, None, strides, padding, "channels_last", dilation)
    return x, kernel, rng.standard_normal(y.shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel_hw, padding, dilation", [
    ((3, 3), "same", 1),
    ((3, 3), "valid", 1),                                  # fewer output rows: the last task takes the rest
    ((3, 3), ExplicitPadding([(3, 2), (0, 4)]), 1),     # more output rows than input rows
    ((5, 5), "same", 1),
    ((2, 4), "same", 1),                                   # even sizes: uneven padding
    ((3, 1), "same", (2, 1)),                              # row dilation
    ((5, 3), "valid", (2, 1)),
])
@pytest.mark.parametrize("channels", [16, 20, 48])
def test_the_gradients_against_the_reference(one_pass, dtype, kernel_hw, padding, dilation, channels):
    rng = np.random.default_rng(channels + kernel_hw[0])
    x, kernel, grad_y = _operands(rng, (2, 23, 13, channels), kernel_hw, 1, padding, dilation, dtype)
    got = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, padding, "channels_last", dilation)
    assert one_pass == [True]
    want = _reference_gradients(grad_y, x, kernel, 1, padding, "channels_last", dilation)
    for g, w in zip(got, want):
        assert g.dtype == dtype and g.shape == w.shape
        assert_close(g, w, dtype)


@pytest.mark.parametrize("shape, kernel_hw, padding", [
    ((2, 40, 24, 32), (3, 3), "same"),     # two output rows a task (the sums in registers, row by row)
    ((1, 70, 9, 16), (3, 3), "valid"),
    ((3, 17, 30, 48), (5, 5), "same"),
    ((2, 9, 11, 20), (3, 3), ExplicitPadding([(4, 1), (2, 2)])),
])
def test_the_same_bits_as_each_gradient_alone(one_pass, shape, kernel_hw, padding):
    """Each row computed by the kernels' own row code, in their order: bit for bit what each gives alone."""
    rng = np.random.default_rng(shape[1])
    x, kernel, grad_y = _operands(rng, shape, kernel_hw, 1, padding, 1, np.float32)
    grad_x, grad_k, grad_b = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, padding, "channels_last")
    assert one_pass == [True]
    np.testing.assert_array_equal(grad_x, nd.depthwise_conv2d_input_grad(grad_y, kernel, shape[1:3], 1, padding,
                                                                         "channels_last"))
    alone_k, alone_b = nd.depthwise_conv2d_kernel_grad(grad_y, x, kernel_hw, 1, padding, "channels_last")
    np.testing.assert_array_equal(grad_k, alone_k)
    np.testing.assert_array_equal(grad_b, alone_b)


def test_the_same_bits_from_one_thread_or_two(one_pass):
    rng = np.random.default_rng(3)
    x, kernel, grad_y = _operands(rng, (4, 40, 40, 64), (3, 3), 1, "same", 1, np.float32)  # (two parts)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, "same", "channels_last")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, "same", "channels_last")
    finally:
        numba.set_num_threads(threads)
    assert one_pass == [True, True]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_the_gradients_by_finite_differences(one_pass):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 11, 16))
    kernel = rng.standard_normal((3, 3, 16, 1))
    bias = rng.standard_normal(16)
    grad_y = rng.standard_normal(x.shape)
    grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, "same", "channels_last")
    assert one_pass == [True]
    for operand, grad in zip((x, kernel, bias), grads):
        direction = rng.standard_normal(operand.shape)
        saved = operand.copy()
        operand += 1e-6 * direction
        plus = np.sum(nd.depthwise_conv2d(x, kernel, bias, 1, "same") * grad_y)
        operand[...] = saved - 1e-6 * direction
        minus = np.sum(nd.depthwise_conv2d(x, kernel, bias, 1, "same") * grad_y)
        operand[...] = saved
        np.testing.assert_allclose(np.sum(grad * direction), (plus - minus) / 2e-6, rtol=1e-7, atol=1e-8)


def test_non_finite_values_reach_exactly_what_the_reference_gives_them_to(one_pass):
    rng = np.random.default_rng(6)
    x, kernel, grad_y = _operands(rng, (1, 8, 9, 16), (3, 3), 1, "same", 1, np.float64)
    x[0, 4, 4, 3] = np.inf
    kernel[0, 2, 5, 0] = np.nan
    grad_y[0, 7, 0, 9] = -np.inf
    got = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, "same", "channels_last")
    assert one_pass == [True]
    with np.errstate(invalid="ignore"):  # (the reference's inf * 0)
        want = _reference_gradients(grad_y, x, kernel, 1, "same", "channels_last", 1)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(w))
        finite = np.isfinite(w)
        np.testing.assert_allclose(g[finite], w[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel_hw, strides, dilation, mult, taken", [
    ((3, 3), 1, 1, 1, True),
    ((3, 3), (2, 1), 1, 1, False),   # a row stride
    ((3, 3), (1, 2), 1, 1, False),   # a column stride
    ((3, 3), 1, (1, 2), 1, False),   # column dilation
    ((3, 3), 1, 1, 2, False),        # a multiplier
    ((7, 7), 1, 1, 1, False),        # the wide kernels
])
def test_which_problems_take_it_and_the_others_stay_right(one_pass, kernel_hw, strides, dilation, mult, taken):
    rng = np.random.default_rng(7)
    x, kernel, grad_y = _operands(rng, (2, 15, 16, 16), kernel_hw, strides, "valid", dilation, np.float32, mult)
    got = nd.depthwise_conv2d_backward(grad_y, x, kernel, strides, "valid", "channels_last", dilation)
    assert one_pass == [taken]
    for g, w in zip(got, _reference_gradients(grad_y, x, kernel, strides, "valid", "channels_last", dilation)):
        assert_close(g, w, np.float32)
