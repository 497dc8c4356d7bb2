"""The 1D channels_last forward with a depth multiplier of 2 (cpu/conv1d_pairs.py): outputs paired from one load."""

import numpy as np
import pytest
from cases import assert_close

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv._geometry import ExplicitPadding
from numba_dwconv.cpu import conv1d, conv1d_pairs

CASES = [  # (length, channels, kernel_size, stride, dilation, padding)
    (131, 32, 3, 1, 1, "same"),
    (130, 16, 5, 1, 1, "valid"),
    (97, 48, 4, 1, 1, "causal"),
    (120, 32, 3, 2, 1, "same"),
    (101, 16, 3, 1, 3, "same"),        # taps clipped by the padding in more than one row
    (64, 32, 7, 3, 2, ((4, 1),)),      # explicit padding (the bridge's), stride and dilation
    (5, 16, 9, 1, 1, "same"),          # a kernel longer than the input: some rows have no tap inside
]


def _spy(monkeypatch):
    calls = []
    real = conv1d_pairs.forward
    monkeypatch.setattr(conv1d_pairs, "forward", lambda *a: calls.append(True) or real(*a))
    return calls


@pytest.mark.parametrize("length, channels, ksize, stride, dilation, padding", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairs_forward_matches_the_reference(length, channels, ksize, stride, dilation, padding, dtype, monkeypatch):
    rng = np.random.default_rng(length * channels + ksize)
    x = rng.standard_normal((3, length, channels)).astype(dtype)
    kernel = rng.standard_normal((ksize, channels, 2)).astype(dtype)
    bias = rng.standard_normal(2 * channels).astype(dtype)
    calls = _spy(monkeypatch)
    ours, x_ref, pad_ref = padding, x, padding
    if isinstance(padding, tuple):  # the reference pads with zeros and convolves 'valid'
        ours, x_ref, pad_ref = ExplicitPadding(padding), np.pad(x, ((0, 0), padding[0], (0, 0))), "valid"
    y = nd.depthwise_conv1d(x, kernel, bias, stride, ours, "channels_last", dilation)
    assert calls == [True]
    assert_close(y, ref.conv1d_forward(x_ref, kernel, bias, stride, pad_ref, "channels_last", dilation), dtype)
    y_nobias = nd.depthwise_conv1d(x, kernel, None, stride, ours, "channels_last", dilation)
    assert_close(y_nobias, ref.conv1d_forward(x_ref, kernel, None, stride, pad_ref, "channels_last", dilation), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_pairs_equal_plain_ones(dtype, monkeypatch):
    """Non-temporal stores (threshold 0, an aligned output) give the plain stores' bits, and the reference."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 300, 64)).astype(dtype)
    kernel = rng.standard_normal((5, 64, 2)).astype(dtype)
    bias = rng.standard_normal(128).astype(dtype)
    plain = nd.depthwise_conv1d(x, kernel, bias, padding="same")
    monkeypatch.setattr(conv1d_pairs, "STREAM_BYTES", 0)
    monkeypatch.setattr("numba_dwconv._memory.MIN_POOLED_BYTES", 0)  # (pooled outputs are 64-byte aligned)
    streamed = nd.depthwise_conv1d(x, kernel, bias, padding="same")
    assert streamed.ctypes.data % 64 == 0
    np.testing.assert_array_equal(streamed, plain)
    assert_close(streamed, ref.conv1d_forward(x, kernel, bias, 1, "same", "channels_last", 1), dtype)


def test_one_thread_and_two_give_the_same_bits():
    import numba

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 700, 32)).astype(np.float32)
    kernel = rng.standard_normal((4, 32, 2)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        ys = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            ys.append(nd.depthwise_conv1d(x, kernel, padding="causal"))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(ys[0], ys[1])


@pytest.mark.parametrize("channels, mult, activation", [(20, 2, None), (32, 3, None), (32, 2, "relu")])
def test_other_problems_take_the_general_path(channels, mult, activation, monkeypatch):
    """Channels that are not whole vectors, other multipliers and fused activations: the repeated-rows kernel."""
    rng = np.random.default_rng(channels + mult)
    x = rng.standard_normal((2, 90, channels)).astype(np.float32)
    kernel = rng.standard_normal((3, channels, mult)).astype(np.float32)
    calls = _spy(monkeypatch)
    y = nd.depthwise_conv1d(x, kernel, None, 1, "same", "channels_last", 1, activation=activation)
    assert calls == []
    want = ref.conv1d_forward(x, kernel, None, 1, "same", "channels_last", 1)
    assert_close(y, ref.activation(activation, want) if activation else want, np.float32)
    assert conv1d.conv1d_pairs is conv1d_pairs
