"""The 1D channels_last forward of long kernels (numba_dwconv.cpu.conv1d_long): sums in registers over all taps."""

import numpy as np
import pytest
from cases import assert_close

import numba_dwconv as nd
from numba_dwconv import _memory, activations
from numba_dwconv import reference as ref
from numba_dwconv._geometry import ExplicitPadding
from numba_dwconv.cpu import conv1d_long


def _spy(monkeypatch):
    """The list that records :func:`conv1d_long.fits`'s answer for every 1D forward from now on."""
    taken, real = [], conv1d_long.fits
    monkeypatch.setattr(conv1d_long, "fits", lambda p: taken.append(real(p)) or taken[-1])
    return taken


def _reference(x, kernel, bias, padding):
    """The reference forward; explicit padding: 'valid' on the zero-padded input."""
    if isinstance(padding, str):
        return ref.conv1d_forward(x, kernel, bias, 1, padding, "channels_last", 1)
    (before, after), = padding
    return ref.conv1d_forward(np.pad(x, ((0, 0), (before, after), (0, 0))), kernel, bias, 1, "valid",
                              "channels_last", 1)


CASES = [  # (batch, length, channels per vector of lanes, kernel_size, padding)
    (2, 300, 2, 31, "same"),    # two tiles, the second with the rest (44 rows): the last block overlaps
    (1, 8, 1, 16, "same"),      # one block of eight rows: the shortest output the kernel takes
    (3, 611, 3, 17, "causal"),  # tiles of 256 and 355 rows
    (1, 40, 1, 33, "valid"),    # eight output rows, every input row read
    (2, 97, 2, 20, ((30, 2),)),  # explicit padding longer than the kernel's reach on one side
    (1, 513, 1, 64, "same"),    # 513 rows: the last tile takes 257
]


@pytest.mark.parametrize("batch, length, vectors, ksize, padding", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_kernels_match_the_reference(batch, length, vectors, ksize, padding, dtype, monkeypatch):
    lanes = 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(length + ksize)
    x = rng.standard_normal((batch, length, vectors * lanes)).astype(dtype)
    kernel = rng.standard_normal((ksize, vectors * lanes, 1)).astype(dtype)
    bias = rng.standard_normal(vectors * lanes).astype(dtype)
    before = x.copy()
    taken = _spy(monkeypatch)
    padding_arg = ExplicitPadding(padding) if isinstance(padding, tuple) else padding
    got = nd.depthwise_conv1d(x, kernel, bias, 1, padding_arg)
    assert taken == [True]
    assert_close(got, _reference(x, kernel, bias, padding), dtype)
    np.testing.assert_array_equal(x, before)
    no_bias = nd.depthwise_conv1d(x, kernel, None, 1, padding_arg)
    assert_close(no_bias, _reference(x, kernel, None, padding), dtype)


@pytest.mark.parametrize("name", ["relu", "gelu"])
def test_long_kernels_apply_the_activation_and_its_gradient(name, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 70, 32))
    kernel = rng.standard_normal((19, 32, 1))
    bias = rng.standard_normal(32)
    grad_y = rng.standard_normal((2, 70, 32))
    taken = _spy(monkeypatch)
    y = nd.depthwise_conv1d(x, kernel, bias, 1, "same", activation=name)
    pre = ref.conv1d_forward(x, kernel, bias, 1, "same", "channels_last", 1)
    np.testing.assert_allclose(y, ref.activation(activations.get(name).name, pre), rtol=1e-12, atol=1e-12)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same", bias=bias, activation=name)
    assert taken[:2] == [True, True]  # the forward, then the backward's gradient at the pre-activation
    want = ref.conv1d_gradients(grad_y * activations.get(name).derivative(pre), x, kernel, 1, "same",
                                "channels_last", 1)
    for got_grad, want_grad in zip(grads, want):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_long_outputs_equal_plain_ones(dtype, monkeypatch):
    """Stored past the caches (threshold 0) the output is the same, bit for bit; unaligned outputs do not stream."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 530, 48)).astype(dtype)
    kernel = rng.standard_normal((31, 48, 1)).astype(dtype)
    plain = nd.depthwise_conv1d(x, kernel, None, 1, "same")
    streams, real = [], conv1d_long._streams
    monkeypatch.setattr(conv1d_long, "STREAM_BYTES", 0)
    monkeypatch.setattr(_memory, "MIN_POOLED_BYTES", 0)  # (pooled outputs start on a line)
    monkeypatch.setattr(conv1d_long, "_streams", lambda out, act: streams.append(real(out, act)) or streams[-1])
    streamed = nd.depthwise_conv1d(x, kernel, None, 1, "same")
    assert streams == [True]
    np.testing.assert_array_equal(streamed, plain)
    assert_close(streamed, _reference(x, kernel, None, "same"), dtype)
    assert not real(np.empty(64, dtype)[1:], (0, 0))  # (a misaligned output: plain stores)
    assert not real(np.empty(64, dtype), (1, 0))  # (an activation to apply after the stores)


@pytest.mark.parametrize("shape, ksize, strides, dilation, mult", [
    ((1, 64, 32), 15, 1, 1, 1),  # too short a kernel
    ((1, 64, 32), 16, 2, 1, 1),  # a stride
    ((1, 64, 32), 16, 1, 2, 1),  # a dilation
    ((1, 64, 16), 16, 1, 1, 2),  # a depth multiplier
    ((1, 64, 12), 16, 1, 1, 1),  # channels not a whole vector
    ((1, 22, 32), 16, 1, 1, 1),  # seven output rows ('valid')
])
def test_other_problems_take_the_general_kernels(shape, ksize, strides, dilation, mult, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((ksize, shape[2], mult)).astype(np.float32)
    taken = _spy(monkeypatch)
    got = nd.depthwise_conv1d(x, kernel, None, strides, "valid", dilation_rate=dilation)
    assert taken == [False]
    assert_close(got, ref.conv1d_forward(x, kernel, None, strides, "valid", "channels_last", dilation), np.float32)
