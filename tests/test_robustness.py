"""Odd inputs: every one gets the right answer or a clean error, and a failed call changes nothing."""

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import reference as ref


def _built_layer():
    layer = nd.DepthwiseConv1D(3, depth_multiplier=2)
    layer(np.ones((1, 5, 4), np.float32))
    return layer


def test_set_weights_is_atomic_and_refuses_non_real_arrays():
    layer = _built_layer()
    before = layer.get_weights()
    new_kernel = np.full(before[0].shape, 7.0)
    with pytest.raises(ValueError, match="not compatible"):
        layer.set_weights([new_kernel, np.zeros(3)])  # the second fails: the first must not be assigned
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    for bad in (before[0].astype(object), before[0].astype(complex), before[0].astype(str)):
        with pytest.raises(TypeError, match="kernel"):
            layer.set_weights([bad, before[1]])
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_sequential_set_weights_is_atomic():
    model = nd.Sequential([nd.DepthwiseConv1D(3, name="a"), nd.DepthwiseConv1D(3, name="b")])
    model(np.ones((1, 6, 2), np.float32))
    before = model.get_weights()
    bad = [np.ones_like(w) for w in before]
    bad[3] = np.ones(5)
    with pytest.raises(ValueError):
        model.set_weights(bad)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_load_weights_errors_name_keys_and_change_nothing(tmp_path):
    layer = _built_layer()
    before = layer.get_weights()
    np.savez(tmp_path / "other.npz", foo=np.ones(3), bar=np.zeros(2))
    keys = r"missing keys \['000_kernel', '001_bias'\].*unexpected keys \['bar', 'foo'\]"
    with pytest.raises(ValueError, match=keys):
        layer.load_weights(tmp_path / "other.npz")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match="holds no weights"):
        layer.load_weights(tmp_path / "empty.npz")
    for got, want in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, want)

    fresh = nd.DepthwiseConv1D(3, depth_multiplier=2)
    np.savez(tmp_path / "bad_bias.npz", **{"000_kernel": before[0], "001_bias": np.ones(3)})
    with pytest.raises(ValueError, match="not compatible"):
        fresh.load_weights(tmp_path / "bad_bias.npz")
    assert not fresh.built and fresh.weights == []  # no random weights left behind

    layer.save_weights(tmp_path / "good.npz")
    fresh.load_weights(tmp_path / "good.npz")
    for got, want in zip(fresh.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_sequential_load_weights_is_atomic(tmp_path):
    model = nd.Sequential([nd.DepthwiseConv1D(3, name="a"), nd.DepthwiseConv1D(3, name="b")])
    model(np.ones((1, 6, 2), np.float32))
    model.save_weights(tmp_path / "w.npz")
    arrays = dict(np.load(tmp_path / "w.npz"))
    key = sorted(arrays)[-1]
    arrays[key] = np.ones(7, np.float32)  # the last layer's bias has the wrong shape
    np.savez(tmp_path / "bad.npz", **arrays)
    fresh = nd.Sequential([nd.DepthwiseConv1D(3, name="a"), nd.DepthwiseConv1D(3, name="b")])
    with pytest.raises(ValueError):
        fresh.load_weights(tmp_path / "bad.npz")
    assert not any(layer.built for layer in fresh.layers)
    np.savez(tmp_path / "renamed.npz", **{k.replace("kernel", "weights"): v for k, v in arrays.items()})
    with pytest.raises(ValueError, match="missing keys"):
        fresh.load_weights(tmp_path / "renamed.npz")


def test_numpy_scalars_are_accepted_as_real_numbers():
    layer = nd.DepthwiseConv1D(3, depth_multiplier=2, depthwise_regularizer=nd.regularizers.L2(np.float32(0.5)))
    layer(np.ones((1, 5, 4), np.float32))
    assert layer.losses and np.isclose(layer.losses[0], 0.5 * np.sum(layer.kernel.astype(np.float64) ** 2), rtol=1e-5)
    layer.gradients = [np.ones_like(w) for w in layer.weights]
    before = layer.get_weights()
    nd.optimizers.SGD(np.float32(0.25), momentum=np.float64(0.0)).step(layer)
    np.testing.assert_allclose(layer.kernel, before[0] - 0.25, rtol=1e-6)
    nd.optimizers.Adam(np.float16(0.001), beta_1=np.float32(0.9))
    nd.regularizers.L1L2(l1=np.float64(0.1), l2=np.int64(1))
    with pytest.raises(ValueError, match="learning_rate"):
        nd.optimizers.SGD("0.1")
    with pytest.raises(ValueError, match="beta_1"):
        nd.optimizers.Adam(beta_1="x")
    with pytest.raises(ValueError, match="l2"):
        nd.regularizers.L2(np.bool_(True))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_non_native_byte_order_is_converted(data_format):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 3) if data_format == "channels_last" else (2, 3, 9)).astype(">f4")
    kernel = rng.standard_normal((3, 3, 2)).astype(">f8")
    y = nd.depthwise_conv1d(x, kernel, padding="same", data_format=data_format)
    assert y.dtype == np.float64 and y.dtype.isnative
    np.testing.assert_allclose(y, ref.conv1d_forward(x, kernel, None, 1, "same", data_format), rtol=1e-6, atol=1e-6)
    x2 = rng.standard_normal((1, 5, 6, 2)).astype(">f4")
    y2 = nd.depthwise_conv2d(x2, rng.standard_normal((3, 3, 2, 1)).astype(">f4"), padding="same")
    assert y2.dtype == np.float32
    grads = nd.depthwise_conv1d_backward(np.ones(y.shape, ">f8"), x, kernel, padding="same", data_format=data_format)
    assert all(g.dtype.isnative for g in grads)


def test_zero_channels_is_the_same_value_error_for_every_op():
    x1, k1 = np.ones((2, 5, 0)), np.ones((3, 0, 2))
    x2, k2 = np.ones((2, 5, 5, 0)), np.ones((3, 3, 0, 2))
    calls = [
        lambda: nd.depthwise_conv1d(x1, k1),
        lambda: nd.depthwise_conv1d_backward(np.ones((2, 3, 0)), x1, k1),
        lambda: nd.depthwise_conv1d_input_grad(np.ones((2, 3, 0)), k1, 5),
        lambda: nd.depthwise_conv1d_kernel_grad(np.ones((2, 3, 0)), x1, 3),
        lambda: nd.separable_conv1d(x1, k1, np.ones((1, 0, 4))),
        lambda: nd.separable_conv1d_backward(np.ones((2, 3, 4)), x1, k1, np.ones((1, 0, 4))),
        lambda: nd.depthwise_conv2d(x2, k2),
        lambda: nd.depthwise_conv2d_backward(np.ones((2, 3, 3, 0)), x2, k2),
        lambda: nd.depthwise_conv2d_input_grad(np.ones((2, 3, 3, 0)), k2, 5),
        lambda: nd.depthwise_conv2d_kernel_grad(np.ones((2, 3, 3, 0)), x2, 3),
        lambda: nd.separable_conv2d(x2, k2, np.ones((1, 1, 0, 4))),
        lambda: nd.DepthwiseConv1D(3)(np.ones((2, 5, 0), np.float32)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="at least one channel"):
            call()
