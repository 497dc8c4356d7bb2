"""The one place where numba compilation options are set.

* ``cache=True``: compiled kernels are written next to the sources (or to
  ``NUMBA_CACHE_DIR``) so a second process skips compilation.
* ``error_model="numpy"``: no Python exception checks in integer division.
* ``fastmath={"contract", "reassoc"}``: lets LLVM fuse multiply-adds and vectorise
  the dot products of the kernel gradient.  ``nnan``/``ninf`` are deliberately
  *not* enabled, so NaN and infinity propagate as in the reference.  The compiled
  code is fixed, so results stay bit-identical from run to run.

Importing this module imports numba but compiles nothing: decorated functions
compile on their first call.
"""

from __future__ import annotations

import functools
import threading

import numba
from numba import types
from numba.core import event as _numba_event
from numba.extending import overload

from . import _compile_log

_compile_log.install(_numba_event)  # say what compiles while it compiles

JIT_OPTIONS = {
    "nogil": True,
    "cache": True,
    "error_model": "numpy",
    "fastmath": {"contract", "reassoc"},
}


def parallel_kernel(func):
    """Compile ``func`` lazily as a multi-threaded CPU kernel (``prange`` loops run in parallel)."""
    return numba.njit(parallel=True, **JIT_OPTIONS)(func)


def serial_kernel(func):
    """Compile ``func`` lazily as a single-threaded helper, inlined into its callers.

    ``inline="always"`` inlines at numba's IR level.  Without it, every array
    passed to a helper costs a reference-count increment and decrement (atomic
    operations), measured at ~230 ns per call of a 15-array helper: more than the
    arithmetic of a 128-channel row.
    """
    return numba.njit(inline="always", **JIT_OPTIONS)(func)


def scalar_kernel(func):
    """Compile ``func`` lazily as a helper on scalars, which LLVM always inlines (``forceinline``).

    Scalar arguments need no reference counting, so numba-level inlining (which re-types the
    helper at every call site) is not needed; LLVM's own inliner would stop inlining once a caller
    grows, leaving a call per element in a loop that should vectorise.
    """
    return numba.njit(forceinline=True, **JIT_OPTIONS)(func)


_launch_lock = threading.Lock()


def launch(kernel, *args) -> None:
    """Run a parallel kernel from the host; serialise callers if numba's thread pool is not thread-safe.

    The OpenMP and TBB threading layers accept concurrent calls from several Python
    threads; the fallback ``workqueue`` layer does not, so there calls take turns.
    """
    try:
        threadsafe = numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet in this process
        threadsafe = False
    if threadsafe:
        kernel(*args)
    else:
        with _launch_lock:
            kernel(*args)


# ---------------------------------------------------------------------------- trip counts
def static_count(n: int, static: bool):
    """``n`` as a kernel argument: a tuple of length ``n`` (a compile-time constant) if ``static``, else the int.

    Compile-time counts let LLVM unroll small tap loops; each new length compiles the
    kernel again, and numba cannot hand a tuple longer than 100 to a parallel
    region, so large counts go as run-time integers (one compiled kernel for all).
    """
    return (0,) * n if static else int(n)


def trip_count(count):
    """Inside a kernel: ``len(count)`` for a tuple made by :func:`static_count`, else ``count`` itself."""
    raise NotImplementedError("trip_count is only callable inside numba kernels")


@overload(trip_count, inline="always")
def _trip_count_impl(count):
    if isinstance(count, types.BaseTuple):
        return lambda count: len(count)
    if isinstance(count, types.Integer):
        return lambda count: count
    return None


def is_static(count):
    """Inside a kernel: True (a compile-time constant) for a tuple made by :func:`static_count`, False for an int."""
    raise NotImplementedError("is_static is only callable inside numba kernels")


@overload(is_static, inline="always")
def _is_static_impl(count):
    if isinstance(count, types.BaseTuple):
        return lambda count: True
    if isinstance(count, types.Integer):
        return lambda count: False
    return None


def by_count(static_impl, runtime_impl):
    """A kernel helper that is ``static_impl`` when its last argument is a compile-time count, else ``runtime_impl``.

    Both are plain functions with the same parameters (the count last).  The choice is
    made on the argument's type while numba compiles the caller, so only the chosen body
    is compiled and inlined (a run-time ``if is_static(...)`` compiles both).
    """
    @functools.wraps(static_impl)
    def helper(*args):
        raise NotImplementedError(f"{static_impl.__name__} is only callable inside numba kernels")

    @functools.wraps(static_impl)  # numba checks the implementations' parameters against this signature
    def choose(*args):
        if isinstance(args[-1], types.BaseTuple):
            return static_impl
        if isinstance(args[-1], types.Integer):
            return runtime_impl
        return None

    overload(helper, inline="always")(choose)
    return helper
