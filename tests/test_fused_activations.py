"""Activations applied inside the kernels (``activation=``): forward, gradients, separable ops, layers."""

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import activations
from numba_dwconv import reference as ref

NAMES = sorted(activations.ALL) + ["swish", "hard_swish"]


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


def _problem(rng, rank, layout, dtype, channels=3, mult=2):
    spatial = (19,) if rank == 1 else (7, 6)
    shape = (2, *spatial, channels) if layout == "channels_last" else (2, channels, *spatial)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    kernel = rng.standard_normal((3,) * rank + (channels, mult)).astype(dtype)
    bias = rng.standard_normal(channels * mult).astype(dtype)
    return x, kernel, bias


def _ops(rank):
    if rank == 1:
        return nd.depthwise_conv1d, nd.depthwise_conv1d_backward, ref.conv1d_forward, ref.conv1d_gradients
    return nd.depthwise_conv2d, nd.depthwise_conv2d_backward, ref.conv2d_forward, ref.conv2d_gradients


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_every_activation_in_the_1d_kernels_matches_the_reference(layout, dtype):
    rng = np.random.default_rng(0)
    x, kernel, bias = _problem(rng, 1, layout, dtype)
    pre = ref.conv1d_forward(x, kernel, bias, 2, "same", layout, 1)
    grad_y = rng.standard_normal(pre.shape).astype(dtype)
    for name in NAMES:
        canonical = activations.get(name).name
        y = nd.depthwise_conv1d(x, kernel, bias, 2, "same", layout, activation=name)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, ref.activation(canonical, pre), **_tol(dtype), err_msg=name)
        grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, 2, "same", layout, bias=bias, activation=name)
        chain = grad_y * activations.get(name).derivative(pre)
        want = ref.conv1d_gradients(chain, x, kernel, 2, "same", layout, 1)
        for got, expected in zip(grads, want):
            scale = np.abs(expected).max() + 1
            np.testing.assert_allclose(got / scale, expected / scale, **_tol(dtype), err_msg=name)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_2d_kernels_apply_the_activation(layout):
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        x, kernel, bias = _problem(rng, 2, layout, dtype)
        pre = ref.conv2d_forward(x, kernel, bias, 1, "same", layout, 1)
        grad_y = rng.standard_normal(pre.shape).astype(dtype)
        for name in ("silu", "gelu", "relu6", "tanh"):
            y = nd.depthwise_conv2d(x, kernel, bias, 1, "same", layout, activation=name)
            np.testing.assert_allclose(y, ref.activation(name, pre), **_tol(dtype), err_msg=name)
            grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, 1, "same", layout, bias=bias, activation=name)
            want = ref.conv2d_gradients(grad_y * activations.get(name).derivative(pre), x, kernel, 1, "same", layout, 1)
            for got, expected in zip(grads, want):
                scale = np.abs(expected).max() + 1
                np.testing.assert_allclose(got / scale, expected / scale, **_tol(dtype), err_msg=name)


@pytest.mark.parametrize("name", sorted(activations.ALL))
def test_gradients_through_the_activation_by_finite_differences(name):
    rng = np.random.default_rng(2)
    x, kernel, bias = _problem(rng, 1, "channels_last", np.float64, channels=2, mult=1)
    kw = dict(padding="causal", dilation_rate=2, activation=name)
    grad_y = rng.standard_normal(nd.depthwise_conv1d(x, kernel, bias, **kw).shape)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, padding="causal", dilation_rate=2, bias=bias,
                                         activation=name)

    def loss(x_, k_, b_):
        return float(np.sum(nd.depthwise_conv1d(x_, k_, b_, **kw) * grad_y))

    eps = 1e-6
    for got, array, slot in ((grads.grad_inputs, x, 0), (grads.grad_kernel, kernel, 1), (grads.grad_bias, bias, 2)):
        numeric = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            args = [x, kernel, bias]
            plus, minus = array.copy(), array.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args[slot] = plus
            up = loss(*args)
            args[slot] = minus
            numeric[idx] = (up - loss(*args)) / (2 * eps)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rank", [1, 2])
