"""Every GPU kernel of the package with a signature a typical float32 call compiles for.

:func:`kernel_catalogue` lets a test compile each kernel with numba-cuda's real
compiler (``numba.cuda.compile_ptx``, no GPU needed) and lets the static check
(``tools/kernel_report.py``) report registers, spills and the instruction mix of
each, so GPU code that the CUDA simulator accepts but the compiler rejects is caught
without a GPU.  Building the catalogue compiles nothing.
"""

from __future__ import annotations

import contextlib

from numba import cuda

from .vector import types


def _vector_entries():
    from . import conv1d
    from .conv1d_vector import VectorKey, vector_kernel

    config = conv1d.VECTOR
    keys = {
        "conv1d.forward_first_vector": VectorKey("forward_first", "float32", 3, 1, 3, 1, "both", 1, 1, 2),
        "conv1d.forward_first_vector[float16, K4 causal]": VectorKey("forward_first", "float16", 4, 1, 5, 1, "both",
                                                                     1, 1, 2),
        "conv1d.forward_first_vector[bfloat16, K4 causal]": VectorKey("forward_first", "bfloat16", 4, 1, 5, 1,
                                                                      "both", 1, 1, 2),
        "conv1d.forward_first_vector[K31]": VectorKey("forward_first", "float32", 31, 1, 1, 1, "both", 1, 1),
        "conv1d.forward_last_vector": VectorKey("forward_last", "float32", 3, 1, 0, 1, "both", 1, 1),
        "conv1d.forward_last_vector[float16]": VectorKey("forward_last", "float16", 3, 1, 0, 1, "both", 1, 1),
        "conv1d.forward_last_vector[K31]": VectorKey("forward_last", "float32", 31, 1, 0, 1, "both", 1, 1),
        "conv1d.backward_first_vector": VectorKey("backward_first", "float32", 3, 1, 3, 1, "both", config.threads, 1),
        "conv1d.backward_first_vector[bfloat16, m2]": VectorKey("backward_first", "bfloat16", 3, 1, 7, 2, "both",
                                                                config.threads, 1),
        "conv1d.backward_last_vector": VectorKey("backward_last", "float32", 3, 1, 0, 1, "both", config.lanes,
                                                 config.groups),
        "conv1d.sum_partials_vector": VectorKey("sum_partials", "float32", 0, 1, 0, 1, "both", 1, 1),
        # rows that are not 16-byte multiples (e.g. `valid` outputs) or unaligned: the same windows, element-wise
        "conv1d.forward_first_elements": VectorKey("forward_first", "float32", 3, 1, 0, 1, "both", 1, 1, 2, False,
                                                   False),
        "conv1d.backward_first_elements": VectorKey("backward_first", "float32", 3, 1, 0, 1, "both",
                                                    config.threads, 1, 1, False, False),
    }
    for name, key in keys.items():
        pyfunc, signature = vector_kernel(key)
        yield name, cuda.jit(pyfunc), signature


def _vector2d_entries():
    """The 2D vector kernels as the MobileNet-style shapes pick them (3x3 and 5x5, stride 1 and 2)."""
    from .._geometry import conv2d_problem
    from . import conv2d
    from .conv2d_vector import vector_kernel

    cases = {  # name: (kind, layout, dtype, (H, W), C, kernel size, stride)
        "conv2d.forward_last_vector[3x3]": ("forward", "channels_last", "float32", (56, 56), 128, 3, 1),
        "conv2d.forward_last_vector[3x3 s2]": ("forward", "channels_last", "float32", (56, 56), 256, 3, 2),
        "conv2d.forward_last_vector[float16 5x5]": ("forward", "channels_last", "float16", (28, 28), 512, 5, 1),
        "conv2d.forward_last_vector[float32 9x9]": ("forward", "channels_last", "float32", (28, 28), 64, 9, 1),
        "conv2d.forward_first_vector[3x3]": ("forward", "channels_first", "float32", (56, 56), 128, 3, 1),
        "conv2d.forward_first_vector[float16 3x3 s2]": ("forward", "channels_first", "float16", (112, 112), 32, 3, 2),
        "conv2d.forward_first_vector[5x5]": ("forward", "channels_first", "float32", (28, 28), 512, 5, 1),
        "conv2d.forward_first_vector[float16 9x9]": ("forward", "channels_first", "float16", (32, 32), 64, 9, 1),
        "conv2d.backward_last_vector[3x3]": ("backward", "channels_last", "float32", (56, 56), 128, 3, 1),
        "conv2d.backward_last_vector[3x3 s2]": ("backward", "channels_last", "float32", (56, 56), 256, 3, 2),
        "conv2d.backward_last_vector[float16 3x3]": ("backward", "channels_last", "float16", (112, 112), 32, 3, 1),
        "conv2d.backward_last_vector[5x5]": ("backward", "channels_last", "float32", (28, 28), 512, 5, 1),
        "conv2d.backward_first_vector[3x3]": ("backward", "channels_first", "float32", (56, 56), 128, 3, 1),
        "conv2d.backward_first_vector[float16 3x3]": ("backward", "channels_first", "float16", (112, 112), 32, 3, 1),
        "conv2d.backward_first_vector[5x5]": ("backward", "channels_first", "float32", (28, 28), 512, 5, 1),
        "conv2d.backward_first_vector[3x3 s2]": ("backward", "channels_first", "float32", (56, 56), 256, 3, 2),
        "conv2d.backward_first_vector[7x7]": ("backward", "channels_first", "float32", (28, 28), 256, 7, 1),
    }
    for name, (kind, layout, dtype, spatial, chans, size, stride) in cases.items():
        shape = (16, *spatial, chans) if layout == "channels_last" else (16, chans, *spatial)
        problem = conv2d_problem(shape, (size, size, chans, 1), stride, "same", layout, 1, dtype)
        key = conv2d.vector_key(kind, problem, config=conv2d.VECTOR)
        if key is None:  # pragma: no cover - the catalogue names kernels that exist
            raise AssertionError(f"{name}: no vector kernel for {problem}")
        pyfunc, signature = vector_kernel(key)
        yield name, cuda.jit(pyfunc), signature


