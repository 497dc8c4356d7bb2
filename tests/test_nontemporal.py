"""1D forwards and input gradients writing large outputs with non-temporal stores (cpu/nontemporal.py)."""

import numpy as np
import pytest
from cases import assert_close

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv.cpu import nontemporal


def _streamed(monkeypatch, call):
    """``call()`` with every output streamed (threshold 0), and whether ``conv1d`` chose to stream each time."""
    seen, real = [], nontemporal.stream_args
    monkeypatch.setattr(nontemporal, "STREAM_BYTES", 0)
    monkeypatch.setattr("numba_dwconv.cpu.conv1d.stream_args",
                        lambda *a: seen.append(real(*a)[0] is not None) or real(*a))
    return call(), seen


CASES = [  # (length, channels, kernel_size, stride, dilation, padding, multiplier, activation)
    (301, 37, 3, 1, 1, "same", 1, None),     # rows of 37 values: every row starts elsewhere in its line
    (300, 64, 4, 1, 1, "causal", 1, "relu"),
    (257, 16, 5, 2, 1, "valid", 1, None),
    (190, 24, 3, 1, 3, "same", 2, "gelu"),   # dilation, a multiplier
    (129, 48, 8, 3, 2, "same", 3, None),
]


@pytest.mark.parametrize("length, channels, ksize, stride, dilation, padding, mult, activation", CASES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_outputs_equal_plain_ones(length, channels, ksize, stride, dilation, padding, mult, activation,
                                           data_format, dtype, monkeypatch):
    """With every output streamed (threshold 0) the forward matches the reference and the plain stores bit for bit."""
    rng = np.random.default_rng(length + channels)
    shape = (3, length, channels) if data_format == "channels_last" else (3, channels, length)
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((ksize, channels, mult)).astype(dtype)
    bias = rng.standard_normal(channels * mult).astype(dtype)

    def forward():
        return nd.depthwise_conv1d(x, kernel, bias, stride, padding, data_format, dilation, activation=activation)

    plain = forward()
    streamed, seen = _streamed(monkeypatch, forward)
    assert seen == [True]
    want = ref.conv1d_forward(x, kernel, bias, stride, padding, data_format, dilation)
    assert_close(streamed, ref.activation(activation, want) if activation else want, dtype)
    np.testing.assert_array_equal(streamed, plain)


def test_only_large_outputs_of_short_kernels_stream():
    out = np.empty(nontemporal.STREAM_BYTES // 4, np.float32)
    assert nontemporal.stream_args(out, 64, nontemporal.STREAM_TAPS)[0] is not None
    assert nontemporal.stream_args(out, 64, nontemporal.STREAM_TAPS + 1)[0] is None
    assert nontemporal.stream_args(out[1:], 64, 3)[0] is None  # (one value under the threshold)


@pytest.mark.parametrize("length, channels, ksize, stride, dilation, padding, mult, activation", CASES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_input_gradients_equal_plain_ones(length, channels, ksize, stride, dilation, padding, mult,
                                                   activation, data_format, dtype, monkeypatch):
    """The input gradient streams too (channels_last: m = 1 only; its m > 1 rows are summed in groups first)."""
    rng = np.random.default_rng(length * channels)
    shape = (3, length, channels) if data_format == "channels_last" else (3, channels, length)
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((ksize, channels, mult)).astype(dtype)
    y = nd.depthwise_conv1d(x, kernel, None, stride, padding, data_format, dilation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)

    def input_grad():
        return nd.depthwise_conv1d_input_grad(grad_y, kernel, length, stride, padding, data_format, dilation)

    plain = input_grad()
    streamed, seen = _streamed(monkeypatch, input_grad)
    assert seen == [data_format == "channels_first" or mult == 1]
    want = ref.conv1d_gradients(grad_y, x, kernel, stride, padding, data_format, dilation)[0]
    assert_close(streamed, want, dtype)
    np.testing.assert_array_equal(streamed, plain)


CASES_2D = [  # (height, width, channels, kernel, strides, dilation, padding, multiplier, activation)
    (9, 13, 37, (3, 3), 1, 1, "same", 1, None),   # rows of 13 x 37 values: every row starts elsewhere in its line
    (11, 12, 16, (3, 3), 2, 1, "same", 1, "relu"),
    (10, 9, 24, (5, 5), 1, 2, "valid", 1, None),
    (8, 8, 12, (3, 2), 1, 1, "same", 2, "gelu"),   # a multiplier: the kernel reads repeated rows
    (7, 10, 32, (1, 5), (2, 1), 1, "same", 1, None),
]


@pytest.mark.parametrize("height, width, channels, kernel_size, strides, dilation, padding, mult, activation",
                         CASES_2D)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_2d_outputs_equal_plain_ones(height, width, channels, kernel_size, strides, dilation, padding, mult,
                                              activation, dtype, monkeypatch):
    """The 2D channels_last forward with every output streamed (threshold 0): the reference, and plain stores' bits."""
    rng = np.random.default_rng(height * width + channels)
    x = rng.standard_normal((2, height, width, channels)).astype(dtype)
    kernel = rng.standard_normal((*kernel_size, channels, mult)).astype(dtype)
    bias = rng.standard_normal(channels * mult).astype(dtype)

    def forward():
        return nd.depthwise_conv2d(x, kernel, bias, strides, padding, "channels_last", dilation, activation=activation)

    plain = forward()
    seen, real = [], nontemporal.stream_args
    monkeypatch.setattr(nontemporal, "STREAM_BYTES", 0)
    monkeypatch.setattr("numba_dwconv.cpu.conv2d.stream_args",
                        lambda *a, **k: seen.append(real(*a, **k)[0] is not None) or real(*a, **k))
    streamed = forward()
    assert seen == [True]
    want = ref.conv2d_forward(x, kernel, bias, strides, padding, "channels_last", dilation)
    assert_close(streamed, ref.activation(activation, want) if activation else want, dtype)
    np.testing.assert_array_equal(streamed, plain)
