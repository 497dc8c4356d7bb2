"""``activation=`` on the GPU path (simulator in CI): forward, gradients at the activated outputs, separable."""

import numpy as np
import pytest
from cases import assert_close, make_case
from gpu import requires_cuda

import numba_dwconv as nd
from numba_dwconv import activations
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", ["silu", "gelu", "relu6", "swish"])
def test_1d_activation_on_device_arrays(data_format, name):
    rng = np.random.default_rng(5)
    x, kernel, bias = make_case(rng, 2, 11, 3, 3, 2, data_format, np.float32)
    y = nd.depthwise_conv1d(cuda.to_device(x), kernel, bias, 1, "same", data_format, activation=name)
    assert not isinstance(y, np.ndarray)
    canonical = activations.get(name).name
    pre = ref.conv1d_forward(x, kernel, bias, 1, "same", data_format, 1)
    assert_close(y, ref.activation(canonical, pre), np.float32)
    grad_y = rng.standard_normal(pre.shape).astype(np.float32)
    grads = nd.depthwise_conv1d_backward(cuda.to_device(grad_y), cuda.to_device(x), kernel, 1, "same", data_format,
                                         bias=bias, activation=name)
    chain = grad_y * activations.get(name).derivative(pre)
    for got, want in zip(grads, ref.conv1d_gradients(chain, x, kernel, 1, "same", data_format, 1)):
        assert_close(got, want, np.float32)


def test_2d_and_separable_activations_with_numpy_operands_on_the_gpu():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 5, 4, 2))
    kernel = rng.standard_normal((3, 3, 2, 1))
    bias = rng.standard_normal(2)
    y = nd.depthwise_conv2d(x, kernel, bias, padding="same", activation="tanh", device="cuda")
    pre = ref.conv2d_forward(x, kernel, bias, 1, "same", "channels_last", 1)
    assert isinstance(y, np.ndarray)
    assert_close(y, np.tanh(pre), np.float64)
    pointwise = rng.standard_normal((1, 2, 3))
    pbias = rng.standard_normal(3)
    x1 = rng.standard_normal((2, 7, 2))
    y1 = nd.separable_conv1d(x1, kernel[0], pointwise, pbias, padding="causal", activation="softplus", device="cuda")
    pre1 = ref.separable_forward(x1, kernel[0], pointwise, pbias, 1, "causal", "channels_last", 1)
    assert_close(y1, ref.activation("softplus", pre1), np.float64)
    grad_y = rng.standard_normal(y1.shape)
    grads = nd.separable_conv1d_backward(grad_y, x1, kernel[0], pointwise, padding="causal", bias=pbias,
                                         activation="softplus", device="cuda")
    chain = grad_y * activations.softplus.derivative(pre1)
    for got, want in zip(grads, ref.separable_gradients(chain, x1, kernel[0], pointwise, 1, "causal", "channels_last",
                                                        1)):
        assert_close(got, want, np.float64)


def test_a_python_callable_cannot_run_on_the_gpu():
    x, kernel = np.ones((1, 6, 2), np.float32), np.ones((3, 2, 1), np.float32)
    with pytest.raises(NotImplementedError, match="built-in activation"):
        nd.depthwise_conv1d(x, kernel, activation=np.tanh, device="cuda")
