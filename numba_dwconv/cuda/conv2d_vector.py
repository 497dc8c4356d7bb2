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
* backward: one launch computes the input gradient and each block's partial sums of
  the kernel and bias gradients (reduced in the block in a fixed order); the partials
  are summed afterwards by :func:`numba_dwconv.cuda.conv1d_generic.sum_partials`.
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

from .conv1d_vector import TAP_REGISTERS, _make_block_reduce, _row_io
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
def _column_loader(dtype: str):
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
    load_column = _column_loader(key.dtype)

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


# ---------------------------------------------------------------------------- backward
def _backward_last(key: Vector2DKey):
    cd = get_codec(key.dtype)
    acc, width, load1, vload, vstore = cd.acc, cd.width, cd.load1, cd.vload, cd.vstore
    kh_n, kw_n, sh, sw, dh, dw, phase = key.kh, key.kw, key.sh, key.sw, key.dh, key.dw, key.offset
    run_n, tap_rows, lanes, groups = key.run, key.tap_rows, key.lanes, key.groups
    do_input, do_kernel = key.parts in ("both", "input"), key.parts in ("both", "kernel")
    resident = kh_n * kw_n * width <= TAP_REGISTERS  # input-gradient taps in registers, else a row per step
    taps_size = kh_n * kw_n * width if resident else kw_n * width
    # Input gradient: input column iw0 + r (iw0 a multiple of sw) reads output column base + d through tap k
    # when r + phase - k*dw == d*sw, base = (iw0 + left - phase) / sw.
    reads = [(r, k, (r + phase - k * dw) // sw) for r in range(run_n) for k in range(kw_n)
             if (r + phase - k * dw) % sw == 0]
    d_low = min(d for _, _, d in reads)
    n_d = max(d for _, _, d in reads) - d_low + 1
    slots = kh_n * kw_n + 1
    n_sums = (tap_rows * kw_n + 1) * width
    block_reduce = _make_block_reduce(n_sums, lanes, groups)
    shared_size = n_sums * lanes * groups
    run_size = run_n * width
    load_column = _column_loader(key.dtype)

    @device_function
    def gather_row(g, g_row, base_ow, out_w, chans, c0, taps, t0, gvec, gin, checked):
        """``gin[r] += g[row, base_ow + d] * taps[k]`` for every (r, k, d) of the run (outputs outside skipped)."""
        for dd in range(n_d):
            ow = int32(base_ow + d_low + dd)
            if not checked or (ow >= 0 and ow < out_w):
                vload(g, int32(int32(g_row + ow) * chans + c0), 0, gvec, 0)
                for r in range(run_n):
                    for k in range(kw_n):
                        if (r + phase - k * dw) % sw == 0 and (r + phase - k * dw) // sw == d_low + dd:
                            for e in range(width):
                                gin[r * width + e] += gvec[e] * taps[(t0 + k) * width + e]

    @device_function
    def add_products(x, base, chans, gout, sums, ii, v, checked, row_ok, iw0, width_in):
        """``sums[tap (ii, k)] += g[r] * x[column r*sw + k*dw]`` over the run (padding read as zero)."""
        for r in range(run_n):
            for k in range(kw_n):
                u = r * sw + k * dw
                load_column(x, base, chans, u, v, checked, row_ok, iw0, width_in)
                for e in range(width):
                    sums[(1 + ii * kw_n + k) * width + e] += gout[r * width + e] * v[e]

    def backward_last_2d(g, x, w, grad_in, partials, batch, chans, height, width_in, out_h, out_w, top, left,
                         run_lanes):
        """Input gradient and block partials (depth_multiplier 1).

        Block (groups channel vectors on x, lanes on y); grid (channel groups, chunks of rows (b, n), kernel-row
        groups).  The lanes split into ``run_lanes`` along a row and the rest across rows; each walks (b, n, q):
        input row n, columns q*run .. (input gradient, row group 0 only) and output row n, columns q*run ..
        (kernel gradient of kernel rows blockIdx.z*tap_rows ..).
        partials[blockIdx.y, s, c]: s = 0 the bias, 1 + i*KW + k tap (i, k).
        """
        v = cuda.local.array(width, acc)
        gvec = cuda.local.array(width, acc)
        gin = cuda.local.array(run_size, acc)
        gout = cuda.local.array(run_size, acc)
        taps = cuda.local.array(taps_size, acc)
        sums = cuda.local.array(n_sums, acc)
        shared = cuda.shared.array(shared_size, acc)
        zero = acc(0)
        lane = int32(cuda.threadIdx.y)
        group = int32(cuda.threadIdx.x)
        cq = int32(cuda.blockIdx.x * groups + group)
        active = cq * width < chans
        c0 = int32(min(cq * width, chans - width))  # idle threads still join the reductions
        row_group = int32(cuda.blockIdx.z)
        i0 = int32(row_group * tap_rows)
        inputs_here = do_input and row_group == 0
        if inputs_here and resident:
            for t in range(kh_n * kw_n):
                for e in range(width):
                    taps[t * width + e] = load1(w, int32(t * chans + c0 + e))
        for s in range(n_sums):
            sums[s] = zero
        rows = max(height, out_h)
        in_runs = int32((width_in + run_n - 1) // run_n)
        out_runs = int32((out_w + run_n - 1) // run_n)
        runs = max(in_runs, out_runs)
        row_lanes = int32(lanes // run_lanes)
        q0 = int32(lane % run_lanes)
        all_rows = int32(batch * rows)
        row = int32(cuda.blockIdx.y * row_lanes + lane // run_lanes)
        q = q0
        b = int32(row // rows)
        n = int32(row - b * rows)
        while active and row < all_rows:  # rows (b, n) of the chunk; q along the row (no division per step)
            if q >= runs:
                q = q0
                row = int32(row + cuda.gridDim.y * row_lanes)
                b = int32(row // rows)
                n = int32(row - b * rows)
                continue
            if inputs_here and n < height and q < in_runs:
                iw0 = int32(q * run_n)
                for e in range(run_n * width):
                    gin[e] = zero
                base_ow = int32((iw0 + left - phase) // sw)
                cols_in = base_ow + d_low >= 0 and base_ow + d_low + n_d <= out_w
                for i in range(kh_n):
                    on = int32(n + top - i * dh)
                    oh = int32(on // sh)
                    if on >= 0 and oh * sh == on and oh < out_h:
                        if not resident:
                            for k in range(kw_n):
                                vload(w, int32(int32(i * kw_n + k) * chans + c0), 0, taps, k * width)
                        t0 = i * kw_n if resident else 0
                        g_row = int32(int32(b * out_h + oh) * out_w)
                        if cols_in:
                            gather_row(g, g_row, base_ow, out_w, chans, c0, taps, t0, gvec, gin, False)
                        else:
                            gather_row(g, g_row, base_ow, out_w, chans, c0, taps, t0, gvec, gin, True)
                in_row = int32(int32(b * height + n) * width_in + iw0)
                for r in range(run_n):
                    if iw0 + r < width_in:
                        vstore(grad_in, int32(int32(in_row + r) * chans + c0), 0, gin, r * width)
            if do_kernel and n < out_h and q < out_runs:
                ow0 = int32(q * run_n)
                out_row = int32(int32(b * out_h + n) * out_w + ow0)
                for r in range(run_n):
                    if ow0 + r < out_w:
                        vload(g, int32(int32(out_row + r) * chans + c0), 0, gout, r * width)
                    else:
                        for e in range(width):
                            gout[r * width + e] = zero
                    for e in range(width):
                        sums[e] += gout[r * width + e]
                iw0 = int32(ow0 * sw - left)
                cols_in = iw0 >= 0 and iw0 + (run_n - 1) * sw + (kw_n - 1) * dw < width_in
                for ii in range(tap_rows):
                    ih = int32(n * sh - top + (i0 + ii) * dh)
                    if i0 + ii < kh_n:  # (the last row group may hold fewer rows)
                        row_ok = ih >= 0 and ih < height
                        base = int32(int32(int32(b * height + ih) * width_in + iw0) * chans + c0)
                        if cols_in and row_ok:
                            add_products(x, base, chans, gout, sums, ii, v, False, True, iw0, width_in)
                        else:
                            add_products(x, base, chans, gout, sums, ii, v, True, row_ok, iw0, width_in)
            q = int32(q + run_lanes)
        if do_kernel:
            block_reduce(sums, shared, lane, group)
        if do_kernel and active and lane == 0:
            p = int32(cuda.blockIdx.y)
            for ii in range(tap_rows):
                if i0 + ii < kh_n:
                    for k in range(kw_n):
                        slot = int32(1 + (i0 + ii) * kw_n + k)
                        for e in range(width):
                            partials[int32(int32(p * slots + slot) * chans + c0 + e)] = shared[
                                int32(((1 + ii * kw_n + k) * width + e) * lanes * groups + group)]
            if row_group == 0:
                for e in range(width):
                    partials[int32(p * slots * chans + c0 + e)] = shared[int32(e * lanes * groups + group)]

    ptr = pointer_type(key.dtype)
    return backward_last_2d, (ptr, ptr, ptr, ptr, types.CPointer(acc)) + (I32,) * 9


def first_backward_reads(width: int, offset: int, stride: int, taps: int, dilation: int):
    """Output-gradient positions the input gradient of ``stride`` vectors of a channels_first row reads.

    Input element ``r`` of the run (``0 <= r < stride * width``) reads output ``q*W + Lq + d`` through tap
    ``k`` when ``r + phase - k*dilation == d*stride``, where ``phase = pad_left mod stride`` (from ``offset``,
    the vector offset ``(-pad_left) mod W``; ``stride`` divides ``W``) and ``Lq = (pad_left - phase) / stride``.
    Returns ``(phase, [(r, k, d)], d_low, d_high)``.
    """
    phase = (-offset) % stride
    reads = [(r, k, (r + phase - k * dilation) // stride) for r in range(stride * width) for k in range(taps)
             if (r + phase - k * dilation) % stride == 0]
    return phase, reads, min(d for *_, d in reads), max(d for *_, d in reads)


def _backward_first(key: Vector2DKey):
    cd = get_codec(key.dtype)
    acc, width, load1 = cd.acc, cd.width, cd.load1
    kh_n, kw_n, sh, sw, dh, dw = key.kh, key.kw, key.sh, key.sw, key.dh, key.dw
    off, off_g, mult, threads = key.offset, key.offset_g, key.mult, key.lanes
    load_x, load_x_checked, store_x = _row_io(key.dtype, key.vector_in)  # x and the input gradient rows
    load_g, load_g_checked, _ = _row_io(key.dtype, key.vector_out)  # output-gradient rows
    do_input, do_kernel = key.parts in ("both", "input"), key.parts in ("both", "kernel")
    n_x = first_window(width, off, 1, sw, kw_n, dw)  # x window of the kernel gradient (the forward's)
    phase, reads, d_low, d_high = first_backward_reads(width, off, sw, kw_n, dw)
    n_g = math.ceil((off_g + d_high - d_low + 1) / width)  # g window of the input gradient
    run = sw * width  # inputs per thread step (their outputs: one vector)
    taps_n = kh_n * kw_n
    per_j = taps_n + 1
    n_sums = per_j * mult
    block_reduce = _make_block_reduce(n_sums, threads, 1)
    x_size, g_size, shared_size = n_x * width, n_g * width, n_sums * threads
    gv_size, all_taps = mult * width, taps_n * mult

    @device_function
    def gather(gin, gwin, taps, t0, start, out_w, checked):
        """``gin[r] += g[q*W + Lq + d] * taps[t0 + k]`` over the (r, k, d) reads; outputs outside are skipped."""
        for r in range(run):
            for k in range(kw_n):
                if (r + phase - k * dw) % sw == 0:  # (constant after unrolling)
                    at = off_g + (r + phase - k * dw) // sw - d_low
                    if not checked or (int32(start + at) >= 0 and int32(start + at) < out_w):
                        gin[r] += gwin[at] * taps[t0 + k]

    @device_function
    def input_row(i, g, gwin, gin, taps, n, top, out_h, out_w, g_plane, start, cols_in):
        """Kernel row ``i`` of the input gradient of input row ``n``: output row (n + top - i*dh) / sh, if any."""
        on = int32(n + top - i * dh)
        oh = int32(on // sh)
        if on >= 0 and oh * sh == on and oh < out_h:
            for j in range(mult):
                g_row = int32(int32(g_plane + j * out_h + oh) * out_w)
                if cols_in:
                    for k in range(n_g):
                        load_g(g, g_row, start, k, out_w, gwin)
                    gather(gin, gwin, taps, j * taps_n + i * kw_n, start, out_w, False)
                else:  # outputs outside the image are no outputs: their products are skipped
                    for k in range(n_g):
                        load_g_checked(g, g_row, start, k, out_w, gwin)
                    gather(gin, gwin, taps, j * taps_n + i * kw_n, start, out_w, True)

    @device_function
    def kernel_row(i, x, xwin, gv, sums, n, top, height, width_in, x_plane, start, cols_in):
        """Kernel row ``i`` of the kernel gradient at output row ``n``: input row n*sh - top + i*dh (padding: 0)."""
        ih = int32(n * sh - top + i * dh)
        x_row = int32(int32(x_plane + ih) * width_in)
        if ih >= 0 and ih < height and cols_in:
            for k in range(n_x):
                load_x(x, x_row, start, k, width_in, xwin)
        elif ih >= 0 and ih < height:
            for k in range(n_x):
                load_x_checked(x, x_row, start, k, width_in, xwin)
        else:  # a padding row: zeros, multiplied
            for e in range(x_size):
                xwin[e] = acc(0)
        for j in range(mult):
            for e in range(width):
                for k in range(kw_n):
                    sums[j * per_j + 1 + i * kw_n + k] += gv[j * width + e] * xwin[off + e * sw + k * dw]

    input_rows = repeat(input_row, kh_n, 11)  # (straight-line rows: the taps and sums stay in registers)
    kernel_rows = repeat(kernel_row, kh_n, 11)

    def backward_first_2d(g, x, w, grad_in, partials, planes, chans, height, width_in, out_h, out_w, top, shift,
                          shift_g, slot_threads):
        """Input gradient of planes (b, c) and this block's partial kernel/bias gradients.

        Block (threads,) walks (n, q) of one plane, ``slot_threads`` along a row and the rest across rows:
        input row n, inputs q*S*W .. (S*W of them; input gradient, g window from q*W - shift_g) and output row
        n, vector q (kernel gradient; x window from q*S*W - shift).
        partials[b * gridDim.x + blockIdx.x, s, c*m + j]: s = 0 the bias, 1 + i*KW + k tap (i, k).
        """
        xwin = cuda.local.array(x_size, acc)
        gwin = cuda.local.array(g_size, acc)
        gv = cuda.local.array(gv_size, acc)
        gin = cuda.local.array(run, acc)
        taps = cuda.local.array(all_taps, acc)
        sums = cuda.local.array(n_sums, acc)
        shared = cuda.shared.array(shared_size, acc)
        zero = acc(0)
        tid = int32(cuda.threadIdx.x)
        in_slots = int32((width_in + run - 1) // run)
        out_slots = int32((out_w + width - 1) // width)
        slots = max(in_slots, out_slots)
        rows = max(height, out_h)
        q0 = int32(tid % slot_threads)
        row_threads = int32(threads // slot_threads)
        n0 = int32(cuda.blockIdx.x * row_threads + tid // slot_threads)
        out_ch = int32(chans * mult)
        plane = int32(cuda.blockIdx.y)
        while plane < planes:  # uniform per block: every thread reaches the reductions
            b = int32(plane // chans)
            c = int32(plane - b * chans)
            for s in range(n_sums):
                sums[s] = zero
            if do_input:
                for j in range(mult):
                    for t in range(taps_n):
                        taps[j * taps_n + t] = load1(w, int32(int32(t * chans + c) * mult + j))
            x_plane = int32(plane * height)
            g_plane = int32(int32(b * out_ch + c * mult) * out_h)
            n = n0
            q = q0
            while n < rows:  # (n, q) without divisions: q fastest
                if q >= slots:
                    q = q0
                    n = int32(n + cuda.gridDim.x * row_threads)
                    continue
                if do_input and n < height and q < in_slots:
                    for e in range(run):
                        gin[e] = zero
                    start = int32(q * width - shift_g)
                    input_rows(g, gwin, gin, taps, n, top, out_h, out_w, g_plane, start,
                               start >= 0 and start + g_size <= out_w)
                    for v in range(sw):
                        store_x(grad_in, int32(int32(x_plane + n) * width_in), int32(q * run), v, width_in, gin)
                if do_kernel and n < out_h and q < out_slots:
                    for j in range(mult):  # (outputs past the row's end read as zero; vector j lands in gv[j*W ..])
                        load_g_checked(g, int32(int32(g_plane + j * out_h + n) * out_w), int32(q * width - j * width),
                                       j, out_w, gv)
                        for e in range(width):
                            sums[j * per_j] += gv[j * width + e]
                    start = int32(q * run - shift)
                    kernel_rows(x, xwin, gv, sums, n, top, height, width_in, x_plane, start,
                                start >= 0 and start + x_size <= width_in)
                q = int32(q + slot_threads)
            if do_kernel:
                block_reduce(sums, shared, tid, 0)
            s = tid
            while do_kernel and s < n_sums:  # thread tid writes sums tid, tid + threads, ...; (j, slot) of s
                j = int32(s // per_j)
                slot = int32(s - j * per_j)
                at = int32(int32(int32(b * cuda.gridDim.x + cuda.blockIdx.x) * per_j + slot) * out_ch)
                partials[int32(at + c * mult + j)] = shared[s * threads]
                s = int32(s + threads)
            plane = int32(plane + cuda.gridDim.y)

    ptr = pointer_type(key.dtype)
    return backward_first_2d, (ptr, ptr, ptr, ptr, types.CPointer(acc)) + (I32,) * 10


_BUILDERS = {
    "forward_last": _forward_last,
    "forward_first": _forward_first,
    "backward_last": _backward_last,
    "backward_first": _backward_first,
}


@functools.lru_cache(maxsize=None)
def vector_kernel(key: Vector2DKey):
    """``(python function, numba signature)`` of the 2D vector kernel for ``key`` (not compiled)."""
    return _BUILDERS[key.kind](key)
