"""Streaming causal layers and models: step() chunk by chunk equals one call on the whole sequence."""

import numpy as np
import pytest

import numba_dwconv as nd


def _model(layout):
    return nd.Sequential([
        nd.DepthwiseConv1D(3, padding="causal", dilation_rate=2, activation="silu", data_format=layout,
                           bias_initializer="random_normal"),
        nd.SeparableConv1D(6, 4, padding="causal", activation="gelu", data_format=layout, depth_multiplier=2),
        nd.DepthwiseConv1D(2, padding="causal", depth_multiplier=2, activation=np.tanh, data_format=layout),
    ])


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_a_causal_model_stepped_in_chunks_equals_the_whole_sequence(layout):
    rng = np.random.default_rng(0)
    length = 37
    x = rng.standard_normal((2, length, 3) if layout == "channels_last" else (2, 3, length)).astype(np.float32)
    model = _model(layout)
    whole = model(x)
    axis = 1 if layout == "channels_last" else 2
    for cuts in ([1, 2, 3, 10, 11, 30], [5], list(range(1, length))):  # chunk lengths 1 included
        states = model.initial_state(2)
        outs = []
        for a, b in zip([0, *cuts], [*cuts, length]):
            piece = np.take(x, np.arange(a, b), axis=axis)
            y, states = model.step(piece, states)
            outs.append(y)
        np.testing.assert_allclose(np.concatenate(outs, axis=axis), whole, rtol=2e-5, atol=2e-6)
    first, _ = model.step(np.take(x, np.arange(4), axis=axis))  # no states: the start of the sequences
    np.testing.assert_allclose(first, np.take(whole, np.arange(4), axis=axis), rtol=2e-5, atol=2e-6)


def test_layers_that_cannot_stream_say_so():
    x = np.ones((1, 8, 2), np.float32)
    for layer in (nd.DepthwiseConv1D(3, padding="same", name="same_one"),
                  nd.DepthwiseConv1D(3, padding="causal", strides=2, name="strided_one"),
                  nd.SeparableConv1D(2, 3, padding="valid", name="valid_one")):
        with pytest.raises(ValueError, match=layer.name):
            layer.step(x)
    conv2d = nd.DepthwiseConv2D(3, padding="same", name="plane")
    conv2d(np.ones((1, 4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="plane"):
        conv2d.initial_state(1)
    model = nd.Sequential([nd.DepthwiseConv1D(3, padding="causal"), nd.DepthwiseConv1D(3, padding="same",
                                                                                      name="not_causal")])
    with pytest.raises(ValueError, match="not_causal"):
        model.step(x)


def test_state_arguments_are_checked():
    layer = nd.DepthwiseConv1D(3, padding="causal")
    with pytest.raises(ValueError, match="build"):
        layer.initial_state(2)
    layer(np.ones((2, 8, 2), np.float32))
    assert layer.initial_state(2).shape == (2, 2, 2)
    with pytest.raises(ValueError, match="state"):
        layer.step(np.ones((2, 8, 2), np.float32), np.zeros((2, 3, 2), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        layer.initial_state(0)
    with pytest.raises(ValueError, match="states"):
        nd.Sequential([layer]).step(np.ones((2, 8, 2), np.float32), [None, None])
