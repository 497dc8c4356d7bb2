"""The fixed-order sum of per-task partials shared by the 1D and 2D kernel gradients.

Each kernel-gradient task writes its own row of partial sums; the rows are then
added in index order.  Every element is summed by one thread in the same order
whatever the thread count, so results are bit-identical from run to run.  The
partials arrive flat (``n_rows * out.size`` values) and are indexed with
unsigned integers, so each row is added as one vectorised pass over a chunk of
columns.
"""

from __future__ import annotations

from numba import uint64

from .._jit import parallel_kernel, serial_kernel, task_share

# Columns summed by one task.
SUM_CHUNK = 2048


@serial_kernel
def _sum_rows(partials, n_rows, out, lo, hi):
    """``out[e] = partials[e] + partials[size + e] + ...`` (``n_rows`` rows of ``out.size``) for ``lo <= e < hi``."""
    size = uint64(out.size)
    if n_rows == 0:
        for e in range(uint64(lo), uint64(hi)):
            out[e] = 0
        return
    for e in range(uint64(lo), uint64(hi)):
        out[e] = partials[e]
    for p in range(1, n_rows):
        row = uint64(p) * size
        for e in range(uint64(lo), uint64(hi)):
            out[e] += partials[row + e]


@parallel_kernel
def sum_partials(part, parts, partials, n_rows, out):
    """``out = partials.reshape(n_rows, out.size).sum(axis=0)``, rows added in index order (flat 1D arrays).

    No rows (an empty batch) give zeros.
    """
    n_chunks = (out.size + SUM_CHUNK - 1) // SUM_CHUNK
    tasks_lo, tasks_hi = task_share(n_chunks, part, parts)
    for chunk in range(tasks_lo, tasks_hi):
        _sum_rows(partials, n_rows, out, chunk * SUM_CHUNK, min((chunk + 1) * SUM_CHUNK, out.size))
