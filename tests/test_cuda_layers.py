"""The layers with their convolutions on the GPU (device="cuda"; the simulator in CI)."""

import numpy as np
import pytest
from gpu import requires_cuda
from test_layers import REGULARIZED, finite_difference_check

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_layer_on_the_gpu_matches_the_reference(data_format):
    layer = nd.DepthwiseConv1D(3, 2, "same", 2, data_format, 1, "gelu", device="cuda", **REGULARIZED)
    x = np.random.default_rng(0).standard_normal((2, 9, 3) if data_format == "channels_last" else (2, 3, 9))
    y = layer(x)
    assert isinstance(y, np.ndarray)
    pre = ref.conv1d_forward(x, layer.kernel, layer.bias, 2, "same", data_format)
    np.testing.assert_allclose(y, ref.activation("gelu", pre), rtol=1e-12, atol=1e-12)
    finite_difference_check(layer, x, 1)


def test_separable_layer_on_the_gpu_trains_like_the_cpu_layer():
    kwargs = dict(filters=3, kernel_size=3, padding="causal", depth_multiplier=2, activation="tanh",
                  pointwise_regularizer="l2", **REGULARIZED)
    gpu = nd.SeparableConv1D(**kwargs, device="cuda")
    cpu = nd.SeparableConv1D(**kwargs, device="cpu")
    x = np.random.default_rng(2).standard_normal((2, 8, 2))
    gpu(x)
    cpu(x)
    cpu.set_weights(gpu.get_weights())
    grad_y = np.random.default_rng(3).standard_normal((2, 8, 3))
    for layer in (gpu, cpu):
        layer(x)
        layer.backward(grad_y)
        nd.optimizers.SGD(0.1, momentum=0.9).step(layer)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    finite_difference_check(gpu, x, 4)


def test_device_arrays_are_refused_with_a_clear_error():
    layer = nd.DepthwiseConv1D(3)
    with pytest.raises(TypeError, match="device='cuda'"):
        layer(cuda.to_device(np.ones((1, 5, 2), np.float32)))


def test_float16_layer_on_the_gpu():
    layer = nd.SeparableConv1D(3, 3, activation="gelu", activity_regularizer="l2", dtype="float16", device="cuda")
    x = np.random.default_rng(5).standard_normal((2, 8, 2))
    y = layer(x)
    assert y.dtype == np.float16 and all(w.dtype == np.float16 for w in layer.weights)
    weights = [w.astype(np.float64) for w in layer.get_weights()]
    want = ref.activation("gelu", ref.separable_forward(x.astype(np.float16), *weights))
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=2e-2, atol=2e-2)
    grad_x = layer.backward(np.ones_like(y))
    assert grad_x.dtype == np.float64 and [g.dtype for g in layer.gradients] == [np.float16] * 3


def test_sequential_on_the_gpu_matches_the_cpu():
    def stack(device):
        return nd.Sequential([
            nd.SeparableConv1D(3, 3, padding="causal", activation="relu", dtype="float64", device=device, name="s",
                               depthwise_initializer=nd.initializers.GlorotUniform(seed=1),
                               pointwise_initializer=nd.initializers.GlorotUniform(seed=2)),
            nd.DepthwiseConv1D(2, dtype="float64", device=device, name="d",
                               depthwise_initializer=nd.initializers.GlorotUniform(seed=3)),
        ])

    gpu, cpu = stack("cuda"), stack("cpu")
    x = np.random.default_rng(8).standard_normal((2, 7, 2))
    np.testing.assert_allclose(gpu(x), cpu(x), rtol=1e-12, atol=1e-12)
    grad_y = np.ones_like(cpu(x))
    gpu(x)
    np.testing.assert_allclose(gpu.backward(grad_y), cpu.backward(grad_y), rtol=1e-12, atol=1e-12)
    for a, b in zip(gpu.gradients, cpu.gradients):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
