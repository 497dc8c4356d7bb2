"""Record what Keras writes, for the interoperability tests (run by hand; the tests never import Keras).

Usage, in an environment with Keras 3 and a backend (PyTorch's CPU build works)::

    KERAS_BACKEND=torch python tests/data/make_keras_fixtures.py

Writes ``tests/data/keras_<keras version>.json`` (layer and model configs, the
initializers' configs, the Keras version) and ``keras_<version>.npz`` (each
model's weights, an input and Keras' output for it).
"""

import json
import pathlib

import keras
import numpy as np

HERE = pathlib.Path(__file__).parent


def models():
    """Keras Sequential models made only of the four layer kinds numba_dwconv implements."""
    one_d = keras.Sequential([
        keras.Input((24, 4)),
        keras.layers.SeparableConv1D(6, 3, padding="same", activation="relu", depth_multiplier=2, name="sep1"),
        keras.layers.DepthwiseConv1D(5, padding="same", dilation_rate=2, activation="tanh", name="dw1"),
        keras.layers.DepthwiseConv1D(3, strides=2, depth_multiplier=3, use_bias=False,
                                     depthwise_initializer=keras.initializers.HeNormal(seed=3), name="dw2"),
    ], name="model_1d")
    two_d = keras.Sequential([
        keras.Input((10, 9, 3)),
        keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="gelu",
                                     depthwise_regularizer=keras.regularizers.L2(1e-3), name="dw2d"),
        keras.layers.SeparableConv2D(4, (3, 2), strides=(2, 1), padding="valid", name="sep2d",
                                     pointwise_constraint=keras.constraints.MaxNorm(2.0)),
    ], name="model_2d")
    return {"model_1d": one_d, "model_2d": two_d}


def initializer_configs():
    """Each initializer's serialized form, as Keras writes it."""
    names = ["GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal",
             "VarianceScaling", "RandomUniform", "RandomNormal", "TruncatedNormal", "Zeros", "Ones", "Constant",
             "Orthogonal"]
    return {name: keras.initializers.serialize(getattr(keras.initializers, name)()) for name in names}


def fan_axes_draws():
    """VarianceScaling with input_axes/output_axes: the standard deviation its draws should have."""
    init = keras.initializers.VarianceScaling(scale=2.0, mode="fan_avg", distribution="untruncated_normal",
                                              seed=1, input_axes=[0], output_axes=[1, 2])
    return {"config": keras.initializers.serialize(init), "shape": [5, 3, 4],
            "expected_std": float(np.sqrt(2.0 / ((5 + 12) / 2)))}


def main():
    rng = np.random.default_rng(0)
    record = {"keras_version": keras.__version__, "initializers": initializer_configs(),
              "fan_axes": fan_axes_draws(), "models": {}}
    arrays = {}
    for name, model in models().items():
        record["models"][name] = {"config": model.get_config(),
                                  "layers": [layer.get_config() for layer in model.layers],
                                  "classes": [type(layer).__name__ for layer in model.layers]}
        x = rng.standard_normal((2, *model.input_shape[1:])).astype("float32")
        arrays[f"{name}/input"] = x
        arrays[f"{name}/output"] = np.asarray(model.predict(x, verbose=0))
        for i, weight in enumerate(model.get_weights()):
            arrays[f"{name}/weight_{i:02d}"] = np.asarray(weight)
    version = keras.__version__
    (HERE / f"keras_{version}.json").write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    np.savez(HERE / f"keras_{version}.npz", **arrays)
    print(f"wrote keras_{version}.json and keras_{version}.npz")


if __name__ == "__main__":
    main()
