"""Carried state and the decode step on the GPU path (simulator in CI)."""

import numpy as np
import pytest
from cases import assert_close, host
from gpu import requires_cuda

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda


def _shape(batch, length, channels, layout):
    return (batch, length, channels) if layout == "channels_last" else (batch, channels, length)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_chunks_on_device_arrays_equal_one_call(layout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(_shape(2, 10, 3, layout)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 1)).astype(np.float32)
    kw = dict(padding="causal", data_format=layout, dilation_rate=2)
    whole = nd.depthwise_conv1d(x, kernel, **kw)
    outs, state = [], None
    for a, b in ((0, 3), (3, 4), (4, 10)):
        piece = cuda.to_device(np.ascontiguousarray(x[:, a:b] if layout == "channels_last" else x[:, :, a:b]))
        y, state = nd.depthwise_conv1d(piece, kernel, initial_state=state, return_final_state=True, **kw)
        assert not isinstance(y, np.ndarray) and not isinstance(state, np.ndarray)
        outs.append(host(y))
    assert_close(np.concatenate(outs, axis=1 if layout == "channels_last" else 2), whole, np.float32)
    state0 = rng.standard_normal(_shape(2, 4, 3, layout)).astype(np.float32)
    grad_y = rng.standard_normal(whole.shape).astype(np.float32)
    grads = nd.depthwise_conv1d_backward(cuda.to_device(grad_y), cuda.to_device(x), kernel,
                                         initial_state=cuda.to_device(state0), **kw)
    for got, want in zip(grads, ref.conv1d_with_state_gradients(grad_y, x, kernel, state0, layout, 2)):
        assert_close(got, want, np.float32)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_update_on_the_gpu_updates_the_device_state_in_place(layout):
    rng = np.random.default_rng(2)
    ksize, channels, mult, slots = 3, 4, 2, 3
    kernel = rng.standard_normal((ksize, channels, mult))
    bias = rng.standard_normal(channels * mult)
    state_host = rng.standard_normal(_shape(slots, ksize - 1, channels, layout))
    state = cuda.to_device(state_host)
    expected_state = state_host.copy()
    for steps in (1, 3):
        inputs = rng.standard_normal(_shape(2, steps, channels, layout))
        indices = np.array([2, -1]) if steps == 1 else np.array([0, 2])
        out = nd.depthwise_conv1d_update(cuda.to_device(inputs), state, kernel, bias, 1, layout, activation="silu",
                                         state_indices=indices)
        want, expected_state = ref.conv1d_update(inputs, expected_state, kernel, bias, layout, 1, indices)
        want = np.where(want == 0, 0.0, nd.activations.silu(want))
        assert_close(out, want, np.float64)
        assert_close(state, expected_state, np.float64)
    with pytest.raises(ValueError, match="GPU array"):
        nd.depthwise_conv1d_update(cuda.to_device(inputs), state_host, kernel, data_format=layout, device="cuda")


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_packed_sequences_on_the_gpu(layout):
    rng = np.random.default_rng(3)
    ids = np.array([[0, 0, 0, 1, 1, 2, 2, 2, -1], [4, 4, 4, 4, 4, 4, 7, 7, 7]])
    x = rng.standard_normal(_shape(2, 9, 2, layout))
    kernel = rng.standard_normal((3, 2, 2))
    bias = rng.standard_normal(4)
    kw = dict(padding="causal", data_format=layout, dilation_rate=1, sequence_ids=ids)
    y = nd.depthwise_conv1d(cuda.to_device(x), kernel, bias, activation="sigmoid", **kw)
    pre = ref.conv1d_packed(x, kernel, bias, ids, layout, 1)
    mask = (ids < 0)[:, :, None] if layout == "channels_last" else (ids < 0)[:, None, :]
    assert_close(y, np.where(mask, 0.0, nd.activations.sigmoid(pre)), np.float64)
    grad_y = rng.standard_normal(pre.shape)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, bias=bias, activation="sigmoid", device="cuda", **kw)
    chain = np.where(mask, 0.0, grad_y * nd.activations.sigmoid.derivative(pre))
    for got, want in zip(grads, ref.conv1d_packed_gradients(chain, x, kernel, ids, layout, 1)):
        assert isinstance(got, np.ndarray)
        assert_close(got, want, np.float64)