def test_separable_ops_activate_after_the_pointwise_step_and_bias(rank):
    rng = np.random.default_rng(3)
    x, depthwise, _ = _problem(rng, rank, "channels_last", np.float64)
    pointwise = rng.standard_normal((1,) * rank + (6, 4))
    bias = rng.standard_normal(4)
    forward = nd.separable_conv1d if rank == 1 else nd.separable_conv2d
    backward = nd.separable_conv1d_backward if rank == 1 else nd.separable_conv2d_backward
    ref_forward = ref.separable_forward if rank == 1 else ref.separable2d_forward
    ref_grads = ref.separable_gradients if rank == 1 else ref.separable2d_gradients
    pre = ref_forward(x, depthwise, pointwise, bias, 1, "same", "channels_last", 1)
    y = forward(x, depthwise, pointwise, bias, padding="same", activation="mish")
    np.testing.assert_allclose(y, ref.activation("mish", pre), rtol=1e-12, atol=1e-12)
    grad_y = rng.standard_normal(y.shape)
    grads = backward(grad_y, x, depthwise, pointwise, padding="same", bias=bias, activation="mish")
    want = ref_grads(grad_y * activations.mish.derivative(pre), x, depthwise, pointwise, 1, "same", "channels_last", 1)
    for got, expected in zip(grads, want):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-11)


def test_layers_fuse_named_activations_and_match_the_numpy_path():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 15, 4)).astype(np.float32)
    grad_y = rng.standard_normal((2, 15, 8)).astype(np.float32)
    silu = activations.silu
    numpy_silu = activations.Activation("numpy_silu", silu, silu.derivative)  # not a built-in: NumPy path
    results = []
    for act in ("silu", numpy_silu):
        layer = nd.DepthwiseConv1D(3, padding="causal", depth_multiplier=2, activation=act,
                                   bias_initializer="random_normal", activity_regularizer="l2")
        layer.build(x.shape)
        layer.kernel[...] = np.linspace(-1, 1, layer.kernel.size).reshape(layer.kernel.shape)
        layer.bias[...] = np.linspace(-0.5, 0.5, layer.bias.size)
        y = layer(x)
        results.append((y, layer.backward(grad_y), layer.gradients, layer._last_call[3]))
    (y0, gx0, gw0, fused0), (y1, gx1, gw1, fused1) = results
    assert fused0 == "silu" and fused1 is None
    np.testing.assert_allclose(y0, y1, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(gx0, gx1, rtol=2e-5, atol=2e-5)
    for a, b in zip(gw0, gw1):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_non_finite_values_and_the_padding_rule_follow_the_unfused_results():
    x = np.array([[[np.nan], [np.inf], [-np.inf], [1.0], [-100.0], [100.0]]], np.float32)
    kernel = np.ones((1, 1, 1), np.float32)
    for name in ("silu", "gelu", "relu", "sigmoid", "softplus", "exponential"):
        fused = nd.depthwise_conv1d(x, kernel, activation=name)
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 in NumPy's formulas
            expected = activations.get(name)(x)
        np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-30, equal_nan=True, err_msg=name)
    # a non-finite weight on a tap that reads padding: Keras' NaN rule, then the activation
    x = np.ones((1, 5, 1), np.float32)
    kernel = np.array([[[np.inf]], [[1.0]], [[1.0]]], np.float32)
    plain = nd.depthwise_conv1d(x, kernel, padding="same")
    np.testing.assert_array_equal(nd.depthwise_conv1d(x, kernel, padding="same", activation="tanh"), np.tanh(plain))


def test_bad_activations_are_refused():
    x, kernel = np.ones((1, 5, 2)), np.ones((3, 2, 1))
    with pytest.raises(ValueError, match="activation"):
        nd.depthwise_conv1d(x, kernel, activation="nope")
    with pytest.raises(ValueError, match="activation"):
        nd.depthwise_conv2d(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 1)), activation=3)
    no_derivative = nd.depthwise_conv1d(x, kernel, activation=np.tanh)  # a callable is applied to the result
    np.testing.assert_allclose(no_derivative, np.tanh(nd.depthwise_conv1d(x, kernel)))
    with pytest.raises(TypeError, match="derivative"):
        nd.depthwise_conv1d_backward(np.ones((1, 3, 2)), x, kernel, activation=np.tanh)
