"""DepthwiseConv2D and SeparableConv2D: the 1D layers' contract on 2D data."""

import numpy as np
import pytest
from test_layers import DEPTHWISE_KEYS, REGULARIZED, SEPARABLE_KEYS, data, finite_difference_check

import numba_dwconv as nd
from numba_dwconv import reference as ref


def test_configs_and_round_trip():
    dw = nd.DepthwiseConv2D((3, 5), (2, 1), "same", 2, "channels_first", (1, 2), "relu6")
    config = dw.get_config()
    assert list(config) == DEPTHWISE_KEYS
    assert config["kernel_size"] == (3, 5) and config["strides"] == (2, 1) and config["dilation_rate"] == (1, 2)
    assert config["name"].startswith("depthwise_conv2d")
    assert nd.DepthwiseConv2D.from_config(config).get_config() == config
    sep = nd.SeparableConv2D(8, 3, pointwise_regularizer="l2")
    assert list(sep.get_config()) == SEPARABLE_KEYS and sep.get_config()["kernel_size"] == (3, 3)
    assert nd.SeparableConv2D.from_config(sep.get_config()).get_config() == sep.get_config()


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise2d_outputs_and_gradients(data_format):
    layer = nd.DepthwiseConv2D(3, (2, 1), "same", 2, data_format, 1, "tanh", **REGULARIZED)
    x = data((2, 7, 6, 3) if data_format == "channels_last" else (2, 3, 7, 6), 1)
    y = layer(x)
    assert [w.shape for w in layer.weights] == [(3, 3, 3, 2), (6,)]
    want = np.tanh(ref.conv2d_forward(x, layer.kernel, layer.bias, (2, 1), "same", data_format))
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert y.shape == layer.compute_output_shape(x.shape)
    finite_difference_check(layer, x, 2)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_separable2d_outputs_and_gradients(data_format):
    layer = nd.SeparableConv2D(4, (3, 2), 1, "valid", data_format, (2, 1), 2, "gelu", pointwise_regularizer="l1",
                               **REGULARIZED)
    x = data((2, 8, 6, 3) if data_format == "channels_last" else (2, 3, 8, 6), 3)
    y = layer(x)
    assert [w.shape for w in layer.weights] == [(3, 2, 3, 2), (1, 1, 6, 4), (4,)]
    pre = ref.separable2d_forward(x, *layer.weights, 1, "valid", data_format, (2, 1))
    np.testing.assert_allclose(y, ref.activation("gelu", pre), rtol=1e-12, atol=1e-12)
    finite_difference_check(layer, x, 4)


def test_2d_errors_and_weights_file(tmp_path):
    with pytest.raises(ValueError, match="padding='causal'"):
        nd.DepthwiseConv2D(3, padding="causal")
    with pytest.raises(ValueError, match="tuple of 2 integers"):
        nd.SeparableConv2D(4, (3, 3, 3))
    layer = nd.DepthwiseConv2D(3)
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        layer(np.ones((2, 5, 5), np.float32))
    layer(np.ones((1, 5, 5, 2), np.float32))
    layer.save_weights(tmp_path / "dw2d.npz")
    fresh = nd.DepthwiseConv2D(3)
    fresh.load_weights(tmp_path / "dw2d.npz")
    np.testing.assert_array_equal(fresh.kernel, layer.kernel)


def test_training_step_on_2d():
    layer = nd.SeparableConv2D(2, 3, padding="same", dtype="float64", depthwise_constraint="max_norm")
    x = data((2, 6, 6, 3), 5)
    y = layer(x)
    layer.backward(np.ones_like(y))
    nd.optimizers.SGD(0.1, momentum=0.5).step(layer)
    assert np.all(ref.norms_along(layer.depthwise_kernel, 0) <= 2.0 + 1e-9)
