"""Weight and activity regularizers with Keras' formulas, defaults and configs, plus their gradients.

``L1(l1)(x) = l1 * sum(|x|)``, ``L2(l2)(x) = l2 * sum(x**2)``,
``L1L2(l1, l2)(x)`` is their sum.  Keras' defaults: ``L1(l1=0.01)``,
``L2(l2=0.01)``, ``L1L2(l1=0.0, l2=0.0)``; identifiers ``"l1"``, ``"l2"``,
``"l1l2"`` (and ``"l1_l2"``) and the class names.

``reg.gradient(x)`` is the derivative of ``reg(x)`` with respect to ``x``
(``l1 * sign(x)``, zero at zero, as automatic differentiation gives;
``2 * l2 * x``); layers add it to their weight gradients.
"""

from __future__ import annotations

import numpy as np

from ._registry import ClassRegistry, Configurable, non_negative_float


class Regularizer(Configurable):
    """Base class: ``reg(x)`` is the penalty, ``reg.gradient(x)`` its derivative with respect to ``x``."""

    def __call__(self, x):  # pragma: no cover - abstract
        """The penalty of ``x`` (a scalar)."""
        raise NotImplementedError

    def gradient(self, x):  # pragma: no cover - abstract
        """The derivative of the penalty with respect to ``x`` (an array of its shape)."""
        raise NotImplementedError


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = non_negative_float(0.0 if l1 is None else l1, "l1")
        self.l2 = non_negative_float(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        x = np.asarray(x)
        penalty = x.dtype.type(0) if x.dtype.kind == "f" else 0.0
        if self.l1:
            penalty = penalty + self.l1 * np.sum(np.abs(x))
        if self.l2:
            penalty = penalty + self.l2 * np.sum(np.square(x))
        return penalty

    def gradient(self, x):
        x = np.asarray(x)
        grad = np.zeros_like(x)
        if self.l1:
            grad += self.l1 * np.sign(x)
        if self.l2:
            grad += (2.0 * self.l2) * x
        return grad

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1 * sum(|x|)``."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(x**2)``."""

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


_REGISTRY = ClassRegistry("regularizer", "keras.regularizers", [L1, L2, L1L2], aliases={"l1_l2": L1L2})


def get(identifier):
    """A regularizer from a name (``"l2"``, ``"L1L2"``), a config dict, an instance or None.

    Raises
    ------
    ValueError
        ``Could not interpret regularizer identifier: ...`` for anything else.
    """
    return _REGISTRY.get(identifier)


def serialize(regularizer):
    """Keras' ``{"module", "class_name", "config", "registered_name"}`` dict (None for None)."""
    return _REGISTRY.serialize(regularizer)


__all__ = ["L1", "L1L2", "L2", "Regularizer", "get", "serialize"]
