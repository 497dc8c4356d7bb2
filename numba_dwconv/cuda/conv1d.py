"""1D depthwise convolution on the GPU: picks the kernels for a call and launches them.

* The register-window kernels of :mod:`numba_dwconv.cuda.conv1d_vector` run whenever they
  apply (:func:`vector_key`): stride 1, taps and windows that fit in registers, fewer than
  2**31 elements; channels_first rows move as 16-byte vectors when they are a multiple of
  16 bytes long and aligned, element by element otherwise; channels_last needs depth
  multiplier 1, channels a multiple of the vector width and aligned operands.  A forward is
  one launch; a backward is one fused launch (input gradient and per-block kernel/bias
  partials) plus one fixed-order sum of the partials.
* Everything else (any stride, tap count, multiplier, alignment, size) runs the general
  kernels of :mod:`numba_dwconv.cuda.conv1d_generic`.

Both apply Keras' padding rule for non-finite numbers inside the kernels
(:data:`PADDING_RULE_IN_KERNELS`), so no host round trip is needed.  The launch
geometry of each problem is computed once (:func:`_plan`, cached); the host launchers
only allocate the outputs (pooled) and launch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from . import conv1d_generic as generic
from .arrays import device_empty
from .conv1d_vector import TAP_REGISTERS, VectorKey, vector_kernel, window_vectors
from .launch import Kernel, aligned, buffer, grid_blocks, pow2_at_least
from .vector import MAX_INDEX, codec, storage_name

# The kernels multiply padding as zeros (Keras' rule for inf/NaN weights and gradients).
PADDING_RULE_IN_KERNELS = True


@dataclass(frozen=True)
class VectorLaunch:
    """Launch tunables of the vector kernels (read by the host only).

    Attributes
    ----------
    threads : int
        channels_first: threads per block.
    lanes, groups : int
        channels_last: blocks of ``groups`` channel vectors (x) by ``lanes`` row lanes (y).
    max_grid : int
        Upper bound on blocks along the length; larger problems loop inside the kernels.
    work_per_thread : int
        Backward: vector slots (channels_first) or rows (channels_last) each thread sums before its block
        reduces; fewer, larger partials.
    max_window : int
        Register-array bound: values in a thread's input window or accumulators.
    """

    threads: int = 128
    lanes: int = 4
    groups: int = 32
    max_grid: int = 2048
    work_per_thread: int = 4
    max_window: int = 64


VECTOR = VectorLaunch()


# ---------------------------------------------------------------------------- choosing the kernels
def vector_key(kind: str, problem, parts: str = "both", config: VectorLaunch | None = None,
               storage: str | None = None) -> VectorKey | None:
    """The vector kernel for ``kind`` ("forward" or "backward") on ``problem``, or None if it does not apply.

    Shapes only: the caller still checks the operands' alignment (:func:`launch.aligned`).  ``storage``
    overrides the storage type named by ``problem.dtype`` (e.g. "bfloat16", which NumPy has no dtype for).
    """
    return _vector_key(kind, problem, parts, config or VECTOR, storage)


@functools.lru_cache(maxsize=1024)
def _vector_key(kind, problem, parts, config, storage):
    name = storage or storage_name(problem.dtype)
    axis = problem.axis
    if name is None or axis.stride != 1 or axis.kernel_size > 32:
        return None
    width = codec(name).width
    batch, chans, mult = problem.batch, problem.channels, problem.multiplier
    sizes = (batch * chans * axis.length, batch * chans * mult * axis.out_length)
    if min(sizes) == 0 or max(sizes) > MAX_INDEX:
        return None
    taps, dil = axis.kernel_size, axis.dilation
    if problem.channels_last:
        if mult != 1 or chans % width:
            return None
        if kind == "backward" and (taps + 1) * width > 40:  # accumulators per thread
            return None
        return VectorKey(f"{kind}_last", name, taps, dil, 0, 1, parts if kind == "backward" else "both",
                         config.lanes if kind == "backward" else 1, config.groups if kind == "backward" else 1)
    vector_in, vector_out = axis.length % width == 0, axis.out_length % width == 0  # (else element by element)
    offset = (-axis.pad_left) % width
    window = window_vectors(width, offset, taps, dil) * width
    if window > config.max_window:
        return None
    if kind == "forward":  # short kernels: two vectors of outputs per thread step (fewer index ops per FMA)
        unroll = 2 if taps <= 8 and window_vectors(width, offset, taps, dil, 2) * width <= config.max_window else 1
        return VectorKey("forward_first", name, taps, dil, offset, 1, "both", 1, 1, unroll, vector_in, vector_out)
    if (taps + 1) * mult > 32:
        return None
    return VectorKey("backward_first", name, taps, dil, offset, mult, parts, config.threads, 1, 1, vector_in,
                     vector_out)


def _with_alignment(key: VectorKey, inputs, outputs) -> VectorKey | None:
    """``key`` adjusted to the operands' alignment, or None (then the general kernels run).

    channels_first rows of unaligned operands move element by element; channels_last needs aligned operands.
    """
    aligned_in = inputs is None or aligned(inputs)
    aligned_out = outputs is None or aligned(outputs)
    if key.kind.endswith("_last"):
        return key if aligned_in and aligned_out else None
    if (key.vector_in and not aligned_in) or (key.vector_out and not aligned_out):
        key = key._replace(vector_in=key.vector_in and aligned_in, vector_out=key.vector_out and aligned_out)
    return key


@functools.lru_cache(maxsize=None)
def compiled(key: VectorKey) -> Kernel:
    """The compiled kernel of ``key`` (compiled on first use, once per process)."""
    return Kernel(*vector_kernel(key))


@functools.lru_cache(maxsize=1024)
def _plan(problem, key: VectorKey, config: VectorLaunch):
    """``(grid, block, int32 arguments, partial rows)`` of ``key`` on ``problem`` (cached per shape)."""
    axis = problem.axis
    width = codec(key.dtype).width
    batch, chans, mult = problem.batch, problem.channels, problem.multiplier
    out_ch = chans * mult
    if key.kind == "forward_first":
        steps = math.ceil(axis.out_length / (width * key.unroll))
        tx = pow2_at_least(steps, config.threads)
        ty = config.threads // tx
        rows = batch * out_ch
        grid = (grid_blocks(steps, tx, config.max_grid), grid_blocks(rows, ty, 65535), 1)
        args = (rows, out_ch, chans, mult, axis.length, axis.out_length, axis.pad_left + key.offset)
        return grid, (tx, ty, 1), args, 0
    if key.kind == "forward_last":
        grid = (math.ceil(chans / width / config.groups), grid_blocks(axis.out_length, config.lanes, config.max_grid),
                min(batch, 65535))
        return grid, (config.groups, config.lanes, 1), (batch, chans, axis.length, axis.out_length, axis.pad_left), 0
    span = (axis.kernel_size - 1) * axis.dilation
    if key.kind == "backward_first":
        slots = math.ceil(max(axis.length, axis.out_length) / width)
        chunks = grid_blocks(slots, key.threads * config.work_per_thread, config.max_grid)
        off_g = (-key.offset - span) % width
        shift_g = off_g + span - axis.pad_left
        args = (batch * chans, chans, axis.length, axis.out_length, axis.pad_left + key.offset, shift_g)
        return (chunks, min(batch * chans, 65535), 1), (key.threads, 1, 1), args, batch * chunks
    rows = max(axis.length, axis.out_length)
    chunks = grid_blocks(rows, key.threads * config.work_per_thread, config.max_grid)
    grid = (math.ceil(chans / width / key.groups), chunks, min(batch, 65535))
    args = (batch, chans, axis.length, axis.out_length, axis.pad_left)
    return grid, (key.groups, key.threads, 1), args, batch * chunks


# ---------------------------------------------------------------------------- host launchers
def _vector_forward(problem, inputs, kernel, bias, stream):
    key = vector_key("forward", problem)
    if key is None:
        return None
    if key.kind == "forward_last" and key.taps * codec(key.dtype).width > TAP_REGISTERS and not aligned(kernel):
        return None  # (long kernels read their weights as 16-byte vectors)
    out = device_empty(problem.output_shape, problem.dtype, stream)
    key = _with_alignment(key, inputs, out)
    if key is None:
        return None
    grid, block, args, _ = _plan(problem, key, VECTOR)
    compiled(key).launch(grid, block, stream, 0,
                         (buffer(inputs), buffer(kernel), buffer(bias), buffer(out)) + args)
    return out


def conv1d_forward(problem, inputs, kernel, bias, stream=0, config=None):
    """Forward pass on device arrays of ``problem.dtype``; returns a new device array.

    ``bias`` is a device array of shape (C*m,) (zeros when the caller had none).  ``config`` is the
    general kernels' :class:`~numba_dwconv.cuda.conv1d_generic.LaunchConfig` (and forces them).
    """
    if config is None:
        out = _vector_forward(problem, inputs, kernel, bias, stream)
        if out is not None:
            return out
    return generic.conv1d_forward(problem, inputs, kernel, bias, stream, config)


def _vector_backward(problem, grad_outputs, inputs, kernel, parts, stream):
    """``(grad_inputs or None, grad_kernel or None, grad_bias or None)`` from the vector kernels, or None."""
    key = vector_key("backward", problem, parts)
    if key is not None:  # (the outputs are fresh, aligned allocations)
        key = _with_alignment(key, inputs, grad_outputs)
    if key is None:
        return None
    return generic.fused_backward(compiled(key), _plan(problem, key, VECTOR), problem, grad_outputs, inputs, kernel,
                                  parts, key.dtype, stream)


def conv1d_backward(problem, grad_outputs, kernel, inputs, stream=0):
    """``(grad_inputs, grad_kernel, grad_bias)`` in one fused pass where the vector kernels apply."""
    result = _vector_backward(problem, grad_outputs, inputs, kernel, "both", stream)
    if result is not None:
        return result
    grad_in = generic.conv1d_input_grad(problem, grad_outputs, kernel, stream)
    return (grad_in, *generic.conv1d_kernel_grad(problem, grad_outputs, inputs, stream))


def conv1d_input_grad(problem, grad_outputs, kernel, stream=0, config=None):
    """Gradient with respect to the inputs; returns a new device array."""
    if config is None:
        result = _vector_backward(problem, grad_outputs, None, kernel, "input", stream)
        if result is not None:
            return result[0]
    return generic.conv1d_input_grad(problem, grad_outputs, kernel, stream, config)


def conv1d_kernel_grad(problem, grad_outputs, inputs, stream=0, config=None):
    """Kernel and bias gradients (block partials, then a fixed-order sum); two new device arrays."""
    if config is None:
        result = _vector_backward(problem, grad_outputs, inputs, None, "kernel", stream)
        if result is not None:
            return result[1], result[2]
    return generic.conv1d_kernel_grad(problem, grad_outputs, inputs, stream, config)
