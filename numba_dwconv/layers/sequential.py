"""``Sequential``: layers applied in order, trained together (Keras' ``Sequential``, for these layers).

The model is a thin list: calling it calls each layer on the previous one's
output; ``backward`` runs each layer's backward in reverse, so every layer's
``gradients`` is set and the input gradient comes back.  Everything a layer
exposes is concatenated in layer order (``weights``, ``trainable_weights``,
``trainable_constraints``, ``gradients``, ``losses``), so the optimizers step a
model exactly as they step a layer.  A shape that one layer cannot take from
the previous one raises a ValueError naming both layers.
"""

from __future__ import annotations

import numpy as np

from .base import Layer, _check_bool, _dtype_name, _npz_path, _unique_name, check_file_keys


def _layer_classes() -> dict:
    from .depthwise import DepthwiseConv1D, DepthwiseConv2D
    from .separable import SeparableConv1D, SeparableConv2D

    return {cls.__name__: cls for cls in (DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D)}


class Sequential:
    """A linear stack of layers.

    Parameters
    ----------
    layers : list of Layer, optional
        Added in order, as by :meth:`add`.
    name : str, optional
        Unique by default (``"sequential"``, ``"sequential_1"``, ...).
    trainable : bool, default True
        Setting ``model.trainable`` sets it on every layer.

    Examples
    --------
    >>> import numpy as np
    >>> import numba_dwconv as nd
    >>> model = nd.Sequential([nd.SeparableConv1D(8, 3, padding="causal", activation="relu"),
    ...                        nd.DepthwiseConv1D(5, padding="causal")])
    >>> model(np.ones((2, 16, 4), np.float32)).shape
    (2, 16, 8)
    """

    def __init__(self, layers=None, *, name=None, trainable=True):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"`name` must be a string. Received: name={name!r}")
        self.name = name or _unique_name(type(self))
        self._layers: list[Layer] = []
        self._input_shape = None
        for layer in layers or []:
            self.add(layer)
        self._trainable = _check_bool(trainable, "trainable")
        if not self._trainable:  # trainable=False freezes every layer; True leaves each layer's own setting
            self.trainable = False

    # -- composition ---------------------------------------------------------------------------------
    @property
    def layers(self) -> list:
        """The layers, in order (a copy of the list)."""
        return list(self._layers)

    def add(self, layer) -> None:
        """Append ``layer`` to the stack."""
        if not isinstance(layer, Layer):
            raise TypeError(f"The added layer must be an instance of class Layer. Received: layer={layer!r}")
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(
                "All layers added to a Sequential model should have unique names. Name "
                f"{layer.name!r} is already the name of a layer in this model."
            )
        self._layers.append(layer)

    @property
    def trainable(self) -> bool:
        """Whether the model is trainable; setting it sets every layer's ``trainable``."""
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        self._trainable = _check_bool(value, "trainable")
        for layer in self._layers:
            layer.trainable = self._trainable

    def _require_layers(self):
        if not self._layers:
            raise ValueError(f"Sequential model {self.name!r} has no layers: add() some first")

    def _wrap(self, index: int, shape, error: ValueError) -> ValueError:
        """The error of layer ``index`` on the previous layer's output, naming both layers."""
        layer = self._layers[index]
        if index == 0:
            return ValueError(f"Layer {layer.name!r} (the first layer of {self.name!r}) cannot take inputs of shape "
                              f"{tuple(shape)}: {error}")
        previous = self._layers[index - 1]
        return ValueError(
            f"Layer {layer.name!r} (layer {index} of {self.name!r}) cannot take the output of layer {previous.name!r}, "
            f"of shape {tuple(shape)}: {error}"
        )

    # -- forward and backward ------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Build every layer for inputs of ``input_shape`` (the batch size may be None)."""
        self._require_layers()
        shape = tuple(input_shape)
        for index, layer in enumerate(self._layers):
            try:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
            except ValueError as error:
                raise self._wrap(index, shape, error) from error
        self._input_shape = (None, *tuple(input_shape)[1:])

    @property
    def built(self) -> bool:
        """Whether every layer has its weights."""
        return bool(self._layers) and all(layer.built for layer in self._layers)

    def __call__(self, inputs):
        """Apply the layers in order and return the last one's outputs."""
        self._require_layers()
        x = inputs
        for index, layer in enumerate(self._layers):
            try:
                x = layer(x)
            except ValueError as error:
                raise self._wrap(index, np.shape(x), error) from error
        self._input_shape = (None, *np.shape(inputs)[1:])
        return x

    def initial_state(self, batch_size: int) -> list:
        """The zero state of :meth:`step`: one array per layer (every layer causal, 1D, unstrided, and built)."""
        self._require_layers()
        return [layer.initial_state(batch_size) for layer in self._layers]

    def step(self, inputs, states=None):
        """Run the next chunk of causal sequences through every layer with the carried states.

        Returns ``(outputs, new_states)``; feeding a sequence chunk by chunk gives the outputs of
        calling the model on the whole sequence.  ``states`` None: the start of the sequences.  A
        layer that cannot stream (not causal, strided, 2D) raises a ValueError naming it.
        """
        self._require_layers()
        if states is None:
            states = [None] * len(self._layers)
        if len(states) != len(self._layers):
            raise ValueError(f"`states` must hold one state per layer ({len(self._layers)}). "
                             f"Received {len(states)} states")
        x, new_states = inputs, []
        for layer, state in zip(self._layers, states):
            x, state = layer.step(x, state)
            new_states.append(state)
        return x, new_states

    def backward(self, grad_outputs):
        """Backward pass through the last call of every layer; returns the gradient with respect to the inputs.

        Sets each layer's ``gradients``; :attr:`gradients` concatenates them.
        """
        self._require_layers()
        grad = grad_outputs
        for layer in reversed(self._layers):
            grad = layer.backward(grad)
        return grad

    # -- what the optimizers and the losses read -------------------------------------------------------
    @property
    def weights(self) -> list:
        """Every layer's weights, in layer order."""
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list:
        """Every layer's trainable weights, in layer order."""
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list:
        """Every layer's non-trainable weights, in layer order."""
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    @property
    def trainable_constraints(self) -> list:
        """The constraint of each trainable weight (None where there is none), aligned with ``trainable_weights``."""
        return [c for layer in self._layers for c in layer.trainable_constraints]

    @property
    def gradients(self):
        """Every layer's ``gradients`` concatenated (None until ``backward`` has run on every layer)."""
        if any(layer.gradients is None for layer in self._layers):
            return None
        return [g for layer in self._layers for g in layer.gradients]

    @property
    def losses(self) -> list:
        """Every layer's ``losses``, in layer order."""
        return [loss for layer in self._layers for loss in layer.losses]

    # -- weights -------------------------------------------------------------------------------------
    def get_weights(self) -> list:
        """Copies of every layer's weights, in layer order."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Overwrite every layer's weights from a list in layer order (as :meth:`get_weights` returns)."""
        weights = list(weights)
        counts = [len(layer.weights) for layer in self._layers]
        if len(weights) != sum(counts):
            raise ValueError(
                f"You called `set_weights(weights)` on model {self.name!r} with a weight list of length "
                f"{len(weights)}, but the model was expecting {sum(counts)} weights."
            )
        checked, start = [], 0
        for layer, count in zip(self._layers, counts):  # every layer's arrays checked before any is assigned
            checked.append(layer._checked_weights(weights[start : start + count], layer._specs))
            start += count
        for layer, arrays in zip(self._layers, checked):
            layer._assign(layer._specs, arrays)

    def save_weights(self, path) -> None:
        """Write every layer's weights to one ``.npz`` file (arrays only, no pickle)."""
        path = _npz_path(path)
        if not self.built:
            raise ValueError(f"Model {self.name!r} has no weights yet: call it (or build it) before save_weights()")
        arrays = {}
        for index, layer in enumerate(self._layers):
            for position, (name, weight) in enumerate(zip(layer.weight_names, layer.weights)):
                arrays[f"{index:03d}_{position:02d}_{name}"] = weight
        np.savez(path, **arrays)

    def load_weights(self, path) -> None:
        """Read weights written by :meth:`save_weights` (unbuilt layers are built from them)."""
        path = _npz_path(path)
        self._require_layers()
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        keys = [[f"{index:03d}_{position:02d}_{name}" for position, name in enumerate(layer._weight_name_list())]
                for index, layer in enumerate(self._layers)]
        check_file_keys(path, sorted(arrays), [k for group in keys for k in group], f"model {self.name!r}")
        prepared = [layer._prepare_loaded([arrays[k] for k in group]) for layer, group in zip(self._layers, keys)]
        for layer, (specs, checked) in zip(self._layers, prepared):  # all checked first: all assigned or none
            layer._assign(specs, checked)

    # -- config and summary ----------------------------------------------------------------------------
    def get_config(self) -> dict:
        """``{"name", "trainable", "layers"}``, each layer as Keras' serialized dict (class name + config)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [{"module": "keras.layers", "class_name": type(layer).__name__, "config": layer.get_config(),
                        "registered_name": None} for layer in self._layers],
        }

    @classmethod
    def from_config(cls, config: dict):
        """Rebuild a model from :meth:`get_config`'s output or from a Keras ``Sequential``'s ``get_config()``.

        Keras' form (3.0 and later) is accepted: an ``InputLayer`` entry (its
        ``batch_shape``) or ``build_input_shape`` gives the input shape, and the model
        is then built, so ``set_weights(keras_model.get_weights())`` works at once;
        DTypePolicy dicts and ``build_config`` entries are understood.  Any other layer
        class raises a ValueError naming it and the supported ones.
        """
        if not isinstance(config, dict):
            raise ValueError(f"`config` must be a dict (a Sequential's get_config()). Received: config={config!r}")
        entries = config.get("layers", [])
        if not isinstance(entries, list):
            raise ValueError(f"`config['layers']` must be a list of layer dicts. Received: {entries!r}")
        if config.get("dtype") is not None:
            _dtype_name(config["dtype"])  # a malformed policy is an error here too
        classes = _layer_classes()
        layers, input_shape = [], config.get("build_input_shape")
        for position, entry in enumerate(entries):
            where = f"config['layers'][{position}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
                raise ValueError(f"`{where}` must be a dict with 'class_name' and 'config'. Received: {entry!r}")
            name = entry.get("class_name")
            if name == "InputLayer":
                shape = entry["config"].get("batch_shape", entry["config"].get("batch_input_shape"))
                if not isinstance(shape, (list, tuple)) or len(shape) < 2:
                    raise ValueError(f"`{where}` is an InputLayer without a batch_shape. Received: {entry!r}")
                input_shape = shape
                continue
            layer_cls = classes.get(name)
            if layer_cls is None:
                raise ValueError(f"Layer class {name!r} in `{where}` is not supported: a numba_dwconv Sequential holds "
                                 f"{', '.join(sorted(classes))} (and Keras' InputLayer)")
            layers.append(layer_cls.from_config(entry["config"]))
        model = cls(layers, name=config.get("name"), trainable=config.get("trainable", True))
        if input_shape is not None and layers:
            if not isinstance(input_shape, (list, tuple)) or any(
                    v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0) for v in input_shape):
                raise ValueError(f"The model's input shape must be a list of ints (None for the batch). "
                                 f"Received: {input_shape!r}")
            model.build(tuple(input_shape))
        return model

    def summary(self, print_fn=print) -> str:
        """Print (and return) a table of the layers, their output shapes and parameter counts."""
        if self._input_shape is None:
            raise ValueError(f"Model {self.name!r} has not been built yet: call it on data or build(input_shape)")
        rows = []
        shape = self._input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), sum(w.size for w in layer.weights)))
        width_name = max(len("Layer (type)"), *(len(r[0]) for r in rows))
        width_shape = max(len("Output Shape"), *(len(r[1]) for r in rows))
        line = "-" * (width_name + width_shape + 14)
        lines = [f'Model: "{self.name}"', line,
                 f"{'Layer (type)':<{width_name}}  {'Output Shape':<{width_shape}}  {'Param #':>10}", line]
        lines += [f"{n:<{width_name}}  {s:<{width_shape}}  {p:>10,}" for n, s, p in rows]
        trainable = sum(w.size for w in self.trainable_weights)
        total = sum(w.size for w in self.weights)
        lines += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r}, layers={[layer.name for layer in self._layers]}>"
