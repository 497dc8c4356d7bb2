"""Explicit SIMD vectors inside numba kernels: a vector type and the operations the kernels need.

LLVM vectorises only innermost loops, so a loop over channels keeps its sums in registers only
across taps whose loop is unrolled inside it (a compile-time count).  A kernel that must keep
sums in registers across a run-time loop (large kernels: ``KH`` and ``KW`` at run time, one
compiled kernel for every size) writes the channel vector out instead: :class:`Vec` is a numba
type whose LLVM value is a ``<lanes x float>`` vector, so a vector of sums is an ordinary
variable (a register) that a loop of any trip count carries.

* ``vload(array, index, lanes_t)``: ``array[index : index + lanes]`` as a vector (``lanes_t``: a
  tuple of ``lanes`` items, a compile-time count, see :func:`lanes_of`); ``array`` flat and
  C-contiguous, ``index`` any integer (no bounds check: the kernels guarantee the range).
* ``vstore(array, index, vector)``: the reverse.
* ``vfma(a, b, c)``: ``a * b + c`` lane by lane (``llvm.fma``: one rounding; also on scalars).
* ``vsplat(array, index, lanes_t)``: ``array[index]`` in every lane.
* Squares of vectors (``vload_rows``, ``vtranspose``, ``vstore_rows``) and non-temporal stores
  (``vstore_stream``, ``vstore_rows_stream``), below.

Loads and stores assume only the element's alignment.  Vectors of 64 bytes (16 float32 or 8
float64) are one AVX-512 register; LLVM splits them into two or four on CPUs with narrower
vectors, so the kernels stay correct everywhere.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

VECTOR_BYTES = 64


def lanes_of(dtype) -> tuple:
    """The ``lanes_t`` argument for ``dtype``: a tuple of ``VECTOR_BYTES // itemsize`` zeros."""
    return (0,) * (VECTOR_BYTES // dtype.itemsize)


class Vec(types.Type):
    """A vector of ``lanes`` values of the numba scalar type ``dtype``."""

    def __init__(self, dtype, lanes: int):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vec({dtype} x {lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _element_pointer(context, builder, array_type, array, index):
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


def _load_vector(context, builder, array_type, array, index, vector_type):
    """The vector at ``array[index:]`` (element alignment)."""
    pointer = _element_pointer(context, builder, array_type, array, index)
    return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=array_type.dtype.bitwidth // 8)


def _store_vector(context, builder, array_type, array, index, value, align=None):
    """``value`` to ``array[index:]`` (element alignment unless ``align``); the store instruction."""
    pointer = _element_pointer(context, builder, array_type, array, index)
    return builder.store(value, builder.bitcast(pointer, value.type.as_pointer()),
                         align=align or array_type.dtype.bitwidth // 8)


def _row_offsets(context, builder, signature, args, count):
    """``index + j*stride`` for ``j < count`` (``args[1]``, ``args[2]``: the index and the stride)."""
    index, stride = args[1], context.cast(builder, args[2], signature.args[2], signature.args[1])
    return [builder.add(index, builder.mul(stride, ir.Constant(stride.type, j))) for j in range(count)]


@intrinsic
def vload(typingctx, array, index, lanes_t):
    """``array[index : index + lanes]`` as a :class:`Vec` (see the module docstring)."""
    if not isinstance(array, types.Array) or not isinstance(lanes_t, types.BaseTuple):
        return None
    vec = Vec(array.dtype, len(lanes_t))

    def codegen(context, builder, signature, args):
        return _load_vector(context, builder, signature.args[0], args[0], args[1], context.get_value_type(vec))

    return vec(array, index, lanes_t), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    """``array[index : index + lanes] = vector``."""
    if not isinstance(array, types.Array) or not isinstance(vector, Vec):
        return None

    def codegen(context, builder, signature, args):
        _store_vector(context, builder, signature.args[0], args[0], args[1], args[2])
        return context.get_dummy_value()

    return types.void(array, index, vector), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane by lane, rounded once (also on three scalars of one float type: the same rounding)."""
    if not (isinstance(a, (Vec, types.Float)) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        value_type = args[0].type
        bits = a.dtype.bitwidth if isinstance(a, Vec) else a.bitwidth
        kind = f"v{value_type.count}" if isinstance(a, Vec) else ""
        name = f"llvm.fma.{kind}{'f32' if bits == 32 else 'f64'}"
        fma = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(value_type, [value_type] * 3))
        return builder.call(fma, list(args))

    return a(a, b, c), codegen


@intrinsic
def vload_rows(typingctx, array, index, stride, lanes_t):
    """``lanes`` vectors, the ``j``-th ``array[index + j*stride : ... + lanes]``, as a tuple (a square of values)."""
    if not isinstance(array, types.Array) or not isinstance(lanes_t, types.BaseTuple):
        return None
    rows = types.UniTuple(Vec(array.dtype, len(lanes_t)), len(lanes_t))

    def codegen(context, builder, signature, args):
        vector_type = context.get_value_type(rows.dtype)
        values = [_load_vector(context, builder, signature.args[0], args[0], offset, vector_type)
                  for offset in _row_offsets(context, builder, signature, args, rows.count)]
        return context.make_tuple(builder, rows, values)

    return rows(array, index, stride, lanes_t), codegen


def _rows_store(array, index, stride, rows, stream: bool):
    """Typing and code of :func:`vstore_rows` (``stream``: of :func:`vstore_rows_stream`)."""
    if not (isinstance(array, types.Array) and isinstance(rows, types.UniTuple) and isinstance(rows.dtype, Vec)):
        return None

    def codegen(context, builder, signature, args):
        offsets = _row_offsets(context, builder, signature, args, rows.count)
        for offset, value in zip(offsets, cgutils.unpack_tuple(builder, args[3])):
            store = _store_vector(context, builder, signature.args[0], args[0], offset, value,
                                  align=VECTOR_BYTES if stream else None)
            if stream:
                _nontemporal(builder, store)
        return context.get_dummy_value()

    return types.void(array, index, stride, rows), codegen


def _nontemporal(builder, store):
    """Mark ``store`` non-temporal (see :func:`vstore_stream`)."""
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


@intrinsic
def vstore_rows(typingctx, array, index, stride, rows):
    """The reverse of :func:`vload_rows`: vector ``j`` of ``rows`` to ``array[index + j*stride:]``."""
    return _rows_store(array, index, stride, rows, stream=False)


def _transpose_masks(lanes: int):
    """Per butterfly stage ``s`` (1, 2, 4, ...): the shuffle masks giving rows ``r`` and ``r + s`` of the stage.

    A stage swaps bit ``s`` of the row and lane indices of every value where they differ; after one stage per
    bit, value ``(r, l)`` is at ``(l, r)``.  Lanes ``lanes..2*lanes-1`` of a mask name the second row.
    """
    stages = []
    s = 1
    while s < lanes:
        low = [lane if not lane & s else lanes + lane - s for lane in range(lanes)]
        high = [lane + s if not lane & s else lanes + lane for lane in range(lanes)]
        stages.append((s, low, high))
        s *= 2
    return stages


@intrinsic
def vtranspose(typingctx, rows):
    """The transpose of a square of vectors (``lanes`` vectors of ``lanes`` lanes): ``lanes * log2(lanes)`` shuffles."""
    if not (isinstance(rows, types.UniTuple) and isinstance(rows.dtype, Vec) and rows.count == rows.dtype.lanes
            and rows.count & (rows.count - 1) == 0):
        return None

    def codegen(context, builder, signature, args):
        values = cgutils.unpack_tuple(builder, args[0])
        i32 = ir.IntType(32)
        for s, low, high in _transpose_masks(rows.count):
            new = list(values)
            for r in range(rows.count):
                if r & s:
                    continue
                a, b = values[r], values[r + s]
                new[r] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, rows.count), low))
                new[r + s] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, rows.count), high))
            values = new
        return context.make_tuple(builder, signature.return_type, values)

    return rows(rows), codegen


@intrinsic
def vstore_stream(typingctx, array, index, vector):
    """:func:`vstore` bypassing the caches (a non-temporal store: no read of the line first).

    ``array[index:]`` must start on a ``VECTOR_BYTES`` boundary.  For outputs much larger than the caches,
    which a kernel writes once: the line is not read before it is written (a plain store reads it first,
    so a copy moves three bytes per byte copied).
    """
    if not isinstance(array, types.Array) or not isinstance(vector, Vec):
        return None

    def codegen(context, builder, signature, args):
        _nontemporal(builder, _store_vector(context, builder, signature.args[0], args[0], args[1], args[2],
                                            align=VECTOR_BYTES))
        return context.get_dummy_value()

    return types.void(array, index, vector), codegen


@intrinsic
def vstore_rows_stream(typingctx, array, index, stride, rows):
    """:func:`vstore_rows` with non-temporal stores (:func:`vstore_stream`: every row on a line's start)."""
    return _rows_store(array, index, stride, rows, stream=True)


@intrinsic
def vsplat(typingctx, array, index, lanes_t):
    """``array[index]`` in every lane of a vector (``array`` flat and C-contiguous; one broadcast load)."""
    if not isinstance(array, types.Array) or not isinstance(lanes_t, types.BaseTuple):
        return None
    vector = Vec(array.dtype, len(lanes_t))

    def codegen(context, builder, signature, args):
        value = builder.load(_element_pointer(context, builder, signature.args[0], args[0], args[1]))
        vector_type = context.get_value_type(vector)
        single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), [0] * vector.lanes))

    return vector(array, index, lanes_t), codegen


@intrinsic
def vrepeat2(typingctx, vector):
    """``(lo, hi)``: each lane of ``vector`` twice, its first half into ``lo`` and its second into ``hi``.

    ``lo = (v0, v0, v1, v1, ...)``, ``hi = (v[n/2], v[n/2], ...)``: a vector of channels as the outputs of a depth
    multiplier 2 lay them out (two shuffles, no memory).
    """
    if not isinstance(vector, Vec):
        return None
    n = vector.lanes
    pair = types.UniTuple(vector, 2)

    def codegen(context, builder, signature, args):
        masks = ([i // 2 for i in range(n)], [n // 2 + i // 2 for i in range(n)])
        halves = [builder.shuffle_vector(args[0], args[0], ir.Constant(ir.VectorType(ir.IntType(32), n), mask))
                  for mask in masks]
        return context.make_tuple(builder, pair, halves)

    return pair(vector), codegen
