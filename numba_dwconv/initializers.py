"""Weight initializers with Keras' names, defaults, fan rules and configs.

Every initializer is called as ``init(shape, dtype="float32")`` and returns a new
NumPy array.  Fans follow Keras: for a shape of rank >= 3 the receptive field is
``prod(shape[:-2])``, ``fan_in = shape[-2] * receptive`` and
``fan_out = shape[-1] * receptive`` (rank 2: the two dims; rank 1: both fans are
the length).  A depthwise kernel ``(K, C, m)`` thus has ``fan_in = K*C`` and
``fan_out = K*m``.

Seeds: an initializer built with an int ``seed`` returns the same values at every
call (as Keras 3's do); with ``seed=None`` every call draws fresh values.  The
draws come from NumPy's PCG64 generator, so values do not match Keras' bit for
bit -- only in distribution.
"""

from __future__ import annotations

import math

import numpy as np

from ._registry import ClassRegistry, Configurable

# Standard deviation of a unit normal truncated to [-2, 2]: dividing by it keeps
# the truncated draws' variance equal to the one asked for (Keras' constant).
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape, input_axes=None, output_axes=None) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape, Keras' rule.

    When both ``input_axes`` and ``output_axes`` are given (Keras 3.15), the fans are
    the products of the sizes of those axes; otherwise they follow the shape's rank.
    """
    shape = tuple(int(v) for v in shape)
    if input_axes is not None and output_axes is not None:
        for name, axes in (("input_axes", input_axes), ("output_axes", output_axes)):
            if any(not -len(shape) <= a < len(shape) for a in axes):
                raise ValueError(f"`{name}` names an axis outside a weight of shape {shape}. Received {name}={axes!r}")
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"`seed` must be None or a non-negative integer. Received: seed={seed!r}")
    return None if seed is None else int(seed)


def _check_axes(axes, name: str):
    """``axes`` as a list of ints (Keras' config form), or None."""
    if axes is None:
        return None
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, (bool, np.bool_)):
        axes = [axes]
    if not isinstance(axes, (list, tuple)) or any(
            isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) for a in axes):
        raise ValueError(f"`{name}` must be None or a list of integers (weight axes). Received {name}={axes!r}")
    return [int(a) for a in axes]


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype("float32" if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"Initializers make floating-point arrays. Received dtype={dtype}")
    return dtype


class Initializer(Configurable):
    """Base class: subclasses implement ``__call__(shape, dtype=None)`` and ``get_config()``."""

    def __call__(self, shape, dtype=None) -> np.ndarray:  # pragma: no cover - abstract
        """A new array of ``shape`` and ``dtype`` (default float32)."""
        raise NotImplementedError


class _Seeded(Initializer):
    """An initializer that draws random numbers from ``seed`` (fresh entropy when None)."""

    def __init__(self, seed=None):
        self.seed = _check_seed(seed)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


def _truncated_normal(rng, shape, mean, stddev):
    """Normal draws with everything beyond two standard deviations drawn again."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return mean + stddev * values


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=None):
        return np.zeros(shape, _float_dtype(dtype))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=None):
        return np.ones(shape, _float_dtype(dtype))


class Constant(Initializer):
    """Every element equal to ``value``."""

    def __init__(self, value=0.0):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"`value` must be a real number. Received value={value!r}")
        self.value = value

    def __call__(self, shape, dtype=None):
        return np.full(shape, self.value, _float_dtype(dtype))

    def get_config(self):
        return {"value": self.value}


class RandomUniform(_Seeded):
    """Uniform on ``[minval, maxval)``."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = minval
        self.maxval = maxval

    def __call__(self, shape, dtype=None):
        return self._rng().uniform(self.minval, self.maxval, shape).astype(_float_dtype(dtype))

    def get_config(self):
        return {"seed": self.seed, "minval": self.minval, "maxval": self.maxval}


