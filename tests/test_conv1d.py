"""1D depthwise convolution on the CPU, checked against numba_dwconv.reference."""

import itertools
import tracemalloc

import numpy as np
import pytest
from cases import assert_close, assert_same_from_threads, make_case
from hypothesis import assume, given
from hypothesis import strategies as st

import numba_dwconv as nd
from numba_dwconv import _memory
from numba_dwconv import reference as ref


def check_all(x, kernel, bias, stride, padding, data_format, dilation, dtype, rng):
    """Forward and all gradient entry points against the reference."""
    y = nd.depthwise_conv1d(x, kernel, bias, stride, padding, data_format, dilation)
    assert y.dtype == dtype
    assert_close(y, ref.conv1d_forward(x, kernel, bias, stride, padding, data_format, dilation), dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = ref.conv1d_gradients(grad_y, x, kernel, stride, padding, data_format, dilation)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, stride, padding, data_format, dilation)
    assert isinstance(grads, nd.DepthwiseGrads)
    for got, expected in zip(grads, want):
        assert got.dtype == dtype
        assert_close(got, expected, dtype)
    length = x.shape[1] if data_format == "channels_last" else x.shape[2]
    grad_x = nd.depthwise_conv1d_input_grad(grad_y, kernel, length, stride, padding, data_format, dilation)
    assert_close(grad_x, want[0], dtype)
    grad_k, grad_b = nd.depthwise_conv1d_kernel_grad(
        grad_y, x, kernel.shape[0], stride, padding, data_format, dilation
    )
    assert_close(grad_k, want[1], dtype)
    assert_close(grad_b, want[2], dtype)


GRID = list(
    itertools.product(
        ["valid", "same", "causal"],  # padding
        [1, 2, 3],  # stride
        [1, 2, 3],  # dilation
        [1, 3],  # depth multiplier
        ["channels_last", "channels_first"],
        [np.float32, np.float64],
    )
)


@pytest.mark.parametrize(("padding", "stride", "dilation", "mult", "data_format", "dtype"), GRID)
def test_grid_against_reference(padding, stride, dilation, mult, data_format, dtype):
    rng = np.random.default_rng(hash((padding, stride, dilation, mult, data_format)) % 2**32)
    x, kernel, bias = make_case(rng, 2, 23, 5, 4, mult, data_format, dtype)
    check_all(x, kernel, bias, stride, padding, data_format, dilation, dtype, rng)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_without_bias_equals_zero_bias(padding, data_format):
    rng = np.random.default_rng(1)
    x, kernel, _ = make_case(rng, 2, 19, 4, 3, 2, data_format, np.float64)
    y = nd.depthwise_conv1d(x, kernel, None, 2, padding, data_format, 2)
    assert_close(y, ref.conv1d_forward(x, kernel, None, 2, padding, data_format, 2), np.float64)
    np.testing.assert_array_equal(y, nd.depthwise_conv1d(x, kernel, np.zeros(8), 2, padding, data_format, 2))


