"""A compiler pipeline for this package's CPU kernels that makes numba's IR inliner copy each callee once.

Why: the kernels are built from small helpers inlined at numba's IR level (``inline="always"``, see
:func:`numba_dwconv._jit.serial_kernel`).  numba's inliner copies a callee's IR block by block, each
``copy.deepcopy`` with a fresh memo, so every block copies the whole variable scope of the function
again: the cost grows with blocks x variables for every inlined call site (numba issue #8989).
Measured on the 1D channels_first forward: two thirds of its first-call compile time was spent in
those copies (5.4 s -> 3.1 s with one memo per copied function, same machine code).

How: the kernels compile with :class:`KernelCompiler` (numba's documented ``pipeline_class``
option), whose two inlining passes run with :func:`shared_block_memo` active.  While it is active,
the deep copies that numba's inliner module makes of IR blocks share one memo for consecutive
blocks of one scope (one function's IR), as a single ``deepcopy`` of the whole function would.
Outside it (any other numba compilation in the process) the copies are numba's own, unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import threading

from numba.core import inline_closurecall, ir
from numba.core.compiler import Compiler, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass
from numba.core.typed_passes import InlineOverloads
from numba.core.untyped_passes import InlineInlinables

_active = threading.local()


class _BlockCopies:
    """Stands in for the ``copy`` module inside ``numba.core.inline_closurecall``.

    ``deepcopy(block)`` without a memo, while :func:`shared_block_memo` is active, reuses the
    memo of the previous block if both belong to the same scope and the block was not copied
    with it already (a second copy of the same function starts a fresh memo); everything else
    is the real :mod:`copy`.
    """

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(obj, memo=None):
        state = getattr(_active, "state", None)
        if memo is not None or state is None or not isinstance(obj, ir.Block):
            return copy.deepcopy(obj, memo)
        if obj.scope is not state["scope"] or id(obj) in state["memo"]:
            state["scope"] = obj.scope  # kept alive with the memo, so its id is not reused meanwhile
            state["memo"] = {}
        return copy.deepcopy(obj, state["memo"])


inline_closurecall.copy = _BlockCopies()  # numba's inliner imports `copy` as a module attribute


@contextlib.contextmanager
def shared_block_memo():
    """While active (on this thread), numba's inliner copies each function's blocks with one memo."""
    previous = getattr(_active, "state", None)
    _active.state = {"scope": None, "memo": {}}
    try:
        yield
    finally:
        _active.state = previous


def _sharing_memo(base):
    """A registered subclass of the pass ``base`` whose ``run_pass`` runs inside :func:`shared_block_memo`."""

    class Pass(base):
        _name = f"numba_dwconv_{base._name}"

        def run_pass(self, state):
            with shared_block_memo():
                return super().run_pass(state)

    Pass.__name__ = Pass.__qualname__ = f"SharedMemo{base.__name__}"
    return register_pass(mutates_CFG=True, analysis_only=False)(Pass)


_REPLACEMENTS = {InlineInlinables: _sharing_memo(InlineInlinables), InlineOverloads: _sharing_memo(InlineOverloads)}


class KernelCompiler(Compiler):
    """numba's default nopython pipeline with the inlining passes replaced by their shared-memo versions."""

    def define_pipelines(self):
        if self.state.flags.force_pyobject:  # never for these kernels; numba's own choice if it happens
            return super().define_pipelines()
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.passes = [(_REPLACEMENTS.get(pass_, pass_), description) for pass_, description in pm.passes]
        pm.finalize()
        return [pm]
