"""Kernels cached on disk go stale when a module they inline changes, not only their own file.

numba keys a function's cache by the modification time and size of the function's own source file.
Our kernels inline helpers of other modules at numba's IR level (``_jit.task_share``, the passes, the
entries' bodies, the SIMD intrinsics), so an edit there left every cached kernel with the old helper
compiled in, silently: a checkout that changed ``task_share`` alone kept kernels that never told their
workers they had started.  The locator below, first in numba's list and used for this package's
functions only, keeps numba's own choice of cache directory and adds to the source stamp a stamp of
the modules kernels may inline (the package's own, ``cpu/`` and ``cuda/``): an edit to any of them
compiles every kernel again once; an installed package never changes, so its cache stays valid.
"""

from __future__ import annotations

import functools
import hashlib
import os

from numba.core import caching

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_INLINED_DIRS = ("", "cpu", "cuda")  # where kernels and the helpers they inline live


@functools.lru_cache(maxsize=1)
def package_stamp() -> str:
    """A digest of the names, sizes and modification times of the modules in _INLINED_DIRS (once per process)."""
    digest = hashlib.sha1()
    for folder in _INLINED_DIRS:
        path = os.path.join(_PACKAGE, folder)
        for name in sorted(os.listdir(path)):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(path, name))
                digest.update(f"{folder}/{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


class PackageLocator(caching._CacheLocator):
    """numba's locator for a function of this package, with :func:`package_stamp` in its source stamp."""

    def __init__(self, inner):
        self._inner = inner

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return self._inner.get_source_stamp(), package_stamp()

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE + os.sep):
            return None
        for other in caching.CacheImpl._locator_classes:
            if other is not cls:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


if PackageLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, PackageLocator)
