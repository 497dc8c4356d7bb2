"""The channels_last gradients (2D): input gradient, kernel/bias partials, or both in one pass.

One kernel, :func:`_grads_last`, computes the input gradient (unit column stride), the kernel and bias
gradients' per-task partials, or both; the arrays of the part a call does not want are None, and numba
compiles each combination on its own with the other part's code pruned.  The tasks are those of the kernel
gradient (:func:`numba_dwconv.cpu.conv2d._kernel_grad_tasks`: a batch entry and a chunk of output rows,
their partials summed in task order afterwards, so no result depends on the thread count); a task also
owns the input rows of the same numbers (times the row stride; the last chunk of an entry up to the last
input row), whose input gradient it writes whole.

Both at once (unit strides and column dilation, ``m = 1``: the host checks) the task takes its rows in
turns: input row ``r``'s gradient, which reads the output-gradient rows around ``r``, then output row
``r``'s terms of the kernel gradient, which reads output-gradient row ``r`` again while it is still in the
caches, and input rows ``r - 1 .. r + 1`` (3x3) of which only the last is new.  Computed apart, each
gradient reads the whole output gradient: at a network layer's sizes (tens of MB) that is one more sweep of
memory, and both are bound by it (B16 56x56 C128 3x3, 2 threads: 2.90 -> 2.35 ms).  Each row is computed
by the same code in either case, in the same order, so the two ways give the same bits.

The input gradient (the gather: unit column stride, any row stride): ``flipped`` holds the taps reversed
along both axes, so that tap row ``KH-1-i`` applied to the output-gradient row that input row ``ih``
reaches through tap row ``i`` adds ``grad_in[iw] += sum_k grad[iw + left - (KW-1)*dw + k*dw] *
flipped[KH-1-i, k]``: a forward pass with left padding ``(KW-1)*dw - left`` over the output-gradient rows,
in increasing order (so the all-taps blocks and the passes sum in the same order and give the same bits:
the host chooses by alignment).  With a compile-time KH, unit row stride and column dilation, the rows
whose tap rows are all inside take the all-taps blocks (:func:`numba_dwconv.cpu.conv2d_last._all_taps`;
``zeros``: C zeros, their bias and each row's start).  A depth multiplier ``rep`` > 1 runs as ``m = 1``
over ``channels`` = C*rep: each row is gathered into the part's row of ``in_rows_buf``, then each group of
``rep`` channels is summed into ``grad_in`` (C channels).

The kernel gradient: per output row, 3x3 problems that fit (:func:`numba_dwconv.cpu.conv2d_last_kgrad.fits`,
``in_registers``) take the interior columns of rows whose tap rows are all inside with the sums in registers
(:func:`numba_dwconv.cpu.conv2d_last_kgrad.kernel_grad_rows`), then the bias of the other columns, then one
pass per tap row (the edge columns only where the interior is done).  A multiplier reads channel-repeated
input rows from the part's ``kg_rows_buf`` (``held``: see :func:`numba_dwconv.cpu.conv2d_last._repeated_row`).
"""

from __future__ import annotations

from numba import uint64

from .._entries import call_entry
from .._jit import parallel_kernel, task_share, trip_count
from .channels import sum_group_rows
from .conv2d_last import (
    BLOCK,
    _block_columns,
    _blocks_end,
    _edge_columns,
    _fill_row_outside,
    _interior_end,
    _part_rows,
    _repeated_row,
    _unit_interior_runtime,
    _valid_range,
)
from .conv2d_last_kgrad import _edge_grads, _unit_grad_interior_runtime, kernel_grad_rows


