"""Activations on the GPU: one elementwise pass over a device array, ``f(z)`` or ``grad * f'(z)``.

The GPU forward and backward of ``activation=`` run the convolution kernels, then this pass in
place on their (fresh) output; the backward recomputes the pre-activation with the forward kernels
and turns it into the gradient at the pre-activation.  Formulas are those of
:mod:`numba_dwconv.activations`, evaluated in float32 (float16 data) or the array's dtype.
A kernel is compiled per activation, mode and dtype on first use.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

from .inline import device_function

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


_device = device_function  # inlined by LLVM (the simulator: a plain device function)


@_device
def _sigmoid(v):
    e = math.exp(-abs(v))
    return 1 / (1 + e) if v >= 0 else e / (1 + e)


@_device
def _softplus(v):
    return max(v, 0) + math.log1p(math.exp(-abs(v)))


@_device
def _hard_sigmoid(v):
    return min(max(v / 6 + 0.5, 0.0), 1.0)


@_device
def _phi(v):
    return 0.5 * math.erfc(-v * _INV_SQRT2)


_FORMULAS = {
    "linear": (lambda v: v, lambda v: 1.0),
    "relu": (lambda v: v if v > 0 or v != v else 0.0, lambda v: 1.0 if v > 0 else 0.0),
    "relu6": (lambda v: 6.0 if v > 6 else (v if v > 0 or v != v else 0.0), lambda v: 1.0 if 0 < v < 6 else 0.0),
    "leaky_relu": (lambda v: v if v > 0 else 0.2 * v, lambda v: 1.0 if v > 0 else 0.2),
    "elu": (lambda v: v if v > 0 else math.expm1(min(v, 0.0)), lambda v: 1.0 if v > 0 else math.exp(min(v, 0.0))),
    "selu": (lambda v: _SELU_SCALE * (v if v > 0 else _SELU_ALPHA * math.expm1(min(v, 0.0))),
             lambda v: _SELU_SCALE * (1.0 if v > 0 else _SELU_ALPHA * math.exp(min(v, 0.0)))),
    "gelu": (lambda v: v * _phi(v), lambda v: _phi(v) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)),
    "sigmoid": (_sigmoid, lambda v: _sigmoid(v) * (1 - _sigmoid(v))),
    "hard_sigmoid": (_hard_sigmoid, lambda v: 1 / 6 if -3 < v < 3 else 0.0),
    "tanh": (lambda v: math.tanh(v), lambda v: 1 - math.tanh(v) ** 2),
    "silu": (lambda v: v * _sigmoid(v), lambda v: _sigmoid(v) * (1 + v * (1 - _sigmoid(v)))),
    "hard_silu": (lambda v: v * _hard_sigmoid(v), lambda v: _hard_sigmoid(v) + (v / 6 if -3 < v < 3 else 0.0)),
    "softplus": (_softplus, _sigmoid),
    "softsign": (lambda v: v / (1 + abs(v)), lambda v: 1 / (1 + abs(v)) ** 2),
    "mish": (lambda v: v * math.tanh(_softplus(v)),
             lambda v: math.tanh(_softplus(v)) + v * _sigmoid(v) * (1 - math.tanh(_softplus(v)) ** 2)),
    "exponential": (lambda v: math.exp(v), lambda v: math.exp(v)),
}


@functools.lru_cache(maxsize=None)
def _kernel(name: str, derivative: bool, half: bool):
    formula = _device(_FORMULAS[name][1 if derivative else 0])
    if derivative:
        @cuda.jit
        def times_slope(a, g):
            i = cuda.grid(1)
            while i < a.size:
                v = float32(a[i]) if half else a[i]
                a[i] = g[i] * formula(v)
                i += cuda.gridsize(1)
        return times_slope

    @cuda.jit
    def apply(a, g):
        i = cuda.grid(1)
        while i < a.size:
            v = float32(a[i]) if half else a[i]
            a[i] = formula(v)
            i += cuda.gridsize(1)
    return apply


def activate(array, name: str, grad_outputs=None, stream=0):
    """In place on a C-contiguous device array: ``f(array)``, or ``grad_outputs * f'(array)``; returns it."""
    from ..activations import ALIASES

    name = ALIASES[name].name if name in ALIASES else name
    n = array.size
    if n == 0 or (name == "linear" and grad_outputs is None):
        return array
    flat = array.reshape(n)
    grad = flat if grad_outputs is None else grad_outputs.reshape(n)
    threads = 256
    blocks = max(1, min(-(-n // threads), 4096))
    _kernel(name, grad_outputs is not None, np.dtype(array.dtype) == np.float16)[blocks, threads, stream](flat, grad)
    return array
