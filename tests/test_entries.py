"""Size-specialised entries called by address (numba_dwconv._entries) and what they buy: a new size compiles little.

The 2D channels_last kernels compile once; each kernel size compiles its entries only.  Checked here on the
mechanism itself (one caller for every count, the counts really constant, typing errors instead of wrong calls,
pruned branches, types found without Python code) and on the kernels (which functions a new size compiles, read
from numba's compile events in a fresh process: no timing asserted).
"""

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import types, uint64
from numba._dispatcher import compute_fingerprint

from numba_dwconv._entries import call_entry, entry, entry_kernel
from numba_dwconv._jit import parallel_kernel

ARRAY = types.Array(types.float64, 1, "C")
ARGS = (ARRAY, ARRAY, types.int64, types.float64)


@entry_kernel
def _scaled_sums(x, y, n, scale, k_c):
    """``y[c] += len(k_c) * scale * x[c]``, the count unrolled: ``len(k_c)`` additions per element."""
    for c in range(uint64(n)):
        acc = y[c]
        for _ in range(len(k_c)):
            acc += x[c] * scale
        y[c] = acc


@parallel_kernel
def _caller(part, parts, x, y, n, fn):
    call_entry(fn, (x, y, n, 2.0))


@parallel_kernel
def _caller_with_wrong_arguments(part, parts, x, y, n, fn):
    call_entry(fn, (x, y, 2.0, n))  # (scale and n swapped)


@parallel_kernel
def _pruned_without_entry(part, parts, y, fn):
    if fn is not None:
        call_entry(fn, (y, y, y.size, 1.0))
    else:
        y[0] = undefined_name  # noqa: F821 (never typed: the branch is pruned when fn is an entry)


@pytest.mark.parametrize("readonly", [False, True])
def test_one_caller_serves_every_count(readonly):
    x = np.arange(6.0)
    x.flags.writeable = not readonly
    for k in (3, 5, 3, 1):
        y = np.ones(6)
        _caller(0, 1, x, y, x.size, entry(_scaled_sums, ARGS, k))
        np.testing.assert_array_equal(y, 1.0 + k * 2.0 * x)
    assert len([s for s in _caller.signatures if (not s[2].mutable) == readonly]) == 1
    assert {entry(_scaled_sums, ARGS, k) is entry(_scaled_sums, ARGS, k) for k in (3, 5)} == {True}


def test_arguments_that_do_not_match_the_entry_are_a_typing_error():
    y = np.ones(4)
    with pytest.raises(numba.core.errors.TypingError, match="do not match the entry"):
        _caller_with_wrong_arguments(0, 1, np.ones(4), y, 4, entry(_scaled_sums, ARGS, 2))
    np.testing.assert_array_equal(y, 1.0)


def test_a_branch_on_a_missing_entry_is_pruned():
    y = np.zeros(3)
    _pruned_without_entry(0, 1, y, entry(_scaled_sums, ARGS, 4))
    np.testing.assert_array_equal(y, 0.0)  # (x is y: 4 * 1.0 * 0 added)


def test_entries_are_typed_without_python_code():
    """numba finds an entry's type from a fingerprint computed in C, per signature (see Entry)."""
    three, five = entry(_scaled_sums, ARGS, 3), entry(_scaled_sums, ARGS, 5)
    unsigned = entry(_scaled_sums, (ARRAY, ARRAY, types.uint64, types.float64), 3)
    assert compute_fingerprint(three) == compute_fingerprint(five) != compute_fingerprint(unsigned)
    assert numba.typeof(three) == numba.typeof(five) != numba.typeof(unsigned)


NEW_SIZE = """
import json
import numpy as np
import numba_dwconv as nd
from numba_dwconv import _compile_log
rng = np.random.default_rng(0)
def run(k, **kw):
    x = rng.standard_normal((2, 11, 13, 8)).astype(np.float32)
    w = rng.standard_normal((k, k, 8, 1)).astype(np.float32)
    y = nd.depthwise_conv2d(x, w, padding="same", **kw)
    nd.depthwise_conv2d_backward(np.ones_like(y), x, w, padding="same", **kw)
run(3)
first = _compile_log.compiled_kernels()
run(5)
run(4)
print(json.dumps([first, _compile_log.compiled_kernels()[len(first):]]))
"""


def test_a_new_2d_kernel_size_compiles_its_entries_only(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", NEW_SIZE], capture_output=True, text=True, env=env, check=True)
    first, later = json.loads(out.stdout.splitlines()[-1])
    assert "cpu.conv2d_last._forward_last" in first and "cpu.conv2d_last_grads._grads_last" in first
    assert later and all(name.startswith("cpu.conv2d_last_entries.") for name in later), later