@pytest.mark.parametrize(
    ("batch", "length", "channels", "ksize", "mult", "stride", "dilation", "padding"),
    [
        (1, 5000, 3, 5, 1, 1, 1, "same"),  # several channels_first tiles
        (2, 300, 70, 31, 1, 1, 1, "same"),  # several channels_last channel blocks
        (1, 120, 70, 40, 2, 2, 1, "causal"),  # blocks with m > 1 and stride
        (3, 64, 300, 7, 1, 3, 2, "valid"),
        (2, 40, 33, 9, 1, 5, 3, "same"),  # stride > kernel extent in places
        (1, 1, 4, 3, 1, 1, 1, "same"),  # a single position
        (2, 17, 1, 1, 1, 1, 1, "valid"),  # K = 1, C = 1
    ],
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_larger_shapes(batch, length, channels, ksize, mult, stride, dilation, padding, data_format):
    rng = np.random.default_rng(length * channels + ksize)
    x, kernel, bias = make_case(rng, batch, length, channels, ksize, mult, data_format, np.float64)
    check_all(x, kernel, bias, stride, padding, data_format, dilation, np.float64, rng)


@given(
    batch=st.integers(0, 3),
    length=st.integers(1, 40),
    channels=st.integers(1, 6),
    ksize=st.integers(1, 8),
    mult=st.integers(1, 3),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same", "causal", "SAME", "Causal"]),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes(batch, length, channels, ksize, mult, stride, dilation, padding, data_format, dtype, seed):
    assume(padding.lower() != "valid" or length >= (ksize - 1) * dilation + 1)
    rng = np.random.default_rng(seed)
    x, kernel, bias = make_case(rng, batch, length, channels, ksize, mult, data_format, dtype)
    check_all(x, kernel, bias, stride, padding, data_format, dilation, dtype, rng)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize(("padding", "stride", "dilation"), [("same", 2, 3), ("causal", 3, 2), ("valid", 2, 2)])
def test_gradients_by_finite_differences(padding, stride, dilation, data_format):
    """Directional derivatives of sum(y * grad_y) match the analytic gradients."""
    rng = np.random.default_rng(7)
    x, kernel, bias = make_case(rng, 2, 21, 3, 4, 2, data_format, np.float64)
    y = nd.depthwise_conv1d(x, kernel, bias, stride, padding, data_format, dilation)
    grad_y = rng.standard_normal(y.shape)

    def objective(x_, kernel_, bias_):
        return float(np.sum(nd.depthwise_conv1d(x_, kernel_, bias_, stride, padding, data_format, dilation) * grad_y))

    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, stride, padding, data_format, dilation)
    eps = 1e-6
    for index, grad in enumerate(grads):
        args = [x, kernel, bias]
        direction = rng.standard_normal(args[index].shape)
        plus, minus = list(args), list(args)
        plus[index] = args[index] + eps * direction
        minus[index] = args[index] - eps * direction
        numeric = (objective(*plus) - objective(*minus)) / (2 * eps)
        assert numeric == pytest.approx(float(np.sum(grad * direction)), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_batch_zero(data_format):
    rng = np.random.default_rng(0)
    x, kernel, bias = make_case(rng, 0, 10, 3, 3, 2, data_format, np.float32)
    y = nd.depthwise_conv1d(x, kernel, bias, 2, "same", data_format)
    assert y.shape == ((0, 5, 6) if data_format == "channels_last" else (0, 6, 5))
    grads = nd.depthwise_conv1d_backward(np.zeros(y.shape, np.float32), x, kernel, 2, "same", data_format)
    assert grads.grad_inputs.shape == x.shape
    np.testing.assert_array_equal(grads.grad_kernel, np.zeros_like(kernel))
    np.testing.assert_array_equal(grads.grad_bias, np.zeros(6, np.float32))


@pytest.mark.parametrize("padding", ["same", "causal"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_kernel_longer_than_input(padding, data_format):
    rng = np.random.default_rng(3)
    x, kernel, bias = make_case(rng, 2, 4, 3, 9, 1, data_format, np.float64)
    check_all(x, kernel, bias, 1, padding, data_format, 1, np.float64, rng)
    y = nd.depthwise_conv1d(x, kernel, bias, 3, padding, data_format)
    assert y.shape[1 if data_format == "channels_last" else 2] == 2  # ceil(4 / 3)


def test_causal_output_does_not_read_the_future():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 30, 2))
    kernel = rng.standard_normal((5, 2, 1))
    y = nd.depthwise_conv1d(x, kernel, padding="causal", dilation_rate=2)
    x_changed = x.copy()
    x_changed[:, 20:] += 100.0
    y_changed = nd.depthwise_conv1d(x_changed, kernel, padding="causal", dilation_rate=2)
    np.testing.assert_array_equal(y[:, :20], y_changed[:, :20])
    assert not np.allclose(y[:, 20:], y_changed[:, 20:])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_non_contiguous_inputs_give_the_same_results(data_format):
    rng = np.random.default_rng(5)
    big = rng.standard_normal((4, 40, 12))
    x = big[::2, ::2, ::3]  # strided in every axis
    if data_format == "channels_first":
        x = big[::2, ::2, ::3].transpose(0, 2, 1)
    assert not x.flags.c_contiguous
    kernel_big = rng.standard_normal((3, 4, 4))
    kernel = kernel_big[:, :, ::2]  # (3, 4, 2), non-contiguous
    bias = rng.standard_normal(16)[::2]
    grad_y = rng.standard_normal((2, 20, 8) if data_format == "channels_last" else (2, 8, 20))[:, :, :]
    y = nd.depthwise_conv1d(x, kernel, bias, 1, "same", data_format)
    y_c = nd.depthwise_conv1d(np.ascontiguousarray(x), np.ascontiguousarray(kernel), np.ascontiguousarray(bias),
                              1, "same", data_format)
    np.testing.assert_array_equal(y, y_c)
    grad_y_nc = np.asfortranarray(grad_y)
    g = nd.depthwise_conv1d_backward(grad_y_nc, x, kernel, 1, "same", data_format)
    g_c = nd.depthwise_conv1d_backward(grad_y, np.ascontiguousarray(x), np.ascontiguousarray(kernel), 1, "same",
                                       data_format)
    for a, b in zip(g, g_c):
        np.testing.assert_array_equal(a, b)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 16, 3)).astype(np.float32)
    x_view = rng.standard_normal((2, 16, 6)).astype(np.float32)[:, :, ::2]
    kernel = rng.standard_normal((3, 3, 2))  # float64: promotes
    bias = rng.standard_normal(6).astype(np.float32)
    grad_y = rng.standard_normal((2, 16, 6)).astype(np.float32)
    originals = [a.copy() for a in (x, x_view, kernel, bias, grad_y)]
    for inputs in (x, x_view):
        nd.depthwise_conv1d(inputs, kernel, bias, padding="same")
        nd.depthwise_conv1d_backward(grad_y, inputs, kernel, padding="same")
        nd.depthwise_conv1d_input_grad(grad_y, kernel, 16, padding="same")
        nd.depthwise_conv1d_kernel_grad(grad_y, inputs, 3, padding="same")
    for after, before in zip((x, x_view, kernel, bias, grad_y), originals):
        np.testing.assert_array_equal(after, before)


