"""The fused backward kernels of 2D depthwise convolution (16-byte vectors, compile-time constants).

One launch computes the input gradient and each block's partial sums of the kernel and bias
gradients; see :mod:`numba_dwconv.cuda.conv2d_vector` for the keys, the shared column loader
and the forward kernels, and for what every kernel of the family has in common.
"""

from __future__ import annotations

import math

from numba import cuda

from .conv1d_vector import TAP_REGISTERS, _make_block_reduce, _row_io
from .conv2d_vector import Vector2DKey, column_loader, first_window
from .inline import device_function, repeat
from .vector import codec as get_codec
from .vector import pointer_type, types

int32 = types.int32
I32 = types.int32


def backward_last(key: Vector2DKey):
    """``(python function, numba signature)``: channels_last fused backward for ``key`` (not compiled)."""
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
    load_column = column_loader(key.dtype)

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


def backward_first(key: Vector2DKey):
    """``(python function, numba signature)``: channels_first fused backward for ``key`` (not compiled)."""
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
