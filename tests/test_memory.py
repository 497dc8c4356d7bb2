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
