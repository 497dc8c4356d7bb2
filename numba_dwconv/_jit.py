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

import numba
import numpy as np
from numba import types
from numba.core import event as _numba_event
from numba.core.typing.templates import AbstractTemplate, infer_global, signature
from numba.extending import lower_builtin, models, register_model

from . import _compile_log
from ._pipeline import KernelCompiler
from ._workers import (  # noqa: F401 (launch: the kernels' launcher)
    SERIAL_BYTES,
    atomic_add,
    atomic_exchange,
    atomic_load,
    cpu_relax,
    launch,
    note_part_started,
    thread_count,
)

_compile_log.install(_numba_event)  # say what compiles while it compiles

JIT_OPTIONS = {
    "nogil": True,
    "pipeline_class": KernelCompiler,  # numba's pipeline, inlining without quadratic IR copies
    "cache": True,
    "error_model": "numpy",
    "fastmath": {"contract", "reassoc"},
}


def parallel_kernel(func):
    """Compile ``func`` lazily as a multi-threaded CPU kernel: ``func(part, parts, *args)`` does one part of the work.

    :func:`launch` calls it once per thread with ``part`` in ``range(parts)``; the kernel loops over its
    share of the tasks, ``tasks_lo, tasks_hi = task_share(n_tasks, part, parts)`` then ``for task in
    range(tasks_lo, tasks_hi)`` (contiguous, in order, so a task's result never depends on the thread
    count).  Every kernel calls ``task_share`` (or ``first_chunk``) early: its part 0 counts its start there, which the
    launch's workers wait for before they take the GIL (a kernel that does not starts them up to
    ``_workers.HANDOVER_US`` late).  Why not ``parallel=True``: numba's parfor
    passes re-type and re-lower the whole inlined loop body, tripling the compile time (measured:
    the 1D channels_last forward 17.7 s with ``prange``, 5.4 s as a plain function), for code that
    runs no faster.

    Compiled without numba's runtime (``_nrt=False``): arrays and their views carry no reference
    counts (whose atomic updates cost 10-30 % of a kernel's time), and a kernel cannot allocate (the
    host passes scratch space, one row per part, see :func:`scratch`).

    Array arguments are declared not to overlap (LLVM's ``noalias``, what numba gives its own
    ``prange`` bodies), so loops vectorise without run-time overlap checks and loads are not
    repeated after every store (measured without it: the 2D kernels 1.5-7x slower).  Callers may
    pass one array twice only where the kernel reads it through one argument and nothing else
    writes it (the ``grad`` argument of the fused activations, unread unless it is a separate array).
    """
    kernel = numba.njit(_nrt=False, **JIT_OPTIONS)(func)
    kernel._compiler._customize_flags = _no_alias_flags  # numba has no public option for it
    return kernel


def _no_alias_flags(flags):
    flags.noalias = True
    return flags


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


def helper_kernel(func):
    """Compile ``func`` lazily as a helper on arrays that numba compiles once on its own and LLVM inlines.

    For a large helper that a kernel calls in one place: typed and lowered once per signature, not again
    inside each kernel that calls it (as :func:`serial_kernel`'s numba-level inlining does), which costs
    a kernel's first compile its helper's typing once more (the 3x3 kernel gradient's register blocks:
    its kernel's first compile 2.3 s with them inlined, 2.1 s so).  Without numba's runtime, like the
    kernels: arrays pass without reference counts.
    """
    return numba.njit(forceinline=True, _nrt=False, **JIT_OPTIONS)(func)


def scratch(size: int, dtype) -> np.ndarray:
    """Scratch space for a kernel launched next from this thread: one row of ``size`` values per part it may run in."""
    return np.empty((thread_count(), max(int(size), 0)), dtype)


@serial_kernel
def task_share(n_tasks, part, parts):
    """Inside a kernel: the tasks ``[lo, hi)`` of ``part`` when ``n_tasks`` are split into ``parts`` in order.

    Part 0 (the launching thread's) also counts its start: the launch's workers wait for it before they take
    the GIL (see numba_dwconv._workers: HANDOVER_US).
    """
    if part == 0:
        note_part_started()
    return n_tasks * part // parts, n_tasks * (part + 1) // parts


CHUNKS_PER_PART = 64  # task chunks per part of a launch whose parts take each other's last chunks
RETURN_WAIT_PAUSES = 1 << 13  # most pauses part 0 waits for the workers' return (~0.4 ms at 140 cycles each)


def claims_size(n_tasks: int, parts: int) -> int:
    """The length of :func:`task_claims`' array for ``n_tasks`` tasks and ``parts`` parts."""
    return max(1, min(int(n_tasks), CHUNKS_PER_PART * parts)) + 2


def task_claims(n_tasks: int, parts: int | None = None) -> np.ndarray:
    """Zeroed claims for :func:`next_chunk`: one launch's tasks in ``min(n_tasks, CHUNKS_PER_PART * parts)`` chunks.

    ``parts``: the launch's part count (default :func:`thread_count`).  One int64 per chunk (taken or not),
    then the count of parts that started, then of workers that returned (counted by
    :func:`numba_dwconv._workers.launch`'s workers).
    """
    return np.zeros(claims_size(n_tasks, thread_count() if parts is None else parts), np.int64)


