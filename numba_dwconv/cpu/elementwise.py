"""Elementwise CPU kernels for activations NumPy has no ufunc for (``erf``-based GELU).

Compiled on first use like every kernel of the package (``import numba_dwconv``
compiles nothing).  Both take any shape and return a new array of the input's
dtype (the arithmetic runs in double precision and is rounded once).
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import launch, parallel_kernel, task_share

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@parallel_kernel
def _gelu_flat(part, parts, x, out):
    tasks_lo, tasks_hi = task_share(x.size, part, parts)
    for i in range(tasks_lo, tasks_hi):
        v = x[i]
        out[i] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


@parallel_kernel
def _gelu_derivative_flat(part, parts, x, out):
    tasks_lo, tasks_hi = task_share(x.size, part, parts)
    for i in range(tasks_lo, tasks_hi):
        v = x[i]
        out[i] = 0.5 * (1.0 + math.erf(v * _INV_SQRT2)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)


def _apply(kernel, x):
    x = np.asarray(x)
    if x.dtype == np.float16:  # numba's CPU target has no float16 arithmetic: go through float32
        return _apply(kernel, x.astype(np.float32)).astype(np.float16)
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    if x.size:
        launch(kernel, x.reshape(-1), out.reshape(-1))
    return out


def gelu(x):
    """``0.5 x (1 + erf(x / sqrt(2)))``."""
    return _apply(_gelu_flat, x)


def gelu_derivative(x):
    """``Phi(x) + x phi(x)``: the standard normal CDF plus x times its density."""
    return _apply(_gelu_derivative_flat, x)
