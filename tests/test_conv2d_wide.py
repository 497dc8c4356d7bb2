"""The 2D kernels of wide kernels in registers (numba_dwconv.cpu.conv2d_last_wide): forward, gradients, layouts."""

import numba
import numpy as np
import pytest
from cases import assert_close
from test_conv2d import make_case2d

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv._geometry import ExplicitPadding


def _padded(x, padding, data_format):
    """``x`` with explicit ``padding`` ((top, bottom), (left, right)) as zeros around its rows and columns."""
    spatial = tuple(padding)
    return np.pad(x, ((0, 0), *spatial, (0, 0)) if data_format == "channels_last" else ((0, 0), (0, 0), *spatial))


def _reference_forward(x, kernel, bias, strides, padding, data_format, dilation):
    """The reference forward; explicit padding: 'valid' on the zero-padded input."""
    if isinstance(padding, str):
        return ref.conv2d_forward(x, kernel, bias, strides, padding, data_format, dilation)
    return ref.conv2d_forward(_padded(x, padding, data_format), kernel, bias, strides, "valid", data_format, dilation)


def _reference_gradients(grad_y, x, kernel, strides, padding, data_format, dilation):
    """The reference gradients (input, kernel, bias); explicit padding: those of the zero-padded input, the input
    gradient cropped back to ``x``'s rows and columns."""
    if isinstance(padding, str):
        return ref.conv2d_gradients(grad_y, x, kernel, strides, padding, data_format, dilation)
    grads = list(ref.conv2d_gradients(grad_y, _padded(x, padding, data_format), kernel, strides, "valid",
                                      data_format, dilation))
    (top, _), (left, _) = padding
    h, w = x.shape[1:3] if data_format == "channels_last" else x.shape[2:]
    rows, cols = slice(top, top + h), slice(left, left + w)
    grads[0] = grads[0][:, rows, cols] if data_format == "channels_last" else grads[0][:, :, rows, cols]
    return grads