def test_dtype_promotion():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 9, 2)).astype(np.float32)
    kernel = rng.standard_normal((3, 2, 1))
    assert nd.depthwise_conv1d(x, kernel).dtype == np.float64
    assert nd.depthwise_conv1d(x, kernel.astype(np.float32)).dtype == np.float32
    assert nd.depthwise_conv1d(x, kernel.astype(np.float32), np.zeros(2)).dtype == np.float32
    assert_close(nd.depthwise_conv1d(x, kernel), ref.conv1d_forward(x, kernel), np.float64)


def test_array_likes_are_accepted():
    y = nd.depthwise_conv1d([[[1.0], [2.0], [3.0]]], [[[1.0]], [[10.0]]])
    np.testing.assert_array_equal(y, [[[21.0], [32.0]]])


def test_input_grad_with_ambiguous_length():
    """With stride 2, inputs of length 9 and 10 give the same output length."""
    rng = np.random.default_rng(9)
    kernel = rng.standard_normal((3, 2, 1))
    for length in (9, 10):
        x = rng.standard_normal((1, length, 2))
        grad_y = rng.standard_normal((1, 5, 2))
        got = nd.depthwise_conv1d_input_grad(grad_y, kernel, length, 2, "same")
        assert got.shape == (1, length, 2)
        assert_close(got, ref.conv1d_gradients(grad_y, x, kernel, 2, "same")[0], np.float64)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_kernel_gradient_is_deterministic(data_format):
    """Bit-identical run to run and whatever the number of threads."""
    import numba

    rng = np.random.default_rng(10)
    x, kernel, _ = make_case(rng, 3, 3000, 40, 7, 2, data_format, np.float32)
    y = nd.depthwise_conv1d(x, kernel, None, 1, "same", data_format)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    first = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same", data_format)
    for threads in (numba.config.NUMBA_NUM_THREADS, 1):
        numba.set_num_threads(threads)
        try:
            again = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same", data_format)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_four_threads_calling_at_once(data_format):
    rng = np.random.default_rng(11)

    def forward_and_backward(x, kernel, bias):
        y = nd.depthwise_conv1d(x, kernel, bias, 1, "same", data_format)
        return y, nd.depthwise_conv1d_backward(y, x, kernel, 1, "same", data_format)

    cases = [make_case(rng, 2, 500, 24, 5, 2, data_format, np.float32) for _ in range(4)]
    assert_same_from_threads([lambda case=case: forward_and_backward(*case) for case in cases])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_forward_peak_extra_memory_is_small(data_format):
    """A forward call allocates its output and (almost) nothing else."""
    rng = np.random.default_rng(12)
    x, kernel, bias = make_case(rng, 4, 4096, 64, 7, 1, data_format, np.float32)
    nd.depthwise_conv1d(x, kernel, bias, 1, "same", data_format)  # compile outside the measurement
    _memory.release_pool()  # so that the output is a fresh allocation, seen by tracemalloc
    tracemalloc.start()
    try:
        y = nd.depthwise_conv1d(x, kernel, None, 1, "same", data_format)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= y.nbytes  # the measurement saw the output itself
    assert peak - y.nbytes <= 0.10 * y.nbytes



@pytest.mark.parametrize("tile", [6, 7])
@pytest.mark.parametrize("stride, dilation, mult", [(2, 1, 1), (2, 3, 2), (3, 2, 1), (4, 1, 2)])
def test_strided_channels_first_input_gradient_across_tile_edges(monkeypatch, tile, stride, dilation, mult):
    """Phases of a strided input gradient restart at every tile (odd tiles start on the other phase)."""
    from numba_dwconv import reference
    from numba_dwconv.cpu import conv1d

    monkeypatch.setattr(conv1d, "TILE_LENGTH", tile)
    rng = np.random.default_rng(stride * 10 + dilation)
    x = rng.standard_normal((2, 3, 41))
    kernel = rng.standard_normal((4, 3, mult))
    y = reference.conv1d_forward(x, kernel, None, stride, "same", "channels_first", dilation)
    grad = rng.standard_normal(y.shape)
    got = nd.depthwise_conv1d_input_grad(grad, kernel, 41, strides=stride, padding="same",
                                         data_format="channels_first", dilation_rate=dilation)
    want = reference.conv1d_gradients(grad, x, kernel, stride, "same", "channels_first", dilation)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
