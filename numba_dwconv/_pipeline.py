"""The compiler pipeline of this package's CPU kernels: numba's own, with two changes.

1. numba's IR inliner copies each callee once.  The kernels are built from small helpers inlined at
   numba's IR level (``inline="always"``, see :func:`numba_dwconv._jit.serial_kernel`).  numba's
   inliner copies a callee's IR block by block, each ``copy.deepcopy`` with a fresh memo, so every
   block copies the whole variable scope of the function again: the cost grows with blocks x
   variables for every inlined call site (numba issue #8989).  Measured on the 1D channels_first
   forward: two thirds of its first-call compile time was spent in those copies (5.4 s -> 3.1 s with
   one memo per copied function, same machine code).  The two inlining passes run with
   :func:`shared_block_memo` active: while it is, the deep copies that numba's inliner module makes
   of IR blocks share one memo for consecutive blocks of one scope (one function's IR), as a single
   ``deepcopy`` of the whole function would.  Outside it (any other numba compilation in the
   process) the copies are numba's own, unchanged.

2. 512-bit vectors on CPUs with AVX-512.  LLVM prefers 256-bit vectors there by default (older
   Xeons slowed their clock for 512-bit code); the kernels' functions carry LLVM's
   ``prefer-vector-width`` attribute instead, for these functions only (measured on a 2-core Xeon
   with AVX-512: large 1D/2D shapes 5-29 % faster, see :data:`VECTOR_WIDTH`).

Both through numba's documented ``pipeline_class`` option (:class:`KernelCompiler`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading

from numba.core import inline_closurecall, ir
from numba.core.compiler import Compiler, DefaultPassBuilder
from numba.core.compiler_machinery import LoweringPass, register_pass
from numba.core.typed_passes import InlineOverloads, NativeLowering
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


def _vector_width() -> int | None:
    """The ``prefer-vector-width`` for the kernels: 512 on a CPU with AVX-512, else None (LLVM's default).

    ``NUMBA_DWCONV_VECTOR_WIDTH`` (e.g. ``256``) overrides it; ``0`` keeps LLVM's default everywhere.
    The kernel cache does not record it: clear ``NUMBA_CACHE_DIR`` after changing it.
    """
    setting = os.environ.get("NUMBA_DWCONV_VECTOR_WIDTH", "").strip()
    if setting:
        try:
            width = int(setting)
        except ValueError:
            raise ValueError(f"NUMBA_DWCONV_VECTOR_WIDTH must be an integer number of bits (0: LLVM's default). "
                             f"Received NUMBA_DWCONV_VECTOR_WIDTH={setting!r}") from None
        return width if width > 0 else None
    import llvmlite.binding as llvm

    try:
        return 512 if llvm.get_host_cpu_features().get("avx512f", False) else None
    except RuntimeError:
        return None


VECTOR_WIDTH = _vector_width()


def with_vector_width(llvm_ir: str, width: int) -> str:
    """LLVM IR text with ``"prefer-vector-width"="<width>"`` on every function it defines."""
    attribute = f' "prefer-vector-width"="{width}"'
    lines = llvm_ir.split("\n")
    for n, line in enumerate(lines):
        if line.startswith("define "):
            body = line.rstrip()
            lines[n] = body[:-1].rstrip() + attribute + " {" if body.endswith("{") else body + attribute
    return "\n".join(lines)


@register_pass(mutates_CFG=False, analysis_only=False)
class PreferVectorWidth(LoweringPass):
    """Before lowering: the function's code library gives its functions :data:`VECTOR_WIDTH` (when set)."""

    _name = "numba_dwconv_prefer_vector_width"

    def __init__(self):
        LoweringPass.__init__(self)

    def run_pass(self, state):
        if VECTOR_WIDTH is None:
            return False
        if state.library is None:  # what numba's lowering would create, made here so it can be adapted
            state.library = state.targetctx.codegen().create_library(state.func_id.func_qualname)
            state.library.enable_object_caching()
        library = state.library
        add_llvm_module = library.add_llvm_module

        def add_ir_module(ir_module):  # numba's add_ir_module, with the attribute added to the IR text
            import llvmlite.binding as llvm
            from numba.core import cgutils

            ll_module = llvm.parse_assembly(with_vector_width(cgutils.normalize_ir_text(str(ir_module)),
                                                              VECTOR_WIDTH))
            ll_module.name = ir_module.name
            ll_module.verify()
            add_llvm_module(ll_module)

        library.add_ir_module = add_ir_module
        return False


class KernelCompiler(Compiler):
    """numba's nopython pipeline: shared-memo inlining passes, and :class:`PreferVectorWidth` before lowering."""

    def define_pipelines(self):
        if self.state.flags.force_pyobject:  # never for these kernels; numba's own choice if it happens
            return super().define_pipelines()
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.passes = [(_REPLACEMENTS.get(pass_, pass_), description) for pass_, description in pm.passes]
        pm.add_pass_after(PreferVectorWidth, pm.passes[[p for p, _ in pm.passes].index(NativeLowering) - 1][0])
        pm.finalize()
        return [pm]
