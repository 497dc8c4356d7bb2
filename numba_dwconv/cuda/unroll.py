"""Straight-line repetition of a device function: loops the compiler would keep as loops, unrolled by construction."""

from __future__ import annotations

import functools

from numba import cuda


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
    return cuda.jit(device=True, inline=True)(namespace["repeated"])
