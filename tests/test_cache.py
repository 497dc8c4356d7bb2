"""Cached kernels are compiled again when a module they may inline changes (numba_dwconv._cache)."""

import json
import os
import subprocess
import sys

from numba_dwconv import _cache

CALL = """
import json, sys
import numpy as np
from numba_dwconv import _cache, _compile_log
if len(sys.argv) > 1:  # what an edit to a module the kernels inline does to the stamp
    _cache.package_stamp.cache_clear()
    _cache.package_stamp = lambda: "edited"
import numba_dwconv as nd
x = np.ones((2, 64, 8), np.float32)
nd.depthwise_conv1d(x, np.ones((3, 8, 1), np.float32), padding="same")
print(json.dumps(_compile_log.compiled_kernels()))
"""


def _compiled(env, *args):
    out = subprocess.run([sys.executable, "-c", CALL, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_an_edited_inlined_module_compiles_the_kernels_again(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    first = _compiled(env)
    assert any(name.startswith("cpu.conv1d") for name in first)
    assert _compiled(env) == []  # the same modules: all from the cache
    again = _compiled(env, "edited")
    assert set(again) == set(first)
    assert _compiled(env, "edited") == []


def test_the_stamp_covers_the_modules_kernels_inline_and_only_this_package():
    stamp = _cache.package_stamp()
    assert isinstance(stamp, str) and stamp == _cache.package_stamp()
    import numba.core.caching as caching

    assert caching.CacheImpl._locator_classes[0] is _cache.PackageLocator

    def outside():
        pass

    assert _cache.PackageLocator.from_function(outside, __file__) is None
    from numba_dwconv import _workers

    locator = _cache.PackageLocator.from_function(_workers._claim.py_func, _workers.__file__)
    assert locator.get_source_stamp()[1] == stamp
