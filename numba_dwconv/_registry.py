"""Keras-style identifiers: ``get(identifier)`` and ``serialize(obj)`` for the building-block modules.

Initializers, regularizers and constraints are classes configured by keyword
arguments; each module builds one :class:`ClassRegistry` that resolves

* ``None`` -> ``None``;
* a string -> an instance with default arguments (snake_case names such as
  ``"glorot_uniform"`` and class names such as ``"GlorotUniform"``);
* a dict ``{"class_name": ..., "config": {...}}`` (what :meth:`serialize` writes,
  Keras' ``{"module", "class_name", "config", "registered_name"}`` form) ->
  ``cls(**config)``;
* an instance (or any callable) -> itself;

and raises ``ValueError("Could not interpret <kind> identifier: ...")`` otherwise,
as Keras does.
"""

from __future__ import annotations

import inspect
import math
import numbers


def is_real(value) -> bool:
    """True for real numbers of any type (Python, NumPy scalars such as ``np.float32(0.1)``), False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def interpret_error(kind: str, identifier) -> ValueError:
    """The error for an identifier that names nothing (Keras' message)."""
    return ValueError(f"Could not interpret {kind} identifier: {identifier!r}")


def non_negative_float(value, name: str) -> float:
    """``value`` as a float if it is a finite number >= 0 (Keras' rule for penalties), else ValueError."""
    if not is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Invalid value for argument {name}: expected a non-negative float. Received: {name}={value!r}"
        )
    return float(value)


class Configurable:
    """Base of the configurable building blocks: ``get_config`` / ``from_config`` and a readable repr."""

    def get_config(self) -> dict:
        """The constructor arguments, as JSON-friendly values."""
        return {}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild an object from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ClassRegistry:
    """Name -> class table of one building-block module, with Keras' ``get``/``serialize`` rules.

    Parameters
    ----------
    kind : str
        What the objects are, for error messages ("initializer", "regularizer", ...).
    module : str
        The Keras module written into serialized dicts ("keras.initializers", ...).
    classes : sequence of type
        The classes; each is known by its class name and its snake_case name.
    aliases : dict, optional
        Extra names (``{"l1l2": L1L2}``).
    """

    def __init__(self, kind: str, module: str, classes, aliases=None):
        self.kind = kind
        self.module = module
        self.by_name = {}
        for cls in classes:
            self.by_name[cls.__name__] = cls
            self.by_name[snake_case(cls.__name__)] = cls
        self.by_name.update(aliases or {})

    def get(self, identifier):
        """Resolve ``identifier`` (None, str, dict, instance or callable) to an object."""
        if identifier is None:
            return None
        if isinstance(identifier, str):
            cls = self.by_name.get(identifier)
            if cls is None:
                raise interpret_error(self.kind, identifier)
            return cls()
        if isinstance(identifier, dict):
            name, config = identifier.get("class_name"), identifier.get("config", {})
            cls = self.by_name.get(name) if isinstance(name, str) else None
            if cls is None or not isinstance(config, dict):
                raise interpret_error(self.kind, identifier)
            unknown = sorted(set(config) - set(inspect.signature(cls).parameters))
            if unknown:
                raise ValueError(f"Could not interpret {self.kind} identifier: {identifier!r}: {name} takes no "
                                 f"argument {', '.join(map(repr, unknown))}")
            return cls.from_config(config)
        if isinstance(identifier, type):  # a class: an instance with default arguments
            if identifier in self.by_name.values():
                return identifier()
            raise interpret_error(self.kind, identifier)
        if callable(identifier):
            return identifier
        raise interpret_error(self.kind, identifier)

    def serialize(self, obj):
        """``None`` -> ``None``; a configurable object -> Keras' serialized dict."""
        if obj is None:
            return None
        if not hasattr(obj, "get_config"):
            raise ValueError(
                f"Cannot serialize the {self.kind} {obj!r}: it has no get_config(). Use one of the library's "
                f"{self.kind}s or a subclass of its base class"
            )
        return {"module": self.module, "class_name": type(obj).__name__, "config": obj.get_config(),
                "registered_name": None}


def snake_case(name: str) -> str:
    """``"GlorotUniform"`` -> ``"glorot_uniform"``, ``"L1L2"`` -> ``"l1l2"``, ``"MaxNorm"`` -> ``"max_norm"``."""
    out = []
    for i, char in enumerate(name):
        if char.isupper() and i and name[i - 1].islower():
            out.append("_")
        out.append(char.lower())
    return "".join(out)
