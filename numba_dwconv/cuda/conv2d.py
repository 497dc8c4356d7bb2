"""2D depthwise convolution on the GPU: picks the kernels for a call and launches them.

* The register-window kernels of :mod:`numba_dwconv.cuda.conv2d_vector` run whenever
  they apply (:func:`vector_key`):

  - channels_last with depth multiplier 1 and channels a multiple of the 16-byte vector
    width (aligned operands): forward at any stride and dilation; backward (one fused
    launch plus the fixed-order partial sum) when a kernel row's sums fit in registers;
  - channels_first: forward at any stride whose input window fits in registers; fused
    backward at strides dividing the vector width when every tap's sum fits (up to 7x7);
    rows that are not whole aligned vectors move element by element.

* Everything else (channels_last multipliers or odd channel counts, kernel rows wider than
  the register budget, channels_first backward above 7x7 or at stride 3, more than 2**31
  elements) runs the general kernels of :mod:`numba_dwconv.cuda.conv2d_generic`.

Both apply Keras' padding rule for non-finite numbers inside the kernels
(:data:`PADDING_RULE_IN_KERNELS`).  The launch geometry of each problem is computed once
(:func:`_plan`, cached).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from . import conv2d_generic as generic
from .arrays import device_empty
from .conv1d_generic import fused_backward
from .conv1d_vector import TAP_REGISTERS
from .conv2d_backward_vector import first_backward_reads
from .conv2d_vector import Vector2DKey, first_window, vector_kernel
from .launch import Kernel, aligned, buffer, grid_blocks, pow2_at_least
from .vector import MAX_INDEX, codec, storage_name

PADDING_RULE_IN_KERNELS = True
SUM_REGISTERS = 48  # channels_last backward: kernel/bias sums one thread keeps (values)
CF_SUM_REGISTERS = 50  # channels_first backward: sums (taps + 1) x multiplier per thread (7x7: 50, 184 registers)


@dataclass(frozen=True)
class Vector2DLaunch:
    """Launch tunables of the 2D vector kernels (read by the host only).

    Attributes
    ----------
    threads : int
        Threads per block.
    max_groups : int
        channels_last: most channel vectors per block (threadIdx.x); the rest of the block walks positions.
    max_grid : int
        Upper bound on blocks along the position axes; larger problems loop inside the kernels.
    work_per_thread : int
        Backward: positions (runs or vectors) each thread sums before its block reduces.
    max_window : int
        channels_first: bound on the values of one input row window a thread holds.
    """

    threads: int = 128
    max_groups: int = 32
    max_grid: int = 2048
    work_per_thread: int = 4
    max_window: int = 64


VECTOR = Vector2DLaunch()


# ---------------------------------------------------------------------------- choosing the kernels
def vector_key(kind: str, problem, parts: str = "both", config: Vector2DLaunch | None = None,
               storage: str | None = None) -> Vector2DKey | None:
    """The vector kernel for ``kind`` ("forward" or "backward") on ``problem``, or None if it does not apply.

    Shapes only: the caller still checks the operands' alignment.  ``storage`` overrides the storage type
    named by ``problem.dtype`` (e.g. "bfloat16").
    """
    return _vector_key(kind, problem, parts, config or VECTOR, storage)


@functools.lru_cache(maxsize=1024)
def _vector_key(kind, problem, parts, config, storage):
    name = storage or storage_name(problem.dtype)
    if name is None:
        return None
    h, w = problem.height, problem.width
    width = codec(name).width
    batch, chans, mult = problem.batch, problem.channels, problem.multiplier
    sizes = (batch * chans * h.length * w.length, batch * chans * mult * h.out_length * w.out_length)
    if min(sizes) == 0 or max(sizes) > MAX_INDEX:
        return None
    kh, kw = h.kernel_size, w.kernel_size
    geometry = dict(dtype=name, kw=kw, sh=h.stride, sw=w.stride, dh=h.dilation, dw=w.dilation)
    if problem.channels_last:
        if mult != 1 or chans % width or kw * width > TAP_REGISTERS:
            return None
        groups = pow2_at_least(chans // width, config.max_groups)
        if kind == "forward":
            resident = kh * kw * width <= TAP_REGISTERS
            return Vector2DKey("forward_last", kh=kh if resident else 0, offset=0, run=4 if kw <= 7 else 2, rows=1,
                               mult=1, parts="both", tap_rows=0, lanes=1, **geometry)
        tap_rows = min(kh, (SUM_REGISTERS // width - 1) // kw)
        if tap_rows < 1:
            return None
        run = 2 if w.stride <= 2 else w.stride  # a multiple of the stride (the input gradient's phase is constant)
        return Vector2DKey("backward_last", kh=kh, offset=w.pad_left % w.stride, run=run, rows=1, mult=1,
                           parts=parts, tap_rows=tap_rows, lanes=max(1, config.threads // groups), groups=groups,
                           **geometry)
    vector_in, vector_out = w.length % width == 0, w.out_length % width == 0  # (else element by element)
    offset = (-w.pad_left) % width
    if kind == "forward":
        run = 2 if kw <= 8 and first_window(width, offset, 2, w.stride, kw, w.dilation) * width <= config.max_window \
            else 1
        if first_window(width, offset, run, w.stride, kw, w.dilation) * width > config.max_window:
            return None
        resident = kh * kw <= TAP_REGISTERS
        return Vector2DKey("forward_first", kh=kh if resident else 0, offset=offset, run=run,
                           rows=2 if resident and kh <= 7 else 1, mult=mult, parts="both", tap_rows=0, lanes=1,
                           vector_in=vector_in, vector_out=vector_out, **geometry)
    if width % w.stride or (kh * kw + 1) * mult > CF_SUM_REGISTERS:
        return None
    first_g, reads_g = _output_grad_reads(width, offset, w)
    offset_g = first_g % width
    g_window = math.ceil((offset_g + reads_g) / width) * width
    if max(first_window(width, offset, 1, w.stride, kw, w.dilation) * width, g_window) > config.max_window:
        return None
    return Vector2DKey("backward_first", kh=kh, offset=offset, run=1, rows=1, mult=mult, parts=parts, tap_rows=0,
                       lanes=config.threads, vector_in=vector_in, vector_out=vector_out, offset_g=offset_g,
                       **geometry)


def _output_grad_reads(width: int, offset: int, w) -> tuple[int, int]:
    """channels_first backward: where a thread's output-gradient reads start (relative to output q*W) and how many.

    The run of ``stride`` input vectors at ``q*stride*W`` reads outputs ``q*W + Lq + d``, ``d_low <= d <= d_high``
    (:func:`~numba_dwconv.cuda.conv2d_vector.first_backward_reads`), ``Lq = (pad_left - phase) / stride``.
    """
    _, _, d_low, d_high = first_backward_reads(width, offset, w.stride, w.kernel_size, w.dilation)
    return (w.pad_left - w.pad_left % w.stride) // w.stride + d_low, d_high - d_low + 1


def _with_alignment(key: Vector2DKey, inputs, outputs, kernel) -> Vector2DKey | None:
    """``key`` adjusted to the operands' alignment, or None (then the general kernels run).

    channels_first rows of unaligned operands move element by element; channels_last needs aligned data, and
    kernels that read their weights a row at a time need an aligned kernel.
    """
    aligned_in = inputs is None or aligned(inputs)
    aligned_out = outputs is None or aligned(outputs)
    if key.kind.endswith("_last"):
        width = codec(key.dtype).width
        rows_of_weights = key.kh == 0 or (key.kind == "backward_last" and key.kh * key.kw * width > TAP_REGISTERS)
        if not (aligned_in and aligned_out) or (rows_of_weights and kernel is not None and not aligned(kernel)):
            return None
        return key
    return key._replace(vector_in=key.vector_in and aligned_in, vector_out=key.vector_out and aligned_out)


@functools.lru_cache(maxsize=None)
def compiled(key: Vector2DKey) -> Kernel:
    """The compiled kernel of ``key`` (compiled on first use, once per process)."""
    return Kernel(*vector_kernel(key))


@functools.lru_cache(maxsize=1024)
def _plan(problem, key: Vector2DKey, config: Vector2DLaunch):
    """``(grid, block, int32 arguments, partial rows)`` of ``key`` on ``problem`` (cached per shape)."""
    h, w = problem.height, problem.width
    width = codec(key.dtype).width
    batch, chans, mult = problem.batch, problem.channels, problem.multiplier
    if key.kind == "forward_last":
        cvecs = chans // width
        groups = pow2_at_least(cvecs, config.max_groups)
        lanes = max(1, config.threads // groups)
        runs = math.ceil(w.out_length / key.run)
        grid = (grid_blocks(runs, lanes, config.max_grid), math.ceil(cvecs / groups), min(batch * h.out_length, 65535))
        args = (batch * h.out_length, chans, h.length, w.length, h.out_length, w.out_length, h.pad_left, w.pad_left,
                h.kernel_size)
        return grid, (groups, lanes, 1), args, 0
    if key.kind == "forward_first":
        outputs = key.run * width
        steps = math.ceil(w.out_length / outputs)
        tx = pow2_at_least(steps, config.threads)
        ty = config.threads // tx
        groups = batch * chans * mult * math.ceil(h.out_length / key.rows)
        grid = (grid_blocks(steps, tx, config.max_grid), grid_blocks(groups, ty, 65535), 1)
        args = (groups, chans * mult, chans, mult, h.length, w.length, h.out_length, w.out_length, h.pad_left,
                w.pad_left + key.offset, h.kernel_size)
        return grid, (tx, ty, 1), args, 0
    rows = max(h.length, h.out_length)
    if key.kind == "backward_last":  # lanes split along a row (run_lanes) and across rows (b, n)
        runs = math.ceil(max(w.length, w.out_length) / key.run)
        run_lanes = pow2_at_least(runs, key.lanes)
        row_lanes = key.lanes // run_lanes
        chunks = grid_blocks(batch * rows, row_lanes * config.work_per_thread, config.max_grid)
        row_groups = 1 if key.parts == "input" else math.ceil(h.kernel_size / key.tap_rows)
        grid = (math.ceil(chans // width / key.groups), chunks, row_groups)
        args = (batch, chans, h.length, w.length, h.out_length, w.out_length, h.pad_left, w.pad_left, run_lanes)
        return grid, (key.groups, key.lanes, 1), args, chunks
    slots = max(math.ceil(w.length / (w.stride * width)), math.ceil(w.out_length / width))
    slot_threads = pow2_at_least(slots, key.lanes)
    chunks = grid_blocks(rows, key.lanes // slot_threads * config.work_per_thread, config.max_grid)
    first_g, _ = _output_grad_reads(width, key.offset, w)
    args = (batch * chans, chans, h.length, w.length, h.out_length, w.out_length, h.pad_left,
            w.pad_left + key.offset, key.offset_g - first_g, slot_threads)
    return (chunks, min(batch * chans, 65535), 1), (key.lanes, 1, 1), args, batch * chunks


# ---------------------------------------------------------------------------- host launchers
def _vector_forward(problem, inputs, kernel, bias, stream):
    key = vector_key("forward", problem)
    if key is None:
        return None
    out = device_empty(problem.output_shape, problem.dtype, stream)
    key = _with_alignment(key, inputs, out, kernel)
    if key is None:
        return None
    grid, block, args, _ = _plan(problem, key, VECTOR)
    compiled(key).launch(grid, block, stream, 0, (buffer(inputs), buffer(kernel), buffer(bias), buffer(out)) + args)
    return out


def conv2d_forward(problem, inputs, kernel, bias, stream=0, config=None):
    """Forward pass on device arrays of ``problem.dtype``; returns a new device array.

    ``bias`` is a device vector of the output channels (zeros when the caller had none).  ``config`` is the
    general kernels' :class:`~numba_dwconv.cuda.conv2d_generic.LaunchConfig2D` (and forces them).
    """
    if config is None:
        out = _vector_forward(problem, inputs, kernel, bias, stream)
        if out is not None:
            return out
    return generic.conv2d_forward(problem, inputs, kernel, bias, stream, config)


def _vector_backward(problem, grad_outputs, inputs, kernel, parts, stream):
    """``(grad_inputs or None, grad_kernel or None, grad_bias or None)`` from the vector kernels, or None."""
    key = vector_key("backward", problem, parts)
    if key is not None:  # (the outputs are fresh, aligned allocations)
        key = _with_alignment(key, inputs, grad_outputs, kernel)
    if key is None:
        return None
    return fused_backward(compiled(key), _plan(problem, key, VECTOR), problem, grad_outputs, inputs, kernel, parts,
                          key.dtype, stream)


def conv2d_backward(problem, grad_outputs, kernel, inputs, stream=0):
    """``(grad_inputs, grad_kernel, grad_bias)`` in one fused pass where the vector kernels apply."""
    result = _vector_backward(problem, grad_outputs, inputs, kernel, "both", stream)
    if result is not None:
        return result
    grad_in = generic.conv2d_input_grad(problem, grad_outputs, kernel, stream)
    return (grad_in, *generic.conv2d_kernel_grad(problem, grad_outputs, inputs, stream))


def conv2d_input_grad(problem, grad_outputs, kernel, stream=0, config=None):
    """Gradient with respect to the inputs; returns a new device array."""
    if config is None:
        result = _vector_backward(problem, grad_outputs, None, kernel, "input", stream)
        if result is not None:
            return result[0]
    return generic.conv2d_input_grad(problem, grad_outputs, kernel, stream, config)


def conv2d_kernel_grad(problem, grad_outputs, inputs, stream=0, config=None):
    """Kernel and bias gradients (block partials, then a fixed-order sum); two new device arrays."""
    if config is None:
        result = _vector_backward(problem, grad_outputs, inputs, None, "kernel", stream)
        if result is not None:
            return result[1], result[2]
    return generic.conv2d_kernel_grad(problem, grad_outputs, inputs, stream, config)