@pytest.mark.parametrize("kernel_size, strides, padding, dilation, mult, width", [
    ((7, 7), 1, "same", 1, 1, 13),          # 13 columns: a block of eight and one overlapping it
    ((9, 7), (2, 1), "same", (2, 1), 1, 16),  # row stride and dilation
    ((7, 9), 1, "valid", 1, 1, 20),
    ((7, 7), 1, ExplicitPadding(((2, 5), (4, 1))), 1, 2, 11),  # explicit padding (the PyTorch bridge's), m = 2
    ((3, 13), 1, "same", 1, 1, 17),          # more than 25 taps, narrow rows of taps
    ((13, 31), 1, "same", 1, 1, 9),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("group_bytes", [None, 1])
def test_forward_of_wide_kernels_in_registers(kernel_size, strides, padding, dilation, mult, width, dtype, group_bytes,
                                              monkeypatch):
    """Kernels of more than 25 taps, or 7 and more columns, take the register-tiled forward (conv2d_last_wide).

    With ``group_bytes`` = 1 every tap row is its own group: the partial sums go through the output
    between tap rows (and the last, overlapping block stores only its new columns).
    """
    from numba_dwconv.cpu import conv2d_wide

    if group_bytes is not None:
        monkeypatch.setattr(conv2d_wide, "GROUP_BYTES", group_bytes)
    taken, real = [], conv2d_wide.fits
    monkeypatch.setattr(conv2d_wide, "fits", lambda p, k: taken.append(real(p, k)) or taken[-1])
    rng = np.random.default_rng(kernel_size[0] * 100 + kernel_size[1] + width)
    channels = 32 // mult
    x, kernel, bias = make_case2d(rng, 2, 10, width, channels, kernel_size, mult, "channels_last", dtype)
    for activation in (None, "relu"):
        y = nd.depthwise_conv2d(x, kernel, bias, strides, padding, "channels_last", dilation, activation=activation)
        want = _reference_forward(x, kernel, bias, strides, padding, "channels_last", dilation)
        assert_close(y, ref.activation(activation, want) if activation else want, dtype)
    assert taken == [True, True]
    odd = make_case2d(rng, 1, 10, width, 12, kernel_size, 1, "channels_last", dtype)  # 12 channels: not whole vectors
    y = nd.depthwise_conv2d(*odd, strides, padding, "channels_last", dilation)
    assert_close(y, _reference_forward(*odd, strides, padding, "channels_last", dilation), dtype)
    assert taken[-1] is False


@pytest.mark.parametrize("kernel_size, padding, height, group_bytes", [
    ((7, 7), "same", 21, None),    # pairs from row 4 to 16, rows 3 and 17 alone
    ((7, 9), "valid", 22, None),   # out_h 16: every row in a pair
    ((5, 13), ExplicitPadding(((0, 3), (6, 6))), 18, None),
    ((7, 7), "same", 21, 1),       # a group per tap row: the pairs' sums through the output between rows
    ((4, 7), "same", 15, 3000),    # groups of two tap rows
])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_forward_sums_rows_in_pairs(kernel_size, padding, height, group_bytes, data_format, dtype, monkeypatch):
    """Unit row steps: two output rows whose tap rows are all inside are summed together (one input row feeds
    both), the same multiply-adds in the same order as one row at a time: the same bits, for any thread count.
    (channels_first: on the planes, the two rows transposed out of the part's buffer.)"""
    from numba_dwconv.cpu import conv2d_wide

    if group_bytes is not None:
        monkeypatch.setattr(conv2d_wide, "GROUP_BYTES", group_bytes)
    rng = np.random.default_rng(height)
    x, kernel, bias = make_case2d(rng, 3, height, 19, 32, kernel_size, 1, data_format, dtype)

    def forward():
        return nd.depthwise_conv2d(x, kernel, bias, 1, padding, data_format, activation="relu")

    threads = numba.get_num_threads()
    try:
        results = []
        for count in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(count)
            results.append(forward())
    finally:
        numba.set_num_threads(threads)
    want = ref.activation("relu", _reference_forward(x, kernel, bias, 1, padding, data_format, 1))
    assert_close(results[0], want, dtype)
    np.testing.assert_array_equal(results[0], results[1])
    real = conv2d_wide._forward_slots  # one slot fewer: no pairs, one row at a time
    monkeypatch.setattr(conv2d_wide, "_forward_slots", lambda problem: real(problem) - 1)
    np.testing.assert_array_equal(forward(), results[0])


@pytest.mark.parametrize("kernel_size, padding, dilation, width, mult", [
    ((7, 7), "same", 1, 13, 1),
    ((9, 7), "same", (2, 1), 16, 1),
    ((7, 9), "valid", 1, 20, 1),
    ((3, 13), "same", 1, 17, 1),
    ((13, 31), "same", 1, 9, 1),
    ((7, 7), ExplicitPadding(((1, 8), (2, 3))), 1, 19, 1),  # more padding after than the kernel reaches
    ((7, 7), ExplicitPadding(((8, 1), (2, 3))), 1, 19, 1),  # and before: the gather (a negative transposed padding)
    ((7, 7), "same", 1, 13, 2),  # a multiplier: the gather (each group of repeated channels summed)
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("group_bytes", [None, 1])
def test_input_grad_of_wide_kernels_as_a_transposed_forward(kernel_size, padding, dilation, width, mult, dtype,
                                                            group_bytes, monkeypatch):
    """Unit strides, m = 1: a wide kernel's input gradient is the register-tiled forward over the output gradient."""
    from numba_dwconv.cpu import conv2d_wide

    if group_bytes is not None:
        monkeypatch.setattr(conv2d_wide, "GROUP_BYTES", group_bytes)
    taken, real = [], conv2d_wide.fits
    monkeypatch.setattr(conv2d_wide, "fits", lambda p, k: taken.append(real(p, k)) or taken[-1])
    rng = np.random.default_rng(kernel_size[0] * 100 + kernel_size[1] + width)
    x, kernel, _ = make_case2d(rng, 2, 12, width, 16, kernel_size, mult, "channels_last", dtype)
    y = nd.depthwise_conv2d(x, kernel, None, 1, padding, "channels_last", dilation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    taken.clear()
    got = nd.depthwise_conv2d_input_grad(grad_y, kernel, x.shape[1:3], 1, padding, "channels_last", dilation)
    want = _reference_gradients(grad_y, x, kernel, 1, padding, "channels_last", dilation)[0]
    assert_close(got, want, dtype)
    assert taken == ([] if padding == ((8, 1), (2, 3)) or mult > 1 else [True])


@pytest.mark.parametrize("kernel_size, strides, padding, dilation, mult, taken", [
    ((7, 7), 1, "same", 1, 1, True),          # one group of eight taps, the eighth not stored
    ((9, 7), (2, 1), "same", (2, 1), 1, True),
    ((7, 13), 1, "valid", 1, 1, True),        # two groups, the second overlapping the first
    ((7, 7), 1, ExplicitPadding(((2, 5), (4, 1))), 1, 2, True),
    ((13, 31), 1, "same", 1, 1, True),
    ((9, 9), 1, "same", 1, 1, False),         # 16 taps' work for 9: the compile-time-width kernel
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_grad_of_wide_kernels_in_registers(kernel_size, strides, padding, dilation, mult, taken, dtype,
                                                  monkeypatch):
    """Wide kernels' kernel and bias gradients: eight taps of a channel vector in registers over the rows."""
    from numba_dwconv.cpu import conv2d_wide

    seen, real = [], conv2d_wide.kernel_grad_fits
    monkeypatch.setattr(conv2d_wide, "kernel_grad_fits", lambda p: seen.append(real(p)) or seen[-1])
    rng = np.random.default_rng(kernel_size[0] * 100 + kernel_size[1] + mult)
    x, kernel, bias = make_case2d(rng, 2, 11, 17, 32 // mult, kernel_size, mult, "channels_last", dtype)
    y = nd.depthwise_conv2d(x, kernel, bias, strides, padding, "channels_last", dilation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_k, grad_b = nd.depthwise_conv2d_kernel_grad(grad_y, x, kernel_size, strides, padding, "channels_last",
                                                     dilation)
    want = _reference_gradients(grad_y, x, kernel, strides, padding, "channels_last", dilation)
    assert_close(grad_k, want[1], dtype)
    assert_close(grad_b, want[2], dtype)
    assert seen == [taken]


PLANES_CASES = [  # (kernel_size, strides, padding, dilation, width): every float32 width >= 16, float64 >= 8
    ((7, 7), 1, "same", 1, 20),             # 20 columns: a square of 16 and one overlapping it; blocks of 8 + 4
    ((9, 7), (2, 1), "same", (2, 1), 16),   # row stride and dilation
    ((7, 9), 1, "valid", 1, 24),            # 16 output columns
    ((7, 7), 1, ExplicitPadding(((2, 5), (4, 1))), 1, 17),
    ((13, 31), 1, "same", 1, 17),
    ((6, 6), 1, "same", 1, 33),
]


@pytest.mark.parametrize("kernel_size, strides, padding, dilation, width", PLANES_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("group_bytes", [None, 1])
def test_channels_first_forward_of_wide_kernels_on_the_planes(kernel_size, strides, padding, dilation, width, dtype,
                                                              group_bytes, monkeypatch):
    """channels_first, more than VIA_LAST_TAPS taps, m = 1: the wide kernel reads and writes the planes.

    Squares of a channel vector by a column vector are transposed into its row buffer and out of each
    output row (rows of ``lanes`` columns or more); narrower rows, multipliers and channel counts that are
    not whole vectors keep the copies to channels_last.
    """
    from numba_dwconv.cpu import conv2d_wide

    if group_bytes is not None:
        monkeypatch.setattr(conv2d_wide, "GROUP_BYTES", group_bytes)
    taken, real = [], conv2d_wide.planes_fit
    monkeypatch.setattr(conv2d_wide, "planes_fit", lambda p: taken.append(real(p)) or taken[-1])
    rng = np.random.default_rng(kernel_size[0] * 100 + kernel_size[1] + width)
    x, kernel, bias = make_case2d(rng, 2, 10, width, 32, kernel_size, 1, "channels_first", dtype)
    for activation, b in ((None, bias), ("relu", bias), ("gelu", None)):
        y = nd.depthwise_conv2d(x, kernel, b, strides, padding, "channels_first", dilation, activation=activation)
        want = _reference_forward(x, kernel, b, strides, padding, "channels_first", dilation)
        assert y.flags.c_contiguous
        assert_close(y, ref.activation(activation, want) if activation else want, dtype)
        x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # the same sums in the same order as channels_last
        y_last = nd.depthwise_conv2d(x_last, kernel, b, strides, padding, "channels_last", dilation,
                                     activation=activation)
        np.testing.assert_array_equal(y, y_last.transpose(0, 3, 1, 2))
    assert taken == [True] * 3
    lanes = 64 // np.dtype(dtype).itemsize
    others = [make_case2d(rng, 1, 10, width, 12, kernel_size, 1, "channels_first", dtype),  # not whole vectors
              make_case2d(rng, 1, 10, width, 16, kernel_size, 2, "channels_first", dtype),  # a multiplier
              make_case2d(rng, 1, 10, lanes - 1 + (kernel_size[1] - 1 if padding == "valid" else 0), 16, kernel_size,
                          1, "channels_first", dtype)]  # input or output rows narrower than a vector
    for case in others:
        taken.clear()
        y = nd.depthwise_conv2d(*case, strides, padding, "channels_first", dilation)
        assert_close(y, _reference_forward(*case, strides, padding, "channels_first", dilation), dtype)
        assert taken == [False]


@pytest.mark.parametrize("kernel_size, strides, padding, dilation, width", PLANES_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_first_backward_of_wide_kernels(kernel_size, strides, padding, dilation, width, dtype, monkeypatch):
    """channels_first large kernels, m = 1: the input gradient as the wide forward on the planes (unit strides,
    finite weights), the kernel gradient by the channels_last wide kernel on transposed copies (where it fits)."""
    from numba_dwconv.cpu import conv2d_wide

    planes, kernel_grads = [], []
    real_planes, real_kernel_grad = conv2d_wide.planes_transposed, conv2d_wide.kernel_grad
    monkeypatch.setattr(conv2d_wide, "planes_transposed", lambda p: planes.append(real_planes(p)) or planes[-1])
    monkeypatch.setattr(conv2d_wide, "kernel_grad", lambda *a: kernel_grads.append(a[0]) or real_kernel_grad(*a))
    rng = np.random.default_rng(kernel_size[0] * 10 + width)
    x, kernel, _ = make_case2d(rng, 2, 11, width, 16, kernel_size, 1, "channels_first", dtype)
    y = nd.depthwise_conv2d(x, kernel, None, strides, padding, "channels_first", dilation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = _reference_gradients(grad_y, x, kernel, strides, padding, "channels_first", dilation)
    for got in (nd.depthwise_conv2d_backward(grad_y, x, kernel, strides, padding, "channels_first", dilation),
                (nd.depthwise_conv2d_input_grad(grad_y, kernel, x.shape[2:], strides, padding, "channels_first",
                                                dilation),
                 *nd.depthwise_conv2d_kernel_grad(grad_y, x, kernel_size, strides, padding, "channels_first",
                                                  dilation))):
        for g, w in zip(got, want):
            assert_close(g, w, dtype)
    unit = strides == 1
    assert [p is not None for p in planes] == [unit] * (len(planes)) and len(planes) >= 2
    covered = -(-kernel_size[1] // 8) * 8 <= 1.4 * kernel_size[1]  # conv2d_wide.kernel_grad_fits
    assert len(kernel_grads) == (2 if covered else 0) and all(p.channels_last for p in kernel_grads)
    kernel[0, 0, 3, 0] = np.inf  # an inf weight: not the transposed forward (its padding times inf: NaN)
    planes.clear()
    got = nd.depthwise_conv2d_input_grad(grad_y, kernel, x.shape[2:], strides, padding, "channels_first", dilation)
    assert planes == [] and np.isnan(got).any() == np.isnan(
        nd.depthwise_conv2d_input_grad(np.ascontiguousarray(grad_y.transpose(0, 2, 3, 1)), kernel, x.shape[2:],
                                       strides, padding, "channels_last", dilation)).any()
