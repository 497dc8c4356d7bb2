"""Layout copies of the CPU host code (numba_dwconv.cpu.channels)."""

import numpy as np
import pytest


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 33, 17, 16), (3, 16, 32), (2, 40, 1), (0, 4, 5, 6), (1, 1, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_swap_layout_is_a_transposed_copy_both_ways(shape, dtype):
    from numba_dwconv.cpu.channels import swap_layout

    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    last = swap_layout(x, True)
    np.testing.assert_array_equal(last, np.moveaxis(x, 1, -1))
    assert last.flags.c_contiguous and last.dtype == dtype
    np.testing.assert_array_equal(swap_layout(last, False), x)
    strided = x[:, ::-1]  # a view: copied contiguous first
    np.testing.assert_array_equal(swap_layout(strided, True), np.moveaxis(strided, 1, -1))
