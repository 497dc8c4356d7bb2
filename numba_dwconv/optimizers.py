"""Optimizers with Keras' update rules: ``opt.step(layer)`` updates weights in place.

``step`` reads ``target.trainable_weights``, ``target.gradients`` (set by
``target.backward``) and ``target.trainable_constraints`` (aligned with the
weights; None where a weight has none), updates every weight in place, then
applies each weight's constraint -- as Keras applies ``variable.constraint``
after ``apply_gradients``.  ``target`` is a layer (or anything with those three
attributes).  Optimizer state (momenta) is kept per weight array.

Update rules (``g`` the gradient, ``t`` the step number starting at 1):

* ``SGD(learning_rate=0.01, momentum=0.0, nesterov=False)``:
  without momentum ``w -= lr * g``; with it ``v = momentum * v - lr * g`` and
  ``w += v`` (nesterov: ``w += momentum * v - lr * g``).
* ``Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)``:
  ``m += (g - m) (1 - beta_1)``, ``v += (g^2 - v) (1 - beta_2)``,
  ``w -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)``.
"""

from __future__ import annotations

import math

import numpy as np

from ._registry import is_real


def _positive_float(value, name):
    if not is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive float. Received: {name}={value!r}")
    return float(value)


def _unit_interval(value, name, *, closed):
    if not is_real(value) or not (value >= 0 and (value <= 1 if closed else value < 1)):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"`{name}` must be a float between {interval}. Received: {name}={value!r}")
    return float(value)


class Optimizer:
    """Base class: per-weight state and the ``step`` loop; subclasses implement ``_update``.

    Attributes
    ----------
    learning_rate : float
    iterations : int
        Number of steps taken.
    """

    def __init__(self, learning_rate):
        self.learning_rate = _positive_float(learning_rate, "learning_rate")
        self.iterations = 0
        self._slots: dict[int, tuple[np.ndarray, dict]] = {}

    def _state(self, weight: np.ndarray) -> dict:
        entry = self._slots.get(id(weight))
        if entry is None or entry[0] is not weight:
            entry = (weight, {})
            self._slots[id(weight)] = entry
        return entry[1]

    def step(self, target) -> None:
        """One update of every trainable weight of ``target`` from ``target.gradients``, then its constraint."""
        weights = list(target.trainable_weights)
        gradients = getattr(target, "gradients", None)
        if gradients is None:
            raise ValueError(
                f"{getattr(target, 'name', target)!r} has no gradients: call its backward() before step()"
            )
        gradients = list(gradients)
        if len(gradients) != len(weights):
            raise ValueError(
                f"{getattr(target, 'name', target)!r} has {len(weights)} trainable weights but {len(gradients)} "
                "gradients: call backward() again after changing `trainable`"
            )
        constraints = list(getattr(target, "trainable_constraints", [None] * len(weights)))
        for weight, grad in zip(weights, gradients):
            if np.shape(grad) != weight.shape:
                raise ValueError(f"Gradient shape {np.shape(grad)} does not match weight shape {weight.shape}")
        step_number = self.iterations + 1
        for weight, grad, constraint in zip(weights, gradients, constraints):
            self._update(weight, np.asarray(grad, dtype=weight.dtype), self._state(weight), step_number)
            if constraint is not None:
                weight[...] = constraint(weight)
        self.iterations = step_number

    def _update(self, weight, grad, state, step_number):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {"learning_rate": self.learning_rate}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, Keras' rule."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = _unit_interval(momentum, "momentum", closed=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"`nesterov` must be a boolean. Received: nesterov={nesterov!r}")
        self.nesterov = bool(nesterov)

    def _update(self, weight, grad, state, step_number):
        lr = weight.dtype.type(self.learning_rate)
        if self.momentum == 0:
            weight -= lr * grad
            return
        momentum = weight.dtype.type(self.momentum)
        velocity = state.setdefault("velocity", np.zeros_like(weight))
        velocity *= momentum
        velocity -= lr * grad
        if self.nesterov:
            weight += momentum * velocity - lr * grad
        else:
            weight += velocity

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam, Keras' rule (bias correction folded into the step size)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1 = _unit_interval(beta_1, "beta_1", closed=False)
        self.beta_2 = _unit_interval(beta_2, "beta_2", closed=False)
        self.epsilon = _positive_float(epsilon, "epsilon")

    def _update(self, weight, grad, state, step_number):
        dtype = weight.dtype.type
        m = state.setdefault("m", np.zeros_like(weight))
        v = state.setdefault("v", np.zeros_like(weight))
        alpha = self.learning_rate * math.sqrt(1 - self.beta_2**step_number) / (1 - self.beta_1**step_number)
        m += (grad - m) * dtype(1 - self.beta_1)
        v += (np.square(grad) - v) * dtype(1 - self.beta_2)
        weight -= (m * dtype(alpha)) / (np.sqrt(v) + dtype(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


__all__ = ["SGD", "Adam", "Optimizer"]
