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
    monkeypatch.setattr(conv1d_long, "fits", lambda *a: taken.append(real(*a)) or taken[-1])
    return taken


def _length_axis(data_format):
    return 1 if data_format == "channels_last" else 2


def _padded(x, padding, data_format):
    """``x`` with explicit ``padding`` (one (before, after) pair) as zeros along its length."""
    widths = [(0, 0)] * 3
    widths[_length_axis(data_format)] = padding[0]
    return np.pad(x, widths)


def _reference(x, kernel, bias, padding, data_format="channels_last"):
    """The reference forward; explicit padding: 'valid' on the zero-padded input."""
    if isinstance(padding, str):
        return ref.conv1d_forward(x, kernel, bias, 1, padding, data_format, 1)
    return ref.conv1d_forward(_padded(x, padding, data_format), kernel, bias, 1, "valid", data_format, 1)


def _reference_gradients(grad_y, x, kernel, padding, data_format="channels_last", strides=1):
    """The reference gradients (input, kernel, bias); explicit padding: those of the zero-padded input, the input
    gradient cropped back to ``x``'s positions."""
    if isinstance(padding, str):
        return ref.conv1d_gradients(grad_y, x, kernel, strides, padding, data_format, 1)
    grads = list(ref.conv1d_gradients(grad_y, _padded(x, padding, data_format), kernel, strides, "valid", data_format,
                                      1))
    crop = [slice(None)] * 3
    before = padding[0][0]
    crop[_length_axis(data_format)] = slice(before, before + x.shape[_length_axis(data_format)])
    grads[0] = grads[0][tuple(crop)]
    return grads


def _operands(rng, batch, length, vectors, ksize, padding, data_format, dtype):
    """``(x, kernel, padding_arg, lanes)``: ``vectors`` vectors of channels in ``data_format``, the padding as the
    ops take it (pairs: :class:`ExplicitPadding`)."""
    lanes = 64 // np.dtype(dtype).itemsize
    channels = vectors * lanes
    shape = (batch, length, channels) if data_format == "channels_last" else (batch, channels, length)
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((ksize, channels, 1)).astype(dtype)
    return x, kernel, ExplicitPadding(padding) if isinstance(padding, tuple) else padding, lanes


def _assert_finite_differences(x, kernel, grad_y, got, wrt, indices, eps=1e-6):
    """Central differences of ``sum(grad_y * conv(x, kernel))`` ('same') at ``indices`` of ``x`` or ``kernel``
    (``wrt``) against ``got``."""
    for index in indices:
        step = np.zeros_like(x if wrt == "x" else kernel)
        step[index] = eps
        loss = [np.sum(grad_y * (nd.depthwise_conv1d(x + s, kernel, None, 1, "same") if wrt == "x"
                                 else nd.depthwise_conv1d(x, kernel + s, None, 1, "same"))) for s in (step, -step)]
        np.testing.assert_allclose((loss[0] - loss[1]) / (2 * eps), got[index], rtol=1e-6, atol=1e-8)


CASES = [  # (batch, length, channels per vector of lanes, kernel_size, padding)
    (2, 300, 2, 31, "same"),    # two tiles, the second with the rest (44 rows): the last block overlaps
    (1, 8, 1, 20, "same"),      # one block of eight rows: the shortest output channels_last takes
    (1, 19, 1, 20, "same"),     # channels_first: the last square of the window and of the output overlap
    (2, 10, 1, 24, ((30, 0),)),  # channels_first: 10 positions of the window in range (less than a square)
    (3, 611, 3, 21, "causal"),  # tiles of 256 and 355 rows
    (1, 40, 1, 33, "valid"),    # eight output rows, every input row read
    (2, 97, 2, 20, ((30, 2),)),  # explicit padding longer than the kernel's reach on one side
    (1, 513, 1, 64, "same"),    # 513 rows: the last tile takes 257
]


