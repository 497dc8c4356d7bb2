"""Worker threads that run the parts of a CPU kernel: :func:`launch`.

A kernel part handed to a sleeping thread starts late: waking a thread blocked on a lock
costs 10-80 us, and on some machines (measured on a 2-vCPU KVM guest) the scheduler wakes it
on the CPU of the thread that woke it, where the two parts then share one core (a kernel
launched in two parts took 2.0x the time of one part instead of 1.0x).  So, as OpenMP
runtimes do, a worker that finished a part keeps *spinning* for a while (``spin_us()``,
``NUMBA_DWCONV_SPIN_US``, default :data:`DEFAULT_SPIN_US`) watching a flag in shared memory,
with the GIL released; a part handed over within that time starts at once on the core the
worker already holds.  The caller waits for the parts the same way.  After the spin a waiter
blocks on a lock, so idle threads cost nothing.  The spin is short and yields the CPU every few
polls: other runtimes spin too (PyTorch's OpenMP threads, after each operation), and two spinning
pools on two cores starved each other (measured: a small call right after a PyTorch operation,
median 0.23 ms without spinning, 3.4 ms with 1 ms of spin without yields, 0.18 ms as here).

The hand-over through one shared int64 array per worker (slots a cache line apart):

* the poster stores the sequence number of the job (or of the finished part) in its slot, then
  atomically takes the waiter's *sleeping* flag; if the waiter had set it, the poster releases
  the waiter's lock;
* the waiter spins until the slot holds the number it waits for; when the spin runs out it sets
  its sleeping flag, looks at the slot once more, and either blocks on the lock or takes its flag
  back (if the poster has already taken it, the poster releases the lock: the waiter takes it).

The atomic loads, stores and exchanges are sequentially consistent, so a waiter never sleeps
through a post and every lock release is matched by one acquire.

Neither side waits for the GIL while the other holds it: a thread blocked on the GIL sleeps on a
futex, and waking it cost 40-50 us here (a 2-part launch of an empty kernel: 45-55 us, against
3-6 us without).  So a worker that finds its part keeps spinning, without the GIL, until the caller is
inside its own part (compiled code runs without the GIL), and only then takes the GIL: every kernel's
part 0 counts its start (:func:`note_part_started`, from ``task_share``) in a counter that compiled code
reaches by a linked symbol, and the caller posts the count it read with the part (at most ``HANDOVER_US``).
A fixed wait of 2 us served loops of small calls, where the caller reaches its part in ~1 us; after a
large kernel has swept the caches it takes 10-50 us, and the worker, finding the GIL held, slept on it:
parts 1 of a B16 56x56 C128 forward started 49 us after part 0, now 9 us (the 2D module forwards
1.04-1.05x faster).  And a worker posts its part's end from the same compiled call that then spins for
the next part, so the caller, seeing the end, finds the GIL free.

A part may also be taken back.  Each part has a sequence number, and whoever claims it first runs it
(a compare-and-swap on the worker's TAKEN slot): the worker, once it holds the GIL and is about to call the
kernel, or the caller, once its own part is done.  A worker that has not started by then is waiting for a
CPU (another runtime's threads spinning on them: OpenBLAS after NumPy's BLAS calls, PyTorch's OpenMP
threads), and the caller runs the part itself instead of waiting for a scheduler slice (measured: a B8
L2048 C256 K3 forward right after a 9 ms ``np.matmul``, 3.5-6.3 ms -> 1.3-2.3 ms).  Waits compare
``>=``, so a worker that finds a later part posted skips the taken ones; the caller drops a taken part's
arguments, so no worker keeps them alive.  The claim holds the GIL (no hand-back to wait for).

Nor do a caller and its worker share one CPU: a worker woken from its lock was placed on the
caller's CPU (see above), and there, both threads busy, the scheduler left the two parts for tens of
milliseconds (seen: 8 calls in a row of a 1.1 ms 2D forward at 4.2-5.0 ms, both threads on CPU 0;
a part's thread that ran a moment ago counts as cache-hot and is not migrated).  So the caller posts
its CPU with each part, and a worker that finds itself on it moves to another CPU of its allowed set
(Linux: ``sched_setaffinity`` without that CPU, then the set restored; it stays where it moved).  And a
caller waits for its running parts spinning (up to ``JOIN_SPIN_US``, yielding): a caller that slept
was woken on its worker's CPU, and the two met again at the next launch (seen: 4 calls in 5).
"""

