"""The 16-byte vector kernels of 1D depthwise convolution (stride 1, small tap counts).

Every kernel here is built for compile-time constants (a :class:`VectorKey`): the storage
codec, the tap count ``K``, the dilation ``d`` and (channels_first) where the padding falls
inside a vector, so that the windows, the taps and the accumulators are register arrays
with constant indices after unrolling.  Arguments are raw pointers and int32 scalars
(:mod:`numba_dwconv.cuda.vector`); all index arithmetic is wrapped in ``int32`` so numba
does not widen it to 64 bits.

* channels_first (``(batch, channels, length)``): a thread owns a 16-byte vector of
  consecutive outputs of one row; it reads the vectors of input its taps cover
  (neighbouring threads' vectors come from L1) and writes one vector.
* channels_last (``(batch, length, channels)``, ``depth_multiplier == 1``): a thread owns a
  16-byte vector of consecutive channels, keeps their taps in registers and walks output
  rows, one vector load per tap and one vector store per row.
* the backward kernels compute the input gradient and, in the same pass, each block's
  partial sums of the kernel and bias gradients (reduced inside the block in a fixed
  order, written to ``partials``); :func:`numba_dwconv.cuda.conv1d` sums the partials in
  a second, fixed-order launch.  No float atomics: results are deterministic.

Padding: the forward and the kernel gradient read padding as exact zeros and multiply
(``0 * inf`` is NaN, Keras' rule); the input gradient skips the products of taps whose
output lies outside, as padding is no input.  Threads whose window lies inside the row
take an unchecked path; only edge threads test positions.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from numba import cuda

from .inline import device_function
from .vector import codec as get_codec
from .vector import pointer_type, types

int32 = types.int32

I32 = types.int32
TAP_REGISTERS = 64  # channels_last forward: weights kept in registers per thread (taps x vector width)


class VectorKey(NamedTuple):
    """The compile-time constants of one vector kernel."""

    kind: str  # "forward_first", "forward_last", "backward_first", "backward_last"
    dtype: str  # storage dtype name
    taps: int  # K
    dilation: int  # d
    offset: int  # channels_first: (-pad_left) mod width; channels_last: 0
    mult: int  # channels_first backward: depth_multiplier (static); else 1
    parts: str  # backward: "both", "input" (input gradient only) or "kernel" (kernel/bias partials only)
    threads: int  # backward: threads reducing together (channels_first: per block; channels_last: row lanes)
    groups: int  # channels_last backward: channel vectors per block (threadIdx.x); else 1
    unroll: int = 1  # channels_first forward: consecutive vectors of outputs per thread
    vector_in: bool = True  # channels_first: input rows (and input-gradient rows) move as 16-byte vectors
    vector_out: bool = True  # channels_first: output (and output-gradient) rows move as 16-byte vectors


def window_vectors(width: int, offset: int, taps: int, dilation: int, unroll: int = 1) -> int:
    """Vectors a channels_first thread reads for ``unroll`` vectors of outputs, its window starting ``offset`` in."""
    return math.ceil((offset + unroll * width + (taps - 1) * dilation) / width)


@functools.lru_cache(maxsize=None)
def _row_io(dtype: str, vector: bool):
    """``(load, load_checked, store)`` for vector ``k`` of a window along one row.

    With ``vector`` the row is 16-byte aligned and a multiple of the width long: 16-byte accesses, a vector
    is wholly inside or outside the row.  Otherwise the same windows move element by element (rows of any
    length, operands at any address), each element checked on the edges.

    * ``load(ptr, row, start, k, limit, regs)``: the window is inside the row: no checks;
    * ``load_checked(...)``: positions outside ``[0, limit)`` read as zero;
    * ``store(ptr, row, first, k, limit, regs)``: ``regs[k*W ..]`` to positions ``first + k*W ..`` below ``limit``.
    """
    cd = get_codec(dtype)
    acc, width, vload, vstore, load_at, store_at = cd.acc, cd.width, cd.vload, cd.vstore, cd.load_at, cd.store_at
    if vector:
        @device_function
        def load(ptr, row, start, k, limit, regs):
            vload(ptr, int32(row + start), k * width, regs, k * width)

        @device_function
        def load_checked(ptr, row, start, k, limit, regs):
            pos = int32(start + k * width)
            if pos >= 0 and pos < limit:
                vload(ptr, int32(row + pos), 0, regs, k * width)
            else:
                for e in range(width):
                    regs[k * width + e] = acc(0)

        @device_function
        def store(ptr, row, first, k, limit, regs):
            if int32(first + k * width) < limit:
                vstore(ptr, int32(row + first), k * width, regs, k * width)

        return load, load_checked, store

    @device_function
    def load(ptr, row, start, k, limit, regs):
        base = int32(row + start)
        for e in range(width):
            regs[k * width + e] = load_at(ptr, base, k * width + e)

    @device_function
    def load_checked(ptr, row, start, k, limit, regs):
        for e in range(width):
            pos = int32(start + k * width + e)
            regs[k * width + e] = load_at(ptr, row, pos) if pos >= 0 and pos < limit else acc(0)

    @device_function
    def store(ptr, row, first, k, limit, regs):
        base = int32(row + first)
        for e in range(width):
            if int32(first + k * width + e) < limit:
                store_at(ptr, base, k * width + e, regs[k * width + e])

    return load, load_checked, store


# ---------------------------------------------------------------------------- forward
def _forward_first(key: VectorKey):
    cd = get_codec(key.dtype)
    acc, width, load1 = cd.acc, cd.width, cd.load1
    taps_n, dil, off, unroll = key.taps, key.dilation, key.offset, key.unroll
    n_vec = window_vectors(width, off, taps_n, dil, unroll)
    win_size = n_vec * width
    outputs = unroll * width  # per thread and step: more FMAs per step's index arithmetic for short kernels

    load_x, load_x_checked, _ = _row_io(key.dtype, key.vector_in)
    _, _, store_out = _row_io(key.dtype, key.vector_out)

    def forward_first_vector(x, w, bias, out, rows, out_ch, chans, mult, length, out_length, shift):
        """out[row, q*U*W .. (q+1)*U*W - 1] for every row = (b, o) and step q; the window starts at q*U*W - shift."""
        win = cuda.local.array(win_size, acc)
        taps = cuda.local.array(taps_n, acc)
        res = cuda.local.array(outputs, acc)
        steps = int32((out_length + outputs - 1) // outputs)
        row = int32(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y)
        while row < rows:
            b = int32(row // out_ch)
            o = int32(row - b * out_ch)
            c = int32(o // mult)
            for i in range(taps_n):
                taps[i] = load1(w, int32(int32(i * chans + c) * mult + o - c * mult))
            start_bias = load1(bias, o)
            x_row = int32(int32(b * chans + c) * length)
            out_row = int32(row * out_length)
            q = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
            while q < steps:
                start = int32(q * outputs - shift)
                if start >= 0 and int32(start + win_size) <= length:  # interior: no checks
                    for k in range(n_vec):
                        load_x(x, x_row, start, k, length, win)
                else:
                    for k in range(n_vec):
                        load_x_checked(x, x_row, start, k, length, win)
                for e in range(outputs):
                    total = start_bias
                    for i in range(taps_n):
                        total += taps[i] * win[off + e + i * dil]
                    res[e] = total
                for u in range(unroll):
                    store_out(out, out_row, int32(q * outputs), u, out_length, res)
                q = int32(q + cuda.gridDim.x * cuda.blockDim.x)
            row = int32(row + cuda.gridDim.y * cuda.blockDim.y)

    ptr = pointer_type(key.dtype)
    return forward_first_vector, (ptr, ptr, ptr, ptr) + (I32,) * 7


def _forward_last(key: VectorKey):
    cd = get_codec(key.dtype)
    acc, width, load1, vload, vstore = cd.acc, cd.width, cd.load1, cd.vload, cd.vstore
    taps_n, dil = key.taps, key.dilation
    span = (taps_n - 1) * dil
    # Taps held in registers up to TAP_REGISTERS values; longer kernels read each tap's weight vector per row
    # (16-byte loads, L1 hits; the kernel operand must then be aligned) instead of a local-memory array.
    resident = taps_n * width <= TAP_REGISTERS
    taps_size = taps_n * width if resident else 1

    @device_function
    def add_tap(res, win, taps, i, w, w_index, wvec):
        """``res += weights of tap i * win``: the weights from registers, or one 16-byte load at ``w_index``."""
        if resident:
            for e in range(width):
                res[e] += taps[i * width + e] * win[e]
        else:
            vload(w, w_index, 0, wvec, 0)
            for e in range(width):
                res[e] += wvec[e] * win[e]

    def forward_last_vector(x, w, bias, out, batch, chans, length, out_length, pad):
        """out[b, t, cq*W .. cq*W+W-1] (depth_multiplier 1): channel vector cq on x, rows t on y, batch on z."""
        win = cuda.local.array(width, acc)
        wvec = cuda.local.array(width, acc)
        taps = cuda.local.array(taps_size, acc)
        res = cuda.local.array(width, acc)
        start_bias = cuda.local.array(width, acc)
        zero = acc(0)
        cq = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
        if cq * width >= chans:
            return
        c0 = int32(cq * width)
        if resident:
            for i in range(taps_n):
                for e in range(width):
                    taps[i * width + e] = load1(w, int32(i * chans + c0 + e))
        for e in range(width):
            start_bias[e] = load1(bias, int32(c0 + e))
        b = int32(cuda.blockIdx.z)
        while b < batch:
            t = int32(cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y)
            while t < out_length:
                for e in range(width):
                    res[e] = start_bias[e]
                r0 = int32(t - pad)
                base = int32(int32(b * length + r0) * chans + c0)
                if r0 >= 0 and r0 + span < length:  # interior
                    for i in range(taps_n):
                        vload(x, int32(base + i * dil * chans), 0, win, 0)
                        add_tap(res, win, taps, i, w, int32(i * chans + c0), wvec)
                else:
                    for i in range(taps_n):
                        r = int32(r0 + i * dil)
                        if r >= 0 and r < length:
                            vload(x, int32(base + i * dil * chans), 0, win, 0)
                        else:
                            for e in range(width):
                                win[e] = zero
                        add_tap(res, win, taps, i, w, int32(i * chans + c0), wvec)
                vstore(out, int32(int32(b * out_length + t) * chans + c0), 0, res, 0)
                t = int32(t + cuda.gridDim.y * cuda.blockDim.y)
            b = int32(b + cuda.gridDim.z)

    ptr = pointer_type(key.dtype)
    return forward_last_vector, (ptr, ptr, ptr, ptr) + (I32,) * 5


# ---------------------------------------------------------------------------- backward
def _make_block_reduce(n_sums: int, lanes: int, groups: int):
    """A device function summing ``sums[0..n_sums)`` over the ``lanes`` threads of each group, in a fixed order.

    Thread (lane, group) contributes ``sums``; afterwards ``shared[k * lanes * groups + group]`` holds the
    total of sum ``k`` of ``group`` (read it before the next call: the function starts with a barrier).
    """

    @device_function
    def block_reduce(sums, shared, lane, group):
        cuda.syncthreads()
        for k in range(n_sums):
            shared[int32(int32(k * lanes + lane) * groups + group)] = sums[k]
        cuda.syncthreads()
        width = int32(lanes)
        while width > 1:  # element i adds element i + half: the same order on every run
            half = int32((width + 1) // 2)
            if lane < width - half:
                for k in range(n_sums):
                    at = int32(int32(k * lanes + lane) * groups + group)
                    shared[at] += shared[int32(at + half * groups)]
            cuda.syncthreads()
            width = half

    return block_reduce


def _backward_first(key: VectorKey):
    cd = get_codec(key.dtype)
    acc, width, load1 = cd.acc, cd.width, cd.load1
    taps_n, dil, off, mult, threads = key.taps, key.dilation, key.offset, key.mult, key.threads
    load_x, load_x_checked, store_x = _row_io(key.dtype, key.vector_in)  # x and the input gradient: length L
    load_g, load_g_checked, _ = _row_io(key.dtype, key.vector_out)  # the output gradient: length Lo
    do_input, do_kernel = key.parts in ("both", "input"), key.parts in ("both", "kernel")
    span = (taps_n - 1) * dil
    n_x = window_vectors(width, off, taps_n, dil)  # x window of the kernel gradient (as the forward's)
    off_g = (-off - span) % width  # = (pad - span) mod W: where the input gradient's g window starts
    n_g = window_vectors(width, off_g, taps_n, dil)
    n_sums = (taps_n + 1) * mult
    block_reduce = _make_block_reduce(n_sums, threads, 1)
    sizes = (n_x * width, n_g * width, taps_n * mult, n_sums * threads)
    x_size, g_size, taps_size, shared_size = sizes

    def backward_first_vector(g, x, w, grad_in, partials, rows, chans, length, out_length, shift, shift_g):
        """Input gradient of rows (b, c) and this block's partial kernel/bias gradients.

        Block (threads,) walks the vector slots of one row; slot q covers inputs q*W.. (input gradient, g
        window from q*W - shift_g) and outputs q*W.. (kernel gradient, x window from q*W - shift).
        partials[b * gridDim.x + blockIdx.x, s, c*m + j]: s = 0 the bias, s = 1 + i tap i.
        """
        xwin = cuda.local.array(x_size, acc)
        gwin = cuda.local.array(g_size, acc)
        gvec = cuda.local.array(width, acc)
        gin = cuda.local.array(width, acc)
        taps = cuda.local.array(taps_size, acc)
        sums = cuda.local.array(n_sums, acc)
        shared = cuda.shared.array(shared_size, acc)
        zero = acc(0)
        tid = int32(cuda.threadIdx.x)
        in_slots = int32((length + width - 1) // width)
        out_slots = int32((out_length + width - 1) // width)
        slots = max(in_slots, out_slots)
        out_ch = int32(chans * mult)
        row = int32(cuda.blockIdx.y)
        while row < rows:  # uniform per block: every thread reaches the reductions
            b = int32(row // chans)
            c = int32(row - b * chans)
            for s in range(n_sums):
                sums[s] = zero
            if do_input:  # (w is not read when only the kernel gradient is asked for)
                for j in range(mult):
                    for i in range(taps_n):
                        taps[j * taps_n + i] = load1(w, int32(int32(i * chans + c) * mult + j))
            x_row = int32(row * length)
            g_row0 = int32(int32(b * out_ch + c * mult) * out_length)
            q = int32(cuda.blockIdx.x * cuda.blockDim.x + tid)
            while q < slots:
                # input gradient at q*W + e: sum_j sum_i g[j, q*W + e + pad - i*d] * w[i, j]
                if do_input and q < in_slots:
                    for e in range(width):
                        gin[e] = zero
                    start = int32(q * width - shift_g)
                    if start >= 0 and int32(start + g_size) <= out_length:  # interior
                        for j in range(mult):
                            for k in range(n_g):
                                load_g(g, int32(g_row0 + j * out_length), start, k, out_length, gwin)
                            for e in range(width):
                                for i in range(taps_n):  # window index of output q*W + e + pad - i*d
                                    gin[e] += gwin[off_g + e + span - i * dil] * taps[j * taps_n + i]
                    else:  # an output outside the row is padding: its products are skipped
                        for j in range(mult):
                            for k in range(n_g):
                                load_g_checked(g, int32(g_row0 + j * out_length), start, k, out_length, gwin)
                            for e in range(width):
                                for i in range(taps_n):
                                    at = int32(start + off_g + e + span - i * dil)
                                    if at >= 0 and at < out_length:
                                        gin[e] += gwin[off_g + e + span - i * dil] * taps[j * taps_n + i]
                    store_x(grad_in, x_row, int32(q * width), 0, length, gin)
                # kernel gradient at outputs q*W + e: g * x[q*W + e - pad + i*d], padding read as 0
                if do_kernel and q < out_slots:
                    start = int32(q * width - shift)
                    if start >= 0 and int32(start + x_size) <= length:  # interior
                        for k in range(n_x):
                            load_x(x, x_row, start, k, length, xwin)
                    else:
                        for k in range(n_x):
                            load_x_checked(x, x_row, start, k, length, xwin)
                    for j in range(mult):  # (outputs past the row's end read as zero)
                        load_g_checked(g, int32(g_row0 + j * out_length), int32(q * width), 0, out_length, gvec)
                        for e in range(width):
                            sums[j * (taps_n + 1)] += gvec[e]
                            for i in range(taps_n):
                                sums[j * (taps_n + 1) + 1 + i] += gvec[e] * xwin[off + e + i * dil]
                q = int32(q + cuda.gridDim.x * cuda.blockDim.x)
            if do_kernel:
                block_reduce(sums, shared, tid, 0)
            s = tid
            while do_kernel and s < n_sums:  # thread tid writes sums tid, tid + threads, ...; (j, slot) of s
                j = int32(s // (taps_n + 1))
                slot = int32(s - j * (taps_n + 1))
                at = int32(int32(int32(b * cuda.gridDim.x + cuda.blockIdx.x) * (taps_n + 1) + slot) * out_ch)
                partials[int32(at + c * mult + j)] = shared[s * threads]
                s = int32(s + threads)
            row = int32(row + cuda.gridDim.y)

    ptr = pointer_type(key.dtype)
    return backward_first_vector, (ptr, ptr, ptr, ptr, types.CPointer(acc)) + (I32,) * 6


def _backward_last(key: VectorKey):
    cd = get_codec(key.dtype)
    acc, width, load1, vload, vstore = cd.acc, cd.width, cd.load1, cd.vload, cd.vstore
    taps_n, dil, lanes = key.taps, key.dilation, key.threads
    do_input, do_kernel = key.parts in ("both", "input"), key.parts in ("both", "kernel")
    groups = key.groups
    span = (taps_n - 1) * dil
    n_sums = (taps_n + 1) * width
    block_reduce = _make_block_reduce(n_sums, lanes, groups)
    taps_size, shared_size = taps_n * width, n_sums * lanes * groups

    def backward_last_vector(g, x, w, grad_in, partials, batch, chans, length, out_length, pad):
        """Input gradient and block partials, depth_multiplier 1: channel vector on x, row lanes on y, batch z.

        Thread (cq, lane) walks rows lane, lane + lanes*gridDim.y, ...: input row n (input gradient) and output
        row n (kernel gradient).  partials[b * gridDim.y + blockIdx.y, s, c]: s = 0 the bias, 1 + i tap i.
        """
        win = cuda.local.array(width, acc)
        gvec = cuda.local.array(width, acc)
        gin = cuda.local.array(width, acc)
        taps = cuda.local.array(taps_size, acc)
        sums = cuda.local.array(n_sums, acc)
        shared = cuda.shared.array(shared_size, acc)
        zero = acc(0)
        lane = int32(cuda.threadIdx.y)
        group = int32(cuda.threadIdx.x)
        cq = int32(cuda.blockIdx.x * cuda.blockDim.x + group)
        active = cq * width < chans
        c0 = int32(min(cq * width, chans - width))  # idle threads still join the reductions
        if do_input:
            for i in range(taps_n):
                for e in range(width):
                    taps[i * width + e] = load1(w, int32(i * chans + c0 + e))
        rows = max(length, out_length)
        b = int32(cuda.blockIdx.z)
        while b < batch:
            for s in range(n_sums):
                sums[s] = zero
            n = int32(cuda.blockIdx.y * lanes + lane)
            while active and n < rows:
                # input gradient of row n: sum_i g[n + pad - i*d] * w[i]; rows outside are skipped
                if do_input and n < length:
                    for e in range(width):
                        gin[e] = zero
                    t0 = int32(n + pad)
                    base = int32(int32(b * out_length + t0) * chans + c0)
                    if t0 - span >= 0 and t0 < out_length:  # interior
                        for i in range(taps_n):
                            vload(g, int32(base - i * dil * chans), 0, gvec, 0)
                            for e in range(width):
                                gin[e] += gvec[e] * taps[i * width + e]
                    else:
                        for i in range(taps_n):
                            if t0 - i * dil >= 0 and t0 - i * dil < out_length:
                                vload(g, int32(base - i * dil * chans), 0, gvec, 0)
                                for e in range(width):
                                    gin[e] += gvec[e] * taps[i * width + e]
                    vstore(grad_in, int32(int32(b * length + n) * chans + c0), 0, gin, 0)
                # kernel gradient of output row n: g[n] * x[n - pad + i*d], padding read as 0
                if do_kernel and n < out_length:
                    vload(g, int32(int32(b * out_length + n) * chans + c0), 0, gvec, 0)
                    r0 = int32(n - pad)
                    base = int32(int32(b * length + r0) * chans + c0)
                    for e in range(width):
                        sums[e] += gvec[e]
                    if r0 >= 0 and r0 + span < length:  # interior
                        for i in range(taps_n):
                            vload(x, int32(base + i * dil * chans), 0, win, 0)
                            for e in range(width):
                                sums[(1 + i) * width + e] += gvec[e] * win[e]
                    else:
                        for i in range(taps_n):
                            if r0 + i * dil >= 0 and r0 + i * dil < length:
                                vload(x, int32(base + i * dil * chans), 0, win, 0)
                            else:
                                for e in range(width):
                                    win[e] = zero
                            for e in range(width):
                                sums[(1 + i) * width + e] += gvec[e] * win[e]
                n = int32(n + cuda.gridDim.y * lanes)
            if do_kernel:
                block_reduce(sums, shared, lane, group)
            if do_kernel and active and lane == 0:
                at = int32(int32(b * cuda.gridDim.y + cuda.blockIdx.y) * (taps_n + 1))
                for s in range(taps_n + 1):
                    for e in range(width):
                        partials[int32(int32(at + s) * chans + c0 + e)] = shared[
                            int32((s * width + e) * lanes * groups + group)]
            b = int32(b + cuda.gridDim.z)

    ptr = pointer_type(key.dtype)
    return backward_last_vector, (ptr, ptr, ptr, ptr, types.CPointer(acc)) + (I32,) * 5


def _sum_partials(key: VectorKey):
    cd = get_codec(key.dtype)
    acc, store1 = cd.acc, cd.store1

    def sum_partials_vector(partials, grad_kernel, grad_bias, n_partials, slots, out_ch):
        """grad_bias[o] = sum_p partials[p, 0, o]; grad_kernel[i, c, j] = sum_p partials[p, 1 + i, c*m + j].

        One thread per (slot, o), summing over p in index order (deterministic).
        """
        idx = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
        if idx >= slots * out_ch:
            return
        total = acc(0)
        p = int32(0)
        while p < n_partials:
            total += partials[int32(p * slots * out_ch + idx)]
            p = int32(p + 1)
        if idx < out_ch:
            store1(grad_bias, idx, total)
        else:  # (1 + i) * O + c*m + j -> i*C*m + c*m + j: the kernel's own flat order
            store1(grad_kernel, int32(idx - out_ch), total)

    ptr = pointer_type(key.dtype)
    return sum_partials_vector, (types.CPointer(acc), ptr, ptr) + (I32,) * 3


_BUILDERS = {
    "sum_partials": _sum_partials,
    "forward_first": _forward_first,
    "forward_last": _forward_last,
    "backward_first": _backward_first,
    "backward_last": _backward_last,
}


@functools.lru_cache(maxsize=None)
def vector_kernel(key: VectorKey):
    """``(python function, numba signature)`` of the vector kernel for ``key`` (not compiled)."""
    return _BUILDERS[key.kind](key)
