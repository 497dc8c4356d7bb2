"""The warm-up command fills an empty kernel cache, and a second process then loads without compiling.

No timing is asserted: "without compiling" is read from numba's compile events
(:func:`numba_dwconv._compile_log.compiled_kernels`), which fire on a cache miss only.
"""

import json
import os
import subprocess
import sys

import pytest

# The smallest job: one rank, layout, dtype, kernel size, stride and multiplier (2D channels_last compiles fastest).
JOB = ["--rank", "2", "--layout", "channels_last", "--dtype", "float32", "--kernel-size", "3", "--stride", "1",
       "--multiplier", "1"]

CALL_AND_COUNT = """
import json
import numpy as np
import numba_dwconv as nd
from numba_dwconv import _compile_log
x = np.random.default_rng(0).standard_normal((2, 11, 13, 8)).astype(np.float32)
k = np.random.default_rng(1).standard_normal((3, 3, 8, 1)).astype(np.float32)
y = nd.depthwise_conv2d(x, k, padding="same")
nd.depthwise_conv2d_backward(np.ones_like(y), x, k, padding="same")
print(json.dumps(_compile_log.compiled_kernels()))
"""


def _env(cache_dir):
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}


def test_warmup_fills_an_empty_cache_and_a_second_process_compiles_nothing(tmp_path):
    cache = tmp_path / "numba_cache"
    cache.mkdir()
    out = subprocess.run([sys.executable, "-m", "numba_dwconv", "warmup", *JOB], capture_output=True, text=True,
                         env=_env(cache), check=True)
    assert "2D channels_last" in out.stdout and "kernels compiled" in out.stdout
    assert "loaded every kernel from the cache" in out.stdout, out.stdout
    assert any(cache.rglob("*.nbi")), "the cache is still empty"
    second = subprocess.run([sys.executable, "-c", CALL_AND_COUNT], capture_output=True, text=True,
                            env=_env(cache), check=True)
    assert json.loads(second.stdout.splitlines()[-1]) == []
    assert "numba_dwconv: compiling" not in second.stderr


def test_an_empty_cache_compiles_and_says_so(tmp_path):
    """The counter the test above relies on is not always empty: a cold process reports what it compiled."""
    cache = tmp_path / "empty"
    cache.mkdir()
    code = ("import json, numpy as np\n"
            "from numba_dwconv import _compile_log\n"
            "from numba_dwconv.cpu import elementwise\n"
            "elementwise.gelu(np.ones(5, np.float32))\n"
            "print(json.dumps(_compile_log.compiled_kernels()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(cache), check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == ["cpu.elementwise._gelu_flat"]
    assert "numba_dwconv: compiling cpu.elementwise._gelu_flat" in out.stderr
    assert "once per machine" in out.stderr and "numba_dwconv: compiled cpu.elementwise._gelu_flat in" in out.stderr


@pytest.mark.parametrize("bad", [["--rank", "3"], ["--dtype", "float16"], ["--jobs", "0"], ["--stride", "4"],
                                 ["--multiplier", "3"]])
def test_bad_warmup_option_is_refused(bad):
    out = subprocess.run([sys.executable, "-m", "numba_dwconv", "warmup", *bad], capture_output=True, text=True)
    assert out.returncode == 2
    assert bad[0] in out.stderr
