"""Activations applied inside the forward kernels, on each task's outputs while they are in cache.

A forward kernel takes one extra argument, ``act`` (from :func:`activation`), and after a task has
written a block of outputs (the pre-activations ``z``) it calls ``apply_activation(block, grad_block,
act)``:

* ``activation(name, dtype)``: the block becomes ``f(z)``;
* ``activation(name, dtype, derivative=True)``: the block becomes ``grad * f'(z)`` (what the backward
  pass of an activated convolution feeds to the gradient kernels, with the pre-activation
  recomputed instead of stored);
* ``activation(None, dtype)``: nothing happens (``act`` is ``(0, 0)``: no function to call).

``act`` is ``(address, code)``: the address of a compiled C function (one per activation, dtype and
mode; ``code`` is passed to it) called through a pointer once per block.  Integers, not numba's
first-class function objects, whose unboxing costs ~100 us per kernel call.  So a kernel
compiles once whatever the activation, and the activations compile once, into the on-disk cache.
``grad`` is only read in derivative mode (callers pass the output array itself otherwise).

Formulas are those of :mod:`numba_dwconv.activations` (Keras').  In float32, ``exp`` (and through it
sigmoid, silu, softplus, mish) is a vectorisable polynomial accurate to 1 ulp, with the same
infinities, NaNs and denormals as ``np.exp``; float64 uses the C library's functions.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, types
from numba.extending import intrinsic, overload

from .._jit import launch, parallel_kernel, scalar_kernel, serial_kernel, task_share

NAMES = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid", "tanh",
         "silu", "hard_silu", "softplus", "softsign", "mish", "exponential")
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def fusable(name) -> bool:
    """Whether ``name`` is an activation the kernels apply themselves."""
    return isinstance(name, str) and (name in NAMES or name in ALIASES)


# ---------------------------------------------------------------------------- float32 exp
@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits``."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_F32 = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F32(1.44269504088896341), _F32(0.693359375), _F32(-2.12194440e-4)
_EXP_HI, _EXP_LO = _F32(89.0), _F32(-103.97208)  # exp is inf above 88.7228, 0 below _EXP_LO (as np.exp)
_P0, _P1, _P2 = _F32(1.9875691500e-4), _F32(1.3981999507e-3), _F32(8.3334519073e-3)
_P3, _P4, _P5 = _F32(4.1665795894e-2), _F32(1.6666665459e-1), _F32(5.0000001201e-1)


@scalar_kernel
def _exp32(x):
    """``exp(x)`` for float32 ``x`` without a library call (vectorises); NaN, +-inf and denormals as ``np.exp``."""
    clamped = min(max(x, _EXP_LO), _EXP_HI)
    n = np.floor(clamped * _LOG2E + _F32(0.5))  # float32 (math.floor would give an int64)
    r = (clamped - n * _LN2_HI) - n * _LN2_LO
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = p * (r * r) + r + _F32(1.0)
    k = np.int32(n)
    half = k >> np.int32(1)  # 2**n as two normal factors: denormal results and overflow to inf come out right
    value = (p * _float32_from_bits((half + np.int32(127)) << np.int32(23))) * \
        _float32_from_bits((k - half + np.int32(127)) << np.int32(23))
    return x if x != x else (_F32(0.0) if x < _EXP_LO else value)


# The dtype-dispatching overloads below are compiled like the formulas they choose: LLVM inlines them
# (left to its heuristics, the GELU derivative stayed a call per element, 0.04 Gelem/s).
_FORCE_INLINE = {"forceinline": True}


def _exp(x):
    raise NotImplementedError("_exp is only callable inside numba kernels")


@overload(_exp, jit_options=_FORCE_INLINE)
def _exp_impl(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: math.exp(x)


def _one(x):
    raise NotImplementedError("_one is only callable inside numba kernels")


@overload(_one, jit_options=_FORCE_INLINE)
def _one_impl(x):
    if x == types.float32:
        return lambda x: _F32(1.0)
    return lambda x: 1.0


# ---------------------------------------------------------------------------- formulas
# Scalar functions (plain numba functions: LLVM inlines them into the kernels' loops, which then vectorise).
@scalar_kernel
def _sigmoid(x):
    e = _exp(-abs(x))
    one = _one(x)  # in x's dtype: float32 stays float32
    r = one / (one + e)  # one division for both branches (a vector division costs more than the rest)
    return r if x >= 0 else e * r


# Numerical Recipes' erfc (Chebyshev fit, relative error < 1.2e-7 for z >= 0), in float32.
_E0, _E1, _E2, _E3, _E4 = _F32(-1.26551223), _F32(1.00002368), _F32(0.37409196), _F32(0.09678418), _F32(-0.18628806)
_E5, _E6, _E7, _E8, _E9 = _F32(0.27886807), _F32(-1.13520398), _F32(1.48851587), _F32(-0.82215223), _F32(0.17087277)
_F32_INV_SQRT2, _F32_INV_SQRT_2PI = _F32(_INV_SQRT2), _F32(_INV_SQRT_2PI)


@scalar_kernel
def _phi32(x):
    """The standard normal CDF of float32 ``x``: ``erfc(-x / sqrt 2) / 2``, accurate relative to itself for x < 0.

    (No ``1 + erf`` cancellation: for x < -5 this is more accurate than the erf formula.)
    """
    z = abs(x) * _F32_INV_SQRT2
    t = _F32(1.0) / (_F32(1.0) + _F32(0.5) * z)
    poly = _E0 + t * (_E1 + t * (_E2 + t * (_E3 + t * (_E4 + t * (_E5 + t * (_E6 + t * (_E7 + t * (_E8 + t * _E9))))))))
    tail = _F32(0.5) * t * _exp32(poly - z * z)  # erfc(z) / 2
    return tail if x < 0 else _F32(1.0) - tail


@scalar_kernel
def _gelu32(x):
    return x * _phi32(x)


@scalar_kernel
def _gelu32_derivative(x):
    return _phi32(x) + x * _F32_INV_SQRT_2PI * _exp32(_F32(-0.5) * x * x)


@scalar_kernel
def _gelu64(x):
    v = np.float64(x)
    return 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


@scalar_kernel
def _gelu64_derivative(x):
    v = np.float64(x)
    return 0.5 * (1.0 + math.erf(v * _INV_SQRT2)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)


def _gelu(x):
    raise NotImplementedError("_gelu is only callable inside numba kernels")


def _gelu_derivative(x):
    raise NotImplementedError("_gelu_derivative is only callable inside numba kernels")


@overload(_gelu, jit_options=_FORCE_INLINE)
def _gelu_impl(x):
    if x == types.float32:
        return lambda x: _gelu32(x)
    return lambda x: _gelu64(x)


@overload(_gelu_derivative, jit_options=_FORCE_INLINE)
def _gelu_derivative_impl(x):
    if x == types.float32:
        return lambda x: _gelu32_derivative(x)
    return lambda x: _gelu64_derivative(x)


@scalar_kernel
def _softplus(x):
    return max(x, 0.0) + math.log1p(_exp(-abs(x)))


@scalar_kernel
def _relu(x):
    return x if x > 0 else (x if x != x else 0.0)  # NaN stays NaN (as np.maximum)


@scalar_kernel
def _step(x):
    return 1.0 if x > 0 else 0.0


@scalar_kernel
def _relu6(x):
    return 6.0 if x > 6 else _relu(x)


@scalar_kernel
def _relu6_derivative(x):
    return 1.0 if 0 < x < 6 else 0.0


@scalar_kernel
def _leaky_relu(x):
    return x if x > 0 else 0.2 * x


@scalar_kernel
def _leaky_relu_derivative(x):
    return 1.0 if x > 0 else 0.2


@scalar_kernel
def _elu(x):
    return x if x > 0 else math.expm1(min(x, 0.0))


@scalar_kernel
def _elu_derivative(x):
    return 1.0 if x > 0 else math.exp(min(x, 0.0))


@scalar_kernel
def _selu(x):
    return _SELU_SCALE * (x if x > 0 else _SELU_ALPHA * math.expm1(min(x, 0.0)))


@scalar_kernel
def _selu_derivative(x):
    return _SELU_SCALE * (1.0 if x > 0 else _SELU_ALPHA * math.exp(min(x, 0.0)))


@scalar_kernel
def _sigmoid_derivative(x):
    s = _sigmoid(x)
    return s * (1 - s)


@scalar_kernel
def _hard_sigmoid(x):
    v = x / 6 + 0.5
    return 1.0 if v > 1 else (0.0 if v < 0 else v)


@scalar_kernel
def _hard_sigmoid_derivative(x):
    return 1 / 6 if -3 < x < 3 else 0.0


@scalar_kernel
def _tanh(x):
    return math.tanh(x)


@scalar_kernel
def _tanh_derivative(x):
    t = math.tanh(x)
    return 1 - t * t


@scalar_kernel
def _silu(x):
    return x * _sigmoid(x)


@scalar_kernel
def _silu_derivative(x):
    s = _sigmoid(x)
    return s + x * s * (_one(x) - s)


@scalar_kernel
def _hard_silu(x):
    return x * _hard_sigmoid(x)


@scalar_kernel
def _hard_silu_derivative(x):
    return _hard_sigmoid(x) + (x / 6 if -3 < x < 3 else 0.0)


@scalar_kernel
def _softsign(x):
    return x / (1 + abs(x))


@scalar_kernel
def _softsign_derivative(x):
    d = 1 + abs(x)
    return 1 / (d * d)


@scalar_kernel
def _mish(x):
    return x * math.tanh(_softplus(x))


@scalar_kernel
def _mish_derivative(x):
    t = math.tanh(_softplus(x))
    return t + x * _sigmoid(x) * (1 - t * t)


@scalar_kernel
def _exponential(x):
    return _exp(x)


_SIGNATURES = {
    np.dtype(np.float32): types.void(types.CPointer(types.float32), types.CPointer(types.float32), types.int64,
                                     types.int64),
    np.dtype(np.float64): types.void(types.CPointer(types.float64), types.CPointer(types.float64), types.int64,
                                     types.int64),
}


_FORMULAS = {
    "linear": (None, None), "relu": (_relu, _step), "relu6": (_relu6, _relu6_derivative),
    "leaky_relu": (_leaky_relu, _leaky_relu_derivative), "elu": (_elu, _elu_derivative),
    "selu": (_selu, _selu_derivative), "gelu": (_gelu, _gelu_derivative), "sigmoid": (_sigmoid, _sigmoid_derivative),
    "hard_sigmoid": (_hard_sigmoid, _hard_sigmoid_derivative), "tanh": (_tanh, _tanh_derivative),
    "silu": (_silu, _silu_derivative), "hard_silu": (_hard_silu, _hard_silu_derivative),
    "softplus": (_softplus, _sigmoid), "softsign": (_softsign, _softsign_derivative), "mish": (_mish, _mish_derivative),
    "exponential": (_exponential, _exponential),
}


def _block_body(formula, derivative: bool):
    """The C function body applying ``formula`` to ``n`` values (times ``g`` in derivative mode)."""
    if formula is None:  # linear: only its derivative needs a function (activation() calls none for it)
        def copy_gradient(p, g, n, code):
            a = carray(p, n)
            d = carray(g, n)
            for i in range(n):
                a[i] = d[i]
        return copy_gradient
    if derivative:
        def times_slope(p, g, n, code):
            a = carray(p, n)
            d = carray(g, n)
            for i in range(n):
                a[i] = d[i] * formula(a[i])
        return times_slope

    def apply(p, g, n, code):
        a = carray(p, n)
        for i in range(n):
            a[i] = formula(a[i])
    return apply


_COMPILED: dict = {}


def _block_function(name, dtype, derivative: bool):
    """The compiled block function of one activation, dtype and mode (compiled on first use in a process)."""
    key = (name, np.dtype(dtype), bool(derivative))
    func = _COMPILED.get(key)
    if func is None:
        formula = _FORMULAS[name][1 if derivative else 0]
        func = _COMPILED[key] = cfunc(_SIGNATURES[key[1]], error_model="numpy", fastmath={"contract"})(
            _block_body(formula, derivative))
    return func


def activation(name, dtype, derivative: bool = False) -> tuple:
    """The ``act`` argument of a forward kernel: activation ``name`` (None: none) in ``dtype``."""
    name = "linear" if name is None else ALIASES.get(name, name)
    if name == "linear" and not derivative:
        return (0, 0)  # nothing to call (and nothing to compile in this process)
    return (_block_function(name, dtype, derivative).address, 0)


@intrinsic
def _call_block_function(typingctx, address, block, grad, code):
    """Call the C function at ``address`` on the blocks' first elements, their size and ``code``."""
    sig = types.void(address, block, grad, code)

    def codegen(context, builder, signature, args):
        address, block, grad, code = args
        block = context.make_array(signature.args[1])(context, builder, block)
        grad = context.make_array(signature.args[2])(context, builder, grad)
        size = block.nitems
        function_type = ir.FunctionType(ir.VoidType(), [block.data.type, grad.data.type, size.type, code.type])
        builder.call(builder.inttoptr(address, function_type.as_pointer()), [block.data, grad.data, size, code])
        return context.get_dummy_value()

    return sig, codegen


@serial_kernel
def apply_activation(block, grad, act):
    """Inside a kernel: ``block = f(block)`` or ``block = grad * f'(block)`` (C-contiguous blocks; see the module)."""
    address, code = act
    if address != 0:
        _call_block_function(address, block, grad, code)


@parallel_kernel
def _apply_in_blocks(part, parts, flat, grad, act, block):
    tasks_lo, tasks_hi = task_share(-(-flat.shape[0] // block), part, parts)
    for task in range(tasks_lo, tasks_hi):
        lo = task * block
        hi = min(lo + block, flat.shape[0])
        apply_activation(flat[lo:hi], grad[lo:hi], act)


def activate(array, name, grad_outputs=None):
    """``array = f(array)`` in place (or ``grad_outputs * f'(array)`` with ``grad_outputs``), multi-threaded.

    For results the kernels could not activate themselves (the separable ops' pointwise step).
    ``array`` must be C-contiguous; returns it.
    """
    if array.size:
        flat = array.reshape(-1)
        grad = flat if grad_outputs is None else np.ascontiguousarray(grad_outputs, array.dtype).reshape(-1)
        launch(_apply_in_blocks, flat, grad, activation(name, array.dtype, grad_outputs is not None), 1 << 14)
    return array
