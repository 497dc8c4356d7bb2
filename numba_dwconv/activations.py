"""Activation functions with Keras' names and formulas, each with its derivative.

Each built-in activation is an :class:`Activation`: ``act(x)`` applies it
elementwise to a NumPy array (keeping the dtype) and ``act.derivative(x)`` gives
``d act(x) / dx`` at the same (pre-activation) points, used by the layers'
backward pass.  Formulas (Keras 3 defaults):

=============  ==========================================  ==============================
name           f(x)                                        f'(x)
=============  ==========================================  ==============================
linear         x                                           1
relu           max(x, 0)                                   1 if x > 0 else 0
relu6          min(max(x, 0), 6)                           1 if 0 < x < 6 else 0
leaky_relu     x if x > 0 else 0.2 x                       1 if x > 0 else 0.2
elu            x if x > 0 else exp(x) - 1                  1 if x > 0 else exp(x)
selu           scale * elu(x, alpha)                       scale * elu'(x, alpha)
gelu           x Phi(x) (exact, with erf)                  Phi(x) + x phi(x)
sigmoid        1 / (1 + exp(-x))                           s (1 - s)
hard_sigmoid   clip(x / 6 + 1/2, 0, 1)                     1/6 if -3 < x < 3 else 0
tanh           tanh(x)                                     1 - tanh(x)^2
silu / swish   x sigmoid(x)                                s + x s (1 - s)
hard_silu      x hard_sigmoid(x) (alias hard_swish)        hs(x) + x/6 if -3 < x < 3
softplus       log(1 + exp(x))                             sigmoid(x)
softsign       x / (1 + |x|)                               1 / (1 + |x|)^2
mish           x tanh(softplus(x))                         t + x sigmoid(x) (1 - t^2)
exponential    exp(x)                                      exp(x)
=============  ==========================================  ==============================

At the kinks (relu at 0, ...) the derivative is the one automatic differentiation
gives (the value of the branch that excludes the kink).

``get`` accepts a name, ``None`` (linear), an :class:`Activation` or any
callable.  A plain callable works in the forward pass; the backward pass needs
``callable.derivative(x)`` and raises a TypeError without it.
"""

from __future__ import annotations

import numpy as np

from ._registry import interpret_error

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_RELU_SLOPE = 0.2


class Activation:
    """A named elementwise function with its derivative.

    Parameters
    ----------
    name : str
        Keras identifier, used by :func:`serialize`.
    forward, derivative : callable
        ``f(x)`` and ``f'(x)`` on NumPy arrays, each returning a new array of ``x``'s dtype.
    """

    def __init__(self, name: str, forward, derivative):
        self.name = name
        self._forward = forward
        self._derivative = derivative
        self.__name__ = name
        self.__doc__ = f"The ``{name}`` activation (see :mod:`numba_dwconv.activations`)."

    def __call__(self, x):
        """``f(x)`` elementwise."""
        return self._forward(np.asarray(x))

    def derivative(self, x):
        """``d f(x) / dx`` elementwise, at the pre-activation values ``x``."""
        return self._derivative(np.asarray(x))

    def __repr__(self) -> str:
        return f"<activation {self.name}>"


def _select(condition, when_true, when_false, like):
    """``np.where`` with the result in ``like``'s dtype (scalars do not promote it)."""
    return np.where(condition, when_true, when_false).astype(like.dtype, copy=False)


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _elu_derivative(x, alpha=1.0):
    return _select(x > 0, 1, alpha * np.exp(np.minimum(x, 0)), x)


def _hard_sigmoid(x):
    return np.clip(x / 6 + 0.5, 0, 1)


def _inside_three(x):
    return (x > -3) & (x < 3)


def _gelu(x):
    from .cpu import elementwise

    return elementwise.gelu(x)


def _gelu_derivative(x):
    from .cpu import elementwise

    return elementwise.gelu_derivative(x)


def _silu_derivative(x):
    s = _sigmoid(x)
    return s + x * s * (1 - s)


def _mish_derivative(x):
    t = np.tanh(_softplus(x))
    return t + x * _sigmoid(x) * (1 - t * t)


linear = Activation("linear", lambda x: x.copy(), np.ones_like)
relu = Activation("relu", lambda x: np.maximum(x, 0), lambda x: _select(x > 0, 1, 0, x))
relu6 = Activation("relu6", lambda x: np.clip(x, 0, 6), lambda x: _select((x > 0) & (x < 6), 1, 0, x))
leaky_relu = Activation("leaky_relu", lambda x: _select(x > 0, x, LEAKY_RELU_SLOPE * x, x),
                        lambda x: _select(x > 0, 1, LEAKY_RELU_SLOPE, x))
elu = Activation("elu", _elu, _elu_derivative)
selu = Activation("selu", lambda x: SELU_SCALE * _elu(x, SELU_ALPHA),
                  lambda x: SELU_SCALE * _elu_derivative(x, SELU_ALPHA))
gelu = Activation("gelu", _gelu, _gelu_derivative)
sigmoid = Activation("sigmoid", _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x)))
hard_sigmoid = Activation("hard_sigmoid", _hard_sigmoid, lambda x: _select(_inside_three(x), 1 / 6, 0, x))
tanh = Activation("tanh", np.tanh, lambda x: 1 - np.square(np.tanh(x)))
silu = Activation("silu", lambda x: x * _sigmoid(x), _silu_derivative)
hard_silu = Activation("hard_silu", lambda x: x * _hard_sigmoid(x),
                       lambda x: _hard_sigmoid(x) + _select(_inside_three(x), x / 6, 0, x))
softplus = Activation("softplus", _softplus, _sigmoid)
softsign = Activation("softsign", lambda x: x / (1 + np.abs(x)), lambda x: 1 / np.square(1 + np.abs(x)))
mish = Activation("mish", lambda x: x * np.tanh(_softplus(x)), _mish_derivative)
exponential = Activation("exponential", np.exp, np.exp)

ALL = {a.name: a for a in (linear, relu, relu6, leaky_relu, elu, selu, gelu, sigmoid, hard_sigmoid, tanh, silu,
                           hard_silu, softplus, softsign, mish, exponential)}
ALIASES = {"swish": silu, "hard_swish": hard_silu}


def get(identifier):
    """An activation from a name, ``None`` (linear), an :class:`Activation` or a callable.

    Raises
    ------
    ValueError
        ``Could not interpret activation function identifier: ...`` for unknown names
        and non-callables.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        found = ALL.get(identifier) or ALIASES.get(identifier)
        if found is None:
            raise interpret_error("activation function", identifier)
        return found
    if isinstance(identifier, dict) and isinstance(identifier.get("config"), str):  # Keras' function form
        return get(identifier["config"])
    if callable(identifier):
        return identifier
    raise interpret_error("activation function", identifier)


def serialize(activation) -> str:
    """The activation's name (``"linear"`` for None); a plain callable gives its ``__name__``."""
    if activation is None:
        return "linear"
    return getattr(activation, "name", None) or getattr(activation, "__name__", repr(activation))


def derivative_of(activation):
    """``activation.derivative``, or a TypeError saying the backward pass needs one."""
    derivative = getattr(activation, "derivative", None)
    if not callable(derivative):
        raise TypeError(
            f"The activation {activation!r} has no derivative, so the backward pass cannot go through it. Give it a "
            "`derivative(x)` attribute returning d activation(x) / dx, or use a built-in activation name"
        )
    return derivative


__all__ = ["ALL", "Activation", "derivative_of", "get", "serialize", *ALL, "swish", "hard_swish"]
swish = silu
hard_swish = hard_silu
