"""2D depthwise and separable convolution on the CPU, checked against numba_dwconv.reference."""

import itertools

import numpy as np
import pytest
from cases import assert_close, assert_same_from_threads
from hypothesis import given
from hypothesis import strategies as st

import numba_dwconv as nd
from numba_dwconv import reference as ref


def make_case2d(rng, batch, height, width, channels, kernel_hw, mult, data_format, dtype):
    x = rng.standard_normal((batch, height, width, channels)).astype(dtype)
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    kernel = rng.standard_normal((*kernel_hw, channels, mult)).astype(dtype)
    bias = rng.standard_normal(channels * mult).astype(dtype)
    return x, kernel, bias


def check_all_2d(x, kernel, bias, stride, padding, data_format, dilation, dtype, rng, **kw):
    y = nd.depthwise_conv2d(x, kernel, bias, stride, padding, data_format, dilation, **kw)
    assert y.dtype == dtype
    assert_close(y, ref.conv2d_forward(x, kernel, bias, stride, padding, data_format, dilation), dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = ref.conv2d_gradients(grad_y, x, kernel, stride, padding, data_format, dilation)
    grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, stride, padding, data_format, dilation, **kw)
    assert isinstance(grads, nd.DepthwiseGrads)
    for got, expected in zip(grads, want):
        assert got.dtype == dtype and got.shape == expected.shape
        assert_close(got, expected, dtype)
    size = x.shape[1:3] if data_format == "channels_last" else x.shape[2:4]
    assert_close(nd.depthwise_conv2d_input_grad(grad_y, kernel, size, stride, padding, data_format, dilation, **kw),
                 want[0], dtype)
    grad_k, grad_b = nd.depthwise_conv2d_kernel_grad(grad_y, x, kernel.shape[:2], stride, padding, data_format,
                                                     dilation, **kw)
    assert_close(grad_k, want[1], dtype)
    assert_close(grad_b, want[2], dtype)


GRID = list(itertools.product(["valid", "same"], [(1, 1), (2, 1), (2, 2)], [(1, 1), (1, 2), (2, 2)], [1, 2],
                              ["channels_last", "channels_first"], [np.float32, np.float64]))


@pytest.mark.parametrize(("padding", "stride", "dilation", "mult", "data_format", "dtype"), GRID)
def test_grid_against_reference(padding, stride, dilation, mult, data_format, dtype):
    rng = np.random.default_rng(hash((padding, stride, dilation, mult, data_format)) % 2**32)
    x, kernel, bias = make_case2d(rng, 2, 9, 10, 3, (3, 2), mult, data_format, dtype)
    check_all_2d(x, kernel, bias, stride, padding, data_format, dilation, dtype, rng)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_larger_shape_many_tasks(data_format):
    rng = np.random.default_rng(1)
    x, kernel, bias = make_case2d(rng, 3, 40, 33, 70, (5, 5), 1, data_format, np.float32)
    check_all_2d(x, kernel, bias, 1, "same", data_format, 1, np.float32, rng)


# A few kernel sizes, multiplier 1: each new (KH, KW, m) compiles the kernels again (other sizes and
# multipliers are in the grids).
@given(batch=st.integers(0, 2), height=st.integers(1, 9), width=st.integers(1, 9), channels=st.integers(1, 4),
       kh=st.sampled_from([1, 3]), kw=st.sampled_from([2, 3]), mult=st.just(1), sh=st.integers(1, 3),
       sw=st.integers(1, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), padding=st.sampled_from(["valid", "same"]),
       data_format=st.sampled_from(["channels_last", "channels_first"]), seed=st.integers(0, 2**31))
