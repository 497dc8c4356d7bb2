"""The 16-byte vector kernels of 2D depthwise convolution.

Every kernel is built for compile-time constants (a :class:`Vector2DKey`): the storage
codec, the kernel size, strides and dilations, the run of outputs a thread computes and
(channels_first) where the padding falls inside a vector.  The taps, the accumulators and
the input values a thread holds are then register arrays with constant indices.  Arguments
are raw pointers and int32 scalars (:mod:`numba_dwconv.cuda.vector`).

A thread reads each input vector its outputs need once and adds it to every output
that uses it: the input rows (channels_first) or columns (channels_last) of a run of
outputs are enumerated at build time, and the (output, tap) pairs each one feeds are
resolved by constant folding, so the inner loops hold only loads and FMAs.

* channels_last (``(B, H, W, C)``, ``depth_multiplier == 1``, ``C`` a multiple of the
  vector width): a thread owns a 16-byte vector of channels and a run of ``run``
  consecutive output columns of one output row; warps cover consecutive channel
  vectors, so every load and store is a coalesced 16-byte access.  Any stride and
  dilation.
* channels_first (``(B, C, H, W)``): a thread owns ``rows`` output rows by ``run``
  16-byte vectors of consecutive outputs of one (batch, channel) plane; it loads each
  input row window of its outputs once.  Rows that are not whole aligned vectors move
  element by element (``vector_in`` / ``vector_out``).
* backward (:mod:`numba_dwconv.cuda.conv2d_backward_vector`): one launch computes the
  input gradient and each block's partial sums of the kernel and bias gradients
  (reduced in the block in a fixed order); the partials are summed afterwards by
  :func:`numba_dwconv.cuda.conv1d_generic.sum_partials`.
  channels_last threads sum the kernel rows ``tap_rows`` at a time (a grid axis over
  row groups when the taps do not fit one thread's registers).

Kernels with more taps than fit in registers (``kh == 0`` in the key) loop over kernel
rows at run time and read one row of weights per step.  Padding is read as zeros that are
multiplied (``0 * inf`` is NaN, Keras' rule) in the forward and the kernel gradient; the
input gradient skips outputs outside the image.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from numba import cuda

from .conv1d_vector import _row_io
from .inline import device_function, repeat
from .vector import codec as get_codec
from .vector import pointer_type, types

int32 = types.int32
I32 = types.int32


class Vector2DKey(NamedTuple):
    """The compile-time constants of one 2D vector kernel."""

    kind: str  # "forward_last", "forward_first", "backward_last", "backward_first"
    dtype: str  # storage dtype name
    kh: int  # kernel rows (0: rows loop at run time, one row of weights read per step)
    kw: int  # kernel columns
    sh: int  # strides and dilations
    sw: int
    dh: int
    dw: int
    offset: int  # channels_first: (-pad_left) mod W; channels_last backward: pad_left mod stride_w
    run: int  # channels_last: output (or input) columns per thread; channels_first: vectors per thread
    rows: int  # channels_first forward: output rows per thread
    mult: int  # channels_first: depth_multiplier (the backward's sums); else 1
    parts: str  # backward: "both", "input" or "kernel"
    tap_rows: int  # channels_last backward: kernel rows summed per thread; else 0
    lanes: int  # backward: threads reducing together per block
    vector_in: bool = True  # channels_first: input rows move as 16-byte vectors
    vector_out: bool = True  # channels_first: output rows move as 16-byte vectors
    groups: int = 1  # channels_last backward: channel vectors per block (threadIdx.x)
    offset_g: int = 0  # channels_first backward: where the input gradient's output-gradient window starts


@functools.lru_cache(maxsize=None)
def column_loader(dtype: str):
    """``load_column(x, base, chans, u, v, checked, row_ok, iw0, width_in)``: channels_last input column ``u``.

    The channel vector at ``base + u*chans`` into ``v``; with ``checked``, a column outside ``[0, width_in)``
    (relative to ``iw0``) or a row outside (``row_ok`` false) reads as zeros, which are multiplied (padding).
    """
    cd = get_codec(dtype)
    acc, width, vload = cd.acc, cd.width, cd.vload

    @device_function
    def load_column(x, base, chans, u, v, checked, row_ok, iw0, width_in):
        if not checked or (row_ok and iw0 + u >= 0 and iw0 + u < width_in):
            vload(x, int32(base + u * chans), 0, v, 0)
        else:
            for e in range(width):
                v[e] = acc(0)

    return load_column


# ---------------------------------------------------------------------------- forward
def _forward_last(key: Vector2DKey):
    cd = get_codec(key.dtype)
    acc, width, load1, vload, vstore = cd.acc, cd.width, cd.load1, cd.vload, cd.vstore
    kh_n, kw_n, sh, sw, dh, dw, run_n = key.kh, key.kw, key.sh, key.sw, key.dh, key.dw, key.run
    resident = kh_n > 0  # all taps in registers; else one kernel row's weights per step
    span = (run_n - 1) * sw + (kw_n - 1) * dw + 1
    taps_size = kh_n * kw_n * width if resident else kw_n * width
    res_size = run_n * width  # (array sizes must be plain constants)
    load_column = column_loader(key.dtype)

    @device_function
    def add_row(x, base, chans, res, taps, t0, v, checked, row_ok, iw0, width_in):
        """``res[r] += taps[t0 + k] * x[column r*sw + k*dw of the window]`` for the run's outputs r and taps k.

        A column read by several (r, k) is loaded once: after unrolling the loads have the same address and the
        compiler merges them.  ``checked``: columns outside ``[0, width_in)`` (or a row outside) read as zero.
        """
        for r in range(run_n):
            for k in range(kw_n):
                u = r * sw + k * dw
                load_column(x, base, chans, u, v, checked, row_ok, iw0, width_in)
                for e in range(width):
                    res[r * width + e] += taps[(t0 + k) * width + e] * v[e]

    @device_function
    def row_step(i, x, w, b, ih0, iw0, inside, chans, c0, height, width_in, res, taps, v):
        """Kernel row ``i`` of a run: its weights (unless resident) and its input row, into ``res``."""
        if not resident:
            for k in range(kw_n):
                vload(w, int32(int32(i * kw_n + k) * chans + c0), 0, taps, k * width)
        ih = int32(ih0 + i * dh)
        base = int32(int32(int32(b * height + ih) * width_in + iw0) * chans + c0)
        t0 = i * kw_n if resident else 0
        if inside:
            add_row(x, base, chans, res, taps, t0, v, False, True, iw0, width_in)
        else:
            add_row(x, base, chans, res, taps, t0, v, True, ih >= 0 and ih < height, iw0, width_in)

    all_rows = repeat(row_step, kh_n, 13)

    def forward_last_2d(x, w, bias, out, rows, chans, height, width_in, out_h, out_w, top, left, kh_rt):
        """out[b, oh, ow0 + r, c0 ..]: channel vectors on x (and blockIdx.y), column runs on y, rows (b, oh) on z."""
        v = cuda.local.array(width, acc)
        res = cuda.local.array(res_size, acc)
        taps = cuda.local.array(taps_size, acc)
        start = cuda.local.array(width, acc)
        cq = int32(cuda.blockIdx.y * cuda.blockDim.x + cuda.threadIdx.x)
        if cq * width >= chans:
            return
        c0 = int32(cq * width)
        if resident:
            for t in range(kh_n * kw_n):
                for e in range(width):
                    taps[t * width + e] = load1(w, int32(t * chans + c0 + e))
        for e in range(width):
            start[e] = load1(bias, int32(c0 + e))
        n_rows = kh_n if resident else kh_rt
        runs = int32((out_w + run_n - 1) // run_n)
        z = int32(cuda.blockIdx.z)
        while z < rows:
            b = int32(z // out_h)
            ih0 = int32(int32(z - b * out_h) * sh - top)
            rows_inside = ih0 >= 0 and ih0 + (n_rows - 1) * dh < height
            q = int32(cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y)
            while q < runs:
                ow0 = int32(q * run_n)
                iw0 = int32(ow0 * sw - left)
                for r in range(run_n):
                    for e in range(width):
                        res[r * width + e] = start[e]
                inside = rows_inside and iw0 >= 0 and iw0 + span <= width_in
                if resident:  # (straight-line rows: the taps stay in registers)
                    all_rows(x, w, b, ih0, iw0, inside, chans, c0, height, width_in, res, taps, v)
                else:
                    for i in range(kh_rt):
                        row_step(i, x, w, b, ih0, iw0, inside, chans, c0, height, width_in, res, taps, v)
                for r in range(run_n):
                    if ow0 + r < out_w:
                        vstore(out, int32(int32(z * out_w + ow0 + r) * chans + c0), 0, res, r * width)
                q = int32(q + cuda.gridDim.x * cuda.blockDim.y)
            z = int32(z + cuda.gridDim.z)

    ptr = pointer_type(key.dtype)
    return forward_last_2d, (ptr, ptr, ptr, ptr) + (I32,) * 9


def first_window(width: int, offset: int, run: int, stride: int, taps: int, dilation: int) -> int:
    """Vectors of one input row a channels_first thread reads for ``run`` vectors of outputs."""
    return math.ceil((offset + stride * (run * width - 1) + (taps - 1) * dilation + 1) / width)


def _forward_first(key: Vector2DKey):
    cd = get_codec(key.dtype)
    acc, width, load1 = cd.acc, cd.width, cd.load1
    kh_n, kw_n, sh, sw, dh, dw, off = key.kh, key.kw, key.sh, key.sw, key.dh, key.dw, key.offset
    resident = kh_n > 0
    rows_n = key.rows if resident else 1
    outputs = key.run * width  # consecutive outputs of a row per thread
    n_vec = first_window(width, off, key.run, sw, kw_n, dw)
    win_size = n_vec * width
    span_h = (rows_n - 1) * sh + (kh_n - 1) * dh + 1  # input rows of a thread's output rows
    taps_size = kh_n * kw_n if resident else kw_n
    res_size = rows_n * outputs
    load_x, load_x_checked, _ = _row_io(key.dtype, key.vector_in)
    _, _, store_out = _row_io(key.dtype, key.vector_out)

    @device_function
    def add_row(res, taps, win, u):
        """Input row ``u`` of the window (in ``win``) into every output row ``rr`` that reads it (through row ii)."""
        for rr in range(rows_n):
            for ii in range(kh_n if resident else 1):
                if not resident or rr * sh + ii * dh == u:  # (constant after unrolling)
                    t0 = ii * kw_n if resident else 0
                    for e in range(outputs):
                        total = res[rr * outputs + e]
                        for k in range(kw_n):
                            total += taps[t0 + k] * win[off + e * sw + k * dw]
                        res[rr * outputs + e] = total

    @device_function
    def load_row(x, x_row, start, inside, row_ok, width_in, win):
        if inside:
            for k in range(n_vec):
                load_x(x, x_row, start, k, width_in, win)
        elif row_ok:
            for k in range(n_vec):
                load_x_checked(x, x_row, start, k, width_in, win)
        else:  # a padding row: zeros, multiplied like the others
            for e in range(win_size):
                win[e] = acc(0)

    def forward_first_2d(x, w, bias, out, groups, out_ch, chans, mult, height, width_in, out_h, out_w, top, shift,
                         kh_rt):
        """out[b, o, oh0 + rr, q*U*W ..]: row groups (b, o, oh0) on y, vector steps q on x."""
        win = cuda.local.array(win_size, acc)
        taps = cuda.local.array(taps_size, acc)
        res = cuda.local.array(res_size, acc)
        steps = int32((out_w + outputs - 1) // outputs)
        row_groups = int32((out_h + rows_n - 1) // rows_n)
        n_rows = span_h if resident else kh_rt
        g = int32(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y)
        while g < groups:
            plane = int32(g // row_groups)
            oh0 = int32(int32(g - plane * row_groups) * rows_n)
            b = int32(plane // out_ch)
            o = int32(plane - b * out_ch)
            c = int32(o // mult)
            j = int32(o - c * mult)
            if resident:
                for t in range(kh_n * kw_n):
                    taps[t] = load1(w, int32(int32(t * chans + c) * mult + j))
            bias_o = load1(bias, o)
            ih0 = int32(oh0 * sh - top)
            x_plane = int32(int32(b * chans + c) * height)
            out_plane = int32(plane * out_h)
            q = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
            while q < steps:
                start = int32(q * outputs * sw - shift)
                cols_inside = start >= 0 and start + win_size <= width_in
                for e in range(rows_n * outputs):
                    res[e] = bias_o
                for u in range(n_rows):
                    if not resident:
                        for k in range(kw_n):
                            taps[k] = load1(w, int32(int32(int32(u * kw_n + k) * chans + c) * mult + j))
                    ih = int32(ih0 + u * (1 if resident else dh))
                    row_ok = ih >= 0 and ih < height
                    load_row(x, int32(int32(x_plane + ih) * width_in), start, cols_inside and row_ok, row_ok,
                             width_in, win)
                    add_row(res, taps, win, u)
                for rr in range(rows_n):
                    if oh0 + rr < out_h:  # (rows of res: the store's k counts vectors from row rr's first)
                        for k in range(key.run):
                            store_out(out, int32(int32(out_plane + oh0 + rr) * out_w), int32(q * outputs
                                      - rr * outputs), rr * key.run + k, out_w, res)
                q = int32(q + cuda.gridDim.x * cuda.blockDim.x)
            g = int32(g + cuda.gridDim.y * cuda.blockDim.y)

    ptr = pointer_type(key.dtype)
    return forward_first_2d, (ptr, ptr, ptr, ptr) + (I32,) * 11


@functools.lru_cache(maxsize=None)
def vector_kernel(key: Vector2DKey):
    """``(python function, numba signature)`` of the 2D vector kernel for ``key`` (not compiled)."""
    from . import conv2d_backward_vector as backward  # (it imports this module)

    builders = {"forward_last": _forward_last, "forward_first": _forward_first,
                "backward_last": backward.backward_last, "backward_first": backward.backward_first}
    return builders[key.kind](key)
