"""CPU kernels of the causal convolution over packed sequences (``sequence_ids``), channels_last.

Row ``b`` of the batch holds several sequences one after another: ``ids[b, t]`` is the sequence of
position ``t`` (non-decreasing along the row; negative: padding).  Output ``t`` reads the inputs
``t - (K-1-i)*d`` of its own sequence only (as if each sequence were zero-padded on its own), and
is zero where ``ids[b, t] < 0``.  The host validates; channels_first calls go through transposed
copies.  Kernel-gradient partials are one per batch row, summed by the host in a fixed order.
"""

from __future__ import annotations

from .._jit import parallel_kernel, task_share

_ROWS_PER_TASK = 64


@parallel_kernel
def forward_packed(part, parts, x, ids, kernel, bias, dilation, out):
    """``x`` (B, L, C), ``ids`` (B, L), ``kernel`` (K, C, m), ``bias`` (C*m,), ``out`` (B, L, C*m)."""
    batch, length, channels = x.shape
    ksize, _, mult = kernel.shape
    tiles = -(-length // _ROWS_PER_TASK)
    tasks_lo, tasks_hi = task_share(batch * tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // tiles
        t0 = (task - b * tiles) * _ROWS_PER_TASK
        for t in range(t0, min(t0 + _ROWS_PER_TASK, length)):
            row = out[b, t]
            sequence = ids[b, t]
            if sequence < 0:
                for o in range(row.shape[0]):
                    row[o] = 0
                continue
            for o in range(row.shape[0]):
                row[o] = bias[o]
            for i in range(ksize):
                src = t - (ksize - 1 - i) * dilation
                if src < 0 or ids[b, src] != sequence:
                    continue
                x_row = x[b, src]
                for c in range(channels):
                    for q in range(mult):
                        row[c * mult + q] += x_row[c] * kernel[i, c, q]


@parallel_kernel
def input_grad_packed(part, parts, grad, ids, kernel, dilation, grad_in):
    """``grad`` (B, L, C*m) at the outputs; ``grad_in`` (B, L, C): what each input passed to its sequence's outputs."""
    batch, length, channels = grad_in.shape
    ksize, _, mult = kernel.shape
    tiles = -(-length // _ROWS_PER_TASK)
    tasks_lo, tasks_hi = task_share(batch * tiles, part, parts)
    for task in range(tasks_lo, tasks_hi):
        b = task // tiles
        s0 = (task - b * tiles) * _ROWS_PER_TASK
        for s in range(s0, min(s0 + _ROWS_PER_TASK, length)):
            acc = grad_in[b, s]
            for c in range(channels):
                acc[c] = 0
            sequence = ids[b, s]
            if sequence < 0:
                continue
            for i in range(ksize):
                t = s + (ksize - 1 - i) * dilation
                if t >= length or ids[b, t] != sequence:
                    continue
                g_row = grad[b, t]
                for c in range(channels):
                    for q in range(mult):
                        acc[c] += g_row[c * mult + q] * kernel[i, c, q]


@parallel_kernel
def kernel_grad_packed(part, parts, grad, x, ids, dilation, part_kernel, part_bias):
    """Per batch row ``b``: ``part_kernel[b]`` (K, C, m) and ``part_bias[b]`` (C*m,) of the packed convolution."""
    batch, length, channels = x.shape
    ksize, _, mult = part_kernel.shape[1:]
    tasks_lo, tasks_hi = task_share(batch, part, parts)
    for b in range(tasks_lo, tasks_hi):
        acc_k = part_kernel[b]
        acc_b = part_bias[b]
        for i in range(ksize):
            for c in range(channels):
                for q in range(mult):
                    acc_k[i, c, q] = 0
        for o in range(acc_b.shape[0]):
            acc_b[o] = 0
        for t in range(length):
            sequence = ids[b, t]
            if sequence < 0:
                continue
            g_row = grad[b, t]
            for o in range(acc_b.shape[0]):
                acc_b[o] += g_row[o]
            for i in range(ksize):
                src = t - (ksize - 1 - i) * dilation
                if src < 0 or ids[b, src] != sequence:
                    continue
                x_row = x[b, src]
                for c in range(channels):
                    for q in range(mult):
                        acc_k[i, c, q] += x_row[c] * g_row[c * mult + q]
