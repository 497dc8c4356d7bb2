"""The output-buffer pool: blocks are reused only once nothing can see them."""

import gc

import numpy as np
import pytest

from numba_dwconv import _memory

SHAPE = (4, 512, 256)  # 2 MiB of float32: pooled


@pytest.fixture(autouse=True)
def empty_pool():
    _memory.release_pool()
    yield
    _memory.release_pool()


def test_small_arrays_are_plain_numpy():
    a = _memory.empty((10,), np.float32)
    assert a.base is None and a.flags.owndata


def test_large_arrays_are_aligned_contiguous_and_writeable():
    a = _memory.empty(SHAPE, np.float64)
    assert a.shape == SHAPE and a.dtype == np.float64
    assert a.flags.c_contiguous and a.flags.writeable
    assert a.ctypes.data % _memory.ALIGNMENT == 0


def test_a_freed_block_is_reused():
    a = _memory.empty(SHAPE, np.float32)
    address = a.ctypes.data
    del a
    gc.collect()
    b = _memory.empty(SHAPE, np.float32)
    assert b.ctypes.data == address


def test_a_block_seen_by_a_view_is_not_reused():
    a = _memory.empty(SHAPE, np.float32)
    a[...] = 1.0
    view = a[1:, ::2]
    del a
    gc.collect()
    b = _memory.empty(SHAPE, np.float32)
    b[...] = 2.0
    assert np.all(view == 1.0)


def test_pool_can_be_disabled(monkeypatch):
    monkeypatch.setenv("NUMBA_DWCONV_POOL_BYTES", "0")
    a = _memory.empty(SHAPE, np.float32)
    assert a.flags.owndata


def test_a_known_size_shares_the_pool_and_keeps_nothing_when_it_is_disabled(monkeypatch):
    nbytes = int(np.prod(SHAPE)) * 4
    a = _memory.empty(SHAPE, np.float32)
    address = a.ctypes.data
    del a
    gc.collect()
    b = _memory.pooled(nbytes, SHAPE, np.dtype(np.float32).str)  # (a block freed by empty: reused)
    assert b.ctypes.data == address and b.shape == SHAPE and b.dtype == np.float32 and b.flags.writeable
    del b
    gc.collect()
    monkeypatch.setenv("NUMBA_DWCONV_POOL_BYTES", "0")
    _memory.release_pool()
    c = _memory.pooled(nbytes, SHAPE, np.dtype(np.float32).str)
    assert c.ctypes.data % _memory.ALIGNMENT == 0
    del c
    gc.collect()
    assert _memory.release_pool() == 0  # (freed, not kept)


def test_pool_respects_its_idle_limit(monkeypatch):
    monkeypatch.setenv("NUMBA_DWCONV_POOL_BYTES", str(3 << 20))
    arrays = [_memory.empty(SHAPE, np.float32) for _ in range(3)]  # 2 MiB each
    del arrays
    gc.collect()
    assert _memory.release_pool() == 2 << 20  # only one block fits under 3 MiB


def test_bad_pool_setting_is_explained(monkeypatch):
    monkeypatch.setenv("NUMBA_DWCONV_POOL_BYTES", "lots")
    with pytest.raises(ValueError, match="NUMBA_DWCONV_POOL_BYTES.*'lots'"):
        _memory.empty(SHAPE, np.float32)


def _off_line(shape, dtype, offset_bytes):
    """An array of ``shape`` whose data starts ``offset_bytes`` past a 64-byte boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    block = np.empty(n * dtype.itemsize + 128, np.uint8)
    start = -block.ctypes.data % 64 + offset_bytes
    return block[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


@pytest.mark.parametrize("offset", [16, 32, 48])
def test_small_operands_are_copied_onto_cache_lines_only_when_they_are_not(offset):
    rng = np.random.default_rng(offset)
    kernel = _off_line((3, 3, 24, 1), np.float32, offset)
    kernel[...] = rng.standard_normal(kernel.shape)
    before = kernel.copy()
    copy = _memory.aligned(kernel)
    assert copy.ctypes.data % 64 == 0 and copy.flags.c_contiguous and copy.dtype == kernel.dtype
    np.testing.assert_array_equal(copy, kernel)
    np.testing.assert_array_equal(kernel, before)  # (the operand itself untouched)
    assert _memory.aligned(copy) is copy  # aligned already: no copy
    flipped = _memory.aligned(kernel[::-1, ::-1])  # a view: copied contiguous
    assert flipped.ctypes.data % 64 == 0 and flipped.flags.c_contiguous
    np.testing.assert_array_equal(flipped, kernel[::-1, ::-1])


@pytest.mark.parametrize("rank", [1, 2])
def test_a_misaligned_kernel_gives_the_same_bits(rank):
    """The kernels get the taps on cache lines whatever NumPy gave: same results, operands untouched."""
    import numba_dwconv as nd

    rng = np.random.default_rng(rank)
    shape, taps = ((2, 40, 64), (5, 64, 1)) if rank == 1 else ((2, 12, 13, 64), (5, 5, 64, 1))
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = _off_line(taps, np.float32, 16)
    kernel[...] = rng.standard_normal(taps)
    conv = nd.depthwise_conv1d if rank == 1 else nd.depthwise_conv2d
    want = conv(x, _memory.aligned(kernel), None, 1, "same")
    np.testing.assert_array_equal(conv(x, kernel, None, 1, "same"), want)
    assert kernel.ctypes.data % 64 == 16