from __future__ import annotations

import _thread
import hashlib
import os
import platform
import sys
import threading
import time

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import _cache  # noqa: F401 (before any cached function of the package: see its docstring)

# Below this many bytes of array arguments a kernel runs on the calling thread alone (a 1D forward on
# 2 MiB of arrays gains nothing from a second core: 111 us alone, 107 us on two, measured).
SERIAL_BYTES = 1 << 20
DEFAULT_SPIN_US = 200
# Microseconds a caller spins for the parts of its launch still running before it sleeps (a caller
# waits for work in progress, not for work that may never come: see the module on CPUs).
JOIN_SPIN_US = 100_000
# Microseconds a worker that found its part spins at most before it takes the GIL, waiting for its
# caller's part to start (then the caller has released the GIL: see _PARTS_STARTED).  The caller's path
# from its post to its compiled part (dispatching its arguments) takes ~1 us in a loop of small calls and
# 10-50 us right after a large kernel has swept the caches: a worker that took the GIL after a fixed 2 us
# found the caller still holding it and slept on the GIL's futex, waking 40-50 us late.
HANDOVER_US = 60
# Slots of a worker's flag array (int64, eight apart: one cache line each).
JOB, WORKER_SLEEPS, DONE, CALLER_SLEEPS, TAKEN = 0, 8, 16, 24, 32
POSTER_CPU = 1  # added to a slot: the CPU of the thread that last posted there
STARTED_MARK = 2  # added to JOB: _PARTS_STARTED's count when the part was posted
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


MAX_SPIN_US = 10_000_000


def spin_us() -> int:
    """Microseconds a waiting thread spins before it blocks (``NUMBA_DWCONV_SPIN_US``, 0: block at once).

    Negative values count as 0, values above :data:`MAX_SPIN_US` (10 s) as that.
    """
    value = os.environ.get("NUMBA_DWCONV_SPIN_US")
    if value is None:
        return DEFAULT_SPIN_US
    try:
        return min(MAX_SPIN_US, max(0, int(value)))
    except ValueError:
        raise ValueError(f"NUMBA_DWCONV_SPIN_US must be an integer number of microseconds. "
                         f"Received {value!r}") from None


def thread_count() -> int:
    """Threads a kernel launched now from this thread may use: numba's setting (``numba.set_num_threads``)."""
    return numba.get_num_threads()


# ---------------------------------------------------------------------------- atomics
def _slot_pointer(context, builder, array_type, array, index):
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


@intrinsic
def atomic_load(typingctx, flags, index):
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_slot_pointer(context, builder, signature.args[0], *args), "seq_cst", 8)

    return types.int64(flags, index), codegen


@intrinsic
def _atomic_store(typingctx, flags, index, value):
    def codegen(context, builder, signature, args):
        builder.store_atomic(args[2], _slot_pointer(context, builder, signature.args[0], args[0], args[1]),
                             "seq_cst", 8)
        return context.get_dummy_value()

    return types.void(flags, index, types.int64), codegen


def _read_modify_write(operation: str, doc: str):
    """An intrinsic ``(flags, index, value) -> the value before`` that applies LLVM's ``atomicrmw operation``."""
    def typer(typingctx, flags, index, value):
        def codegen(context, builder, signature, args):
            return builder.atomic_rmw(operation, _slot_pointer(context, builder, signature.args[0], args[0], args[1]),
                                      args[2], "seq_cst")

        return types.int64(flags, index, types.int64), codegen

    typer.__doc__ = doc
    typer.__name__ = typer.__qualname__ = f"atomic_{operation}"
    return intrinsic(typer)


atomic_exchange = _read_modify_write("xchg", "``flags[index] = value`` atomically; the value before.")
atomic_add = _read_modify_write("add", "``flags[index] += value`` atomically; the value before.")


