"""The CPU launcher: kernels in parts on worker threads (numba_dwconv._jit.launch)."""

import os
import threading
import time
import warnings

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import _jit, reference


def _record_parts(part, parts, seen, fail_on, wait_for_others=False):
    seen[part] = (parts, threading.get_ident())
    if part == fail_on:
        raise RuntimeError(f"part {part} failed")
    deadline = time.monotonic() + 5
    while wait_for_others and len(seen) < parts and time.monotonic() < deadline:
        time.sleep(0.001)  # (without the GIL: the workers start their parts meanwhile)


def test_every_part_runs_once_and_the_first_on_the_calling_thread():
    seen = {}
    _jit.launch(_record_parts, seen, -1, True, parts=3)
    assert sorted(seen) == [0, 1, 2]
    assert {parts for parts, _ in seen.values()} == {3}
    assert seen[0][1] == threading.get_ident()
    assert len({ident for _, ident in seen.values()}) == 3


def test_a_part_whose_worker_has_not_started_runs_on_the_caller_and_the_worker_catches_up(monkeypatch):
    """The caller, its own part done, takes back a part no worker has started (a worker waiting for a CPU,
    here one asleep: no spin) and runs it; the worker, once it runs, skips it and takes the next launch's."""
    monkeypatch.setenv("NUMBA_DWCONV_SPIN_US", "0")
    on_caller = 0
    for _ in range(20):
        seen = {}
        _jit.launch(_record_parts, seen, -1, parts=3)
        assert sorted(seen) == [0, 1, 2] and {p for p, _ in seen.values()} == {3}
        on_caller += sum(ident == threading.get_ident() for part, (_, ident) in seen.items() if part)
    assert on_caller > 0
    seen = {}
    _jit.launch(_record_parts, seen, -1, True, parts=3)  # the workers are still in use
    assert sorted(seen) == [0, 1, 2] and len({ident for _, ident in seen.values()}) == 3


@pytest.mark.parametrize("fail_on", [0, 1])
def test_an_error_in_any_part_is_raised_after_every_part_finished_and_the_workers_stay_usable(fail_on):
    seen = {}
    with pytest.raises(RuntimeError, match=f"part {fail_on} failed"):
        _jit.launch(_record_parts, seen, fail_on, parts=2)
    assert sorted(seen) == [0, 1]  # the other part ran to its end before launch returned
    seen.clear()
    _jit.launch(_record_parts, seen, -1, parts=2)
    assert sorted(seen) == [0, 1]


