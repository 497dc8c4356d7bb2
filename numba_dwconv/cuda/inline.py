"""How the GPU kernels' device functions are inlined, and straight-line repetition of one.

* :func:`device_function`: a device function that LLVM inlines (``forceinline``).  Inlining at
  the Numba IR level (``inline="always"``) gives the same machine code but retypes the
  function at every call site: 3-5x longer compiles (a 2D backward kernel: 28 s against 5 s).
  numba-cuda compiles such functions for the current device (``catalogue.compiling_for``
  stands in for one where there is no GPU).  Under the simulator: a plain device function.
* :func:`repeat`: calls with literal indices, for loops LLVM would not unroll.
"""

from __future__ import annotations

import functools

from numba import cuda

from .. import _compile_log
from .vector import SIMULATED

try:  # numba-cuda fires its own copy of numba's compile event, under its own name
    import numba.cuda.core.event as _cuda_event
except ImportError:  # (older numba-cuda: numba's event, already listened to)
    pass
else:
    _compile_log.install(_cuda_event, "numba-cuda:compile")


def device_function(func):
    """``func`` as a device function inlined by LLVM into its callers (plain under the simulator)."""
    if SIMULATED:  # (the simulator's jit knows no forceinline)
        return cuda.jit(device=True)(func)
    return cuda.jit(device=True, forceinline=True)(func)


@functools.lru_cache(maxsize=None)
def repeat(func, count: int, n_args: int):
    """A device function calling ``func(i, *args)`` for ``i = 0 .. count-1`` as straight-line code.

    LLVM declines to unroll loops whose bodies are large; a loop index that stays a variable
    puts the register arrays it indexes into local memory and recomputes addresses that
    would otherwise be constant offsets.  Here each ``i`` is a literal.
    """
    params = ", ".join(f"a{j}" for j in range(n_args))
    body = "".join(f"    func({i}, {params})\n" for i in range(count)) or "    pass\n"
    namespace = {"func": func}
    exec(f"def repeated({params}):\n{body}", namespace)  # noqa: S102 - source built from integers above
    return device_function(namespace["repeated"])
