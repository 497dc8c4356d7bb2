"""Explicit padding amounts on the GPU kernels (simulator in CI) equal the CPU kernels."""

import numpy as np
import pytest
from gpu import requires_cuda
from test_explicit_padding import CASES

import numba_dwconv as nd
from numba_dwconv._geometry import ExplicitPadding

pytestmark = requires_cuda


@pytest.mark.parametrize("rank,channels_last,kernel,length,stride,dilation,pads,mult", CASES)
def test_explicit_padding_on_the_gpu_equals_the_cpu(rank, channels_last, kernel, length, stride, dilation, pads, mult):
    rng = np.random.default_rng(len(pads) + sum(kernel))
    channels = 3
    x = rng.standard_normal((2, *length, channels) if channels_last else (2, channels, *length)).astype(np.float32)
    k = rng.standard_normal((*kernel, channels, mult)).astype(np.float32)
    b = rng.standard_normal(channels * mult).astype(np.float32)
    forward = nd.depthwise_conv1d if rank == 1 else nd.depthwise_conv2d
    backward = nd.depthwise_conv1d_backward if rank == 1 else nd.depthwise_conv2d_backward
    args = (stride, ExplicitPadding(pads), "channels_last" if channels_last else "channels_first", dilation)
    want = forward(x, k, b, *args, device="cpu")
    np.testing.assert_allclose(forward(x, k, b, *args, device="cuda"), want, rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(want.shape).astype(np.float32)
    for got, expected in zip(backward(g, x, k, *args, device="cuda"), backward(g, x, k, *args, device="cpu")):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
