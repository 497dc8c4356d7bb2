"""Weight constraints with Keras' formulas, defaults and configs.

With ``eps = 1e-7`` and ``n = sqrt(sum(w**2, axis, keepdims=True))``:

* ``MaxNorm(max_value=2, axis=0)``: ``w * clip(n, 0, max_value) / (eps + n)``
* ``UnitNorm(axis=0)``: ``w / (eps + n)``
* ``MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0, axis=0)``:
  ``w * (rate * clip(n, min_value, max_value) + (1 - rate) * n) / (eps + n)``
* ``NonNeg()``: ``max(w, 0)``

Identifiers ``"max_norm"``, ``"min_max_norm"``, ``"non_neg"``, ``"unit_norm"`` and
the class names.  Constraints are applied by the optimizers after each update
(:mod:`numba_dwconv.optimizers`), never in the forward pass.  ``axis`` may be an
int or a list of ints; for a depthwise kernel ``(K, C, m)`` the default
``axis=0`` takes the norm over the taps of each (channel, multiplier) filter.
"""

from __future__ import annotations

import numpy as np

from ._registry import ClassRegistry, Configurable

EPSILON = 1e-7


def _norms(w, axis):
    axis = tuple(axis) if isinstance(axis, list) else axis
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


class Constraint(Configurable):
    """Base class: ``constraint(w)`` returns the projected weights (a new array of ``w``'s dtype)."""

    def __call__(self, w):  # pragma: no cover - abstract
        """The projection of ``w``."""
        raise NotImplementedError


class MaxNorm(Constraint):
    """Rescale each slice along ``axis`` whose norm exceeds ``max_value`` to that norm."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return (w * (desired / (EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Pull each slice's norm into ``[min_value, max_value]`` at ``rate``."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        norms = _norms(w, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return (w * (desired / (EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


class NonNeg(Constraint):
    """Negative weights become zero."""

    def __call__(self, w):
        w = np.asarray(w)
        return np.maximum(w, w.dtype.type(0))


class UnitNorm(Constraint):
    """Each slice along ``axis`` divided by its norm."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        return (w / (EPSILON + _norms(w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"axis": self.axis}


_REGISTRY = ClassRegistry("constraint", "keras.constraints", [MaxNorm, MinMaxNorm, NonNeg, UnitNorm])


def get(identifier):
    """A constraint from a name (``"max_norm"``, ``"MaxNorm"``), a config dict, an instance or None.

    Raises
    ------
    ValueError
        ``Could not interpret constraint identifier: ...`` for anything else.
    """
    return _REGISTRY.get(identifier)


def serialize(constraint):
    """Keras' ``{"module", "class_name", "config", "registered_name"}`` dict (None for None)."""
    return _REGISTRY.serialize(constraint)


__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get", "serialize"]
