"""The layer machinery shared by every layer: weights, losses, config, files and the training contract.

A layer owns NumPy weights in Keras' layout and order.  Subclasses declare their
weights (:meth:`Layer._weight_specs`), compute the pre-activation outputs
(:meth:`Layer._forward`) and their gradients (:meth:`Layer._backward`); this base
class does everything else the Keras way:

* build on the first call from the input's channel count;
* cast inputs to the layer dtype ("float32" by default);
* the activation, and the activity-regularizer loss of the last call
  (``reg(outputs) / batch_size``, 0 for an empty batch);
* ``losses``: that activity loss first, then the weight penalties recomputed from
  the current trainable weights, in weight order;
* ``backward(grad_outputs)``: the gradient of ``sum(outputs * grad_outputs) +
  activity loss`` with respect to the inputs of the last call (returned) and of
  ``sum(outputs * grad_outputs) + sum(losses)`` with respect to each trainable
  weight (``layer.gradients``);
* ``get_weights``/``set_weights``, ``save_weights``/``load_weights`` (``.npz``, never
  pickle), ``get_config``/``from_config``.

The weights live in host memory.  ``device`` chooses where the convolutions run
(``"cuda"``: on the GPU, NumPy in and out); the elementwise work stays in NumPy.
"""

from __future__ import annotations

import collections
import inspect
import os
from typing import NamedTuple

import numpy as np

from .. import activations as activations_module
from .. import regularizers as regularizers_module
from .._geometry import normalize_device
from .._registry import snake_case
from ..dispatch import is_cuda_array

LAYER_DTYPES = ("float16", "float32", "float64")
_names_taken: collections.Counter = collections.Counter()


class WeightSpec(NamedTuple):
    """One weight of a layer: attribute name, shape, and its initializer, regularizer and constraint."""

    name: str
    shape: tuple
    initializer: object
    regularizer: object
    constraint: object


def _unique_name(cls) -> str:
    base = snake_case(cls.__name__)
    count = _names_taken[base]
    _names_taken[base] += 1
    return base if count == 0 else f"{base}_{count}"


def _dtype_name(dtype) -> str:
    """A layer dtype from a string, a NumPy dtype or Keras' serialized DTypePolicy dict."""
    if dtype is None:
        return "float32"
    if isinstance(dtype, dict):  # {"module": "keras", "class_name": "DTypePolicy", "config": {"name": ...}}
        config = dtype.get("config")
        if dtype.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy", None) or not isinstance(config, dict) \
                or not isinstance(config.get("name"), str):
            raise ValueError("Invalid dtype argument: expected a dtype name or Keras' DTypePolicy dict "
                             f"{{'class_name': 'DTypePolicy', 'config': {{'name': ...}}}}. Received: dtype={dtype!r}")
        dtype = config["name"]
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in LAYER_DTYPES:
        raise ValueError(f"Invalid dtype argument: expected one of {LAYER_DTYPES}. Received: dtype={dtype!r}")
    return name


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be a boolean. Received: {name}={value!r}")
    return bool(value)