def test_random_shapes(batch, height, width, channels, kh, kw, mult, sh, sw, dh, dw, padding, data_format, seed):
    if padding == "valid" and ((kh - 1) * dh + 1 > height or (kw - 1) * dw + 1 > width):
        return
    rng = np.random.default_rng(seed)
    x, kernel, bias = make_case2d(rng, batch, height, width, channels, (kh, kw), mult, data_format, np.float64)
    check_all_2d(x, kernel, bias, (sh, sw), padding, data_format, (dh, dw), np.float64, rng)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_gradients_by_finite_differences(data_format):
    rng = np.random.default_rng(2)
    x, kernel, bias = make_case2d(rng, 2, 7, 6, 2, (3, 3), 2, data_format, np.float64)
    args = ((2, 1), "same", data_format, (1, 2))
    grad_y = rng.standard_normal(nd.depthwise_conv2d(x, kernel, bias, *args).shape)
    grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, *args)
    operands = [x, kernel, bias]
    for index, grad in enumerate(grads):
        direction = rng.standard_normal(operands[index].shape)
        plus = [o.copy() for o in operands]
        minus = [o.copy() for o in operands]
        plus[index] += 1e-6 * direction
        minus[index] -= 1e-6 * direction
        numeric = (np.sum(nd.depthwise_conv2d(*plus, *args) * grad_y)
                   - np.sum(nd.depthwise_conv2d(*minus, *args) * grad_y)) / 2e-6
        np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_separable_against_reference(data_format, padding):
    rng = np.random.default_rng(3)
    x, depthwise, _ = make_case2d(rng, 2, 8, 7, 3, (3, 3), 2, data_format, np.float64)
    pointwise = rng.standard_normal((1, 1, 6, 5))
    bias = rng.standard_normal(5)
    y = nd.separable_conv2d(x, depthwise, pointwise, bias, 2, padding, data_format)
    assert_close(y, ref.separable2d_forward(x, depthwise, pointwise, bias, 2, padding, data_format), np.float64)
    grad_y = rng.standard_normal(y.shape)
    grads = nd.separable_conv2d_backward(grad_y, x, depthwise, pointwise, 2, padding, data_format)
    want = ref.separable2d_gradients(grad_y, x, depthwise, pointwise, 2, padding, data_format)
    for got, expected in zip(grads, want):
        assert got.shape == expected.shape
        assert_close(got, expected, np.float64)


def test_deterministic_and_inputs_unchanged():
    rng = np.random.default_rng(4)
    x, kernel, _ = make_case2d(rng, 4, 30, 30, 16, (3, 3), 1, "channels_last", np.float32)
    copy = x.copy()
    grad_y = rng.standard_normal((4, 30, 30, 16)).astype(np.float32)
    first = nd.depthwise_conv2d_backward(grad_y, x, kernel, padding="same")
    again = nd.depthwise_conv2d_backward(grad_y, x, kernel, padding="same")
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, copy)


BAD_2D = [
    ({"inputs": np.zeros((2, 8, 3))}, ValueError, "4D array"),
    ({"padding": "causal"}, ValueError, "only supported by 1D"),
    ({"padding": "full"}, ValueError, "padding='full'"),
    ({"strides": (1, 2, 3)}, ValueError, "tuple of 2 integers"),
    ({"dilation_rate": (1,)}, ValueError, "tuple of 2 integers"),
    ({"strides": (0, 1)}, ValueError, "strides=(0, 1)"),
    ({"kernel": np.zeros((3, 3))}, ValueError, "kernel"),
    ({"kernel": np.zeros((3, 3, 5, 1))}, ValueError, "has 5 channels"),
    ({"kernel": np.zeros((9, 3, 3, 1))}, ValueError, "Computed output size would be zero or negative"),
    ({"bias": np.zeros(4)}, ValueError, "bias"),
    ({"inputs": np.zeros((2, 8, 8, 3), np.int32)}, TypeError, "int32"),
    ({"data_format": "NHWC"}, ValueError, "data_format='NHWC'"),
]


@pytest.mark.parametrize(("override", "error", "fragment"), BAD_2D)
def test_bad_arguments(override, error, fragment):
    args = {"inputs": np.zeros((2, 8, 8, 3)), "kernel": np.zeros((3, 3, 3, 1)), "bias": np.zeros(3)}
    args.update(override)
    with pytest.raises(error) as info:
        nd.depthwise_conv2d(**args)
    assert fragment in str(info.value)


