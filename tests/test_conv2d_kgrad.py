"""The channels_last kernel gradient of 3x3 kernels with its sums in registers (cpu/conv2d_last_kgrad.py)."""

import numba
import numpy as np
import pytest
from cases import assert_close
from test_conv2d_wide import _reference_gradients

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv._geometry import ExplicitPadding, conv2d_problem
from numba_dwconv.cpu import conv2d_last_kgrad


def _grads(x, grad_y, strides, padding, dilation):
    return nd.depthwise_conv2d_kernel_grad(grad_y, x, (3, 3), strides, padding, "channels_last", dilation)


def _case(rng, shape, strides, padding, dilation, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    y = nd.depthwise_conv2d(x, np.ones((3, 3, shape[-1], 1), dtype), None, strides, padding, "channels_last",
                            dilation)
    return x, rng.standard_normal(y.shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strides, dilation", [((1, 1), (1, 1)), ((2, 1), (1, 1)), ((1, 1), (2, 1)), ((3, 1), (2, 1))])
@pytest.mark.parametrize("padding", ["same", "valid", ExplicitPadding([(2, 0), (1, 3)])])
@pytest.mark.parametrize("channels", [16, 48])
def test_kernel_and_bias_gradients_against_the_reference(dtype, strides, dilation, padding, channels):
    """Row strides and dilations, any padding, several vectors of channels: the sums in registers and the edges."""
    if padding == "same" and strides != (1, 1):
        padding = ExplicitPadding([(1, 1), (1, 1)])
    rng = np.random.default_rng(channels)
    x, grad_y = _case(rng, (3, 13, 21, channels), strides, padding, dilation, dtype)
    assert conv2d_last_kgrad.fits(_problem(x.shape, (3, 3, channels, 1), x.dtype, strides, padding, dilation))
    grad_k, grad_b = _grads(x, grad_y, strides, padding, dilation)
    _, want_k, want_b = _reference_gradients(grad_y, x, np.ones((3, 3, channels, 1), dtype), strides, padding,
                                             "channels_last", dilation)
    assert grad_k.dtype == dtype and grad_b.dtype == dtype
    assert_close(grad_k, want_k, dtype)
    assert_close(grad_b, want_b, dtype)


def _problem(input_shape, kernel_shape, dtype, strides, padding, dilation):
    return conv2d_problem(input_shape, kernel_shape, strides, padding, "channels_last", dilation, np.dtype(dtype))


def test_the_gradients_by_finite_differences():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 11, 16))
    kernel = rng.standard_normal((3, 3, 16, 1))
    bias = rng.standard_normal(16)
    args = ((2, 1), ExplicitPadding([(1, 1), (1, 1)]), "channels_last", (1, 1))
    grad_y = rng.standard_normal(nd.depthwise_conv2d(x, kernel, bias, *args).shape)
    grad_k, grad_b = nd.depthwise_conv2d_kernel_grad(grad_y, x, (3, 3), *args)
    for operand, grad in ((kernel, grad_k), (bias, grad_b)):
        direction = rng.standard_normal(operand.shape)
        saved = operand.copy()
        operand += 1e-6 * direction
        plus = np.sum(nd.depthwise_conv2d(x, kernel, bias, *args) * grad_y)
        operand[...] = saved - 1e-6 * direction
        minus = np.sum(nd.depthwise_conv2d(x, kernel, bias, *args) * grad_y)
        operand[...] = saved
        np.testing.assert_allclose(np.sum(grad * direction), (plus - minus) / 2e-6, rtol=1e-7, atol=1e-8)


def test_the_same_bits_from_one_thread_or_two():
    """The sums in registers go to per-task partials summed in task order: the thread count never shows."""
    rng = np.random.default_rng(5)
    x, grad_y = _case(rng, (4, 40, 40, 64), (1, 1), "same", (1, 1), np.float32)  # (large enough for two parts)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _grads(x, grad_y, 1, "same", 1)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _grads(x, grad_y, 1, "same", 1)
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_non_finite_inputs_reach_exactly_the_taps_they_meet():
    rng = np.random.default_rng(6)
    x, grad_y = _case(rng, (1, 8, 9, 16), (1, 1), "same", (1, 1), np.float64)
    x[0, 4, 4, 3] = np.inf  # an interior position: every tap meets it
    x[0, 0, 8, 5] = -np.inf  # a corner: four taps
    grad_k, _ = _grads(x, grad_y, 1, "same", 1)
    _, want_k, _ = ref.conv2d_gradients(grad_y, x, np.ones((3, 3, 16, 1)), 1, "same", "channels_last", 1)
    np.testing.assert_array_equal(np.isfinite(grad_k), np.isfinite(want_k))
    assert not np.isfinite(want_k[..., 3, 0]).any() and np.isfinite(want_k[..., 0, 0]).all()
    finite = np.isfinite(want_k)
    np.testing.assert_allclose(grad_k[finite], want_k[finite], rtol=1e-12)


@pytest.mark.parametrize("kernel_hw, strides, dilation, channels, mult, fits", [
    ((3, 3), (1, 1), (1, 1), 32, 1, True),
    ((3, 3), (2, 1), (2, 1), 16, 1, True),
    ((3, 3), (1, 2), (1, 1), 32, 1, False),  # column stride: no sliding window
    ((3, 3), (1, 1), (1, 2), 32, 1, False),  # column dilation
    ((3, 3), (1, 1), (1, 1), 20, 1, False),  # not whole vectors of channels
    ((3, 3), (1, 1), (1, 1), 16, 2, False),  # a multiplier
    ((5, 5), (1, 1), (1, 1), 32, 1, False),
])
def test_which_problems_take_the_kernel_and_the_others_stay_right(kernel_hw, strides, dilation, channels, mult, fits):
    problem = _problem((2, 11, 12, channels), (*kernel_hw, channels, mult), np.float32, strides, "valid", dilation)
    assert conv2d_last_kgrad.fits(problem) is fits
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 11, 12, channels)).astype(np.float32)
    kernel = np.ones((*kernel_hw, channels, mult), np.float32)
    grad_y = rng.standard_normal(nd.depthwise_conv2d(x, kernel, None, strides, "valid", "channels_last",
                                                     dilation).shape).astype(np.float32)
    grad_k, grad_b = nd.depthwise_conv2d_kernel_grad(grad_y, x, kernel_hw, strides, "valid", "channels_last",
                                                     dilation)
    _, want_k, want_b = ref.conv2d_gradients(grad_y, x, kernel, strides, "valid", "channels_last", dilation)
    assert_close(grad_k, want_k, np.float32)
    assert_close(grad_b, want_b, np.float32)


def test_the_problems_that_fit_take_the_sums_in_registers(monkeypatch):
    """Taken: its sums go in another (fixed) order than the passes', so the bits differ, both right."""
    rng = np.random.default_rng(8)
    x, grad_y = _case(rng, (2, 20, 24, 32), (1, 1), "same", (1, 1), np.float32)
    taken = _grads(x, grad_y, 1, "same", 1)
    monkeypatch.setattr(conv2d_last_kgrad, "fits", lambda problem: False)
    passes = _grads(x, grad_y, 1, "same", 1)
    assert not np.array_equal(taken[0], passes[0]) and not np.array_equal(taken[1], passes[1])
    _, want_k, want_b = ref.conv2d_gradients(grad_y, x, np.ones((3, 3, 32, 1), np.float32), 1, "same",
                                             "channels_last", 1)
    for got in (taken, passes):
        assert_close(got[0], want_k, np.float32)
        assert_close(got[1], want_b, np.float32)