@serial_kernel
def _claim(claims, c):
    """Whether this part takes chunk ``c``: the first part to ask does, once."""
    return claims[c] == 0 and atomic_exchange(claims, c, 1) == 0


@serial_kernel
def first_chunk(claims, part, parts):
    """Inside a kernel, first: the cursor :func:`next_chunk` starts from (this part counted as started).

    What :func:`task_share` is to a kernel that splits its tasks in order: part 0 counts its start there too.
    """
    if part == 0:
        note_part_started()
    atomic_add(claims, claims.shape[0] - 2, 1)
    return (claims.shape[0] - 2) * part // parts - 1, True


@serial_kernel
def next_chunk(claims, c, own, part, parts):
    """Inside a kernel: the next chunk of tasks this part runs, ``(chunk, own)``; chunk -1 when none is left.

    A part takes its own chunks (``task_share`` of the chunks) in order, then, its own done or taken, every
    chunk not yet taken from the last down: a part that started late or runs slower (another thread on its
    CPU, a cold cache) leaves its last chunks to the others.  Each chunk runs once, on whichever part claims it
    first (``claims``: :func:`task_claims`, zeroed per launch); chunks are never split, so the results do not
    depend on which part ran them.  A kernel writes nothing once this has returned -1.

    Part 0 (the caller's) then waits, in compiled code, for the workers that started to return (at most
    RETURN_WAIT_PAUSES): a worker leaving its kernel needs the GIL, and one that found the caller holding it
    slept on it for 40-50 us (measured: the caller's wait for the worker's part was 20 us at the median,
    70 us at the 90th percentile, once the caller ran Python between its part and the wait).
    """
    n = claims.shape[0] - 2
    if own:
        c += 1
        if c < n * (part + 1) // parts and _claim(claims, c):
            return c, True
        c = n
    c -= 1
    while c >= 0 and not _claim(claims, c):
        c -= 1
    if c < 0 and part == 0:
        for _ in range(RETURN_WAIT_PAUSES):
            if atomic_load(claims, n + 1) >= atomic_load(claims, n) - 1:
                break
            cpu_relax()
    return c, False


@serial_kernel
def chunk_tasks(claims, c, n_tasks):
    """The tasks ``[lo, hi)`` of chunk ``c`` (chunks split the tasks in order, as ``task_share`` does parts)."""
    n = claims.shape[0] - 2
    return n_tasks * c // n, n_tasks * (c + 1) // n


# ---------------------------------------------------------------------------- trip counts
def static_count(n: int, static: bool):
    """``n`` as a kernel argument: a tuple of length ``n`` (a compile-time constant) if ``static``, else the int.

    Compile-time counts let LLVM unroll small tap loops; each new length compiles the
    function that takes it again (the 2D kernels hand sizes to small entries instead,
    :mod:`numba_dwconv._entries`), and numba cannot hand a tuple longer than 100 to a
    parallel region, so large counts go as run-time integers (one compiled kernel for all).
    """
    return (0,) * n if static else int(n)


def trip_count(count):
    """Inside a kernel: ``len(count)`` for a tuple made by :func:`static_count`, else ``count`` itself."""
    raise NotImplementedError("trip_count is only callable inside numba kernels")


class StaticCount(types.Type):
    """A compile-time count ``n`` as an entry's argument (:mod:`numba_dwconv._entries`): a placeholder value.

    Inside the entry ``len(count)`` is the constant ``n``, as for a :func:`numba_dwconv._jit.static_count`
    tuple (``trip_count`` treats both alike).  ``len`` is typed by a plain template, which compiles
    nothing: an overload would compile its implementation once per count.
    """

    def __init__(self, n: int):
        self.n = n
        super().__init__(name=f"StaticCount({n})")


register_model(StaticCount)(models.OpaqueModel)


def _static(count) -> bool:
    """Whether the numba type ``count`` is a compile-time count: a tuple or a :class:`StaticCount`."""
    return isinstance(count, (types.BaseTuple, StaticCount))


def _static_length(count) -> int:
    return count.n if isinstance(count, StaticCount) else len(count)


# trip_count and len of a StaticCount are typed by plain templates and lowered to constants (or the
# integer itself): an overload would compile a small function for every new count type, in every first call
# of a new kernel size (the stride-2 entry's four counts: 0.6 -> 0.5 s).
@infer_global(trip_count)
class _TripCount(AbstractTemplate):
    def generic(self, args, kws):
        if len(args) == 1 and not kws and (_static(args[0]) or isinstance(args[0], types.Integer)):
            return signature(types.intp if _static(args[0]) else args[0], args[0])
        return None


@infer_global(len)
class _StaticCountLength(AbstractTemplate):
    def generic(self, args, kws):
        if len(args) == 1 and not kws and isinstance(args[0], StaticCount):
            return signature(types.intp, args[0])
        return None


@lower_builtin(len, StaticCount)
@lower_builtin(trip_count, StaticCount)
@lower_builtin(trip_count, types.BaseTuple)
def _constant_count(context, builder, sig, args):
    return context.get_constant(types.intp, _static_length(sig.args[0]))


@lower_builtin(trip_count, types.Integer)
def _runtime_count(context, builder, sig, args):
    return args[0]