@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_a_kernel_gives_the_same_bits_in_any_number_of_parts(parts, mult):
    from numba_dwconv._simd import lanes_of
    from numba_dwconv.cpu.conv1d_last import forward_last
    from numba_dwconv.cpu.fused import activation

    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 200, 24 // mult)).astype(np.float32)
    kernel = rng.standard_normal((5, 24)).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    act = activation(None, np.dtype(np.float32))
    outs = []
    for n in (1, parts):
        for streamed in (False, True):  # (the output stored plainly, or streamed from a per-part buffer)
            out = np.empty(x.shape[:2] + (24,), np.float32)
            rows_buf = np.empty((n, 16 + 4, 24), np.float32) if mult > 1 else None  # 16 rows a task, K = 5
            stream = (np.empty((n, 16 * 24), np.float32) if streamed else None, (out.ctypes.data % 64) // 4,
                      lanes_of(np.dtype(np.float32)))
            _jit.launch(forward_last, x, kernel, bias, 1, 1, 2, 16, out, act, out, rows_buf, *stream, parts=n)
            outs.append(out)
    for out in outs[1:]:
        np.testing.assert_array_equal(outs[0], out)
    expected = reference.conv1d_forward(x, kernel.reshape(5, 24 // mult, mult), bias, 1, "same", "channels_last", 1)
    np.testing.assert_allclose(outs[1], expected, rtol=1e-5, atol=1e-5)


@_jit.parallel_kernel
def _chunk_owners(part, parts, owners, slow_part, claims):
    """Each chunk records the part that ran it; ``slow_part`` spins ~50 us per chunk (a late, slow part; ``parts``:
    every part)."""
    c, own = _jit.first_chunk(claims, part, parts)
    while True:
        c, own = _jit.next_chunk(claims, c, own, part, parts)
        if c < 0:
            break
        lo, hi = _jit.chunk_tasks(claims, c, owners.shape[0])
        for t in range(lo, hi):
            owners[t] = owners[t] * 10 + part + 1  # (a task run twice shows as two digits)
        if part == slow_part or slow_part == parts:
            x = 0.0
            for i in range(200_000):
                x += i * 1e-9
            owners[lo] += x * 0.0


@pytest.mark.parametrize("parts, slow_part", [(1, -1), (2, -1), (2, 1), (3, 2), (3, 0)])
def test_parts_take_each_others_last_chunks_and_every_task_runs_once(parts, slow_part):
    n_tasks = 7 * _jit.CHUNKS_PER_PART * parts + 3  # (chunks of 7 or 8 tasks)
    for _ in range(20):  # (until the other parts ran beside the slow one: on a busy machine a worker may
        owners = np.zeros(n_tasks, np.int64)  # start only after the caller has taken every chunk)
        claims = _jit.task_claims(n_tasks)
        chunks = claims.shape[0] - 2
        _jit.launch(_chunk_owners, owners, slow_part, parts=parts, claims=claims)
        assert set(owners.tolist()) <= set(range(1, parts + 1))  # every task once, by one of the parts
        assert (claims[:chunks] == 1).all() and claims[chunks] == parts  # every chunk taken; every part started
        if parts == 1 or slow_part < 0:
            return
        lo, hi = chunks * slow_part // parts, chunks * (slow_part + 1) // parts  # the slow part's own chunks ...
        first, last = _jit.chunk_tasks(claims, lo, n_tasks)[0], _jit.chunk_tasks(claims, hi - 1, n_tasks)[1]
        if (owners[:first] != slow_part + 1).all() and (owners[last:] != slow_part + 1).all():  # (the others ran)
            assert (owners[first:last] != slow_part + 1).any()  # ... partly run by the others
            return
    pytest.fail("the other parts never ran beside the slow one")


def test_a_launchs_workers_count_their_return_in_its_claims():
    """Every part counts its start; a worker that ran one counts its return (part 0 waits for that)."""
    returns = []
    for _ in range(10):
        claims = _jit.task_claims(4 * _jit.CHUNKS_PER_PART * 2)
        _jit.launch(_chunk_owners, np.zeros(claims.shape[0] * 4, np.int64), 2, parts=2, claims=claims)  # (every
        # part slow: the worker starts before the caller has taken every chunk)
        assert claims[-2] == 2 and 0 <= claims[-1] <= 1  # (a part taken back by the caller: no return counted)
        returns.append(claims[-1])
    assert max(returns) == 1


def test_large_calls_use_the_workers_and_match_the_reference():
    """Above SERIAL_BYTES the op runs in parts (on 2+ threads); results as the reference."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4096, 64)).astype(np.float32)  # 2 MiB: over the one-thread limit
    assert x.nbytes > _jit.SERIAL_BYTES
    kernel = rng.standard_normal((3, 64, 1)).astype(np.float32)
    got = nd.depthwise_conv1d(x, kernel, None, 1, "same")
    np.testing.assert_allclose(got, reference.conv1d_forward(x, kernel, None, 1, "same", "channels_last", 1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_kernels_in_parts():
    """The parent's worker threads do not exist in a fork: the child makes its own."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8192, 64)).astype(np.float32)  # over SERIAL_BYTES: runs in parts
    kernel = rng.standard_normal((3, 64, 1)).astype(np.float32)
    expected = nd.depthwise_conv1d(x, kernel, None, 1, "same")  # the parent's workers exist now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork of a multi-threaded process
        pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if the result is right
        try:
            os._exit(0 if np.array_equal(nd.depthwise_conv1d(x, kernel, None, 1, "same"), expected) else 3)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _sleep_in_part(part, parts, seen, delays):
    import time

    time.sleep(delays[part])
    seen.append(part)


@pytest.mark.parametrize("spin_us", ["0", "1", "2000"])
def test_parts_handed_over_while_the_worker_spins_or_sleeps_all_run(monkeypatch, spin_us):
    """Every hand-over path of numba_dwconv._workers: found while spinning, found at the last look, after a sleep.

    Random delays on both sides (the caller's part, the gap before the next launch) move each race window;
    a lost wake-up would hang the launch, so the launches run on a thread with a deadline.
    """
    import time

    monkeypatch.setenv("NUMBA_DWCONV_SPIN_US", spin_us)
    rng = np.random.default_rng(int(spin_us))
    failures = []

    def many_launches():
        try:
            for _ in range(150):
                seen = []
                delays = rng.choice([0.0, 1e-5, 2e-4, 1e-3], size=3)
                _jit.launch(_sleep_in_part, seen, delays, parts=3)
                assert sorted(seen) == [0, 1, 2]
                time.sleep(float(rng.choice([0.0, 2e-5, 3e-3])))
        except BaseException as error:  # reported on the test's thread
            failures.append(error)

    runner = threading.Thread(target=many_launches, daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "a launch never returned (a lost wake-up)"
    assert failures == []


def test_the_spin_setting_is_checked(monkeypatch):
    from numba_dwconv import _workers

    monkeypatch.setenv("NUMBA_DWCONV_SPIN_US", "fast")
    with pytest.raises(ValueError, match="NUMBA_DWCONV_SPIN_US.*'fast'"):
        _jit.launch(_record_parts, {}, -1, parts=2)
    monkeypatch.setenv("NUMBA_DWCONV_SPIN_US", "-5")
    assert _workers.spin_us() == 0
    monkeypatch.setenv("NUMBA_DWCONV_SPIN_US", str(10**30))  # (would overflow the poll count)
    assert _workers.spin_us() == _workers.MAX_SPIN_US
    monkeypatch.delenv("NUMBA_DWCONV_SPIN_US")
    assert _workers.spin_us() == _workers.DEFAULT_SPIN_US


def test_the_flag_hand_over_steps():
    """_hand_over: a post reports a sleeping waiter (once); a spin that runs out announces sleep, and a waiter
    whose value arrived meanwhile takes its flag back; a post then a spin in one call (a worker's end of a part)."""
    from numba_dwconv import _workers as w

    flags = np.zeros(32, np.int64)

    def post(slot, sleeper, value):
        return w._hand_over(flags, slot, sleeper, value, -1, 0, 0, 0, 0, w._NO_CLAIMS)

    def wait(slot, sleeper, value, polls, handover=0):
        return w._hand_over(flags, -1, 0, 0, slot, sleeper, value, polls, handover, w._NO_CLAIMS)

    assert wait(w.JOB, w.WORKER_SLEEPS, 1, 100) == w._SLEEP  # nothing posted: the spin runs out ...
    assert flags[w.WORKER_SLEEPS] == 1  # ... and the waiter announced its sleep
    assert post(w.JOB, w.WORKER_SLEEPS, 1) == w._WAKE  # the poster sees it (and releases the lock)
    assert post(w.JOB, w.WORKER_SLEEPS, 1) == w._POSTED  # the flag was taken: no second release
    assert wait(w.JOB, w.WORKER_SLEEPS, 1, 0) in (w._FOUND, w._FOUND_ON_POSTER_CPU)
    flags[:] = 0
    flags[w.JOB] = 2  # posted before the waiter looked again: found at the last look, the flag taken back
    assert wait(w.JOB, w.WORKER_SLEEPS, 2, 0) in (w._FOUND, w._FOUND_ON_POSTER_CPU)
    assert flags[w.WORKER_SLEEPS] == 0
    flags[:] = 0  # a worker's end of part 1 posted (and counted in its launch's claims), then its spin for part 2
    claims = np.zeros(5, np.int64)
    assert w._hand_over(flags, w.DONE, w.CALLER_SLEEPS, 1, w.JOB, w.WORKER_SLEEPS, 2, 100, 5, claims) == w._SLEEP
    assert flags[w.DONE] == 1 and flags[w.WORKER_SLEEPS] == 1 and claims.tolist() == [0, 0, 0, 0, 1]
    flags[:] = 0
    flags[w.JOB], flags[w.JOB + w.POSTER_CPU] = 3, -1
    assert w._hand_over(flags, w.DONE, w.CALLER_SLEEPS, 2, w.JOB, w.WORKER_SLEEPS, 3, 100, 5, w._NO_CLAIMS) == w._FOUND
    assert flags[w.DONE] == 2
    flags[w.CALLER_SLEEPS] = 1  # the caller sleeps: its lock is released before any wait
    assert w._hand_over(flags, w.DONE, w.CALLER_SLEEPS, 3, w.JOB, w.WORKER_SLEEPS, 4, 100, 5, w._NO_CLAIMS) == w._WAKE
    assert flags[w.DONE] == 3 and flags[w.CALLER_SLEEPS] == 0
    assert w._handover_polls() >= 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two CPUs")
def test_a_worker_on_its_callers_cpu_moves_to_another_and_keeps_its_cpu_set(monkeypatch):
    """A post records its poster's CPU; a thread that finds the value on that CPU leaves it, keeping its CPU set.

    (Where the thread runs after its set is restored is the scheduler's choice: the calls are what is checked.)
    """
    import numba

    from numba_dwconv import _workers as w

    @numba.njit
    def current_cpu():
        return w._current_cpu()

    flags = np.zeros(32, np.int64)
    allowed = os.sched_getaffinity(0)
    results, masks = [], []
    set_affinity = os.sched_setaffinity

    def recording(pid, mask):
        masks.append((pid, set(mask), current_cpu()))
        set_affinity(pid, mask)

    def on_one_thread():
        for _ in range(100):  # as a caller, then as its own worker on the same CPU (unless moved in between)
            w._hand_over(flags, w.JOB, w.WORKER_SLEEPS, 1, -1, 0, 0, 0, 0, w._NO_CLAIMS)
            found = w._hand_over(flags, -1, 0, 0, w.JOB, w.WORKER_SLEEPS, 1, 10, 0, w._NO_CLAIMS)
            if found == w._FOUND_ON_POSTER_CPU:
                break
        cpu = int(flags[w.JOB + w.POSTER_CPU])
        results.append((found, cpu))
        monkeypatch.setattr(os, "sched_setaffinity", recording)
        w._leave_cpu(cpu)
        monkeypatch.setattr(os, "sched_setaffinity", set_affinity)
        results.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=on_one_thread)
    thread.start()
    thread.join()
    (found, cpu), cpus = results
    assert found == w._FOUND_ON_POSTER_CPU and cpu in allowed and flags[w.JOB] == 1
    assert [(pid, mask) for pid, mask, _ in masks] == [(0, allowed - {cpu}), (0, allowed)]
    assert masks[1][2] != cpu  # off that CPU when the set was restored
    assert cpus == allowed
    flags[w.JOB + w.POSTER_CPU] = -1  # (no CPU known: no move)
    assert w._hand_over(flags, -1, 0, 0, w.JOB, w.WORKER_SLEEPS, 1, 10, 0, w._NO_CLAIMS) == w._FOUND


def _touch(part, parts, array):
    array[part] = part


def test_an_idle_worker_keeps_no_argument_alive():
    """After a launch nothing of it stays referenced by the workers (outputs go back to the pool when dropped)."""
    import gc
    import weakref

    array = np.zeros(4)
    ref = weakref.ref(array)
    _jit.launch(_touch, array, parts=3)
    assert array.tolist() == [0.0, 1.0, 2.0, 0.0]
    del array
    gc.collect()
    assert ref() is None
