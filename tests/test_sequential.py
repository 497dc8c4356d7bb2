"""Sequential: composition, training through the whole stack, config, weights and summary."""

import numpy as np
import pytest
from test_layers import data, finite_difference_check

import numba_dwconv as nd
from numba_dwconv import reference as ref


def make_layers(dtype="float64"):
    return [
        nd.SeparableConv1D(6, 3, padding="causal", activation="tanh", depthwise_regularizer="l2",
                           pointwise_regularizer=nd.regularizers.L1L2(0.01, 0.02), activity_regularizer="l2",
                           bias_initializer="random_normal", name="sep", dtype=dtype),
        nd.DepthwiseConv1D(3, 2, "same", 2, dilation_rate=1, activation="softplus", depthwise_regularizer="l1",
                           bias_regularizer="l2", bias_initializer="random_normal", name="dw", dtype=dtype),
        # the (batch, length, channels) output read as (batch, channels, length): formats compose by shape
        nd.DepthwiseConv1D(2, data_format="channels_first", activation="gelu", activity_regularizer="l1",
                           name="dw_first", dtype=dtype),
    ]


def test_gradients_of_the_whole_stack_by_finite_differences():
    model = nd.Sequential(make_layers())
    gradients = finite_difference_check(model, data((2, 10, 3), 1), 2)
    assert len(gradients) == len(model.trainable_weights) == 7


def test_outputs_equal_the_layers_applied_in_turn():
    model = nd.Sequential(make_layers())
    x = data((2, 10, 3), 3)
    y = model(x)
    sep, dw, dw_first = model.layers
    z = ref.activation("tanh", ref.separable_forward(x, *sep.weights, 1, "causal"))
    z = ref.activation("softplus", ref.conv1d_forward(z, dw.kernel, dw.bias, 2, "same"))
    z = ref.activation("gelu", ref.conv1d_forward(z, dw_first.kernel, dw_first.bias, 1, "valid", "channels_first"))
    np.testing.assert_allclose(y, z, rtol=1e-12, atol=1e-12)
    assert len(model.losses) == 3 + 2 + 1  # sep: activity, depthwise, pointwise; dw: kernel, bias; dw_first: activity


def test_built_layer_by_layer_equals_built_from_a_list():
    from_list = nd.Sequential(make_layers())
    one_by_one = nd.Sequential()
    for layer in make_layers():
        one_by_one.add(layer)
    x = data((2, 10, 3), 4)
    from_list(x)
    one_by_one(x)
    one_by_one.set_weights(from_list.get_weights())
    np.testing.assert_array_equal(one_by_one(x), from_list(x))
    assert one_by_one.get_config()["layers"] == from_list.get_config()["layers"]


def test_config_round_trip():
    model = nd.Sequential(make_layers(), name="stack")
    config = model.get_config()
    assert list(config) == ["name", "trainable", "layers"]
    assert [entry["class_name"] for entry in config["layers"]] == ["SeparableConv1D", "DepthwiseConv1D",
                                                                  "DepthwiseConv1D"]
    assert config["layers"][0]["module"] == "keras.layers"
    again = nd.Sequential.from_config(config)
    assert again.get_config() == config
    with pytest.raises(ValueError, match="Layer class 'Dense' .* is not supported"):
        nd.Sequential.from_config({"layers": [{"class_name": "Dense", "config": {}}]})


def test_weights_round_trip_through_npz(tmp_path):
    model = nd.Sequential(make_layers())
    x = data((2, 10, 3), 5)
    y = model(x)
    path = tmp_path / "model.npz"
    model.save_weights(path)
    fresh = nd.Sequential.from_config(model.get_config())
    assert not fresh.built
    fresh.load_weights(path)  # builds every layer from the file
    np.testing.assert_array_equal(fresh(x), y)
    with pytest.raises(ValueError, match="must end in `.npz`"):
        model.save_weights(tmp_path / "model.h5")
    with pytest.raises(ValueError, match="has no weights yet"):
        nd.Sequential(make_layers()).save_weights(path)


def test_optimizers_step_a_model():
    def seeded(seed):
        return nd.initializers.GlorotUniform(seed=seed)

    model = nd.Sequential([nd.DepthwiseConv1D(3, padding="same", dtype="float64", depthwise_constraint="non_neg",
                                              depthwise_initializer=seeded(1), name="a"),
                           nd.SeparableConv1D(2, 3, padding="same", dtype="float64", depthwise_initializer=seeded(2),
                                              pointwise_initializer=seeded(3), name="b")])
    x = data((4, 12, 3), 6)
    teacher = nd.Sequential([nd.DepthwiseConv1D(3, padding="same", dtype="float64", depthwise_initializer=seeded(4)),
                             nd.SeparableConv1D(2, 3, padding="same", dtype="float64", depthwise_initializer=seeded(5),
                                                pointwise_initializer=seeded(6))])
    target = teacher(x)  # reachable by the student
    optimizer = nd.optimizers.Adam(0.02)
    losses = []
    for _ in range(40):
        error = model(x) - target
        losses.append(float(np.mean(error**2)))
        model.backward(2 * error / error.size)
        optimizer.step(model)
        assert np.all(model.layers[0].kernel >= 0)  # the constraint ran after the update
    assert losses[-1] < 0.5 * losses[0]
    assert optimizer.iterations == 40


def test_summary_and_build():
    model = nd.Sequential([nd.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2d"),
                           nd.SeparableConv2D(4, 3, strides=2, name="sep2d")])
    with pytest.raises(ValueError, match="not been built"):
        model.summary(print_fn=None)
    model.build((None, 9, 9, 3))
    assert model.built
    text = model.summary(print_fn=None)
    assert "dw2d (DepthwiseConv2D)" in text and "(None, 9, 9, 6)" in text and "(None, 4, 4, 4)" in text
    params = 3 * 3 * 3 * 2 + 6 + (3 * 3 * 6 + 6 * 4 + 4)
    assert f"Total params: {params:,}" in text and "Trainable params" in text
    model.trainable = False
    assert model.trainable_weights == [] and "Trainable params: 0" in model.summary(print_fn=None)


def test_errors_name_the_layers():
    model = nd.Sequential([nd.DepthwiseConv1D(3, name="first"), nd.DepthwiseConv2D(3, name="second")])
    with pytest.raises(ValueError, match=r"Layer 'second' \(layer 1 of .*\) cannot take the output of layer 'first'"):
        model(np.ones((1, 8, 2), np.float32))
    first, second = nd.DepthwiseConv1D(3, depth_multiplier=2, name="a"), nd.DepthwiseConv1D(3, name="b")
    second(np.ones((1, 8, 2), np.float32))  # built for 2 channels, but 'a' gives 4
    model = nd.Sequential([first, second])
    with pytest.raises(ValueError, match="'b'.*output of layer 'a'.*expected axis -1 of input shape to have value 2"):
        model.build((None, 8, 2))
    with pytest.raises(ValueError, match="'b'.*output of layer 'a', of shape \\(1, 6, 4\\)"):
        model(np.ones((1, 8, 2), np.float32))
    with pytest.raises(TypeError, match="instance of class Layer"):
        model.add("conv")
    with pytest.raises(ValueError, match="unique names"):
        model.add(nd.DepthwiseConv1D(3, name="a"))
    with pytest.raises(ValueError, match="weight list of length 1"):
        model.set_weights([np.zeros(3)])
    with pytest.raises(ValueError, match="no layers"):
        nd.Sequential()(np.ones((1, 4, 2)))
