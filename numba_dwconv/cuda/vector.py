"""Element access for the GPU kernels: typed pointers, 16-byte vectors, float32 accumulation.

The kernels take raw device pointers (``CPointer`` arguments: one integer each at
launch, no per-call array marshalling) and 32-bit indices.  Each storage type is a
:class:`Codec`: how one element or one 16-byte vector of it is read into the
accumulator type and written back.

* ``float32``: 4 per vector, accumulated in float32;
* ``float64``: 2 per vector, accumulated in float64;
* ``float16``: 8 per vector, widened to float32 (``cvt``), narrowed with round-to-nearest-even;
* ``bfloat16``: stored as its 16 raw bits (``uint16``), 8 per vector; widened by a
  16-bit shift (exact) and narrowed by integer round-to-nearest-even
  (:func:`numba_dwconv._bfloat16.bf16_bits_from_f32`), so no bf16 hardware type is needed.

On a GPU the vector forms are ``ld.global.v4`` / ``st.global.v4`` of 16 bytes (the
caller guarantees 16-byte alignment); under numba's CUDA simulator the same kernel
source runs with plain Python twins of these functions (the "pointers" are then the
flat arrays themselves).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import config

try:  # numba-cuda >= 0.2x has its own type system; older versions share numba's
    from numba.cuda import types
except ImportError:  # pragma: no cover - older numba-cuda
    from numba import types

from .._bfloat16 import bf16_bits_from_f32, f32_from_bf16_bits  # noqa: F401 (the simulator twins)

SIMULATED = bool(config.ENABLE_CUDASIM)
VECTOR_BYTES = 16
MAX_INDEX = 2**31 - 1  # the pointer kernels' index arithmetic is int32


def storage_name(dtype) -> str | None:
    """The codec name of a NumPy dtype the pointer kernels take, or None (bfloat16 has no NumPy dtype)."""
    name = np.dtype(dtype).name
    return name if name in ("float32", "float64", "float16") else None


class Codec(NamedTuple):
    """How a kernel reads and writes one storage type.

    Attributes
    ----------
    name : str
        Storage dtype name ("float32", "float64", "float16", "bfloat16").
    storage : numba type
        Element type of the pointers (``uint16`` for bfloat16).
    acc : numba type
        Accumulator type (float32, or float64 for float64 data).
    width : int
        Elements per 16-byte vector.
    load1, store1 : device functions
        ``load1(ptr, i) -> acc``; ``store1(ptr, i, value)``.
    load_at, store_at : device functions
        ``load_at(ptr, i, offset)``, ``store_at(ptr, i, offset, value)``: element ``i + offset``, ``offset`` a
        compile-time constant folded into the address (as for the vectors).
    vload, vstore : device functions
        ``vload(ptr, i, offset, regs, k)``: elements ``i + offset ..`` (``width`` of them) into ``regs[k ..]`` (a
        local array of ``acc``); ``vstore(ptr, i, offset, regs, k)``: the reverse.  ``i + offset`` must be a
        multiple of ``width`` (16-byte aligned); ``offset`` is a compile-time constant, folded into the address.
    """

    name: str
    storage: object
    acc: object
    width: int
    load1: object
    store1: object
    vload: object
    vstore: object
    load_at: object
    store_at: object

    @property
    def numpy_storage(self) -> np.dtype:
        """NumPy dtype of the device buffers (bfloat16 is handled as its raw ``uint16`` bits)."""
        return np.dtype(np.uint16) if self.name == "bfloat16" else np.dtype(self.name)


# ---------------------------------------------------------------------------- simulator twins
def _sim_codec(name: str) -> Codec:
    acc = np.float64 if name == "float64" else np.float32
    width = VECTOR_BYTES // (8 if name == "float64" else 4 if name == "float32" else 2)
    if name == "bfloat16":
        def load1(ptr, i):
            return f32_from_bf16_bits(ptr[i])[()]

        def store1(ptr, i, value):
            ptr[i] = bf16_bits_from_f32(value)[()]
    else:
        def load1(ptr, i):
            return acc(ptr[i])

        def store1(ptr, i, value):
            ptr[i] = value

    def load_at(ptr, i, offset):
        return load1(ptr, i + offset)

    def store_at(ptr, i, offset, value):
        store1(ptr, i + offset, value)

    def vload(ptr, i, offset, regs, k):
        for e in range(width):
            regs[k + e] = load1(ptr, i + offset + e)

    def vstore(ptr, i, offset, regs, k):
        for e in range(width):
            store1(ptr, i + offset + e, regs[k + e])

    storage = types.uint16 if name == "bfloat16" else getattr(types, name)
    return Codec(name, storage, getattr(types, np.dtype(acc).name), width, load1, store1, vload, vstore, load_at,
                 store_at)


# ---------------------------------------------------------------------------- GPU intrinsics
def _gpu_codec(name: str) -> Codec:
    from llvmlite import ir

    try:
        from numba.cuda.extending import intrinsic
    except ImportError:  # older numba-cuda: numba's own extension API
        from numba.core.extending import intrinsic

    storage = types.uint16 if name == "bfloat16" else getattr(types, name)
    acc = types.float64 if name == "float64" else types.float32
    width = VECTOR_BYTES * 8 // storage.bitwidth
    i32 = ir.IntType(32)
    f32 = ir.FloatType()
    store_ir = {"float32": f32, "float64": ir.DoubleType(), "float16": ir.HalfType(), "bfloat16": ir.IntType(16)}[name]

    def global_pointer(builder, ptr, index, elem_type, offset=None):
        """``&ptr[index + offset]`` in the global address space, typed ``elem_type*``."""
        elem = builder.gep(ptr, [index])
        if offset is not None:  # a second GEP: the constant becomes the access's immediate offset
            elem = builder.gep(elem, [offset])
        generic = builder.bitcast(elem, elem_type.as_pointer())
        return builder.addrspacecast(generic, elem_type.as_pointer(1))

    def widen(builder, value):
        if name == "float16":
            return builder.fpext(value, f32)
        if name == "bfloat16":
            return builder.bitcast(builder.shl(builder.zext(value, i32), ir.Constant(i32, 16)), f32)
        return value

    def narrow(builder, value):
        if name == "float16":
            return builder.fptrunc(value, store_ir)
        if name == "bfloat16":  # round to nearest even on the bits; NaN -> quiet NaN
            bits = builder.bitcast(value, i32)
            low = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
            rounded = builder.lshr(builder.add(builder.add(bits, ir.Constant(i32, 0x7FFF)), low), ir.Constant(i32, 16))
            magnitude = builder.and_(bits, ir.Constant(i32, 0x7FFFFFFF))
            is_nan = builder.icmp_unsigned(">", magnitude, ir.Constant(i32, 0x7F800000))
            quiet = builder.or_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 0x40))
            return builder.trunc(builder.select(is_nan, quiet, rounded), store_ir)
        return value

    @intrinsic
    def load1(typingctx, ptr, index):
        def codegen(context, builder, sig, args):
            return widen(builder, builder.load(global_pointer(builder, args[0], args[1], store_ir)))

        return acc(ptr, index), codegen

    @intrinsic
    def store1(typingctx, ptr, index, value):
        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[2], sig.args[2], acc)
            builder.store(narrow(builder, value), global_pointer(builder, args[0], args[1], store_ir))

        return types.void(ptr, index, value), codegen

    @intrinsic
    def load_at(typingctx, ptr, index, offset):
        def codegen(context, builder, sig, args):
            return widen(builder, builder.load(global_pointer(builder, args[0], args[1], store_ir, args[2])))

        return acc(ptr, index, offset), codegen

    @intrinsic
    def store_at(typingctx, ptr, index, offset, value):
        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[3], sig.args[3], acc)
            builder.store(narrow(builder, value), global_pointer(builder, args[0], args[1], store_ir, args[2]))

        return types.void(ptr, index, offset, value), codegen

    # 16-bit types move as <4 x i32> (LLVM splits <8 x i16> into 8-byte accesses) and are unpacked in pairs.
    packed = storage.bitwidth == 16
    vec_ir = ir.VectorType(i32, 4) if packed else ir.VectorType(store_ir, width)
    i16 = ir.IntType(16)

    def unpack(builder, vec):
        """The ``width`` storage values of a loaded vector."""
        if not packed:
            return [builder.extract_element(vec, ir.Constant(i32, e)) for e in range(width)]
        values = []
        for word_index in range(4):
            word = builder.extract_element(vec, ir.Constant(i32, word_index))
            for half in (builder.trunc(word, i16), builder.trunc(builder.lshr(word, ir.Constant(i32, 16)), i16)):
                values.append(builder.bitcast(half, store_ir) if name == "float16" else half)
        return values

    def pack(builder, values):
        """A vector to store from ``width`` storage values."""
        vec = ir.Constant(vec_ir, ir.Undefined)
        if not packed:
            for e, value in enumerate(values):
                vec = builder.insert_element(vec, value, ir.Constant(i32, e))
            return vec
        for word_index in range(4):
            low, high = (builder.zext(builder.bitcast(v, i16), i32) for v in values[2 * word_index:2 * word_index + 2])
            word = builder.or_(low, builder.shl(high, ir.Constant(i32, 16)))
            vec = builder.insert_element(vec, word, ir.Constant(i32, word_index))
        return vec

    def local_slot(context, builder, regs_type, regs, k):
        array = context.make_array(regs_type)(context, builder, value=regs)
        return builder.gep(array.data, [k])

    @intrinsic
    def vload(typingctx, ptr, index, offset, regs, k):
        def codegen(context, builder, sig, args):
            vec = builder.load(global_pointer(builder, args[0], args[1], vec_ir, args[2]), align=VECTOR_BYTES)
            base = local_slot(context, builder, sig.args[3], args[3], args[4])
            for e, value in enumerate(unpack(builder, vec)):
                builder.store(widen(builder, value), builder.gep(base, [ir.Constant(i32, e)]))
            return context.get_dummy_value()

        return types.none(ptr, index, offset, regs, k), codegen

    @intrinsic
    def vstore(typingctx, ptr, index, offset, regs, k):
        def codegen(context, builder, sig, args):
            base = local_slot(context, builder, sig.args[3], args[3], args[4])
            values = [narrow(builder, builder.load(builder.gep(base, [ir.Constant(i32, e)]))) for e in range(width)]
            builder.store(pack(builder, values), global_pointer(builder, args[0], args[1], vec_ir, args[2]),
                          align=VECTOR_BYTES)
            return context.get_dummy_value()

        return types.none(ptr, index, offset, regs, k), codegen

    return Codec(name, storage, acc, width, load1, store1, vload, vstore, load_at, store_at)


@functools.lru_cache(maxsize=None)
def codec(name: str) -> Codec:
    """The :class:`Codec` of storage dtype ``name`` (cached: one set of device functions per type)."""
    if name not in ("float32", "float64", "float16", "bfloat16"):
        raise ValueError(f"no GPU codec for dtype {name!r}")
    return _sim_codec(name) if SIMULATED else _gpu_codec(name)


def pointer_type(name: str):
    """The numba kernel-argument type of a buffer of storage dtype ``name``."""
    return types.CPointer(codec(name).storage)