@intrinsic
def _atomic_compare_exchange(typingctx, flags, index, expected, value):
    """Set ``flags[index]`` to ``value`` if it holds ``expected``; True if it did."""
    def codegen(context, builder, signature, args):
        pointer = _slot_pointer(context, builder, signature.args[0], args[0], args[1])
        pair = builder.cmpxchg(pointer, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return types.boolean(flags, index, types.int64, types.int64), codegen


@intrinsic
def cpu_relax(typingctx):
    """x86 ``pause`` (lets a sibling hyperthread run and saves power while spinning); nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


_YIELDS = sys.platform.startswith("linux") or sys.platform == "darwin"


@intrinsic
def _yield_cpu(typingctx):
    """``sched_yield()`` on POSIX systems (linked by name: cached code stays valid), nothing elsewhere.

    A spinning thread lets any other runnable thread of its CPU run: another runtime's spinning
    workers (PyTorch's OpenMP threads spin after each operation), or our own caller's part.
    """
    def codegen(context, builder, signature, args):
        if _YIELDS:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


_HAS_GETCPU = sys.platform.startswith("linux")


@intrinsic
def _current_cpu(typingctx):
    """``sched_getcpu()`` on Linux (the CPU this thread runs on; linked by name), -1 elsewhere."""
    def codegen(context, builder, signature, args):
        if not _HAS_GETCPU:
            return ir.Constant(ir.IntType(64), -1)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_getcpu")
        return builder.sext(builder.call(fn, []), ir.IntType(64))

    return types.int64(), codegen


# The number of parts 0 that kernels have started (numba_dwconv._jit.task_share counts them, through the
# symbol below: kernels cached on disk link it by name).  A worker that found its part waits until the
# count moves past the one posted with the part: its caller is then inside its compiled part, without
# the GIL, which the worker then takes at once.
_PARTS_STARTED = np.zeros(8, np.int64)  # (a cache line; the count is its first element)
# (named after the package's folder: two copies imported in one process, as an A/B of two revisions does,
# each link their own; a kernel's cache folder is per source folder too)
_STARTED_SYMBOL = "numba_dwconv_parts_started_" + hashlib.sha1(os.path.dirname(__file__).encode()).hexdigest()[:16]
llvm_binding.add_symbol(_STARTED_SYMBOL, _PARTS_STARTED.ctypes.data)


def _started_count(builder):
    """The count's address in the module being built (an external global, linked to _PARTS_STARTED)."""
    variable = builder.module.globals.get(_STARTED_SYMBOL)
    if variable is None:
        variable = ir.GlobalVariable(builder.module, ir.IntType(64), _STARTED_SYMBOL)
        variable.linkage = "external"
    return variable


@intrinsic
def note_part_started(typingctx):
    """Inside a kernel's part 0: count its start (see _PARTS_STARTED)."""
    def codegen(context, builder, signature, args):
        builder.atomic_rmw("add", _started_count(builder), ir.Constant(ir.IntType(64), 1), "monotonic")
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _parts_started(typingctx):
    def codegen(context, builder, signature, args):
        return builder.load_atomic(_started_count(builder), "monotonic", 8)

    return types.int64(), codegen


_FLAG_OPTIONS = {"nogil": True, "cache": True}
_NO_CLAIMS = np.zeros(2, np.int64)  # (what a hand-over without a launch's claims counts in: read by nobody)
YIELD_EVERY = 8  # polls between two sched_yield calls while spinning


# What a hand-over step did (see _hand_over).
_POSTED, _FOUND, _FOUND_ON_POSTER_CPU, _WAKE, _SLEEP = 0, 1, 2, 3, 4


@numba.njit(**_FLAG_OPTIONS)
def _hand_over(flags, post_slot, post_sleeper, post_value, slot, sleeper_slot, value, iterations, handover,
               returned):
    """Every step of a hand-over, in one compiled function (each compiled function adds ~0.1 s to a first call).

    1. Unless ``post_slot < 0``: count a part returned in the last element of ``returned`` (a launch's claims,
       :func:`numba_dwconv._jit.task_claims`: its part 0 waits for that count, see ``next_chunk``), publish
       ``post_value`` in ``post_slot`` (this thread's CPU beside it, POSTER_CPU);
       _WAKE at once if the thread waiting for it was asleep (``post_sleeper`` set: the caller of this
       releases that thread's lock), _POSTED if there is nothing to wait for (``slot < 0``).
    2. Spin until ``flags[slot] >= value`` (sequence numbers only grow), at most ``iterations`` polls,
       yielding the CPU every YIELD_EVERY; found: up to ``handover`` pauses more, until the count of
       started parts 0 differs from the one posted beside the value (STARTED_MARK; -1: all the pauses),
       then _FOUND, or _FOUND_ON_POSTER_CPU when the value's poster runs on this thread's CPU.
    3. Not found: announce sleep (``sleeper_slot``) and return _SLEEP (the caller of this then blocks on
       its lock), unless the value arrived meanwhile and the flag could be taken back (found, as above).
    """
    if post_slot >= 0:
        atomic_add(returned, returned.shape[0] - 1, 1)
        _atomic_store(flags, post_slot + POSTER_CPU, _current_cpu())
        _atomic_store(flags, post_slot, post_value)
        if atomic_exchange(flags, post_sleeper, 0) == 1:
            return _WAKE
        if slot < 0:
            return _POSTED
    found = False
    for i in range(iterations):
        if atomic_load(flags, slot) >= value:
            found = True
            break
        cpu_relax()
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            _yield_cpu()
    if not found and atomic_load(flags, slot) < value:
        _atomic_store(flags, sleeper_slot, 1)
        if atomic_load(flags, slot) < value or atomic_exchange(flags, sleeper_slot, 0) != 1:
            return _SLEEP  # (0 above: the poster took the flag back and releases the lock)
    mark = atomic_load(flags, slot + STARTED_MARK)
    for _ in range(handover):
        if mark >= 0 and _parts_started() != mark:
            break
        cpu_relax()
    cpu = atomic_load(flags, slot + POSTER_CPU)
    return _FOUND_ON_POSTER_CPU if cpu >= 0 and cpu == _current_cpu() else _FOUND


@numba.njit(cache=True)  # (holding the GIL: a thread that has it keeps it, no hand-back to wait for)
def _claim(flags, sequence):
    """Take part ``sequence`` (its worker's or its caller's, whichever comes first): True for the one that did."""
    while True:
        taken = atomic_load(flags, TAKEN)
        if taken >= sequence:
            return False
        if _atomic_compare_exchange(flags, TAKEN, taken, sequence):
            return True


def _leave_cpu(cpu: int) -> None:
    """Move this thread off ``cpu`` (to any other CPU it may use), then allow all of them again."""
    if not hasattr(os, "sched_setaffinity"):
        return
    try:
        allowed = os.sched_getaffinity(0)
        others = allowed - {cpu}
        if others and cpu in allowed:
            os.sched_setaffinity(0, others)
            os.sched_setaffinity(0, allowed)
    except OSError:  # (the set changed meanwhile, or a sandbox forbids it: the part runs where it is)
        pass


def _rate_per_us(flags, *args) -> float:
    """Iterations per microsecond of ``_hand_over(flags, *args)`` run with 20000 of them (``args[-2]``/``[-1]``)."""
    _hand_over(flags, *args[:-2], 1, 1, _NO_CLAIMS)
    start = time.perf_counter()
    _hand_over(flags, *args, _NO_CLAIMS)
    return max(1.0, 20000 / max((time.perf_counter() - start) * 1e6, 1e-3))


_polls_per_us = None
_pauses_per_us = None


def _spin_polls() -> int:
    """Polls of a spin in ``spin_us()`` microseconds (the poll rate measured once per process)."""
    global _polls_per_us
    budget = spin_us()
    if budget == 0:
        return 0
    if _polls_per_us is None:  # (a spin that runs out, on flags of its own)
        _polls_per_us = _rate_per_us(np.zeros(32, np.int64), -1, 0, 0, JOB, WORKER_SLEEPS, 1, 20000, 0)
    return int(budget * _polls_per_us)


def _handover_polls() -> int:
    """Pauses in HANDOVER_US microseconds (the rate measured once per process)."""
    global _pauses_per_us
    if _pauses_per_us is None:  # (a spin that finds its value at once, then pauses)
        flags = np.zeros(32, np.int64)
        flags[JOB], flags[JOB + STARTED_MARK] = 1, -1
        _pauses_per_us = _rate_per_us(flags, -1, 0, 0, JOB, WORKER_SLEEPS, 1, 1, 20000)
    return int(HANDOVER_US * _pauses_per_us)


def _post(flags, slot, sleeper_slot, value, lock) -> None:
    """Publish ``value`` in ``slot``, waking its waiter if it sleeps on ``lock``."""
    if _hand_over(flags, slot, sleeper_slot, value, -1, 0, 0, 0, 0, _NO_CLAIMS) == _WAKE:
        lock.release()


def _wait(flags, slot, sleeper_slot, value, lock, polls) -> int:
    """Wait for ``value`` in ``slot``: spin ``polls`` polls, then sleep on ``lock``; the _FOUND code."""
    return _sleep_if_told(_hand_over(flags, -1, 0, 0, slot, sleeper_slot, value, polls, 0, _NO_CLAIMS), flags, slot,
                          sleeper_slot, value, lock)


def _sleep_if_told(found, flags, slot, sleeper_slot, value, lock) -> int:
    """``found``, a spin's code for ``value`` in ``slot``; after _SLEEP, the code once ``lock`` woke this thread."""
    if found != _SLEEP:
        return found
    lock.acquire()
    return _hand_over(flags, -1, 0, 0, slot, sleeper_slot, value, 1, 0, _NO_CLAIMS)  # (there now: its poster)


# ---------------------------------------------------------------------------- workers
class _Worker:
    """A daemon thread that runs one kernel part at a time (see the module for the hand-over)."""

    def __init__(self):
        self._flags = np.zeros(40, np.int64)
        self._job_lock = _thread.allocate_lock()
        self._job_lock.acquire()
        self._done_lock = _thread.allocate_lock()
        self._done_lock.acquire()
        self._sequence = 0
        self._polls = 0
        self._job = None
        self._error = None
        threading.Thread(target=self._loop, name="numba_dwconv-worker", daemon=True).start()

    def _loop(self):
        sequence = 1
        found = _wait(self._flags, JOB, WORKER_SLEEPS, sequence, self._job_lock, 0)
        while True:
            if found == _FOUND_ON_POSTER_CPU:
                _leave_cpu(int(self._flags[JOB + POSTER_CPU]))
            job = self._job  # the newest part posted (None: its caller took it back, see launch)
            claims = _NO_CLAIMS  # (where this part's return is counted: its launch's claims, if it ran one)
            if job is None:
                sequence = int(self._flags[JOB])
            else:
                sequence, kernel, args, job_claims = job
                if _claim(self._flags, sequence):
                    claims = job_claims
                    try:
                        kernel(*args)
                    except BaseException as error:  # handed to the caller by join()
                        self._error = error
                job = kernel = args = job_claims = None  # (the caller drops the job: see join)
            sequence += 1
            found = self._finish_and_wait(sequence, self._polls, claims)

    def _finish_and_wait(self, sequence: int, polls: int, claims) -> int:
        """Post the end of part ``sequence - 1`` (counted in its launch's ``claims``) and wait for part ``sequence``."""
        found = _hand_over(self._flags, DONE, CALLER_SLEEPS, sequence - 1, JOB, WORKER_SLEEPS, sequence, polls,
                           _handover_polls(), claims)
        if found == _WAKE:
            self._done_lock.release()
            return _wait(self._flags, JOB, WORKER_SLEEPS, sequence, self._job_lock, polls)
        return _sleep_if_told(found, self._flags, JOB, WORKER_SLEEPS, sequence, self._job_lock)

    def start(self, kernel, args, polls: int, claims=_NO_CLAIMS) -> None:
        """Hand over ``kernel(*args)``; ``polls``: how long the caller, and then this thread, spin (see the module).

        ``claims``: the launch's claims, if its kernel takes chunks (:func:`numba_dwconv._jit.task_claims`).
        """
        self._sequence += 1
        self._polls = polls
        self._job = (self._sequence, kernel, args, claims)
        self._flags[JOB + STARTED_MARK] = _PARTS_STARTED[0]
        _post(self._flags, JOB, WORKER_SLEEPS, self._sequence, self._job_lock)

    def take_back(self) -> bool:
        """Take back the part handed over last if this thread has not started it (the caller then runs it)."""
        if not _claim(self._flags, self._sequence):
            return False
        self._job = None  # (nothing of the launch stays referenced here)
        return True

    def join(self, polls: int, returned: bool = False):
        """Wait for the part (unless ``returned``: it was counted as returned); its error (or None).

        Drops the job: an idle worker keeps no array alive.
        """
        if not returned:
            _wait(self._flags, DONE, CALLER_SLEEPS, self._sequence, self._done_lock, polls)
        error, self._error = self._error, None
        self._job = None  # (here, not on the worker: a worker that posted its end may get its next job at once)
        return error


_idle: list = []  # workers not running a part; callers on several threads take different ones
_idle_lock = threading.Lock()


def _reset_workers_after_fork():
    global _idle, _idle_lock
    _idle = []  # the parent's worker threads do not exist in a forked child
    _idle_lock = threading.Lock()  # (and another parent thread may have held the lock at the fork)


os.register_at_fork(after_in_child=_reset_workers_after_fork)


def serial_args(args) -> bool:
    """Whether a launch with ``args`` runs on the calling thread alone: its arrays hold fewer than SERIAL_BYTES."""
    nbytes = 0
    for a in args:
        if isinstance(a, np.ndarray):
            nbytes += a.nbytes
    return nbytes < SERIAL_BYTES


def launch(kernel, *args, parts=None, claims=None) -> None:
    """Run a :func:`numba_dwconv._jit.parallel_kernel` from the host, in ``parts`` parts on as many threads.

    ``parts`` defaults to :func:`thread_count`, or 1 when the array arguments hold fewer than
    :data:`SERIAL_BYTES` (the calling thread does small work alone).  Part 0 runs on the calling
    thread and the others on idle workers (the kernels release the GIL), except parts no worker has
    started when part 0 is done: the calling thread takes them back and runs them; the call returns
    when every part has finished, and raises the first error of a part, if any.  Safe to call from
    several Python threads at once (each call has its own workers).

    ``claims``: for a kernel whose parts take chunks of tasks from each other (its last argument, passed
    after ``args``: :func:`numba_dwconv._jit.task_claims`); its workers count their return there.
    """
    if claims is not None:
        args = (*args, claims)
    if parts is None:
        parts = 1 if serial_args(args) else thread_count()
    if parts == 1:
        kernel(0, 1, *args)
        return
    polls = _spin_polls()
    with _idle_lock:
        workers = [_idle.pop() for _ in range(min(parts - 1, len(_idle)))]
    workers += [_Worker() for _ in range(parts - 1 - len(workers))]
    for part, worker in enumerate(workers, start=1):
        worker.start(kernel, (part, parts, *args), polls, _NO_CLAIMS if claims is None else claims)
    errors = []
    try:
        kernel(0, parts, *args)
    finally:
        join_polls = polls and max(polls, int(JOIN_SPIN_US * _polls_per_us))
        running = []
        for part, worker in enumerate(workers, start=1):
            if worker.take_back():  # not started yet (its thread waits for a CPU): run it here
                try:
                    kernel(part, parts, *args)
                except BaseException as error:
                    errors.append(error)
            else:
                running.append(worker)
        returned = claims is not None and claims[-1] >= len(running)  # (counted once each, after its error)
        errors += [worker.join(join_polls, returned) for worker in running]
        with _idle_lock:
            _idle.extend(workers)
    for error in errors:
        if error is not None:
            raise error