def _array_entries():
    from . import activations, arrays, conv1d_generic, conv2d_generic, packed, pointwise, update

    f32, i64 = types.float32, types.int64
    a1, a3, a4 = f32[::1], f32[:, :, ::1], f32[:, :, :, ::1]
    generic = conv1d_generic._kernels("float32")
    for layout in ("last", "first"):
        pyfunc, signature = conv1d_generic._forward_general("float32", layout == "last", False)
        yield f"conv1d.forward_general[channels_{layout}]", cuda.jit(pyfunc), signature
        yield f"conv1d.input_grad_channels_{layout}", generic[f"input_grad_channels_{layout}"], (a3, a3, i64, i64,
                                                                                                  i64, a3)
        yield (f"conv1d.kernel_grad_partials_{layout}", generic[f"kernel_grad_partials_{layout}"],
               (a3, a3, i64, i64, i64, i64, a3))
    for channels_last in (True, False):
        two_d = conv2d_generic._kernels("float32", channels_last)
        tag = "channels_last" if channels_last else "channels_first"
        axes = (i64,) * 6
        yield f"conv2d.forward[{tag}]", two_d["forward"], (a4, a4, a1, *axes, a4)
        yield f"conv2d.input_grad[{tag}]", two_d["input_grad"], (a4, a4, *axes, a4)
        yield f"conv2d.kernel_grad_partials[{tag}]", two_d["kernel_grad_partials"], (a4, a4, *axes, i64, i64, a3)
    for access in (("plain", "shared"), ("shared_transposed", "plain"), ("transposed", "plain")):
        matmul = pointwise._matmul_kernel(*access, "float32", pointwise.LAUNCH.tile, pointwise.LAUNCH.reg)
        yield f"pointwise.matmul[{', '.join(access)}]", matmul, (a3, a3, a1, i64, i64, i64, i64, i64, i64, a3)
    yield "pointwise.sum_partials", pointwise._sum_partials_kernel("float32"), (a3, f32[:, ::1])
    yield "arrays.copy_cast_3d", arrays._copy_cast_3d, (f32[:, :, :], a3)
    for name in ("silu", "gelu", "mish"):
        for derivative in (False, True):
            kernel = activations._kernel(name, derivative, False)
            yield f"activations.{name}{chr(39) if derivative else ''}", kernel, (a1, a1)
    yield "activations.silu[float16]", activations._kernel("silu", False, True), (types.float16[::1],) * 2
    for channels_last in (True, False):
        tag = "channels_last" if channels_last else "channels_first"
        yield (f"update.decode_step[{tag}]", update.update_kernel(channels_last, False),
               (a3, a3, a3, a1, types.int64[::1], i64, a3))
        forward, input_grad, kernel_grad, zero_padding = packed._kernels(channels_last)
        ids = types.int64[:, ::1]
        yield f"packed.forward[{tag}]", forward, (a3, ids, a3, a1, i64, a3)
        yield f"packed.input_grad[{tag}]", input_grad, (a3, ids, a3, i64, a3)
        yield f"packed.kernel_grad[{tag}]", kernel_grad, (a3, a3, ids, i64, a4, f32[:, ::1])
        yield f"packed.zero_padding[{tag}]", zero_padding, (a3, ids)


@contextlib.contextmanager
def compiling_for(cc=(9, 0)):
    """Compile device functions for compute capability ``cc`` without a GPU.

    The kernels' device functions are inlined by LLVM (``forceinline``: 3-5x faster to compile than
    inlining at the Numba IR level, the same machine code); numba-cuda compiles each for the current
    device's compute capability, which needs a driver.  Within this context it is ``cc`` instead
    (for :func:`numba.cuda.compile_ptx` on a machine without a GPU: the catalogue test, the static report).
    """
    from types import SimpleNamespace

    from numba.cuda import dispatcher

    original = getattr(dispatcher, "get_current_device", None)
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        if original is None:
            del dispatcher.get_current_device
        else:
            dispatcher.get_current_device = original


def catalogue() -> list[tuple[str, object, tuple]]:
    """``[(name, dispatcher, signature)]`` for every GPU kernel (see :func:`numba_dwconv.cuda.kernel_catalogue`)."""
    return [*_vector_entries(), *_vector2d_entries(), *_array_entries()]