def test_batch_zero():
    x = np.zeros((0, 6, 6, 2), np.float32)
    y = nd.depthwise_conv2d(x, np.ones((3, 3, 2, 1), np.float32), padding="same", strides=2)
    assert y.shape == (0, 3, 3, 2)
    grads = nd.depthwise_conv2d_backward(y, x, np.ones((3, 3, 2, 1), np.float32), padding="same", strides=2)
    np.testing.assert_array_equal(grads.grad_kernel, 0)
    assert grads.grad_inputs.shape == x.shape


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_non_finite_inputs_stay_where_they_belong(data_format):
    """An inf in the input reaches exactly the outputs and kernel taps that read it (as in the reference)."""
    rng = np.random.default_rng(5)
    x, kernel, _ = make_case2d(rng, 1, 8, 9, 2, (3, 3), 1, "channels_last", np.float64)
    x[0, 0, 8, 0] = np.inf  # top-right corner of channel 0: only taps (0, 2) reach it ('valid')
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = nd.depthwise_conv2d(x, kernel, None, 1, "valid", data_format)
    want = ref.conv2d_forward(x, kernel, None, 1, "valid", data_format)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(want))
    grad_y = np.ones_like(want)
    grad_k = nd.depthwise_conv2d_kernel_grad(grad_y, x, 3, 1, "valid", data_format)[0]
    want_k = ref.conv2d_gradients(grad_y, x, kernel, 1, "valid", data_format)[1]
    assert np.isinf(want_k[0, 2, 0, 0]) and np.isfinite(np.delete(want_k.ravel(), 2 * 2)).all()
    np.testing.assert_array_equal(np.isfinite(grad_k), np.isfinite(want_k))
    finite = np.isfinite(want_k)
    np.testing.assert_allclose(grad_k[finite], want_k[finite], rtol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel_size, channels", [((3, 3), 3), ((7, 7), 16)])  # (7x7, 16: the wide kernels)
def test_non_finite_weight_reaches_exactly_the_inputs_it_multiplies(data_format, stride, kernel_size, channels):
    """An inf tap makes inf/NaN exactly the input-gradient entries the reference makes non-finite."""
    rng = np.random.default_rng(11)
    x, kernel, _ = make_case2d(rng, 2, 9, 10, channels, kernel_size, 1, data_format, np.float64)
    kernel[kernel_size[0] - 1, 0, 1, 0] = np.inf  # bottom-left tap of channel 1
    with np.errstate(invalid="ignore"):  # the reference meets 0 * inf at the padding
        grad_y = rng.standard_normal(ref.conv2d_forward(x, kernel, None, stride, "same", data_format).shape)
        want = ref.conv2d_gradients(grad_y, x, kernel, stride, "same", data_format)[0]
    size = x.shape[1:3] if data_format == "channels_last" else x.shape[2:]
    got = nd.depthwise_conv2d_input_grad(grad_y, kernel, size, stride, "same", data_format)
    assert not np.isfinite(want).all()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_backward_with_non_finite_input_same_padding(data_format):
    """'same' with unit strides (one-pass backward on channels_first): an inf input reaches what the reference says."""
    rng = np.random.default_rng(12)
    x, kernel, _ = make_case2d(rng, 2, 7, 8, 3, (3, 3), 2, data_format, np.float64)
    x.flat[17] = np.inf
    with np.errstate(invalid="ignore"):
        grad_y = rng.standard_normal(ref.conv2d_forward(x, kernel, None, 1, "same", data_format).shape)
        want = ref.conv2d_gradients(grad_y, x, kernel, 1, "same", data_format)
    got = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, "same", data_format)
    for g, r in zip(got, want):
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(r))
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        finite = np.isfinite(r)
        np.testing.assert_allclose(g[finite], r[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kernel_hw", "stride", "dilation"), [
    ((1, 1), (2, 2), (1, 1)), ((3, 3), (2, 2), (1, 1)), ((2, 5), (2, 2), (1, 1)), ((4, 1), (1, 2), (1, 1)),
    ((3, 3), (1, 2), (2, 3)), ((3, 4), (2, 2), (2, 1)), ((5, 3), (2, 2), (3, 2)),
])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("width", [11, 12])
def test_input_grad_column_stride_two(kernel_hw, stride, dilation, padding, width):
    """channels_first, column stride 2: each input gathers its class of taps (empty classes too); an inf output
    gradient reaches exactly the inputs the reference gives it to."""
    rng = np.random.default_rng(width * 7 + kernel_hw[0])
    x, kernel, _ = make_case2d(rng, 2, 13, width, 3, kernel_hw, 2, "channels_first", np.float64)
    grad_y = rng.standard_normal(ref.conv2d_forward(x, kernel, None, stride, padding, "channels_first",
                                                    dilation).shape)
    grad_y.flat[grad_y.size * 2 // 3] = np.inf
    with np.errstate(invalid="ignore"):
        want = ref.conv2d_gradients(grad_y, x, kernel, stride, padding, "channels_first", dilation)[0]
    got = nd.depthwise_conv2d_input_grad(grad_y, kernel, x.shape[2:], stride, padding, "channels_first", dilation)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_four_threads_calling_at_once(data_format):
    """Python threads may call the 2D ops concurrently (each result equals the single-threaded one)."""
    rng = np.random.default_rng(13)

    def forward_and_backward(x, kernel, bias):
        y = nd.depthwise_conv2d(x, kernel, bias, 1, "same", data_format)
        return y, nd.depthwise_conv2d_backward(y, x, kernel, 1, "same", data_format)

    cases = [make_case2d(rng, 2, 12, 11, 6, (3, 3), 1, data_format, np.float32) for _ in range(4)]
    assert_same_from_threads([lambda case=case: forward_and_backward(*case) for case in cases])


@pytest.mark.parametrize("kernel_size, strides, dilation, mult, activation", [
    ((9, 9), 1, 1, 1, None), ((17, 5), 2, 1, 2, "relu"), ((9, 9), 1, 2, 1, "gelu"), ((5, 17), (1, 2), 1, 1, None),
    ((6, 6), 1, 1, 1, None), ((7, 7), (2, 1), 1, 2, "relu")])
def test_channels_first_large_kernels_through_the_channels_last_kernels(kernel_size, strides, dilation, mult,
                                                                        activation):
    """More than VIA_LAST_TAPS taps: the channels_first forward runs on transposed copies; same results."""
    from numba_dwconv.cpu import conv2d

    assert kernel_size[0] * kernel_size[1] > conv2d.VIA_LAST_TAPS
    rng = np.random.default_rng(sum(kernel_size) + mult)
    x = rng.standard_normal((2, 3, 23, 29))
    kernel = rng.standard_normal(kernel_size + (3, mult))
    bias = rng.standard_normal(3 * mult)
    got = nd.depthwise_conv2d(x, kernel, bias, strides=strides, padding="same" if strides == 1 else "valid",
                              data_format="channels_first", dilation_rate=dilation, activation=activation)
    want = ref.conv2d_forward(x, kernel, bias, strides, "same" if strides == 1 else "valid", "channels_first", dilation)
    if activation:
        want = ref.activation(activation, want)
    assert got.flags.c_contiguous and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel_size, padding, dilation, mult, width", [
    ((3, 18), "valid", 1, 1, 30), ((17, 19), "same", 1, 1, 44), ((2, 31), "same", 1, 1, 41),
    ((2, 31), "valid", 1, 1, 37), ((3, 18), "same", (1, 2), 1, 41), ((3, 17), "same", 1, 2, 25)])
