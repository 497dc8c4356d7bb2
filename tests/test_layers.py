"""DepthwiseConv1D and SeparableConv1D: Keras' contract (SEMANTICS.md) and the training contract."""

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import activations, layers
from numba_dwconv import reference as ref

# get_config() keys in order, as SEMANTICS.md lists them.
DEPTHWISE_KEYS = ["name", "trainable", "dtype", "depth_multiplier", "kernel_size", "strides", "padding",
                  "data_format", "dilation_rate", "activation", "use_bias", "depthwise_initializer",
                  "bias_initializer", "depthwise_regularizer", "bias_regularizer", "activity_regularizer",
                  "depthwise_constraint", "bias_constraint"]
SEPARABLE_KEYS = ["name", "trainable", "dtype", "depth_multiplier", "filters", "kernel_size", "strides", "padding",
                  "data_format", "dilation_rate", "activation", "use_bias", "depthwise_initializer",
                  "pointwise_initializer", "bias_initializer", "depthwise_regularizer", "pointwise_regularizer",
                  "bias_regularizer", "activity_regularizer", "depthwise_constraint", "pointwise_constraint",
                  "bias_constraint"]


def data(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------- config
def test_depthwise_config_keys_and_value_forms():
    layer = nd.DepthwiseConv1D(3, name="dw")
    config = layer.get_config()
    assert list(config) == DEPTHWISE_KEYS
    assert config["name"] == "dw" and config["trainable"] is True
    assert config["dtype"] == {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                               "registered_name": None}
    assert config["kernel_size"] == (3,) and config["strides"] == (1,) and config["dilation_rate"] == (1,)
    assert config["padding"] == "valid" and config["data_format"] == "channels_last"
    assert config["activation"] == "linear" and config["use_bias"] is True and config["depth_multiplier"] == 1
    assert config["depthwise_initializer"] == {"module": "keras.initializers", "class_name": "GlorotUniform",
                                               "config": {"seed": None, "input_axes": None, "output_axes": None},
                                               "registered_name": None}
    assert config["bias_initializer"] == {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                                          "registered_name": None}
    for key in DEPTHWISE_KEYS[-5:]:
        assert config[key] is None


def test_separable_config_keys():
    config = nd.SeparableConv1D(4, 3).get_config()
    assert list(config) == SEPARABLE_KEYS
    assert config["filters"] == 4 and config["pointwise_initializer"]["class_name"] == "GlorotUniform"


FULL_DEPTHWISE = dict(kernel_size=(5,), strides=2, padding="SAME", depth_multiplier=3, data_format="channels_first",
                      dilation_rate=[2], activation="gelu", use_bias=False, depthwise_initializer="he_normal",
                      bias_initializer={"class_name": "Constant", "config": {"value": 0.5}},
                      depthwise_regularizer="l2", bias_regularizer=nd.regularizers.L1L2(0.1, 0.2),
                      activity_regularizer="l1", depthwise_constraint="max_norm", bias_constraint="non_neg",
                      name="full", trainable=False, dtype="float64")


@pytest.mark.parametrize("cls", [nd.DepthwiseConv1D, nd.SeparableConv1D])
def test_from_config_round_trips(cls):
    kwargs = dict(FULL_DEPTHWISE)
    if cls is nd.SeparableConv1D:
        kwargs.update(filters=7, pointwise_initializer="orthogonal", pointwise_regularizer="l1",
                      pointwise_constraint="unit_norm")
    layer = cls(**kwargs)
    config = layer.get_config()
    assert config["padding"] == "same" and config["kernel_size"] == (5,) and config["dilation_rate"] == (2,)
    assert config["activation"] == "gelu" and config["trainable"] is False
    again = cls.from_config(config)
    assert again.get_config() == config
    # Keras' older string dtype form is accepted too
    assert cls.from_config({**config, "dtype": "float64"}).get_config() == config


def test_positional_argument_order():
    dw = nd.DepthwiseConv1D(3, 2, "causal", 4, "channels_first", 1, "relu", False)
    assert (dw.kernel_size, dw.strides, dw.padding, dw.depth_multiplier, dw.data_format, dw.dilation_rate,
            dw.activation, dw.use_bias) == ((3,), (2,), "causal", 4, "channels_first", (1,), activations.relu, False)
    sep = nd.SeparableConv1D(8, 3, 1, "same", "channels_last", 2, 3, "tanh", True)
    assert (sep.filters, sep.kernel_size, sep.padding, sep.dilation_rate, sep.depth_multiplier, sep.activation) == (
        8, (3,), "same", (2,), 3, activations.tanh)


def test_unique_default_names():
    a, b = nd.SeparableConv1D(2, 3), nd.SeparableConv1D(2, 3)
    assert a.name.startswith("separable_conv1d") and a.name != b.name


# ---------------------------------------------------------------------------- weights and outputs
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_weights_layout_and_outputs(data_format):
    layer = nd.DepthwiseConv1D(4, 2, "same", 3, data_format, activation="tanh", dtype="float64")
    x = data((2, 13, 5) if data_format == "channels_last" else (2, 5, 13))
    y = layer(x)
    assert layer.built and layer.kernel.shape == (4, 5, 3) and layer.bias.shape == (15,)
    assert [w.shape for w in layer.weights] == [(4, 5, 3), (15,)]
    kernel, bias = data((4, 5, 3), 1), data(15, 2)
    layer.set_weights([kernel, bias])  # Keras' order and layout
    want = np.tanh(ref.conv1d_forward(x, kernel, bias, 2, "same", data_format))
    np.testing.assert_allclose(layer(x), want, rtol=1e-12, atol=1e-12)
    assert y.shape == want.shape == layer.compute_output_shape(x.shape)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_separable_weights_layout_and_outputs(data_format):
    layer = nd.SeparableConv1D(6, 3, 1, "causal", data_format, 2, 2, activation="silu", dtype="float64")
    x = data((3, 11, 4) if data_format == "channels_last" else (3, 4, 11))
    layer(x)
    assert [w.shape for w in layer.weights] == [(3, 4, 2), (1, 8, 6), (6,)]
    weights = [data((3, 4, 2), 1), data((1, 8, 6), 2), data(6, 3)]
    layer.set_weights(weights)
    pre = ref.separable_forward(x, *weights, 1, "causal", data_format, 2)
    np.testing.assert_allclose(layer(x), ref.activation("silu", pre), rtol=1e-12, atol=1e-12)


def test_no_bias_and_compute_output_shape():
    layer = nd.SeparableConv1D(5, 3, strides=2, use_bias=False)
    assert layer.compute_output_shape((None, 20, 4)) == (None, 9, 5)
    assert layer.compute_output_shape((8, None, 4)) == (8, None, 5)
    layer(np.ones((1, 20, 4), np.float32))
    assert len(layer.weights) == 2 and layer.bias is None
    dw = nd.DepthwiseConv1D(3, depth_multiplier=2, padding="same", data_format="channels_first")
    assert dw.compute_output_shape((4, 6, 10)) == (4, 12, 10)
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        nd.DepthwiseConv1D(5).compute_output_shape((1, 3, 2))
    with pytest.raises(ValueError, match="channel dimension"):
        dw.compute_output_shape((4, None, 10))


def test_set_and_get_weights():
    layer = nd.DepthwiseConv1D(3)
    with pytest.raises(ValueError, match="expecting 0 weights"):
        layer.set_weights([np.zeros((3, 2, 1)), np.zeros(2)])
    layer(np.ones((1, 5, 2), np.float32))
    kernel = layer.kernel
    layer.set_weights([np.full((3, 2, 1), 2.0), np.ones(2)])
    assert layer.kernel is kernel and kernel.dtype == np.float32 and kernel[0, 0, 0] == 2.0  # in place, cast
    copies = layer.get_weights()
    copies[0][...] = 0
    assert layer.kernel[0, 0, 0] == 2.0
    with pytest.raises(ValueError, match=r"weight shape \(3, 2, 1\) is not compatible with provided weight shape"):
        layer.set_weights([np.zeros((3, 2, 2)), np.zeros(2)])
    with pytest.raises(ValueError, match="weight list of length 1"):
        layer.set_weights([np.zeros((3, 2, 1))])


def test_save_and_load_weights(tmp_path):
    layer = nd.SeparableConv1D(3, 2, depth_multiplier=2)
    layer(np.ones((1, 6, 4), np.float32))
    path = tmp_path / "sep.npz"
    layer.save_weights(path)
    fresh = nd.SeparableConv1D(3, 2, depth_multiplier=2)
    fresh.load_weights(path)  # builds from the file
    for a, b in zip(layer.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    with np.load(path, allow_pickle=False) as stored:  # plain arrays only
        assert len(stored.files) == 3
    with pytest.raises(ValueError, match="must end in `.npz`"):
        layer.save_weights(tmp_path / "sep.h5")
    with pytest.raises(ValueError, match="no weights yet"):
        nd.DepthwiseConv1D(3).save_weights(tmp_path / "none.npz")


def test_inputs_cast_to_the_layer_dtype_and_not_modified():
    layer = nd.DepthwiseConv1D(3, padding="same")
    x = data((2, 9, 3))
    copy = x.copy()
    y = layer(x)
    assert y.dtype == np.float32
    grad = layer.backward(np.ones_like(y))
    assert grad.dtype == np.float64 and grad.shape == x.shape
    np.testing.assert_array_equal(x, copy)


def test_batch_zero():
    layer = nd.DepthwiseConv1D(3, activity_regularizer="l2", padding="same")
    y = layer(np.zeros((0, 7, 2), np.float32))
    assert y.shape == (0, 7, 2)
    assert layer.losses == [0.0]
    assert layer.backward(y).shape == (0, 7, 2)


# ---------------------------------------------------------------------------- losses
def test_losses_order_and_values():
    layer = nd.SeparableConv1D(3, 2, activation="relu", depthwise_regularizer=nd.regularizers.L2(0.5),
                               bias_regularizer=nd.regularizers.L1(0.25), bias_initializer="ones",
                               activity_regularizer=nd.regularizers.L1(0.1), dtype="float64")
    assert layer.losses == []
    x = data((4, 6, 3))
    y = layer(x)
    losses = layer.losses
    assert len(losses) == 3
    assert losses[0] == pytest.approx(0.1 * np.abs(y).sum() / 4)
    assert losses[1] == pytest.approx(0.5 * np.square(layer.depthwise_kernel).sum())
    assert losses[2] == pytest.approx(0.25 * 3)
    layer.set_weights([w * 2 for w in layer.get_weights()])  # penalties follow the current weights
    assert layer.losses[1] == pytest.approx(4 * losses[1]) and layer.losses[0] == losses[0]
    layer.trainable = False
    assert layer.losses == [losses[0]]


# ---------------------------------------------------------------------------- the training contract
def total_objective(layer, x, grad_y):
    """sum(outputs * grad_y) + sum(losses) of a fresh call (of a layer or a Sequential model)."""
    return float(np.sum(layer(x) * grad_y) + sum(layer.losses))


def finite_difference_check(layer, x, seed):
    rng = np.random.default_rng(seed)
    grad_y = rng.standard_normal(layer(x).shape)
    layer(x)
    grad_x = layer.backward(grad_y)
    gradients = [g.copy() for g in layer.gradients]
    assert [g.shape for g in gradients] == [w.shape for w in layer.trainable_weights]
    eps = 1e-6
    for weight, grad in zip(layer.trainable_weights, gradients):
        direction = rng.standard_normal(weight.shape)
        original = weight.copy()
        weight[...] = original + eps * direction
        plus = total_objective(layer, x, grad_y)
        weight[...] = original - eps * direction
        minus = total_objective(layer, x, grad_y)
        weight[...] = original
        np.testing.assert_allclose(np.sum(grad * direction), (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-7)
    # inputs: the total objective again -- its weight penalties do not depend on x, so this is the data term
    # plus the activity losses; the same check serves a layer and a Sequential model
    direction = rng.standard_normal(x.shape)
    numeric = (total_objective(layer, x + eps * direction, grad_y)
               - total_objective(layer, x - eps * direction, grad_y)) / (2 * eps)
    np.testing.assert_allclose(np.sum(grad_x * direction), numeric, rtol=1e-6, atol=1e-7)
    return gradients


REGULARIZED = dict(activity_regularizer=nd.regularizers.L1L2(0.01, 0.02), depthwise_regularizer="l1",
                   bias_regularizer=nd.regularizers.L1L2(0.03, 0.04), bias_initializer="random_normal",
                   dtype="float64")


@pytest.mark.parametrize("activation", ["linear", "tanh", "gelu", "softplus", "selu", "mish", "sigmoid"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_gradients_by_finite_differences(activation, data_format):
    layer = nd.DepthwiseConv1D(3, 2, "same", 2, data_format, 2, activation, **REGULARIZED)
    x = data((2, 11, 3) if data_format == "channels_last" else (2, 3, 11), 5)
    finite_difference_check(layer, x, 6)


@pytest.mark.parametrize("activation", ["linear", "elu", "swish", "softsign"])
@pytest.mark.parametrize("padding", ["causal", "valid"])
def test_separable_gradients_by_finite_differences(activation, padding):
    layer = nd.SeparableConv1D(4, 3, 1, padding, None, 2, 2, activation, pointwise_regularizer="l2", **REGULARIZED)
    finite_difference_check(layer, data((2, 12, 3), 7), 8)


def test_no_activity_regularizer_and_no_bias_gradients():
    layer = nd.SeparableConv1D(2, 3, use_bias=False, activation="tanh", dtype="float64")
    finite_difference_check(layer, data((2, 9, 2), 9), 10)
    assert len(layer.gradients) == 2


def test_not_trainable_has_no_gradients():
    layer = nd.DepthwiseConv1D(3, trainable=False, depthwise_regularizer="l2", dtype="float64")
    x = data((2, 8, 2))
    y = layer(x)
    grad_x = layer.backward(np.ones_like(y))
    assert layer.gradients == [] and layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    want = ref.conv1d_gradients(np.ones_like(y), x, layer.kernel)[0]
    np.testing.assert_allclose(grad_x, want, rtol=1e-12)


def test_activation_without_derivative():
    def cube(x):
        return x**3

    layer = nd.DepthwiseConv1D(2, activation=cube, dtype="float64")
    x = data((1, 5, 2))
    y = layer(x)
    pre = ref.conv1d_forward(x, layer.kernel, layer.bias)
    np.testing.assert_allclose(y, pre**3, rtol=1e-12)
    assert layer.get_config()["activation"] == "cube"
    with pytest.raises(TypeError, match="no derivative"):
        layer.backward(np.ones_like(y))
    cube.derivative = lambda v: 3 * v**2
    finite_difference_check(layer, x, 11)


def test_backward_errors():
    layer = nd.DepthwiseConv1D(3)
    with pytest.raises(ValueError, match="has not been called"):
        layer.backward(np.zeros((1, 3, 2)))
    layer(np.ones((1, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"grad_outputs.*\(1, 3, 2\)"):
        layer.backward(np.zeros((1, 4, 2)))


def test_training_reduces_the_loss():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((8, 32, 4))
    target = ref.conv1d_forward(x, rng.standard_normal((3, 4, 1)), None, 1, "same")
    layer = nd.DepthwiseConv1D(3, padding="same", use_bias=False, dtype="float64",
                               depthwise_initializer=nd.initializers.Zeros())
    optimizer = nd.optimizers.Adam(0.05)
    losses = []
    for _ in range(60):
        error = layer(x) - target
        losses.append(float(np.mean(error**2)))
        layer.backward(2 * error / error.size)
        optimizer.step(layer)
    assert losses[-1] < 0.05 * losses[0]


# ---------------------------------------------------------------------------- bad arguments
BAD_CONSTRUCTORS = [
    (nd.DepthwiseConv1D, {"kernel_size": 0}, ValueError, "kernel_size=0"),
    (nd.DepthwiseConv1D, {"kernel_size": (3, 3)}, ValueError, "must be a tuple of 1 integers"),
    (nd.DepthwiseConv1D, {"kernel_size": 2.5}, ValueError, "kernel_size=2.5"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "strides": 0}, ValueError, "strides=0"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "dilation_rate": -1}, ValueError, "dilation_rate=-1"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "padding": "full"}, ValueError, "padding='full'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "data_format": "NWC"}, ValueError, "data_format='NWC'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "depth_multiplier": 0}, ValueError,
     "Invalid value for argument `depth_multiplier`. Expected a strictly positive value. Received depth_multiplier=0"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "depth_multiplier": 1.5}, ValueError, "depth_multiplier=1.5"),
    (nd.SeparableConv1D, {"filters": 0, "kernel_size": 3}, ValueError,
     "Invalid value for argument `filters`. Expected a strictly positive value. Received filters=0"),
    (nd.SeparableConv1D, {"filters": "8", "kernel_size": 3}, ValueError, "filters='8'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "activation": "foo"}, ValueError,
     "Could not interpret activation function identifier: 'foo'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "depthwise_initializer": "glorot"}, ValueError,
     "Could not interpret initializer identifier: 'glorot'"),
    (nd.SeparableConv1D, {"filters": 2, "kernel_size": 3, "pointwise_regularizer": "l3"}, ValueError,
     "Could not interpret regularizer identifier: 'l3'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "bias_constraint": "positive"}, ValueError,
     "Could not interpret constraint identifier: 'positive'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "use_bias": "yes"}, ValueError, "use_bias='yes'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "trainable": None}, ValueError, "trainable=None"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "dtype": "int32"}, ValueError, "dtype='int32'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "device": "tpu"}, ValueError, "device='tpu'"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "name": 7}, ValueError, "name=7"),
    (nd.DepthwiseConv1D, {"kernel_size": 3, "filters": 4}, TypeError, "filters"),
    (nd.SeparableConv1D, {"filters": 2, "kernel_size": 3, "groups": 2}, TypeError, "groups"),
]


@pytest.mark.parametrize(("cls", "kwargs", "error", "fragment"), BAD_CONSTRUCTORS)
def test_bad_constructor_arguments(cls, kwargs, error, fragment):
    with pytest.raises(error) as info:
        cls(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("inputs", "error", "fragment"), [
    (np.ones((5, 3), np.float32), ValueError, "expected ndim=3, found ndim=2. Full shape received: (5, 3)"),
    (np.ones((1, 5, 3), np.int64), TypeError, "dtype=int64"),
    (np.ones((1, 5, 3), np.bool_), TypeError, "dtype=bool"),
    (np.ones((1, 5, 4), np.float32), ValueError, "expected axis -1 of input shape to have value 3"),
    (np.ones((1, 2, 3), np.float32), ValueError, "Computed output size would be zero or negative"),
])
def test_bad_call_inputs(inputs, error, fragment):
    layer = nd.DepthwiseConv1D(3, name="checked")
    layer(np.ones((1, 5, 3), np.float32))
    with pytest.raises(error) as info:
        layer(inputs)
    assert fragment in str(info.value)


def test_layers_are_importable_from_both_places():
    assert layers.DepthwiseConv1D is nd.DepthwiseConv1D and layers.SeparableConv1D is nd.SeparableConv1D
