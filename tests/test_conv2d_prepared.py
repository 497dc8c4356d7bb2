"""Prepared channels_last 2D forwards (numba_dwconv.cpu.conv2d_prepared) against the forward they prepare."""

import numpy as np
import pytest
from test_conv2d import _at_offset, make_case2d

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv.cpu import conv2d, conv2d_prepared

PREPARED = [  # channels, kernel, stride, padding, dilation, dtype, offset (bytes past a line)
    (16, (3, 3), 1, "same", 1, np.float32, 0),
    (20, (3, 3), 2, "valid", 1, np.float32, 16),
    (32, (3, 5), (2, 1), "same", (1, 2), np.float64, 0),
    (272, (5, 5), 1, "same", 1, np.float32, 0),  # by alignment: all taps at once from channel 0
    (272, (5, 5), 1, "same", 1, np.float32, 16),  # from channel 12
    (272, (5, 5), 1, "same", 1, np.float32, 8),  # rows not on a shared channel: the tap-row passes
    (8, (1, 1), 1, "valid", 1, np.float64, 0),
]


@pytest.mark.parametrize("channels, kernel, stride, padding, dilation, dtype, offset", PREPARED)
def test_a_plan_gives_the_forwards_bits(channels, kernel, stride, padding, dilation, dtype, offset):
    rng = np.random.default_rng(channels)
    x, k, b = make_case2d(rng, 2, 10, 13, channels, kernel, 1, "channels_last", dtype)
    x = _at_offset(x, offset)
    problem = nd._opcore.RANK2.problem(x.shape, k.shape, stride, padding, "channels_last", dilation, np.dtype(dtype))
    plan = conv2d_prepared.forward_plan(problem, x.ctypes.data)
    assert plan.alignment == (offset if conv2d.all_taps_by_alignment(problem) else None)
    taps = conv2d_prepared.keras_taps(np.ascontiguousarray(k[..., 0].transpose(2, 0, 1)[:, None]))
    for bias in (b, None):
        got = plan(x.reshape(-1), taps, bias)
        want = conv2d.conv2d_forward(problem, x, k, np.zeros_like(b) if bias is None else bias)
        np.testing.assert_array_equal(got, want)
        assert got.shape == plan.output_shape
    np.testing.assert_allclose(got, ref.conv2d_forward(x, k, None, stride, padding, "channels_last", dilation),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["channels_first", "multiplier", "wide", "streamed", "empty"])
def test_no_plan_where_a_call_needs_more_than_its_launch(case):
    shape, kernel, fmt = (2, 10, 13, 16), (3, 3, 16, 1), "channels_last"
    if case == "channels_first":
        shape, fmt = (2, 16, 10, 13), "channels_first"
    elif case == "multiplier":
        kernel = (3, 3, 16, 2)
    elif case == "wide":  # padded row copies (or the wide kernels)
        kernel = (7, 7, 16, 1)
    elif case == "streamed":
        shape, kernel = (16, 112, 112, 64), (3, 3, 64, 1)
    elif case == "empty":
        shape = (0, 10, 13, 16)
    problem = nd._opcore.RANK2.problem(shape, kernel, 1, "same", fmt, 1, np.dtype(np.float32))
    assert conv2d_prepared.forward_plan(problem, 0) is None


def test_after_its_first_call_a_plan_calls_the_compiled_kernel_directly_with_the_same_bits():
    from numba_dwconv.cpu.conv2d_last import _forward_last

    rng = np.random.default_rng(3)
    x, k, b = make_case2d(rng, 2, 10, 13, 32, (3, 3), 1, "channels_last", np.float32)
    problem = nd._opcore.RANK2.problem(x.shape, k.shape, 1, "same", "channels_last", 1, np.dtype(np.float32))
    plan = conv2d_prepared.forward_plan(problem, x.ctypes.data)
    taps = conv2d_prepared.keras_taps(np.ascontiguousarray(k[..., 0].transpose(2, 0, 1)[:, None]))
    first = plan(x.reshape(-1), taps, b)
    assert plan._kernel is not _forward_last and callable(plan._kernel)
    np.testing.assert_array_equal(plan(x.reshape(-1), taps, b), first)
    with pytest.raises(TypeError):  # another dtype: numba's unboxing refuses it
        plan(x.reshape(-1).astype(np.float64), taps, b)


def test_a_plan_lays_out_a_torch_weight_in_its_own_buffer_each_call():
    rng = np.random.default_rng(4)
    x, k, b = make_case2d(rng, 2, 9, 11, 48, (5, 5), 1, "channels_last", np.float32)
    problem = nd._opcore.RANK2.problem(x.shape, k.shape, 1, "same", "channels_last", 1, np.dtype(np.float32))
    plan = conv2d_prepared.forward_plan(problem, x.ctypes.data)
    weight = np.ascontiguousarray(k[..., 0].transpose(2, 0, 1)[:, None])  # PyTorch's (C, 1, KH, KW)
    for step in range(3):  # the buffer of the call before holds the old taps: each call lays out its own
        kernel = np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0)[..., None])
        got = plan.from_torch_weight(x.reshape(-1), weight, b)
        np.testing.assert_array_equal(got, conv2d.conv2d_forward(problem, x, kernel, b))
        np.testing.assert_allclose(got, ref.conv2d_forward(x, kernel, b, 1, "same", "channels_last", 1),
                                   rtol=1e-5, atol=1e-5)
        weight = weight * np.float32(1.5) - np.float32(step)
    assert len(plan._spare) == 1
    for bad in (np.nan, np.inf):
        spoiled = weight.copy()
        spoiled[47, 0, 4, 4] = bad
        assert plan.from_torch_weight(x.reshape(-1), spoiled, b) is None
    assert len(plan._spare) == 1  # (given back on the way out too)