@pytest.mark.parametrize("batch, length, vectors, ksize, padding", CASES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_kernels_match_the_reference(batch, length, vectors, ksize, padding, data_format, dtype, monkeypatch):
    rng = np.random.default_rng(length + ksize)
    x, kernel, padding_arg, lanes = _operands(rng, batch, length, vectors, ksize, padding, data_format, dtype)
    bias = rng.standard_normal(kernel.shape[1]).astype(dtype)
    before = x.copy()
    taken = _spy(monkeypatch)
    got = nd.depthwise_conv1d(x, kernel, bias, 1, padding_arg, data_format)
    out_length = got.shape[1] if data_format == "channels_last" else got.shape[2]
    assert taken == [data_format == "channels_last" or out_length >= lanes]
    assert_close(got, _reference(x, kernel, bias, padding, data_format), dtype)
    np.testing.assert_array_equal(x, before)
    no_bias = nd.depthwise_conv1d(x, kernel, None, 1, padding_arg, data_format)
    assert_close(no_bias, _reference(x, kernel, None, padding, data_format), dtype)


@pytest.mark.parametrize("name", ["relu", "gelu"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_long_kernels_apply_the_activation_and_its_gradient(name, data_format, monkeypatch):
    rng = np.random.default_rng(3)
    shape = (2, 70, 32) if data_format == "channels_last" else (2, 32, 70)
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((22, 32, 1))
    bias = rng.standard_normal(32)
    grad_y = rng.standard_normal(shape)
    taken = _spy(monkeypatch)
    y = nd.depthwise_conv1d(x, kernel, bias, 1, "same", data_format, activation=name)
    pre = ref.conv1d_forward(x, kernel, bias, 1, "same", data_format, 1)
    np.testing.assert_allclose(y, ref.activation(activations.get(name).name, pre), rtol=1e-12, atol=1e-12)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same", data_format, bias=bias, activation=name)
    # the forward, then the backward's gradient at the pre-activation (channels_last only)
    assert taken[:2] == [True, data_format == "channels_last"]
    want = ref.conv1d_gradients(grad_y * activations.get(name).derivative(pre), x, kernel, 1, "same", data_format, 1)
    for got_grad, want_grad in zip(grads, want):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_long_outputs_equal_plain_ones(data_format, dtype, monkeypatch):
    """Stored past the caches (threshold 0) the output is the same, bit for bit; unaligned outputs do not stream."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 544, 48) if data_format == "channels_last" else (2, 48, 544)).astype(dtype)
    kernel = rng.standard_normal((31, 48, 1)).astype(dtype)
    plain = nd.depthwise_conv1d(x, kernel, None, 1, "same", data_format)
    streams, real = [], conv1d_long._streams
    monkeypatch.setattr(conv1d_long, "STREAM_BYTES", 0)
    monkeypatch.setattr(_memory, "MIN_POOLED_BYTES", 0)  # (pooled outputs start on a line)
    monkeypatch.setattr(conv1d_long, "_streams", lambda out, act: streams.append(real(out, act)) or streams[-1])
    streamed = nd.depthwise_conv1d(x, kernel, None, 1, "same", data_format)
    assert streams == [True]
    np.testing.assert_array_equal(streamed, plain)
    assert_close(streamed, _reference(x, kernel, None, "same", data_format), dtype)
    assert not real(np.empty(64, dtype)[1:], (0, 0))  # (a misaligned output: plain stores)
    assert not real(np.empty(64, dtype), (1, 0))  # (an activation to apply after the stores)


@pytest.mark.parametrize("shape, ksize, strides, dilation, mult", [
    ((1, 64, 32), 19, 1, 1, 1),  # too short a kernel
    ((1, 64, 32), 20, 2, 1, 1),  # a stride
    ((1, 64, 32), 20, 1, 2, 1),  # a dilation
    ((1, 64, 16), 20, 1, 1, 2),  # a depth multiplier
    ((1, 64, 12), 20, 1, 1, 1),  # channels not a whole vector
    ((1, 26, 32), 20, 1, 1, 1),  # seven output rows ('valid')
])
def test_other_problems_take_the_general_kernels(shape, ksize, strides, dilation, mult, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((ksize, shape[2], mult)).astype(np.float32)
    taken = _spy(monkeypatch)
    got = nd.depthwise_conv1d(x, kernel, None, strides, "valid", dilation_rate=dilation)
    assert taken == [False]
    assert_close(got, ref.conv1d_forward(x, kernel, None, strides, "valid", "channels_last", dilation), np.float32)


GRAD_CASES = [  # (batch, length, vectors, kernel_size, padding): the input gradient as a forward of reversed taps
    (2, 300, 2, 31, "same"),
    (1, 40, 1, 21, "causal"),
    (2, 48, 1, 20, "valid"),
    (1, 70, 1, 20, ((19, 3),)),  # before = K-1 - 19 = 0: the longest explicit padding that takes it
]


@pytest.mark.parametrize("batch, length, vectors, ksize, padding", GRAD_CASES)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_gradient_of_long_kernels(batch, length, vectors, ksize, padding, data_format, dtype, monkeypatch):
    rng = np.random.default_rng(length * ksize)
    x, kernel, padding_arg, _ = _operands(rng, batch, length, vectors, ksize, padding, data_format, dtype)
    y = nd.depthwise_conv1d(x, kernel, None, 1, padding_arg, data_format)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    flips, real = [], conv1d_long.input_grad
    monkeypatch.setattr(conv1d_long, "input_grad", lambda *a: flips.append(a[0]) or real(*a))
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, padding_arg, data_format)
    assert len(flips) == 1
    for got_grad, want_grad in zip(grads, _reference_gradients(grad_y, x, kernel, padding, data_format)):
        assert_close(got_grad, want_grad, dtype)


def test_input_gradient_of_long_kernels_by_finite_differences():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 30, 8))
    kernel = rng.standard_normal((20, 8, 1))
    grad_y = rng.standard_normal((1, 30, 8))
    grad_x = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same")[0]
    _assert_finite_differences(x, kernel, grad_y, grad_x, "x", [(0, 0, 0), (0, 7, 3), (0, 29, 7), (0, 15, 5)])


@pytest.mark.parametrize("case", ["inf weight", "padding past the reach", "stride"])
def test_input_gradient_of_long_kernels_elsewhere(case, monkeypatch):
    """An inf weight, explicit padding past the kernel's reach or a stride take the general input gradient."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1, 64, 16))
    kernel = rng.standard_normal((20, 16, 1))
    padding, strides = "same", 1
    if case == "inf weight":
        kernel[3, 2, 0] = np.inf
    elif case == "padding past the reach":
        padding = ExplicitPadding(((21, 0),))
    else:
        strides = 2
    y = nd.depthwise_conv1d(x, np.where(np.isfinite(kernel), kernel, 0), None, strides, padding)
    flips, real = [], conv1d_long.input_grad
    monkeypatch.setattr(conv1d_long, "input_grad", lambda *a: flips.append(a[0]) or real(*a))
    grad_x = nd.depthwise_conv1d_input_grad(np.ones_like(y), kernel, 64, strides, padding)
    assert flips == []
    if case != "inf weight":
        want = _reference_gradients(np.ones_like(y), x, kernel, padding if case != "stride" else "same",
                                    strides=strides)[0]
        assert_close(grad_x, want, np.float64)
    else:
        assert np.isfinite(grad_x[:, :, 3:]).all() and np.isfinite(grad_x[:, :, :2]).all()  # only channel 2 sees inf


@pytest.mark.parametrize("length, ksize, padding, partials", [
    (600, 31, "same", 64),    # tasks of one sub-tile (256 rows) or less
    (600, 20, "causal", 2),   # two tasks of 300 rows: sub-tiles of 256 and 44, summed through the partials
    (300, 33, "valid", 1),    # one task
    (40, 24, ((30, 2),), 64),  # rows of the window mostly padding
])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_gradient_of_long_kernels(length, ksize, padding, partials, data_format, dtype, monkeypatch):
    from numba_dwconv.cpu import conv1d

    monkeypatch.setattr(conv1d, "MAX_PARTIALS", partials)
    fits, real = [], conv1d_long.kernel_grad_fits
    monkeypatch.setattr(conv1d_long, "kernel_grad_fits", lambda p: fits.append(real(p)) or fits[-1])
    rng = np.random.default_rng(length + ksize)
    x, kernel, padding_arg, _ = _operands(rng, 2, length, 2, ksize, padding, data_format, dtype)
    y = nd.depthwise_conv1d(x, kernel, None, 1, padding_arg, data_format)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    got = nd.depthwise_conv1d_kernel_grad(grad_y, x, ksize, 1, padding_arg, data_format)
    assert fits == [True]
    want = _reference_gradients(grad_y, x, kernel, padding, data_format)
    assert_close(got[0], want[1], dtype)
    assert_close(got[1], want[2], dtype)
    again = nd.depthwise_conv1d_kernel_grad(grad_y, x, ksize, 1, padding_arg, data_format)
    np.testing.assert_array_equal(again[0], got[0])  # (a fixed order of sums)


def test_kernel_gradient_of_long_kernels_by_finite_differences():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 50, 8))
    kernel = rng.standard_normal((21, 8, 1))
    grad_y = rng.standard_normal((2, 50, 8))
    grad_kernel = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same")[1]
    _assert_finite_differences(x, kernel, grad_y, grad_kernel, "kernel",
                               [(0, 0, 0), (10, 3, 0), (20, 7, 0), (13, 5, 0)])
