"""The bench report: ``python -m numba_dwconv``.

Runs the public shape set, prints a table (ms, GB/s, % of the copy roofline,
backward/forward ratio, speed-up over PyTorch when it is importable, the error
against :mod:`numba_dwconv.reference` with a verdict) and the first-call time of a
fresh process with an empty and with a warm kernel cache; ``--plot PATH`` draws
a roofline plot.

All ratios are measured in the same run: the copy roofline is the bandwidth of a
large ``np.copyto`` (bytes read + bytes written) measured right before the
table, and every time is the best of ``repeat`` runs (the machine is shared and
noisy; the minimum is the least disturbed run).

Modules: :mod:`.timing` (clocks, bandwidths), :mod:`.conv1d` and :mod:`.conv2d`
(the rows), :mod:`.startup`, :mod:`.plot`, :mod:`.report` (tables, command line).
"""

from .report import main

__all__ = ["main"]
