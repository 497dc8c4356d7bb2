"""The GPU path (numba-cuda), checked against numba_dwconv.reference.

Runs on a real GPU, or in CI under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported: see .ci/run).  Under
the simulator the launch configuration is shrunk to a few threads so that
multi-block grids, grid-stride loops and the two-pass reduction all run, and
the parameter grid is thinned (every case still runs on a real GPU).  Tests that
need real hardware (CuPy/PyTorch interop, timings) are marked ``gpu_hardware``.
"""

import itertools
import random

import numpy as np
import pytest
from cases import assert_close, host, make_case
from gpu import SIMULATOR, hardware_only, requires_cuda

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda


GRID = list(
    itertools.product(
        ["valid", "same", "causal"], [1, 2, 3], [1, 2, 3], [1, 3], ["channels_last", "channels_first"],
        [np.float32, np.float64],
    )
)
if SIMULATOR:  # a fixed random sixth of the grid (the simulator runs each GPU thread in Python)
    GRID = random.Random(0).sample(GRID, len(GRID) // 6)


@pytest.mark.parametrize(("padding", "stride", "dilation", "mult", "data_format", "dtype"), GRID)
def test_grid_on_device_arrays(padding, stride, dilation, mult, data_format, dtype):
    rng = np.random.default_rng(abs(hash((padding, stride, dilation, mult, data_format))) % 2**32)
    x, kernel, bias = make_case(rng, 2, 11, 3, 4, mult, data_format, dtype)
    x_dev = cuda.to_device(x)
    y = nd.depthwise_conv1d(x_dev, kernel, bias, stride, padding, data_format, dilation)
    assert not isinstance(y, np.ndarray)  # auto: stays on the device
    assert y.dtype == dtype
    assert_close(y, ref.conv1d_forward(x, kernel, bias, stride, padding, data_format, dilation), dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = ref.conv1d_gradients(grad_y, x, kernel, stride, padding, data_format, dilation)
    grads = nd.depthwise_conv1d_backward(cuda.to_device(grad_y), x_dev, kernel, stride, padding, data_format,
                                         dilation)
    for got, expected in zip(grads, want):
        assert_close(got, expected, dtype)
    length = x.shape[1] if data_format == "channels_last" else x.shape[2]
    grad_x = nd.depthwise_conv1d_input_grad(grad_y, kernel, length, stride, padding, data_format, dilation,
                                            device="cuda")
    assert isinstance(grad_x, np.ndarray)  # NumPy in, device="cuda": NumPy out
    assert_close(grad_x, want[0], dtype)
    grad_k, grad_b = nd.depthwise_conv1d_kernel_grad(grad_y, x, 4, stride, padding, data_format, dilation,
                                                     device="cuda")
    assert_close(grad_k, want[1], dtype)
    assert_close(grad_b, want[2], dtype)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_float16_accumulates_in_float32(data_format):
    rng = np.random.default_rng(1)
    x, kernel, bias = make_case(rng, 2, 17, 3, 5, 2, data_format, np.float16)
    y = nd.depthwise_conv1d(x, kernel, bias, 1, "same", data_format, device="cuda")
    assert y.dtype == np.float16
    assert_close(y, ref.conv1d_forward(x, kernel, bias, 1, "same", data_format), np.float16)
    grad_y = rng.standard_normal(y.shape).astype(np.float16)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same", data_format, device="cuda")
    for got, want in zip(grads, ref.conv1d_gradients(grad_y, x, kernel, 1, "same", data_format)):
        assert got.dtype == np.float16
        assert_close(got, want, np.float16)


def test_float16_is_refused_on_the_cpu():
    x = np.zeros((1, 4, 2), np.float16)
    with pytest.raises(TypeError, match="inputs.*float16"):
        nd.depthwise_conv1d(x, np.zeros((1, 2, 1), np.float16), device="cpu")


def test_mixed_placements():
    rng = np.random.default_rng(2)
    x, kernel, bias = make_case(rng, 2, 12, 3, 3, 1, "channels_last", np.float32)
    want = ref.conv1d_forward(x, kernel, bias, 1, "same")
    # data on the GPU, weights in NumPy: runs on the GPU
    y = nd.depthwise_conv1d(cuda.to_device(x), kernel, bias, padding="same")
    assert not isinstance(y, np.ndarray)
    assert_close(y, want, np.float32)
    # data in NumPy, weights on the GPU: runs where the data is (CPU), NumPy out
    y = nd.depthwise_conv1d(x, cuda.to_device(kernel), cuda.to_device(bias), padding="same")
    assert isinstance(y, np.ndarray)
    assert_close(y, want, np.float32)
    # device="cpu" with device arrays: copied to the host
    y = nd.depthwise_conv1d(cuda.to_device(x), cuda.to_device(kernel), padding="same", device="cpu")
    assert isinstance(y, np.ndarray)
    assert_close(y, ref.conv1d_forward(x, kernel, None, 1, "same"), np.float32)


def test_dtype_promotion_on_the_device():
    rng = np.random.default_rng(3)
    x, kernel, _ = make_case(rng, 1, 9, 2, 3, 1, "channels_last", np.float32)
    y = nd.depthwise_conv1d(cuda.to_device(x), kernel.astype(np.float64))
    assert y.dtype == np.float64
    assert_close(y, ref.conv1d_forward(x, kernel), np.float64)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_batch_zero_on_the_device(data_format):
    x, kernel, bias = make_case(np.random.default_rng(4), 0, 10, 3, 3, 2, data_format, np.float32)
    y = nd.depthwise_conv1d(x, kernel, bias, 2, "same", data_format, device="cuda")
    assert y.shape == ((0, 5, 6) if data_format == "channels_last" else (0, 6, 5))
    grads = nd.depthwise_conv1d_backward(np.zeros(y.shape, np.float32), x, kernel, 2, "same", data_format,
                                         device="cuda")
    np.testing.assert_array_equal(grads.grad_kernel, np.zeros_like(kernel))
    np.testing.assert_array_equal(grads.grad_bias, np.zeros(6, np.float32))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_gradients_are_deterministic_on_the_device(data_format):
    rng = np.random.default_rng(5)
    x, kernel, _ = make_case(rng, 2, 40, 3, 5, 2, data_format, np.float32)
    grad_y = rng.standard_normal((2, 40, 6) if data_format == "channels_last" else (2, 6, 40)).astype(np.float32)
    first = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same", data_format, device="cuda")
    again = nd.depthwise_conv1d_backward(grad_y, x, kernel, 1, "same", data_format, device="cuda")
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_inputs_on_the_device_are_not_modified():
    rng = np.random.default_rng(6)
    x, kernel, bias = make_case(rng, 2, 12, 3, 3, 1, "channels_last", np.float32)
    x_dev, k_dev = cuda.to_device(x), cuda.to_device(kernel)
    y = nd.depthwise_conv1d(x_dev, k_dev, bias, padding="causal")
    nd.depthwise_conv1d_backward(y, x_dev, k_dev, padding="causal")
    np.testing.assert_array_equal(x_dev.copy_to_host(), x)
    np.testing.assert_array_equal(k_dev.copy_to_host(), kernel)


def test_stream_argument():
    rng = np.random.default_rng(7)
    x, kernel, bias = make_case(rng, 1, 10, 2, 3, 1, "channels_last", np.float32)
    stream = cuda.stream()
    y = nd.depthwise_conv1d(cuda.to_device(x, stream=stream), kernel, bias, stream=stream)
    stream.synchronize()
    assert_close(y, ref.conv1d_forward(x, kernel, bias), np.float32)
    with pytest.raises(ValueError, match="stream.*'fast'"):
        nd.depthwise_conv1d(x, kernel, device="cuda", stream="fast")
    with pytest.raises(ValueError, match="stream.*GPU calls only"):
        nd.depthwise_conv1d(x, kernel, device="cpu", stream=stream)


@hardware_only
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_non_contiguous_device_inputs(data_format):
    rng = np.random.default_rng(8)
    big = rng.standard_normal((2, 30, 8)).astype(np.float32)
    x = big[:, ::2, ::2]  # (2, 15, 4): (batch, length, channels) or (batch, channels, length)
    kernel_channels = x.shape[2] if data_format == "channels_last" else x.shape[1]
    kernel = rng.standard_normal((3, kernel_channels, 1)).astype(np.float32)
    x_dev = cuda.to_device(big)[:, ::2, ::2]
    assert not x_dev.is_c_contiguous()
    y = nd.depthwise_conv1d(x_dev, kernel, None, 1, "same", data_format)
    assert_close(y, ref.conv1d_forward(x, kernel, None, 1, "same", data_format), np.float32)


@hardware_only
def test_cupy_and_torch_arrays_zero_copy():
    rng = np.random.default_rng(9)
    x, kernel, bias = make_case(rng, 2, 32, 4, 3, 1, "channels_last", np.float32)
    want = ref.conv1d_forward(x, kernel, bias, 1, "same")
    cupy = pytest.importorskip("cupy")
    y = nd.depthwise_conv1d(cupy.asarray(x), kernel, bias, padding="same")
    assert_close(cupy.asnumpy(cupy.asarray(y)), want, np.float32)  # wrapping the result is zero-copy
    torch = pytest.importorskip("torch")
    y = nd.depthwise_conv1d(torch.from_numpy(x).cuda(), kernel, bias, padding="same")
    assert_close(torch.as_tensor(y, device="cuda").cpu().numpy(), want, np.float32)


@hardware_only
def test_pooled_device_outputs_are_not_reused_while_a_view_lives():
    rng = np.random.default_rng(10)
    x, kernel, bias = make_case(rng, 2, 4096, 64, 3, 1, "channels_last", np.float32)
    x_dev = cuda.to_device(x)
    y = nd.depthwise_conv1d(x_dev, kernel, bias, padding="same")
    view = y[1:, ::2]
    expected = view.copy_to_host()
    del y
    for _ in range(3):  # new outputs of the same size must not land on the viewed block
        z = nd.depthwise_conv1d(x_dev, kernel * 2, bias, padding="same")
    cuda.synchronize()
    np.testing.assert_array_equal(view.copy_to_host(), expected)
    assert_close(z, ref.conv1d_forward(x, kernel * 2, bias, 1, "same"), np.float32)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_infinity_next_to_the_padding_does_not_leak(data_format):
    """Padding reads as an exact zero: outputs whose taps skip an infinite input stay finite."""
    x = np.ones((1, 12, 2), np.float32)
    x[0, 0, :] = np.inf
    x[0, -1, :] = np.inf
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    kernel = np.ones((3, 2, 1), np.float32)
    want = ref.conv1d_forward(x, kernel, None, 1, "same", data_format, 2)  # y[1] reads x[-1], x[1], x[3]
    for device in ("cpu", "cuda"):
        y = host(nd.depthwise_conv1d(x, kernel, None, 1, "same", data_format, 2, device=device))
        np.testing.assert_array_equal(np.isfinite(y), np.isfinite(want))
        np.testing.assert_array_equal(y[np.isfinite(want)], want[np.isfinite(want)])
        grad = np.ones_like(y)
        grad_k = host(nd.depthwise_conv1d_kernel_grad(grad, x, 3, 1, "same", data_format, 2, device=device)[0])
        want_k = ref.conv1d_gradients(grad, x, kernel, 1, "same", data_format, 2)[1]
        np.testing.assert_array_equal(np.isfinite(grad_k), np.isfinite(want_k))