class RandomNormal(_Seeded):
    """Normal with ``mean`` and ``stddev``."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = mean
        self.stddev = stddev

    def __call__(self, shape, dtype=None):
        return self._rng().normal(self.mean, self.stddev, shape).astype(_float_dtype(dtype))

    def get_config(self):
        return {"seed": self.seed, "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomNormal):
    """Normal with ``mean`` and ``stddev``, values beyond two standard deviations redrawn."""

    def __call__(self, shape, dtype=None):
        return _truncated_normal(self._rng(), shape, self.mean, self.stddev).astype(_float_dtype(dtype))


class VarianceScaling(_Seeded):
    """Draws whose variance is ``scale / n``, ``n`` the fan chosen by ``mode``.

    ``distribution``: ``truncated_normal`` (std ``sqrt(scale/n) / 0.8796...``, cut at
    two std), ``untruncated_normal`` (std ``sqrt(scale/n)``) or ``uniform`` (limit
    ``sqrt(3 scale / n)``).
    """

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None, input_axes=None,
                 output_axes=None):
        super().__init__(seed)
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer, np.floating)) \
                or not scale > 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale!r}")
        if mode not in self.MODES:
            raise ValueError(f"Invalid `mode` argument: expected one of {set(self.MODES)}. Received: mode={mode!r}")
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(
                f"Invalid `distribution` argument: expected one of {set(self.DISTRIBUTIONS)}. "
                f"Received: distribution={distribution!r}"
            )
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.input_axes = _check_axes(input_axes, "input_axes")
        self.output_axes = _check_axes(output_axes, "output_axes")

    def _fan(self, shape) -> float:
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        scale = self.scale / max(1.0, self._fan(shape))
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, shape).astype(dtype)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(scale), shape).astype(dtype)
        return _truncated_normal(rng, shape, 0.0, math.sqrt(scale) / _TRUNCATED_STD).astype(dtype)

    def get_config(self):
        return {"seed": self.seed, "scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "input_axes": self.input_axes, "output_axes": self.output_axes}


class _FixedVarianceScaling(VarianceScaling):
    """A named VarianceScaling: ``seed`` and the fan axes are configurable (Keras' Glorot/He/LeCun)."""

    FIXED = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(*self.FIXED, seed=seed, input_axes=input_axes, output_axes=output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """Uniform on ``[-limit, limit]``, ``limit = sqrt(6 / (fan_in + fan_out))``."""

    FIXED = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal, std ``sqrt(2 / (fan_in + fan_out))``."""

    FIXED = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """Uniform on ``[-limit, limit]``, ``limit = sqrt(6 / fan_in)``."""

    FIXED = (2.0, "fan_in", "uniform")


class HeNormal(_FixedVarianceScaling):
    """Truncated normal, std ``sqrt(2 / fan_in)``."""

    FIXED = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """Uniform on ``[-limit, limit]``, ``limit = sqrt(3 / fan_in)``."""

    FIXED = (1.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal, std ``sqrt(1 / fan_in)``."""

    FIXED = (1.0, "fan_in", "truncated_normal")


class Orthogonal(_Seeded):
    """An orthogonal matrix (times ``gain``) over ``(prod(shape[:-1]), shape[-1])``, reshaped to ``shape``."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        shape = tuple(int(v) for v in shape)
        if len(shape) < 2:
            raise ValueError(f"The Orthogonal initializer needs a shape of rank >= 2. Received: shape={shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        flat = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))  # makes the decomposition unique (uniformly distributed q)
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)

    def get_config(self):
        return {"seed": self.seed, "gain": self.gain}


_REGISTRY = ClassRegistry(
    "initializer", "keras.initializers",
    [Zeros, Ones, Constant, RandomUniform, RandomNormal, TruncatedNormal, VarianceScaling, GlorotUniform,
     GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal],
    aliases={"zero": Zeros, "one": Ones, "uniform": RandomUniform, "normal": RandomNormal},
)


def get(identifier):
    """An initializer from a name (``"glorot_uniform"``, ``"GlorotUniform"``), a config dict, an instance or None.

    Raises
    ------
    ValueError
        ``Could not interpret initializer identifier: ...`` for anything else.
    """
    return _REGISTRY.get(identifier)


def serialize(initializer):
    """Keras' ``{"module", "class_name", "config", "registered_name"}`` dict (None for None)."""
    return _REGISTRY.serialize(initializer)


__all__ = [
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Initializer", "LecunNormal",
    "LecunUniform", "Ones", "Orthogonal", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling",
    "Zeros", "compute_fans", "get", "serialize",
]
