"""One compilation of each cached kernel across the parallel test workers.

pytest-xdist runs the suite in several processes that share numba's on-disk cache; without
coordination two workers that need the same kernel at the same time both compile it (tens of
seconds each for the CPU kernels).  :func:`install` makes each process take a file lock named after
the kernel before compiling it; a worker that waited then finds the kernel in the cache and loads
it.  Only a thread's outermost compilation takes a lock (a lock is never held while waiting for
numba's own compiler lock), so no two locks can wait on each other.  Test infrastructure only.
"""

import fcntl
import hashlib
import os
import tempfile
import threading

_depth = threading.local()


def install() -> None:
    """Wrap numba's ``Dispatcher.compile`` with the cross-process lock (idempotent)."""
    from numba.core import dispatcher

    if getattr(dispatcher.Dispatcher.compile, "_cross_process_lock", False):
        return
    original = dispatcher.Dispatcher.compile
    folder = os.path.join(tempfile.gettempdir(), f"numba_dwconv_test_compile_locks_{os.getuid()}")
    os.makedirs(folder, exist_ok=True)

    def compile(self, sig):
        cached = type(getattr(self, "_cache", None)).__name__ not in ("NullCache", "NoneType")
        if not cached or getattr(_depth, "value", 0):
            return original(self, sig)
        func = self.py_func
        name = f"{func.__module__}.{func.__qualname__}"
        path = os.path.join(folder, hashlib.sha1(name.encode()).hexdigest())
        _depth.value = 1
        try:
            with open(path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
                return original(self, sig)
        finally:
            _depth.value = 0

    compile._cross_process_lock = True
    dispatcher.Dispatcher.compile = compile