def test_wide_kernels_of_run_time_width(kernel_size, padding, dilation, mult, width):
    """More than 16 taps across (a run-time count): blocks of 8 + 4 + 2 + 1 taps with unit steps, column passes else."""
    rng = np.random.default_rng(sum(kernel_size) + width)
    x, kernel, bias = make_case2d(rng, 2, 9, width, 20, kernel_size, mult, "channels_last", np.float64)
    check_all_2d(x, kernel, bias, 1, padding, "channels_last", dilation, np.float64, rng)


@pytest.mark.parametrize("kernel_size, padding, strides, dilation, mult", [
    ((7, 7), "same", 1, 1, 1), ((9, 8), "same", (2, 1), (2, 1), 1), ((5, 7), "valid", 1, 1, 1),
    ((6, 13), "same", 1, 1, 2), ((3, 3), "same", 1, 1, 3), ((7, 7), "same", (1, 2), 1, 1),
    ((4, 9), "same", 1, (1, 2), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_of_padded_input_rows(kernel_size, padding, strides, dilation, mult, dtype):
    """Wide kernels (and multipliers) with unit column steps read rows copied with their padding as zeros."""
    from numba_dwconv.cpu import conv2d

    rng = np.random.default_rng(kernel_size[1] * 10 + mult)
    x, kernel, bias = make_case2d(rng, 2, 11, 19, 5, kernel_size, mult, "channels_last", dtype)
    y = nd.depthwise_conv2d(x, kernel, bias, strides, padding, "channels_last", dilation)
    assert_close(y, ref.conv2d_forward(x, kernel, bias, strides, padding, "channels_last", dilation), dtype)
    problem = nd._opcore.RANK2.problem(x.shape, kernel.shape, strides, padding, "channels_last", dilation, dtype)
    single = conv2d.single_multiplier(problem)
    padded = conv2d._forward_row_args(single, mult, conv2d._all_taps_plan(single, x)[0])[3:]
    unit = problem.width.stride == 1 and problem.width.dilation == 1
    assert (padded != (0, 0)) == (unit and padding == "same")  # (the rows were padded where there is padding)


def _at_offset(array, offset_bytes):
    """A C-contiguous copy of ``array`` starting ``offset_bytes`` past a 64-byte boundary."""
    flat = np.empty(array.size + 128 // array.itemsize, array.dtype)
    start = (-flat.ctypes.data % 64 + offset_bytes) // array.itemsize
    copy = flat[start:start + array.size].reshape(array.shape)
    copy[...] = array
    assert copy.ctypes.data % 64 == offset_bytes
    return copy


@pytest.mark.parametrize("kernel_size, padding", [((5, 5), "same"), ((3, 5), "valid"), ((2, 7), "same")])
@pytest.mark.parametrize("extra_channels", [8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_forward_kernel_choice_by_alignment_is_invisible(kernel_size, padding, extra_channels, dtype, activation,
                                                         monkeypatch):
    """Above NARROW_CHANNELS channels the all-taps blocks run where the rows' vectors can load aligned, else tap rows.

    (The forward on its input's alignment, the input gradient on its output gradient's.)  Rows of
    NARROW_CHANNELS + 16 channels are a multiple of 64 bytes long: at 16 or 40 bytes past a boundary they
    take the all-taps blocks from their first aligned channel; NARROW_CHANNELS + 8 there take the tap-row
    passes.  All must match the reference and each other bit for bit (the choice depends on where the
    input happens to be allocated, so it must never show in a result).
    """
    from numba_dwconv.cpu import conv2d

    channels = conv2d.NARROW_CHANNELS + extra_channels
    itemsize = np.dtype(dtype).itemsize
    rng = np.random.default_rng(channels + kernel_size[1])
    x, kernel, bias = make_case2d(rng, 2, 9, 13, channels, kernel_size, 1, "channels_last", dtype)
    offsets = (0, 16, 40)
    rows_line_up = channels * itemsize % 64 == 0
    starts = [0] + [(64 - offset) // itemsize if rows_line_up else None for offset in offsets[1:]]
    problem = nd._opcore.RANK2.problem(x.shape, kernel.shape, 1, padding, "channels_last", 1, dtype)
    plans = [conv2d._all_taps_plan(problem, _at_offset(x, offset)) for offset in offsets]
    assert [type(kh_t) for kh_t, _ in plans] == [tuple if start is not None else int for start in starts]
    for (_, chunks), start in zip(plans, starts):  # chunks cover every channel; past the first vector, aligned
        covered = np.zeros(channels, bool)
        for lo, hi in chunks.reshape(-1, 2).astype(int):
            covered[lo:hi] = True
            assert lo == 0 or hi == channels or not start or (lo - start) * itemsize % 64 == 0
        assert covered.all()
    seen = []  # what the kernels' host functions see: the arrays as given
    real = conv2d._first_aligned_channel
    monkeypatch.setattr(conv2d, "_first_aligned_channel", lambda a, i, c: seen.append(real(a, i, c)) or seen[-1])
    want = ref.conv2d_forward(x, kernel, bias, 1, padding, "channels_last", 1)
    if activation:
        want = ref.activation(activation, want)
    ys = [nd.depthwise_conv2d(_at_offset(x, offset), kernel, bias, 1, padding, "channels_last",
                              activation=activation) for offset in offsets]
    assert seen == starts
    assert_close(ys[0], want, dtype)
    for y in ys[1:]:
        np.testing.assert_array_equal(ys[0], y)
    grad_y = rng.standard_normal(ys[0].shape).astype(dtype)  # the input gradient chooses by its grad's alignment
    grads = [nd.depthwise_conv2d_input_grad(_at_offset(grad_y, offset), kernel, x.shape[1:3], 1, padding,
                                            "channels_last") for offset in offsets]
    assert seen == starts * 2
    assert_close(grads[0], ref.conv2d_gradients(grad_y, x, kernel, 1, padding, "channels_last", 1)[0], dtype)
    for grad in grads[1:]:
        np.testing.assert_array_equal(grads[0], grad)


@pytest.mark.parametrize("kernel_size, strides, dilation, padding, channels", [
    ((3, 3), 2, 1, "same", 40),
    ((3, 3), (1, 2), 1, "valid", 40),
    ((3, 3), 1, (1, 2), "same", 40),      # a column dilation: the strided kernel too
    ((5, 5), 2, 1, "valid", 40),          # more than ALL_TAPS_LIMIT taps: the passes, whatever the alignment
    ((3, 2), (2, 3), (2, 1), "same", 40),
    ((5, 5), 2, 1, "same", 264),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_all_taps_blocks(kernel_size, strides, dilation, padding, channels, dtype, monkeypatch):
    """Column steps other than 1 with a compile-time KH (m = 1): the rows whose tap rows are all inside keep four
    outputs in registers over every tap (input vectors loaded per tap) up to ALL_TAPS_LIMIT taps, whatever the
    input's alignment (their sums may round apart from the tap-row passes', so alignment must not choose)."""
    from numba_dwconv.cpu import conv2d

    rng = np.random.default_rng(kernel_size[0] * 10 + kernel_size[1] + channels)
    x, kernel, bias = make_case2d(rng, 2, 17, 23, channels, kernel_size, 1, "channels_last", dtype)
    problem = nd._opcore.RANK2.problem(x.shape, kernel.shape, strides, padding, "channels_last", dilation, dtype)
    plans = [conv2d._all_taps_plan(problem, _at_offset(x, offset))[0] for offset in (0, 16, 40)]
    assert [isinstance(kh_t, tuple) for kh_t in plans] == [kernel_size[0] * kernel_size[1] <= conv2d.ALL_TAPS_LIMIT] * 3
    want = ref.activation("relu", ref.conv2d_forward(x, kernel, bias, strides, padding, "channels_last", dilation))
    ys = [nd.depthwise_conv2d(_at_offset(x, offset), kernel, bias, strides, padding, "channels_last", dilation,
                              activation="relu") for offset in (0, 16, 40)]
    assert_close(ys[0], want, dtype)
    for y in ys[1:]:
        np.testing.assert_array_equal(ys[0], y)


@pytest.mark.parametrize("width", [3, 4, 5, 6, 7, 9, 13])
@pytest.mark.parametrize("kernel_size, padding", [((3, 3), "same"), ((3, 5), "same"), ((3, 3), "valid")])
def test_all_taps_blocks_end_rows_the_way_the_passes_do(width, kernel_size, padding, monkeypatch):
    """The all-taps blocks take a row's last columns in a block that overlaps the one before (or one by one when
    the row has fewer than four): the bits of the tap-row passes either way."""
    from numba_dwconv.cpu import conv2d

    rng = np.random.default_rng(width)
    x, kernel, bias = make_case2d(rng, 2, 6, width + 4, 24, kernel_size, 1, "channels_last", np.float32)
    x = x[:, :, :width + (0 if padding == "same" else kernel_size[1] - 1)].copy()
    blocks = nd.depthwise_conv2d(x, kernel, bias, 1, padding, "channels_last")
    monkeypatch.setattr(conv2d, "ALL_TAPS_LIMIT", 0)  # (every row by the tap-row passes)
    monkeypatch.setattr(conv2d, "ALL_TAPS_LIMIT_WIDE", 0)
    assert not isinstance(conv2d._all_taps_plan(
        nd._opcore.RANK2.problem(x.shape, kernel.shape, 1, padding, "channels_last", 1, np.float32), x)[0], tuple)
    np.testing.assert_array_equal(blocks, nd.depthwise_conv2d(x, kernel, bias, 1, padding, "channels_last"))
    assert_close(blocks, ref.conv2d_forward(x, kernel, bias, 1, padding, "channels_last", 1), np.float32)


@pytest.mark.parametrize("kernel_size, strides, dilation", [((3, 3), 1, 1), ((5, 5), 1, 1), ((5, 3), 1, (2, 1)),
                                                              ((3, 3), 2, 1)])
def test_rows_with_some_tap_rows_inside_take_blocks_of_that_many_with_the_passes_bits(kernel_size, strides, dilation,
                                                                                       monkeypatch):
    """Above SERIAL_BYTES of outputs, the first and last rows of a 'same' padding take the all-taps blocks compiled
    for the tap rows inside, and the edge columns of the other rows sums over their taps inside
    (conv2d.part_entries): the bits of the tap-row passes."""
    from numba_dwconv.cpu import conv2d

    rng = np.random.default_rng(kernel_size[0] * 7 + strides)
    x, kernel, bias = make_case2d(rng, 2 * strides ** 2, 44, 46, 128, kernel_size, 1, "channels_last", np.float32)
    problem = nd._opcore.RANK2.problem(x.shape, kernel.shape, strides, "same", "channels_last", dilation, np.float32)
    entries, row_limit, column_limit = conv2d.part_entries(problem, conv2d._all_taps_plan(problem, x)[0])
    assert row_limit == conv2d.PART_SLOTS and len(set(map(id, entries[:conv2d.PART_SLOTS]))) > 1  # (rows' compiled)
    assert column_limit == conv2d.PART_SLOTS  # (and the edge columns')
    blocks = nd.depthwise_conv2d(x, kernel, bias, strides, "same", "channels_last", dilation)
    monkeypatch.setattr(conv2d, "ALL_TAPS_LIMIT", 0)  # (every row by the tap-row passes)
    monkeypatch.setattr(conv2d, "ALL_TAPS_LIMIT_WIDE", 0)
    passes = nd.depthwise_conv2d(x, kernel, bias, strides, "same", "channels_last", dilation)
    if strides == 1:  # (at column steps the blocks may round apart from the passes: see _all_taps_plan)
        np.testing.assert_array_equal(blocks, passes)
    want = ref.conv2d_forward(x, kernel, bias, strides, "same", "channels_last", dilation)
    assert_close(blocks, want, np.float32)
    assert_close(passes, want, np.float32)
