"""Repeated plain CPU forwards skip the general path (numba_dwconv._opcore._plain_key); results stay exact."""

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import _opcore, dispatch, reference

CASES = [  # (rank, layout, input shape, kernel shape, strides, padding, dilation)
    (1, "channels_last", (2, 37, 6), (5, 6, 1), 1, "same", 1),
    (1, "channels_first", (2, 6, 37), (4, 6, 2), 2, "causal", 1),
    (2, "channels_last", (2, 9, 11, 4), (3, 3, 4, 1), 1, "same", 1),
    (2, "channels_first", (1, 4, 10, 9), (3, 2, 4, 2), (2, 1), "valid", (1, 2)),
]


def _call(rank, x, kernel, bias, strides, padding, layout, dilation, **kw):
    op = nd.depthwise_conv1d if rank == 1 else nd.depthwise_conv2d
    return op(x, kernel, bias, strides, padding, layout, dilation, **kw)


def _expected(rank, x, kernel, bias, strides, padding, layout, dilation):
    ref = reference.conv1d_forward if rank == 1 else reference.conv2d_forward
    return ref(x, kernel, bias, strides, padding, layout, dilation)


@pytest.fixture
def general_path_counted(monkeypatch):
    """Counts the calls that take the general path (dispatch.place), the plain path never calls it."""
    calls = []
    place = dispatch.place

    def counted(*args, **kwargs):
        calls.append(args)
        return place(*args, **kwargs)

    monkeypatch.setattr(dispatch, "place", counted)
    return calls


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}D-{c[1]}-{c[5]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_a_repeated_plain_call_skips_the_general_path_and_matches_the_reference(case, dtype, with_bias,
                                                                               general_path_counted):
    rank, layout, x_shape, k_shape, strides, padding, dilation = case
    rng = np.random.default_rng(len(general_path_counted) + rank)
    _opcore._PLAIN.clear()
    bias = rng.standard_normal(k_shape[-2] * k_shape[-1]).astype(dtype) if with_bias else None
    for _ in range(3):
        x = rng.standard_normal(x_shape).astype(dtype)  # new values each call: nothing is cached but the geometry
        kernel = rng.standard_normal(k_shape).astype(dtype)
        got = _call(rank, x, kernel, bias, strides, padding, layout, dilation)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, _expected(rank, x, kernel, bias, strides, padding, layout, dilation),
                                   rtol=tol, atol=tol)
    assert len(general_path_counted) == 1  # only the first call was validated and placed


def test_calls_that_are_not_plain_take_the_general_path(general_path_counted):
    rank, layout, x_shape, k_shape, strides, padding, dilation = CASES[2]
    rng = np.random.default_rng(7)
    _opcore._PLAIN.clear()
    x = rng.standard_normal(x_shape).astype(np.float32)
    kernel = rng.standard_normal(k_shape).astype(np.float32)
    _call(rank, x, kernel, None, strides, padding, layout, dilation)
    others = [
        dict(x=x.astype(np.float64)),  # mixed dtypes
        dict(x=np.asfortranarray(x)),  # not C-contiguous
        dict(kernel=kernel[::-1]),  # a reversed view
        dict(kw={"activation": "relu"}),
        dict(kw={"device": "cpu", "stream": None}),  # (still plain: counted below as the only allowed one)
    ]
    for i, other in enumerate(others):
        before = len(general_path_counted)
        xi, ki = other.get("x", x), other.get("kernel", kernel)
        got = _call(rank, xi, ki, None, strides, padding, layout, dilation, **other.get("kw", {}))
        expected = _expected(rank, np.asarray(xi, np.float64), np.asarray(ki, np.float64), None, strides, padding,
                             layout, dilation)
        if other.get("kw", {}).get("activation") == "relu":
            expected = np.maximum(expected, 0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert len(general_path_counted) == before + (0 if i == len(others) - 1 else 1), other


def test_a_non_finite_kernel_after_a_plain_call_still_gets_the_padding_rule():
    """Keras multiplies the padding zeros too: an inf weight on a tap that reads padding gives NaN there."""
    rng = np.random.default_rng(8)
    _opcore._PLAIN.clear()
    x = rng.standard_normal((1, 8, 8, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 3, 1)).astype(np.float32)
    nd.depthwise_conv2d(x, kernel, padding="same")  # the geometry is now known as plain
    kernel[0, 0, 1, 0] = np.inf  # the top-left tap reads padding on the first row and column
    got = nd.depthwise_conv2d(x, kernel, padding="same")
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference's padding: the NaN the rule asks for
        expected = reference.conv2d_forward(x, kernel, None, 1, "same", "channels_last", 1)
    assert np.isnan(got[0, 0, :, 1]).all() and np.isnan(got[0, :, 0, 1]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-5, atol=1e-5)


def test_a_bad_call_after_plain_ones_is_still_refused():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 16, 4)).astype(np.float32)
    kernel = rng.standard_normal((3, 4, 1)).astype(np.float32)
    nd.depthwise_conv1d(x, kernel, None, 1, "same")
    nd.depthwise_conv1d(x, kernel, None, 1, "same")
    with pytest.raises(ValueError, match="bias"):
        nd.depthwise_conv1d(x, kernel, np.zeros(5, np.float32), 1, "same")
    with pytest.raises(ValueError):
        nd.depthwise_conv1d(x, kernel, None, 0, "same")
