"""numba_dwconv._simd: the explicit vectors' loads, stores, multiply-adds and transposes against NumPy."""

import numba
import numpy as np
import pytest

from numba_dwconv._simd import (
    lanes_of,
    vfma,
    vload,
    vload_rows,
    vsplat,
    vstore,
    vstore_rows,
    vstore_rows_stream,
    vtranspose,
)


@numba.njit
def _fma_at(a, b, c, out, index, lanes_t):
    vstore(out, index, vfma(vload(a, index, lanes_t), vload(b, index, lanes_t), vload(c, index, lanes_t)))


@numba.njit
def _transpose_square(src, index, stride, dst, d_index, d_stride, lanes_t):
    vstore_rows(dst, d_index, d_stride, vtranspose(vload_rows(src, index, stride, lanes_t)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectors_load_multiply_add_and_store_at_any_offset(dtype):
    lanes_t = lanes_of(np.dtype(dtype))
    lanes = len(lanes_t)
    assert lanes * np.dtype(dtype).itemsize == 64
    rng = np.random.default_rng(lanes)
    a, b, c = (rng.standard_normal(3 * lanes).astype(dtype) for _ in range(3))
    out = np.zeros(3 * lanes, dtype)
    _fma_at(a, b, c, out, 5, lanes_t)  # (not a vector's multiple: element alignment only)
    want = np.zeros_like(out)
    want[5:5 + lanes] = a[5:5 + lanes] * b[5:5 + lanes] + c[5:5 + lanes]
    np.testing.assert_allclose(out, want, rtol=4 * np.finfo(dtype).eps)
    assert (out[:5] == 0).all() and (out[5 + lanes:] == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squares_of_vectors_transpose_between_strided_rows(dtype):
    """vload_rows(stride) -> vtranspose -> vstore_rows(another stride): a square of values moves transposed."""
    lanes_t = lanes_of(np.dtype(dtype))
    lanes = len(lanes_t)
    src = np.arange(40 * lanes, dtype=dtype)
    dst = np.full(50 * lanes, -1, dtype)
    _transpose_square(src, 3, np.uint64(37), dst, 7, 45, lanes_t)  # (strides of either integer type)
    square = np.stack([src[3 + j * 37:3 + j * 37 + lanes] for j in range(lanes)])
    got = np.stack([dst[7 + i * 45:7 + i * 45 + lanes] for i in range(lanes)])
    np.testing.assert_array_equal(got, square.T)
    written = np.zeros(dst.size, bool)
    for i in range(lanes):
        written[7 + i * 45:7 + i * 45 + lanes] = True
    assert (dst[~written] == -1).all()


@numba.njit
def _stream_square(src, index, stride, dst, d_index, d_stride, lanes_t):
    vstore_rows_stream(dst, d_index, d_stride, vload_rows(src, index, stride, lanes_t))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_stream_to_line_starts(dtype):
    """vstore_rows_stream: the rows land where vstore_rows puts them (rows on 64-byte boundaries), nothing else."""
    lanes_t = lanes_of(np.dtype(dtype))
    lanes = len(lanes_t)
    src = np.arange(20 * lanes, dtype=dtype)
    buf = np.full(40 * lanes + 64, -1, dtype)
    dst = buf[(-buf.ctypes.data % 64) // buf.itemsize:][:39 * lanes]  # (starts on a line)
    _stream_square(src, 5, 19, dst, 2 * lanes, 2 * lanes, lanes_t)  # (every row on a line's start)
    want = np.full_like(dst, -1)
    for j in range(lanes):
        want[(2 + 2 * j) * lanes:(3 + 2 * j) * lanes] = src[5 + 19 * j:5 + 19 * j + lanes]
    np.testing.assert_array_equal(dst, want)


@numba.njit
def _splat_fma(a, i, b, c, out, lanes_t):
    vstore(out, 0, vfma(vsplat(a, i, lanes_t), vload(b, 0, lanes_t), vload(c, 0, lanes_t)))
    return vfma(a[i], b[0], c[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_value_broadcast_and_scalar_fma(dtype):
    """vsplat puts one value in every lane; vfma on scalars rounds once, like its lanes."""
    lanes_t = lanes_of(np.dtype(dtype))
    lanes = len(lanes_t)
    rng = np.random.default_rng(lanes)
    a, b, c = (rng.standard_normal(lanes).astype(dtype) for _ in range(3))
    out = np.zeros(lanes, dtype)
    scalar = _splat_fma(a, 3, b, c, out, lanes_t)
    exact = a[3].astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)  # (float32: exact in float64)
    if dtype == np.float32:
        np.testing.assert_array_equal(out, exact.astype(np.float32))
    else:
        np.testing.assert_allclose(out, exact, rtol=2 * np.finfo(dtype).eps)
    assert scalar == out[0]
