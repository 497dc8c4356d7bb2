"""Prepared channels_last 2D forwards: a problem's launch arguments computed once, then only the launch per call.

:func:`numba_dwconv.cpu.conv2d.conv2d_forward` works out some twenty launch arguments on every call (the
all-taps plan, the size entries, the stream buffers, the row buffers).  That is ~35 us of Python after a
large call has swept the CPU caches, 3 % of a 1.1 ms B16 56x56 C128 forward.  A caller that repeats one
problem (a module in a network) prepares it once with :func:`forward_plan` and calls the plan: it
allocates the output and launches the same kernel with the same arguments, so its results are the
forward's, bit for bit.

Only the problems whose launch is all there is to a call are prepared: ``m = 1`` (multipliers repeat
rows into per-call buffers), outputs below the streaming size (per-call stream buffers), no padded row
copies (kernels at least PAD_ROWS_WIDTH wide), not the wide kernels, no activation.  Where the all-taps
plan depends on the input's alignment (:func:`numba_dwconv.cpu.conv2d.all_taps_by_alignment`), the plan
is for inputs at that address modulo 64 (:attr:`ForwardPlan.alignment`).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _memory
from .._jit import claims_size, helper_kernel, task_claims
from .._simd import VECTOR_BYTES
from .._workers import launch, serial_args, thread_count
from . import conv2d, conv2d_wide
from .conv2d_last import _forward_last
from .fused import activation as _activation
from .nontemporal import STREAM_TAPS_2D, streams, unstreamed


class ForwardPlan:
    """A channels_last forward of one problem, ready to launch: ``plan(inputs, kernel, bias)`` -> the outputs.

    Attributes
    ----------
    output_shape : tuple
        ``(batch, out_h, out_w, channels)`` of every result.
    alignment : int or None
        ``address % 64`` of the inputs this plan serves, None for any address.
    """

    __slots__ = ("output_shape", "dtype", "alignment", "_zeros", "_mid", "_tail", "_serial", "_kernel", "_spare",
                 "_lay_out", "_tasks", "_pooled")

    def __init__(self, problem, alignment, mid, tail):
        self.output_shape, self.dtype, self.alignment = problem.output_shape, problem.dtype, alignment
        self._zeros = np.zeros(problem.channels, problem.dtype)
        self._zeros.flags.writeable = False
        self._mid, self._tail = mid, tail
        self._tasks = problem.batch * problem.height.out_length  # (output rows)
        nbytes = math.prod(self.output_shape) * self.dtype.itemsize
        pooled = nbytes >= _memory.MIN_POOLED_BYTES  # (the outputs' spec for _memory.pooled, or None: small)
        self._pooled = (nbytes, tuple(self.output_shape), self.dtype.str) if pooled else None
        self._serial = None  # (launch's own rule, applied to the first call's arguments)
        self._kernel = _forward_last
        self._spare = []  # taps buffers between calls (one per thread calling at once)
        self._lay_out = _lay_out

    def from_torch_weight(self, inputs, weight, bias=None):
        """The forward with the taps of a C-contiguous PyTorch weight ``(C, 1, KH, KW)``, or None.

        None when a tap is not finite (then nothing is launched: see :func:`_lay_out`).  The taps and the
        launch's claims (:func:`numba_dwconv._jit.task_claims`) are buffers the plan keeps between calls, laid
        out and zeroed by one compiled call: a fresh 51 KB array (5x5 taps of 512 channels) cost 11 us of page
        faults after a large call, its layout another 12 us through the dispatcher, and fresh claims
        10-18 us (measured).
        """
        parts = 1 if self._serial else thread_count()
        try:
            taps, claims = self._spare.pop()
        except IndexError:
            taps, claims = _line_aligned(weight.size, weight.dtype), None
        if claims is None or claims.shape[0] != claims_size(self._tasks, parts):
            claims = task_claims(self._tasks, parts)
        try:
            if self._lay_out(weight, taps, claims) < 0:
                return None
            if self._lay_out is _lay_out:
                self._lay_out = _compiled(_lay_out, (weight, taps, claims), ())
            return self(inputs, taps, bias, claims, parts)
        finally:
            self._spare.append((taps, claims))

    def __call__(self, inputs, kernel, bias=None, claims=None, parts=None):
        """The forward of flat C-contiguous ``inputs`` (B*H*W*C) and ``kernel`` (KH*KW*C, on a 64-byte line).

        ``bias``: flat (C), or None for zeros.  All of the problem's dtype, writable, aligned as NumPy aligns
        (what a PyTorch tensor's ``numpy()`` gives); the caller checks the shapes.  After its first call a plan
        calls the compiled kernel without the dispatcher's typing (:func:`_compiled`): every call must pass
        arrays of those kinds (numba's unboxing still refuses another dtype, not another rank).  ``claims``:
        zeroed claims (:func:`numba_dwconv._jit.task_claims`), None for new ones; ``parts``: the part count
        they were made for, None to ask :func:`thread_count` (a problem that runs serially takes one part).
        """
        out = _memory.empty(self.output_shape, self.dtype) if self._pooled is None else _memory.pooled(*self._pooled)
        flat = out.reshape(-1)
        args = (inputs, kernel, self._zeros if bias is None else bias, flat, *self._mid, flat, *self._tail)
        if self._serial is None:
            self._serial = serial_args(args)
        if self._serial:
            parts = 1
        elif parts is None:
            parts = thread_count()
        if claims is None:
            claims = task_claims(self._tasks, parts)
        launch(self._kernel, *args, parts=parts, claims=claims)
        if self._kernel is _forward_last:
            self._kernel = _compiled(_forward_last, (*args, claims))
        return out


def _compiled(kernel, args, lead=(0, 0)):
    """The compiled function that ``kernel(*lead, *args)`` runs, called without the dispatcher's typing.

    ``lead``: the arguments before ``args`` (a parallel kernel's part and part count).

    A parallel kernel's dispatcher types its ~36 arguments on every call: 1.6 us in a loop, 18-23 us right after
    a large kernel has swept the caches (measured), for the caller and again for each worker.  A plan's
    arguments have the same types on every call (the same arrays' kinds, the same constants), so after its
    first launch it calls the overload those types chose directly (12.5 us cold).  ``kernel`` itself if that
    overload cannot be found.
    """
    signature = tuple(kernel.typeof_pyval(a) for a in (*lead, *args))
    overload = kernel.overloads.get(signature)
    return kernel if overload is None else overload.entry_point


def forward_plan(problem, address: int):
    """A :class:`ForwardPlan` of ``problem`` for inputs at ``address`` (modulo 64), or None (see the module).

    ``problem``: a validated :class:`numba_dwconv._geometry.Conv2DProblem` with no taps to drop
    (:func:`numba_dwconv._geometry.reduce_problem`).
    """
    h, w = problem.height, problem.width
    out_bytes = math.prod(problem.output_shape) * problem.dtype.itemsize
    if not problem.channels_last or problem.multiplier != 1 or out_bytes == 0:
        return None
    if streams(out_bytes, h.kernel_size * w.kernel_size, STREAM_TAPS_2D):
        return None  # (stream buffers per call)
    kh_t, chunks = conv2d._all_taps_plan(problem, None, address)
    if conv2d_wide.fits(problem, kh_t):
        return None
    rows = conv2d.rows_per_call(problem)
    mid, tail = conv2d.forward_last_args(problem, 1, kh_t, chunks, _activation(None, problem.dtype),
                                         unstreamed(problem.dtype), rows)
    if tail[0] is not None:  # rows copied with their padding: buffers per call
        return None
    alignment = address % VECTOR_BYTES if conv2d.all_taps_by_alignment(problem) else None
    return ForwardPlan(problem, alignment, mid, tail)


@helper_kernel
def _keras_taps(weight, taps):
    """``taps[(i*KW + k)*C*m + o] = weight[o, 0, i, k]`` of a C-contiguous PyTorch weight ``(C*m, 1, KH, KW)``.

    Returns 0, or -1 when a tap is not finite (then the taps are not to be used: such kernels take the general
    path, which applies Keras' padding rule).
    """
    rows, taps_n = weight.shape[0], weight.shape[2] * weight.shape[3]
    flat = weight.reshape(-1)
    check = flat[0] * 0.0
    for t in range(taps_n):  # (tap by tap, the stores along the buffer: channel by channel, 25 stores a row apart
        row = taps[t * rows:(t + 1) * rows]  # fell into two sets of L1 at 512 channels, 5x slower: measured)
        for o in range(rows):
            value = flat[o * taps_n + t]
            check += value * 0.0  # (NaN once a value is not finite)
            row[o] = value
    return 0 if check == 0.0 else -1


@helper_kernel
def _lay_out(weight, taps, claims):
    """What a prepared call does before its launch, in one compiled call: ``claims`` zeroed and the taps laid out.

    Returns :func:`_keras_taps`'s result.
    """
    for i in range(claims.shape[0]):
        claims[i] = 0
    return _keras_taps(weight, taps)


def _line_aligned(size: int, dtype) -> np.ndarray:
    """An uninitialised flat array of ``size`` values starting on a 64-byte line."""
    dtype = np.dtype(dtype)
    block = np.empty(size + VECTOR_BYTES // dtype.itemsize, dtype)
    offset = (-(block.ctypes.data // dtype.itemsize)) % (VECTOR_BYTES // dtype.itemsize)
    return block[offset:offset + size]


def keras_taps(weight: np.ndarray):
    """A C-contiguous PyTorch depthwise weight ``(C*m, 1, KH, KW)`` as flat Keras taps on a 64-byte line, or None.

    None when a tap is not finite (see :func:`_keras_taps`).
    """
    taps = _line_aligned(weight.size, weight.dtype)
    return None if _keras_taps(weight, taps) < 0 else taps