class Layer:
    """Base class of the layers (see the module docstring for the contract).

    Parameters
    ----------
    activation : str, callable or None
    activity_regularizer : str, dict, Regularizer or None
    name : str, optional
        Unique per class by default (``"depthwise_conv1d"``, ``"depthwise_conv1d_1"``, ...).
    trainable : bool
        When False, ``trainable_weights`` and ``gradients`` are empty and the
        weight penalties leave ``losses``.
    dtype : str, numpy dtype or Keras DTypePolicy dict, default "float32"
        dtype of the weights and of the computation; inputs are cast to it.
    device : {"auto", "cpu", "cuda"}
        Where the convolutions run.
    """

    def __init__(self, activation=None, activity_regularizer=None, *, name=None, trainable=True, dtype=None,
                 device="auto"):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"`name` must be a string. Received: name={name!r}")
        self.name = name or _unique_name(type(self))
        self.trainable = _check_bool(trainable, "trainable")
        self.dtype = _dtype_name(dtype)
        self.device = normalize_device(device)
        self.activation = activations_module.get(activation)
        self.activity_regularizer = regularizers_module.get(activity_regularizer)
        self.built = False
        self.gradients = None
        self._specs: list[WeightSpec] = []
        self._activity_loss = None
        self._last_call = None  # (inputs as computed, pre-activation outputs, original input dtype)

    # -- to be provided by subclasses ----------------------------------------------------------------
    def _weight_specs(self, channels: int) -> list[WeightSpec]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _channels_of(self, input_shape) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _channel_axis(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_inputs(self, shape) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, inputs, activation=None, padding=None):  # pragma: no cover - abstract
        """The outputs; pre-activation unless ``activation`` (a name the kernels apply) is given.

        ``padding`` overrides the layer's own (the streaming step convolves ``[state, inputs]`` 'valid').
        """
        raise NotImplementedError

    def _backward(self, grad_pre, inputs, activation=None):  # pragma: no cover - abstract
        """(grad_inputs, [gradient of each weight, in weight order]) for the pre-activation gradient.

        With ``activation``: ``grad_pre`` is the gradient at the activated outputs, and the kernels
        recompute the pre-activation.
        """
        raise NotImplementedError

    def _fused_activation(self):
        """The activation's name when the CPU kernels apply it (a built-in activation), else None."""
        if self.device == "cuda" or self.activation is activations_module.linear:
            return None
        from .._opcore import _activation

        return _activation(self.activation)[1]

    # -- weights -------------------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create the weights for inputs of ``input_shape`` (called by every ``__call__``).

        On a built layer this only checks that the rank and channel count match its weights.
        """
        input_shape = tuple(input_shape)
        self._check_inputs(input_shape)
        if (input_shape[-1] if self._channel_axis() == -1 else input_shape[1]) is None:
            raise ValueError(
                f"The channel dimension of the inputs must be defined. Found `None` in input shape: {input_shape}"
            )
        channels = self._channels_of(input_shape)
        if not self.built:
            self._build_for_channels(channels)
            return
        expected = self._specs[0].shape[-2]
        if channels != expected:
            raise ValueError(
                f"Input 0 of layer {self.name!r} is incompatible with the layer: expected axis "
                f"{self._channel_axis()} of input shape to have value {expected}, but received input with shape "
                f"{input_shape}"
            )

    def _build_for_channels(self, channels: int) -> None:
        self._specs = self._weight_specs(channels)
        for spec in self._specs:
            value = np.asarray(spec.initializer(spec.shape, self.dtype), dtype=self.dtype)
            if value.shape != tuple(spec.shape):
                raise ValueError(
                    f"The initializer of `{spec.name}` in layer {self.name!r} returned shape {value.shape}; "
                    f"expected {tuple(spec.shape)}"
                )
            setattr(self, spec.name, np.ascontiguousarray(value))
        self.built = True

    @property
    def weight_names(self) -> list:
        """Attribute names of the weights, in Keras' order (``["kernel", "bias"]``, ...)."""
        return [spec.name for spec in self._specs]

    @property
    def weights(self) -> list:
        """All weights, in Keras' order (the arrays themselves, updated in place by optimizers)."""
        return [getattr(self, spec.name) for spec in self._specs]

    @property
    def trainable_weights(self) -> list:
        """The weights when ``trainable``, else an empty list."""
        return self.weights if self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        """The weights when not ``trainable``, else an empty list."""
        return [] if self.trainable else self.weights

    @property
    def trainable_constraints(self) -> list:
        """The constraint of each trainable weight (None where there is none), aligned with ``trainable_weights``."""
        return [spec.constraint for spec in self._specs] if self.trainable else []

    def get_weights(self) -> list:
        """Copies of the weights, in Keras' order."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights) -> None:
        """Overwrite the weights (in place) from a list in Keras' order, e.g. ``keras_layer.get_weights()``."""
        weights = list(weights)
        if len(weights) != len(self._specs):
            raise ValueError(
                f"You called `set_weights(weights)` on layer {self.name!r} with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(self._specs)} weights."
            )
        self._assign(self._specs, self._checked_weights(weights, self._specs))  # all checked, then all assigned

    def _checked_weights(self, weights, specs) -> list:
        """``weights`` as arrays of the layer dtype, each checked against its spec (ValueError/TypeError first)."""
        arrays = []
        for spec, weight in zip(specs, weights):
            array = np.asarray(weight.copy_to_host() if is_cuda_array(weight) else weight)
            if array.dtype.kind not in "fiu":
                raise TypeError(
                    f"Layer {self.name!r} weight `{spec.name}` must be a real numeric array. Received an array of "
                    f"dtype {array.dtype}"
                )
            if array.shape != tuple(spec.shape):
                raise ValueError(
                    f"Layer {self.name!r} weight shape {tuple(spec.shape)} is not compatible with provided weight "
                    f"shape {array.shape}."
                )
            arrays.append(array.astype(self.dtype, copy=True))
        return arrays

    def save_weights(self, path) -> None:
        """Write the weights to a ``.npz`` file (arrays only, no pickle)."""
        path = _npz_path(path)
        if not self.built:
            raise ValueError(f"Layer {self.name!r} has no weights yet: call it (or build it) before save_weights()")
        np.savez(path, **{f"{i:03d}_{spec.name}": getattr(self, spec.name) for i, spec in enumerate(self._specs)})

    def load_weights(self, path) -> None:
        """Read weights written by :meth:`save_weights` (building the layer from them if needed).

        Nothing changes unless every array is there, under its name, with its shape.
        """
        path = _npz_path(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        expected = [f"{i:03d}_{name}" for i, name in enumerate(self._weight_name_list())]
        check_file_keys(path, sorted(arrays), expected, f"layer {self.name!r}")
        self._assign(*self._prepare_loaded([arrays[key] for key in expected]))

    def _weight_name_list(self) -> list:
        """The weights' names, whether built or not (they do not depend on the channel count)."""
        return [spec.name for spec in (self._specs or self._weight_specs(1))]

    def _prepare_loaded(self, weights):
        """``(specs, arrays)`` for weights read from a file, all checked; nothing is assigned yet.

        An unbuilt layer takes its channel count from the kernel's channel axis.
        """
        weights = list(weights)
        if self.built:
            specs = self._specs
        else:
            if not weights or np.ndim(weights[0]) < 2:
                raise ValueError(f"Layer {self.name!r} cannot be built from these weights: the first must be its "
                                 f"kernel. Received {len(weights)} arrays")
            specs = self._weight_specs(int(np.shape(weights[0])[-2]))
        if len(weights) != len(specs):
            raise ValueError(f"Layer {self.name!r} has {len(specs)} weights; received {len(weights)} arrays")
        return specs, self._checked_weights(weights, specs)

    def _assign(self, specs, arrays) -> None:
        """Set checked weights: in place when built, else build with them (no random draws)."""
        if self.built:
            for spec, array in zip(specs, arrays):
                getattr(self, spec.name)[...] = array
            return
        self._specs = specs
        for spec, array in zip(specs, arrays):
            setattr(self, spec.name, np.ascontiguousarray(array))
        self.built = True

    # -- losses --------------------------------------------------------------------------------------
    @property
    def losses(self) -> list:
        """Activity loss of the last call (if any), then the penalties of the current trainable weights."""
        losses = [] if self._activity_loss is None else [self._activity_loss]
        if self.trainable:
            for spec in self._specs:
                if spec.regularizer is not None:
                    losses.append(spec.regularizer(getattr(self, spec.name)))
        return losses

    # -- forward and backward ------------------------------------------------------------------------
    def __call__(self, inputs):
        """Apply the layer to ``inputs`` (a NumPy array) and return the activated outputs."""
        if is_cuda_array(inputs):
            raise TypeError(
                f"Layer {self.name!r} takes NumPy arrays (its weights live in host memory); it received a GPU array. "
                "Pass device='cuda' to run its convolutions on the GPU, or use the functional ops "
                "(numba_dwconv.depthwise_conv1d, ...) on device arrays"
            )
        inputs = np.asarray(inputs)
        if inputs.dtype.kind != "f":
            raise TypeError(
                f"Layer {self.name!r} expects floating-point inputs. Received inputs with dtype={inputs.dtype}"
            )
        self.build(inputs.shape)
        original_dtype = inputs.dtype
        inputs = inputs.astype(self.dtype, copy=False)
        fused = self._fused_activation()
        if fused is not None:  # activated in the kernels; the backward pass recomputes the pre-activation
            outputs = self._forward(inputs, fused)
            kept = outputs
        else:
            pre = kept = self._forward(inputs)
            outputs = pre if self.activation is activations_module.linear else self.activation(pre)
        self._activity_loss = None
        if self.activity_regularizer is not None:
            batch = inputs.shape[0]
            self._activity_loss = self.activity_regularizer(outputs) / batch if batch else np.dtype(self.dtype).type(0)
        self._last_call = (inputs, kept, original_dtype, fused)
        return outputs

    def backward(self, grad_outputs):
        """Backward pass through the last call; sets :attr:`gradients` and returns the input gradient.

        The layer keeps a reference to the inputs of its last call (no copy): modifying
        them in place between the call and ``backward`` changes the gradient.

        Parameters
        ----------
        grad_outputs : ndarray, shape of the last outputs
            Gradient of the data loss with respect to the outputs.

        Returns
        -------
        grad_inputs : ndarray, shape and dtype of the last inputs
            d(sum(outputs * grad_outputs) + activity loss) / d(inputs).
        """
        if self._last_call is None:
            raise ValueError(f"Layer {self.name!r} has not been called: backward() needs the inputs of a call")
        inputs, kept, original_dtype, fused = self._last_call  # kept: the outputs if fused, else the pre-activation
        grad = np.asarray(grad_outputs)
        if grad.shape != kept.shape:
            raise ValueError(
                f"`grad_outputs` must have the shape of the outputs of the last call, {kept.shape}. "
                f"Received grad_outputs with shape={grad.shape}"
            )
        grad = grad.astype(self.dtype, copy=False)
        if self.activity_regularizer is not None and inputs.shape[0]:
            outputs = kept if fused is not None else self.activation(kept)
            grad = grad + self.activity_regularizer.gradient(outputs) / inputs.shape[0]
        if fused is not None:
            grad_inputs, weight_grads = self._backward(grad, inputs, fused)
        else:
            if self.activation is not activations_module.linear:
                grad = grad * activations_module.derivative_of(self.activation)(kept)
            grad_inputs, weight_grads = self._backward(grad, inputs)
        if self.trainable:
            for index, spec in enumerate(self._specs):
                if spec.regularizer is not None:
                    weight_grads[index] = weight_grads[index] + spec.regularizer.gradient(getattr(self, spec.name))
            self.gradients = [np.asarray(g, dtype=self.dtype) for g in weight_grads]
        else:
            self.gradients = []
        return np.asarray(grad_inputs).astype(original_dtype, copy=False)

    # -- config --------------------------------------------------------------------------------------
    def _base_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": self.dtype},
                      "registered_name": None},
        }

    def _activation_config(self) -> str:
        return activations_module.serialize(self.activation)

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a layer from :meth:`get_config`'s output (or a Keras layer's config)."""
        if not isinstance(config, dict):
            raise ValueError(f"`config` must be a dict (a layer's get_config()). Received: config={config!r}")
        known = set(inspect.signature(cls).parameters)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_config: unknown argument(s) {unknown} in `config`; "
                             f"{cls.__name__} takes {sorted(known)}")
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"


def check_file_keys(path, found, expected, owner: str) -> None:
    """Raise ValueError naming the missing and unexpected keys when a weights file's keys differ from ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if not found:
        raise ValueError(f"{path!r} holds no weights; {owner} expects the keys {sorted(expected)}")
    if missing or unexpected:
        raise ValueError(f"{path!r} does not hold the weights of {owner}: missing keys {missing}, "
                         f"unexpected keys {unexpected}")


def _npz_path(path) -> str:
    path = os.fspath(path)
    if not str(path).endswith(".npz"):
        raise ValueError(f"The weights file name must end in `.npz`. Received: path={path!r}")
    return path

