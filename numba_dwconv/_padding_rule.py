"""Keras' zero padding for non-finite numbers: the padding zeros take part in the products.

Keras (and :mod:`numba_dwconv.reference`) pad with real zeros and multiply, so a
tap that reads padding adds ``0 * w``: NaN when ``w`` is inf or NaN.  The kernels
skip padding (and :func:`numba_dwconv._geometry.live_taps` drops taps that read
nothing else), so the rule is applied here, after them, on the host, in every
layout, rank and device:

* forward: output ``(t, c*m + j)`` is NaN where a tap whose weight for ``(c, j)``
  is not finite reads padding at ``t``;
* kernel gradient: ``grad_kernel[tap, c, j]`` is NaN where ``grad_outputs`` holds
  a non-finite value at an output ``t`` at which ``tap`` reads padding
  (``0 * inf`` in ``sum_t window * grad_outputs``).

Neither costs anything in the usual case: the forward looks at the small kernel,
the kernel gradient at the bias gradient (the sum of ``grad_outputs``, non-finite
whenever any of its terms is); the data are scanned only for the channels that
these flag.  The input gradient needs no rule: padding is not an input.
"""

from __future__ import annotations

import itertools

import numpy as np

from .dispatch import to_host as _host


def _spatial_axes(problem):
    return (problem.axis,) if hasattr(problem, "axis") else (problem.height, problem.width)


def padding_reads(axis) -> np.ndarray:
    """``mask[t, i]``: True where tap ``i`` reads padding at output ``t`` (exact Python integers)."""
    mask = np.ones((axis.out_length, axis.kernel_size), dtype=bool)
    for i in range(axis.kernel_size):
        offset = i * axis.dilation - axis.pad_left  # tap i reads position t*s + offset
        lo = max(0, -(offset // axis.stride))  # first t with t*s + offset >= 0
        hi = min(axis.out_length, (axis.length - 1 - offset) // axis.stride + 1) if axis.length > offset else 0
        if lo < hi:
            mask[lo:hi, i] = False
    return mask


def _tap_masks(problem):
    """``(tap index, spatial mask of the outputs at which that tap reads padding)`` for every tap."""
    per_axis = [padding_reads(axis) for axis in _spatial_axes(problem)]
    for tap in itertools.product(*(range(m.shape[1]) for m in per_axis)):
        masks = [m[:, i] for m, i in zip(per_axis, tap)]
        if len(masks) == 1:
            yield tap, masks[0]
        else:
            yield tap, masks[0][:, None] | masks[1][None, :]


def _channels_last_view(array, channels_last: bool):
    return array if channels_last else np.moveaxis(array, 1, -1)


def forward_needs_rule(problem, kernel) -> bool:
    """Whether the kernel holds a non-finite weight on a tap that reads padding somewhere."""
    bad = ~np.isfinite(_host(kernel))
    if not bad.any():
        return False
    return any(bad[tap].any() and mask.any() for tap, mask in _tap_masks(problem))


def apply_forward(problem, kernel, out) -> None:
    """Set to NaN, in place, the outputs (host array ``out``) that the rule makes NaN."""
    kernel = _host(kernel)
    bad = ~np.isfinite(kernel).reshape(*kernel.shape[:-2], -1)  # (*taps, C*m)
    view = _channels_last_view(out, problem.channels_last)
    for tap, mask in _tap_masks(problem):
        if mask.any():
            for o in np.flatnonzero(bad[tap]):
                view[..., o][:, mask] = np.nan


def kernel_grad_channels(grad_bias) -> np.ndarray:
    """Output channels whose gradient holds a non-finite value somewhere (their sum is not finite)."""
    return np.flatnonzero(~np.isfinite(_host(grad_bias)))


def apply_kernel_grad(problem, grad_outputs, channels, grad_kernel) -> None:
    """Set to NaN, in place, the kernel-gradient entries (host ``grad_kernel``) that the rule makes NaN."""
    grad_outputs = _host(grad_outputs)
    view = _channels_last_view(grad_outputs, problem.channels_last)
    flat = grad_kernel.reshape(*grad_kernel.shape[:-2], -1)  # (*taps, C*m), a view
    for o in channels:
        nonfinite = (~np.isfinite(view[..., o])).any(axis=0)  # spatial
        for tap, mask in _tap_masks(problem):
            if (nonfinite & mask).any():
                flat[tap + (o,)] = np.nan
