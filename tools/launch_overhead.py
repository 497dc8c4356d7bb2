"""What a multi-threaded launch costs, and where its threads run.

    python tools/launch_overhead.py     # empty-kernel launch time; calls after an idle gap, with both threads' CPUs

1. A kernel that does nothing, launched in two parts back to back: the hand-over's own cost
   (numba_dwconv._workers; ~8 us here, 45-55 us when the threads met at the GIL).
2. After 50 ms of idle, eight calls of a B16 56x56 C128 3x3 2D forward, each with the CPUs the
   caller and the worker ran on after it (from /proc, Linux): the two must differ.  The first calls
   are slower on a VM whose idle CPUs need milliseconds to reach speed; calls at several times the
   last one with both threads on one CPU are the placement bug the pool now avoids.
"""

import threading
import time

import numpy as np

import numba_dwconv as nd
from numba_dwconv._jit import launch, parallel_kernel, task_share


@parallel_kernel
def _empty(part, parts, flags):
    lo, hi = task_share(parts, part, parts)  # (as every kernel: part 0 counts its start, see HANDOVER_US)
    for p in range(lo, hi):
        flags[p] = 1.0


def _cpu_of(thread_id: int) -> int:
    try:
        with open(f"/proc/self/task/{thread_id}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except OSError:
        return -1


def main() -> None:
    """Print both measurements (see the module)."""
    flags = np.zeros(8)
    launch(_empty, flags, parts=2)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(2000):
            launch(_empty, flags, parts=2)
        best = min(best, (time.perf_counter() - start) / 2000)
    print(f"empty kernel, 2 parts: {best * 1e6:.1f} us per launch")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 56, 56, 128), dtype=np.float32)
    k = rng.standard_normal((3, 3, 128, 1), dtype=np.float32)
    for _ in range(3):
        nd.depthwise_conv2d(x, k, padding="same")
    workers = [t.native_id for t in threading.enumerate() if t.name.startswith("numba_dwconv")]
    caller = threading.get_native_id()
    print("after 50 ms idle: ms per call (caller CPU, worker CPU)")
    for _ in range(4):
        time.sleep(0.05)
        row = []
        for _ in range(8):
            start = time.perf_counter()
            nd.depthwise_conv2d(x, k, padding="same")
            seconds = time.perf_counter() - start
            cpus = ",".join(str(_cpu_of(t)) for t in [caller, *workers])
            row.append(f"{seconds * 1e3:.2f}({cpus})")
        print(" ".join(row))


if __name__ == "__main__":
    main()