@parallel_kernel
def _grads_last(part, parts, grad, x, flipped, zeros, grad_in, kernel_partials, bias_partials, batch, height, width,
                channels, mult_t, out_h, out_w, kh, sh, sw, dh, dw, top, left, kw, rows_per_task, strided, rep,
                in_rows_buf, chunks, kg_rows_buf, held, consts, lanes_t, in_registers, rows_fn, all_fn, grad_rows_fn):
    """The input gradient into ``grad_in`` and/or the kernel and bias partials (see the module's text).

    Flat arrays: ``grad`` (B*out_h*out_w*C*m), ``x`` (B*H*W*C), ``grad_in`` like ``x``, ``kernel_partials``
    (tasks * KH*KW*C*m), ``bias_partials`` (tasks * C*m); ``grad_in`` None: no input gradient (then
    ``flipped``, ``zeros``, ``in_rows_buf`` unused), ``kernel_partials`` None: no kernel gradient (``x``,
    ``bias_partials``, ``kg_rows_buf``, ``held``, ``consts`` unused).  ``strided``: None for unit column
    steps, else any int (the passes for any step; the input gradient has a unit column stride).  ``consts``:
    None (run-time sizes), or a zeros-and-ones vector, and then where ``in_registers`` (a run-time flag: one
    compiled kernel for problems that fit and those that do not) the 3x3 rows in registers.

    ``rows_fn``, ``all_fn``, ``grad_rows_fn``: the size-specialised passes (:mod:`numba_dwconv.cpu.conv2d_last_entries`)
    of the input gradient's tap rows, its all-taps blocks (None unless a compile-time KH and unit row stride) and
    the kernel gradient's tap rows; ``rows_fn`` and ``grad_rows_fn`` None for a run-time KW (the passes here).
    """
    mult = trip_count(mult_t)
    n_out = channels * mult
    row_size = uint64(width * channels)
    grad_row_size = uint64(out_w * n_out)
    # (each part's set-up under its own test: pruned with the part it serves)
    if grad_in is not None:  # the input gradient: the flipped taps along output-gradient rows
        flipped_left = (kw - 1) * dw - left
        in_lo, in_hi = _block_columns(kw, rows_fn is not None, 1, dw, flipped_left, out_w, width, 1)
        all_lo, all_hi, all_end = in_lo, in_lo, in_lo
        if all_fn is not None:
            if sh == 1:
                if dw == 1:
                    all_hi = in_lo + (in_hi - in_lo) // BLOCK * BLOCK
                    all_end = max(all_hi, in_hi)  # (the last columns too, as the forward's)
        dst = grad_in
        if in_rows_buf is not None:
            dst = in_rows_buf[part]
    if kernel_partials is not None:  # the kernel gradient: block columns, rows whose tap rows are all inside
        part_size = uint64(kh * kw * n_out)
        lo, hi = _block_columns(kw, grad_rows_fn is not None, sw, dw, left, width, out_w, mult)
        rows_lo, _ = _valid_range(-top, sh, height, out_h)
        _, rows_hi = _valid_range((kh - 1) * dh - top, sh, height, out_h)
        if not in_registers:
            rows_hi = rows_lo
        src = x
        slots = 1
        if kg_rows_buf is not None:
            src, slots = _part_rows(kg_rows_buf, held, part)
    chunks_per_entry = (out_h + rows_per_task - 1) // rows_per_task
    tasks_lo, tasks_hi = task_share(batch * chunks_per_entry, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // chunks_per_entry
        chunk = task - b * chunks_per_entry
        oh_lo = chunk * rows_per_task
        oh_hi = min(oh_lo + rows_per_task, out_h)
        ih_lo = min(oh_lo * sh, height)  # the task's input rows
        ih_hi = min(oh_hi * sh, height)
        if chunk == chunks_per_entry - 1:
            ih_hi = height
        if kernel_partials is not None:
            a_task = uint64(task) * part_size
            b_task = uint64(task * n_out)
            for p in range(part_size):
                kernel_partials[a_task + p] = 0.0
            for o in range(uint64(n_out)):
                bias_partials[b_task + o] = 0.0
        for r in range(min(ih_lo, oh_lo), max(ih_hi, oh_hi)):
            if grad_in is not None:
                if ih_lo <= r < ih_hi:  # input row r's gradient, complete
                    d_row = uint64(b * height + r) * row_size
                    if in_rows_buf is not None:
                        d_row = uint64(0)
                    done_lo, done_hi = 0, 0
                    q_first = r + top - (kh - 1) * dh  # the output row of the last tap row (the first in order)
                    if all_fn is not None:  # (pruned unless compile-time sizes)
                        if in_rows_buf is None:  # (pruned while compiling the depth-multiplier kernel)
                            if all_hi > all_lo and q_first >= 0 and r + top < out_h:  # every tap row's output row
                                done_lo, done_hi = all_lo, all_end
                                call_entry(all_fn, (grad, flipped, zeros, dst,
                                                    uint64(b * out_h + q_first) * grad_row_size, d_row, all_lo, all_hi,
                                                    all_end, uint64(channels), uint64(dh) * grad_row_size, flipped_left,
                                                    chunks, 1, dw, 1, uint64(0), uint64(0)))
                    _fill_row_outside(dst, d_row, width, channels, done_lo, done_hi, zeros)
                    for j in range(kh):  # tap rows last to first: output-gradient rows in increasing order
                        i = kh - 1 - j
                        q = r + top - i * dh  # = oh * sh for the output row oh that reads row r through tap row i
                        if q >= 0 and q % sh == 0 and q // sh < out_h:
                            s_row = uint64(b * out_h + q // sh) * grad_row_size
                            t0 = uint64((kh - 1 - i) * kw * channels)
                            first = max(in_lo, done_hi)
                            end = first  # (as the forward's tap rows: fewer than four columns go with the edges)
                            if rows_fn is not None:  # (the other branch is pruned while compiling, and the other way)
                                if first + BLOCK <= in_hi:
                                    call_entry(rows_fn, (grad, flipped, dst, s_row, t0, d_row, uint64(channels), 1, dw,
                                                         flipped_left, first, in_hi))
                                    end = _interior_end(first, in_hi, strided)
                            elif strided is None:  # (a run-time KW: eight taps at a time; with a dilation, no blocks)
                                _unit_interior_runtime(grad, flipped, dst, s_row, t0, d_row, uint64(channels),
                                                       flipped_left, first, in_hi, kw)
                                end = _interior_end(first, in_hi, strided)
                            _edge_columns(grad, flipped, dst, s_row, t0, d_row, out_w, width, channels, 1, 1, dw,
                                          flipped_left, first, end, kw, done_lo, done_hi)
                    if in_rows_buf is not None:
                        c_in = channels // rep
                        g_in = uint64(b * height + r) * uint64(width * c_in)
                        sum_group_rows(grad_in[g_in:g_in + uint64(width * c_in)].reshape((width, c_in)),
                                       dst[:row_size].reshape((width, channels)), rep)
            if kernel_partials is not None:
                if oh_lo <= r < oh_hi:  # output row r's terms of the kernel and bias gradients
                    g_row = uint64(b * out_h + r) * grad_row_size
                    inside = False
                    if consts is not None:  # (pruned unless three columns wide)
                        if rows_lo <= r < rows_hi:
                            inside = True
                            kernel_grad_rows(x, grad, kernel_partials, bias_partials, consts, a_task, b_task,
                                             uint64(b * height + r * sh - top) * row_size, g_row, 1,
                                             uint64(sh) * row_size, uint64(dh) * row_size, grad_row_size, lo, hi,
                                             left, uint64(n_out), lanes_t)
                    for ow in range(uint64(out_w)):
                        if inside:
                            if lo <= ow < hi:
                                continue  # (summed with the interior)
                        for o in range(uint64(n_out)):
                            bias_partials[b_task + o] += grad[g_row + ow * uint64(n_out) + o]
                    first = hi if inside else lo  # (a row whose interior is done: its edges only)
                    for i in range(kh):
                        ih = r * sh + i * dh - top
                        if 0 <= ih < height:
                            s_row = uint64(b * height + ih) * row_size
                            if kg_rows_buf is not None:
                                s_row = _repeated_row(x, src, held[part], b * height + ih, ih % slots,
                                                      uint64(b * height + ih) * uint64(width * (channels // rep)),
                                                      width, channels // rep, rep)
                            a_row = a_task + uint64(i * kw * n_out)
                            if grad_rows_fn is not None:  # (as the input gradient's rows)
                                if first + BLOCK <= hi:  # (not in a row whose interior was summed in registers)
                                    call_entry(grad_rows_fn, (src, grad, kernel_partials, s_row, g_row, a_row,
                                                              uint64(n_out), sw, dw, left, first, hi))
                            elif strided is None:
                                _unit_grad_interior_runtime(src, grad, kernel_partials, s_row, g_row, a_row,
                                                            uint64(n_out), left, first, hi, kw)
                            _edge_grads(src, grad, kernel_partials, s_row, g_row, a_row, width, out_w, channels, mult,
                                        sw, dw, left, lo, _blocks_end(first, hi), kw)
