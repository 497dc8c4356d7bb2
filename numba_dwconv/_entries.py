"""Size-specialised code called by address: a new kernel size compiles a small function, not a whole kernel.

The register-blocked loops of the 2D kernels unroll their taps, so they need the kernel size at
compile time (:func:`numba_dwconv._jit.static_count`).  Were that size an argument of a whole parallel
kernel, every new size would compile the whole kernel again (2 s for a forward, 3.5 s for a backward on
two cores).  Instead a kernel takes an :class:`Entry`: the address of a small function compiled for one
size, which it calls with :func:`call_entry`.  The kernel's type does not depend on the size, so it
compiles once per layout and dtype; each new size compiles only its entries.

An entry function is compiled like a parallel kernel (no runtime, array arguments ``noalias``), with the
compile-time counts as its last arguments; :func:`call_entry` passes every other argument and supplies
the counts itself (they carry no value, only a type).  The caller's arguments are checked against the
entry's signature while the caller compiles: a mismatch is a typing error, never a wrong call.
"""

from __future__ import annotations

import array
import functools

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import NativeValue, intrinsic, models, register_model, typeof_impl, unbox

from ._jit import JIT_OPTIONS, StaticCount, _no_alias_flags


class Entry(array.array):
    """The compiled function of an :func:`entry_kernel` for argument types and compile-time counts.

    ``address``: where it starts.  Each signature has its own subclass (:func:`_entry_class`), because numba
    types an argument in C only by a fingerprint, which for an object with the buffer protocol (this class
    holds its address as one 64-bit integer) includes the object's Python type: the dispatcher then finds
    the type of an entry without running Python code.  (Python code there lets another thread waiting for
    the GIL take it: a launch's worker then started 70 us late, measured on a 50 us forward.)
    """

    numba_type = None  # the EntryType of the subclass

    def __repr__(self):
        return f"<{self.numba_type} at {self.address:#x}>"


@functools.lru_cache(maxsize=None)
def _entry_class(numba_type) -> type:
    return type("Entry", (Entry,), {"numba_type": numba_type, "__module__": __name__})


class EntryType(types.Type):
    """The numba type of an :class:`Entry`: its argument types, not its counts (one caller serves every size)."""

    def __init__(self, argtypes: tuple, counts: int):
        self.argtypes = tuple(argtypes)
        self.counts = counts
        super().__init__(name=f"Entry({', '.join(map(str, self.argtypes))}; {counts} counts)")

    @property
    def literal_type(self):
        """The type itself: numba's dead-branch pass then prunes ``if fn is None`` tests on an entry argument.

        (That pass resolves a non-None argument only through this attribute; without it a kernel compiled with
        entries would also compile the code it runs without them.)
        """
        return self


@register_model(EntryType)
class _EntryModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.IntType(64))


@typeof_impl.register(Entry)
def _typeof_entry(val, c):
    return type(val).numba_type


@unbox(EntryType)
def _unbox_entry(typ, obj, c):
    address = c.pyapi.object_getattr_string(obj, "address")
    value = c.pyapi.long_as_ulonglong(address)
    c.pyapi.decref(address)
    return NativeValue(value, is_error=c.pyapi.c_api_error())


def entry_kernel(func):
    """Compile ``func`` lazily, per signature, as a function that kernels call through an :class:`Entry`.

    Like :func:`numba_dwconv._jit.parallel_kernel` (no runtime, ``noalias`` arrays, cached on disk), without
    the Python wrappers it never needs.  Its last parameters are compile-time counts (:class:`StaticCount`),
    which :func:`call_entry` supplies.
    """
    kernel = numba.njit(_nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True, **JIT_OPTIONS)(func)
    kernel._compiler._customize_flags = _no_alias_flags
    return kernel


def entry(kernel, argtypes: tuple, *sizes: int) -> Entry:
    """The :class:`Entry` of ``kernel`` for ``argtypes`` (numba types) and compile-time counts ``sizes``.

    Compiled on first use (or loaded from the cache), then remembered.
    """
    return _entry(kernel, tuple(argtypes), sizes)


@functools.lru_cache(maxsize=None)
def _entry(kernel, argtypes, sizes):
    signature = argtypes + tuple(StaticCount(n) for n in sizes)
    kernel.compile(signature)
    result = kernel.overloads[signature]
    address = result.library.get_pointer_to_function(result.fndesc.llvm_func_name)
    function = _entry_class(EntryType(argtypes, len(sizes)))("Q", [address])
    function.address = address
    function.library = result.library  # (the address is valid while the compiled code lives)
    return function


def flat_array(dtype) -> types.Array:
    """The numba type of a flat C-contiguous array of ``dtype`` (a NumPy dtype or scalar type): entries' arrays."""
    return types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")


def _passed_type(ty):
    """The type an entry receives for a caller's argument of type ``ty`` (None if it cannot be passed)."""
    if isinstance(ty, types.Array):
        return ty.copy(readonly=False) if ty.layout == "C" else None
    if isinstance(ty, types.Integer):
        return types.uint64 if not ty.signed else types.int64
    if isinstance(ty, (types.Float, types.Boolean)):
        return ty
    return None


@intrinsic
def call_entry(typingctx, function, args):
    """Inside a kernel: call the :class:`Entry` ``function`` with the tuple ``args`` (its counts supplied here).

    Arrays pass as they are (read-only ones as writable: the same value), integers as 64-bit integers of
    their signedness.  Anything that does not match the entry's argument types is a typing error.
    """
    if not isinstance(function, EntryType) or not isinstance(args, types.BaseTuple):
        return None
    passed = [_passed_type(ty) for ty in args]
    declared = function.argtypes
    if passed != list(declared):
        raise numba.core.errors.TypingError(f"call_entry: arguments {tuple(args)} do not match the entry's {declared}")
    full = declared + (types.voidptr,) * function.counts  # (a StaticCount is an opaque pointer, never read)

    def codegen(context, builder, signature, llargs):
        address, values = llargs
        actual = []
        for i, (ty, target) in enumerate(zip(signature.args[1], declared)):
            value = builder.extract_value(values, i)
            actual.append(value if isinstance(ty, types.Array) else context.cast(builder, value, ty, target))
        actual += [cgutils.get_null_value(context.get_value_type(types.voidptr))] * function.counts
        pointer_type = context.call_conv.get_function_type(types.none, full).as_pointer()
        callee = builder.inttoptr(address, pointer_type)
        context.call_conv.call_function(builder, callee, types.none, full, actual)
        return context.get_dummy_value()

    return types.none(function, args), codegen
