"""Causal 1D convolution over a carried state: chunked sequences, their gradients, the decode step."""

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import reference as ref

LAYOUTS = ["channels_last", "channels_first"]


def _shape(batch, length, channels, layout):
    return (batch, length, channels) if layout == "channels_last" else (batch, channels, length)


def _chunks(array, bounds, layout):
    return [array[:, a:b] if layout == "channels_last" else array[:, :, a:b] for a, b in zip(bounds, bounds[1:])]


def _join(arrays, layout):
    return np.concatenate(arrays, axis=1 if layout == "channels_last" else 2)


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(4))
def test_chunks_fed_with_the_previous_final_state_equal_one_call(layout, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float64 if seed % 2 else np.float32
    ksize, dilation, mult = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    batch, length, channels = 2, int(rng.integers(1, 30)), int(rng.integers(1, 6))
    x = rng.standard_normal(_shape(batch, length, channels, layout)).astype(dtype)
    kernel = rng.standard_normal((ksize, channels, mult)).astype(dtype)
    bias = rng.standard_normal(channels * mult).astype(dtype)
    kw = dict(padding="causal", data_format=layout, dilation_rate=dilation)
    whole = nd.depthwise_conv1d(x, kernel, bias, **kw)
    np.testing.assert_allclose(whole, ref.conv1d_forward(x, kernel, bias, 1, "causal", layout, dilation), **_tol(dtype))
    # random chunk lengths, some shorter than the state ((K-1)*d positions)
    cuts = np.sort(rng.choice(np.arange(1, length), size=min(length - 1, int(rng.integers(0, 5))), replace=False))
    bounds = [0, *cuts.tolist(), length]
    outs, state = [], None
    for piece in _chunks(x, bounds, layout):
        y, state = nd.depthwise_conv1d(piece, kernel, bias, initial_state=state, return_final_state=True, **kw)
        outs.append(y)
    np.testing.assert_allclose(_join(outs, layout), whole, **_tol(dtype))
    positions = (ksize - 1) * dilation
    _, expected_state = ref.conv1d_with_state(x, kernel, bias, np.zeros(_shape(batch, positions, channels, layout)),
                                              layout, dilation)
    assert state.shape == _shape(batch, positions, channels, layout) and state.dtype == dtype
    np.testing.assert_allclose(state, expected_state, **_tol(dtype))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_and_gradients_with_an_initial_state_against_the_reference(layout):
    rng = np.random.default_rng(7)
    ksize, dilation, mult, batch, length, channels = 4, 2, 2, 2, 9, 3
    positions = (ksize - 1) * dilation
    x = rng.standard_normal(_shape(batch, length, channels, layout))
    state = rng.standard_normal(_shape(batch, positions, channels, layout))
    kernel = rng.standard_normal((ksize, channels, mult))
    bias = rng.standard_normal(channels * mult)
    kw = dict(padding="causal", data_format=layout, dilation_rate=dilation)
    x0, state0 = x.copy(), state.copy()
    y, final = nd.depthwise_conv1d(x, kernel, bias, initial_state=state, return_final_state=True, **kw)
    expected_y, expected_final = ref.conv1d_with_state(x, kernel, bias, state, layout, dilation)
    np.testing.assert_allclose(y, expected_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(final, expected_final)
    assert np.array_equal(nd.depthwise_conv1d(x, kernel, bias, initial_state=state, **kw), y)  # outputs alone
    grad_y = rng.standard_normal(y.shape)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, initial_state=state, **kw)
    assert isinstance(grads, nd.StatefulGrads)
    expected = ref.conv1d_with_state_gradients(grad_y, x, kernel, state, layout, dilation)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    assert np.array_equal(x, x0) and np.array_equal(state, state0)  # inputs never modified

    # the state's gradient by central finite differences
    def loss(s):
        return float(np.sum(nd.depthwise_conv1d(x, kernel, bias, initial_state=s, **kw) * grad_y))

    eps = 1e-6
    numeric = np.zeros_like(state)
    for idx in np.ndindex(state.shape):
        plus, minus = state.copy(), state.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (loss(plus) - loss(minus)) / (2 * eps)
    np.testing.assert_allclose(grads.grad_initial_state, numeric, rtol=1e-6, atol=1e-7)


def test_a_state_needs_causal_unstrided_padding():
    x, kernel = np.ones((1, 8, 2)), np.ones((3, 2, 1))
    state = np.zeros((1, 2, 2))
    for kw in (dict(padding="same"), dict(padding="valid"), dict(padding="causal", strides=2)):
        with pytest.raises(ValueError, match="padding=.*strides="):
            nd.depthwise_conv1d(x, kernel, initial_state=state, **kw)
        with pytest.raises(ValueError, match="padding=.*strides="):
            nd.depthwise_conv1d(x, kernel, return_final_state=True, **kw)
        with pytest.raises(ValueError, match="padding=.*strides="):
            nd.depthwise_conv1d_backward(np.ones((1, 8, 2)), x, kernel, initial_state=state, **kw)
    with pytest.raises(ValueError, match="initial_state"):
        nd.depthwise_conv1d(x, kernel, padding="causal", initial_state=np.zeros((1, 3, 2)))
    with pytest.raises(TypeError, match="initial_state"):
        nd.depthwise_conv1d(x, kernel, padding="causal", initial_state=np.zeros((1, 2, 2), dtype=np.int32))


# ---------------------------------------------------------------------------- decode step
@pytest.mark.parametrize("ksize,dilation,mult", [(4, 2, 2), (7, 1, 1), (2, 3, 1)])  # taps in groups of 4, 2 and 1
@pytest.mark.parametrize("layout,dtype", [("channels_last", np.float32), ("channels_last", np.float64),
                                          ("channels_first", np.float64)])
def test_update_steps_with_slots_and_padding_rows_equal_the_reference(layout, dtype, ksize, dilation, mult):
    rng = np.random.default_rng(3)
    channels, slots = 5, 6
    positions = (ksize - 1) * dilation
    kernel = rng.standard_normal((ksize, channels, mult)).astype(dtype)
    bias = rng.standard_normal(channels * mult).astype(dtype)
    state = rng.standard_normal(_shape(slots, positions, channels, layout)).astype(dtype)
    expected_state = state.astype(np.float64)
    for step in range(6):
        batch = int(rng.integers(1, 5))
        indices = rng.permutation(slots)[:batch]
        indices[rng.random(batch) < 0.3] = -1  # padding rows
        steps = int(rng.integers(1, 9))  # one token, or several (some more than the state holds)
        if step % 2:
            inputs = rng.standard_normal((batch, channels)).astype(dtype)
        else:
            inputs = rng.standard_normal(_shape(batch, steps, channels, layout)).astype(dtype)
        inputs0 = inputs.copy()
        out = nd.depthwise_conv1d_update(inputs, state, kernel, bias, dilation, layout, state_indices=indices)
        want, expected_state = ref.conv1d_update(inputs, expected_state, kernel, bias, layout, dilation, indices)
        assert out.shape == want.shape and out.dtype == dtype
        np.testing.assert_allclose(out, want, **_tol(dtype))
        np.testing.assert_allclose(state, expected_state, **_tol(dtype))
        assert np.array_equal(inputs, inputs0)
        assert not np.any(out[indices < 0])


def test_update_one_token_at_a_time_equals_the_forward_and_applies_the_activation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 12, 4))
    kernel = rng.standard_normal((3, 4, 1))
    bias = rng.standard_normal(4)
    whole = nd.depthwise_conv1d(x, kernel, bias, padding="causal")
    state = np.zeros((3, 2, 4))
    steps = [nd.depthwise_conv1d_update(x[:, t], state, kernel, bias, activation="silu") for t in range(12)]
    np.testing.assert_allclose(np.stack(steps, axis=1), nd.activations.silu(whole), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state, x[:, -2:])


def test_update_refuses_what_it_cannot_update_in_place_and_changes_nothing_then():
    kernel = np.ones((3, 4, 1), np.float32)
    x = np.ones((2, 4), np.float32)
    good = np.zeros((2, 2, 4), np.float32)
    cases = [
        (np.zeros((2, 2, 4), np.float64), {}, "dtype"),
        (np.zeros((2, 4, 2), np.float32)[:, :, :].transpose(0, 2, 1), {}, "contiguous"),
        (np.zeros((2, 3, 4), np.float32), {}, "shape"),
        (np.zeros((3, 2, 4), np.float32), {}, "slot per row"),
        ([[[0.0] * 4] * 2] * 2, {}, "NumPy array"),
        (good, {"state_indices": [0, 0]}, "same state slot"),
        (good, {"state_indices": [0, 2]}, "below the 2 slots"),
        (good, {"state_indices": [0.0, 1.0]}, "integer"),
        (good, {"state_indices": [0]}, "state_indices"),
        (good, {"activation": "nope"}, "activation"),
    ]
    for state, kw, match in cases:
        before = np.array(state, copy=True)
        with pytest.raises((ValueError, TypeError), match=match):
            nd.depthwise_conv1d_update(x, state, kernel, **kw)
        assert np.array_equal(np.asarray(state), before)
    frozen = np.zeros((2, 2, 4), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        nd.depthwise_conv1d_update(x, frozen, kernel)
    with pytest.raises(ValueError, match="kernel"):
        nd.depthwise_conv1d_update(x, good, np.ones((3, 5, 1), np.float32))
    with pytest.raises(ValueError, match="inputs"):
        nd.depthwise_conv1d_update(np.ones((2, 4, 1, 1), np.float32), good, kernel)
    with pytest.raises(ValueError, match="share memory"):
        nd.depthwise_conv1d_update(good[:, 0], good, kernel)
    assert not good.any()


# ---------------------------------------------------------------------------- packed sequences
def _packed_ids(rng, batch, length):
    rows = []
    for _ in range(batch):
        cuts = np.sort(rng.integers(0, length + 1, size=3))
        row = np.zeros(length, np.int64)
        for n, cut in enumerate(cuts):
            row[cut:] = n + 1
        row[max(0, length - int(rng.integers(0, 4))):] = -1  # padding at the end of some rows
        rows.append(row)
    ids = np.array(rows)
    ids[ids >= 0] += 5  # ids need not start at 0
    return ids


@pytest.mark.parametrize("layout", LAYOUTS)
def test_packed_sequences_equal_one_call_per_sequence(layout):
    rng = np.random.default_rng(11)
    batch, length, channels, ksize, dilation, mult = 3, 23, 3, 3, 2, 2
    ids = _packed_ids(rng, batch, length)
    x = rng.standard_normal(_shape(batch, length, channels, layout))
    kernel = rng.standard_normal((ksize, channels, mult))
    bias = rng.standard_normal(channels * mult)
    kw = dict(padding="causal", data_format=layout, dilation_rate=dilation, sequence_ids=ids)
    y = nd.depthwise_conv1d(x, kernel, bias, **kw)
    np.testing.assert_allclose(y, ref.conv1d_packed(x, kernel, bias, ids, layout, dilation), rtol=1e-12, atol=1e-12)
    grad_y = rng.standard_normal(y.shape)
    grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, **kw)
    for got, want in zip(grads, ref.conv1d_packed_gradients(grad_y, x, kernel, ids, layout, dilation)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    # with an activation: zero outputs stay zero at padding positions
    y_act = nd.depthwise_conv1d(x, kernel, bias, activation="sigmoid", **kw)
    expected = nd.activations.sigmoid(ref.conv1d_packed(x, kernel, bias, ids, layout, dilation))
    mask = (ids < 0)[:, :, None] if layout == "channels_last" else (ids < 0)[:, None, :]
    np.testing.assert_allclose(y_act, np.where(mask, 0.0, expected), rtol=1e-12, atol=1e-12)
    g_act = nd.depthwise_conv1d_backward(grad_y, x, kernel, bias=bias, activation="sigmoid", **kw)
    pre = ref.conv1d_packed(x, kernel, bias, ids, layout, dilation)
    chain = np.where(mask, 0.0, grad_y * nd.activations.sigmoid.derivative(pre))
    for got, want in zip(g_act, ref.conv1d_packed_gradients(chain, x, kernel, ids, layout, dilation)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def test_packed_sequence_ids_are_checked():
    x, kernel = np.ones((2, 6, 2)), np.ones((3, 2, 1))
    ids = np.zeros((2, 6), np.int64)
    with pytest.raises(ValueError, match="non-decreasing"):
        nd.depthwise_conv1d(x, kernel, padding="causal", sequence_ids=np.array([[0, 1, 0, 1, 1, 1]] * 2))
    with pytest.raises(ValueError, match="one contiguous run"):  # id 1 twice, around padding
        nd.depthwise_conv1d(x, kernel, padding="causal", sequence_ids=np.array([[0, 1, -1, 1, 2, 2]] * 2))
    padded_start = np.array([[-1, -1, 0, 0, 3, 3]] * 2)  # padding anywhere: here first
    np.testing.assert_allclose(nd.depthwise_conv1d(x, kernel, padding="causal", sequence_ids=padded_start),
                               ref.conv1d_packed(x, kernel, None, padded_start))
    with pytest.raises(ValueError, match="sequence_ids"):
        nd.depthwise_conv1d(x, kernel, padding="causal", sequence_ids=np.zeros((2, 5), np.int64))
    with pytest.raises(TypeError, match="sequence_ids"):
        nd.depthwise_conv1d(x, kernel, padding="causal", sequence_ids=ids.astype(float))
    with pytest.raises(ValueError, match="padding=.*strides="):
        nd.depthwise_conv1d(x, kernel, padding="same", sequence_ids=ids)
    with pytest.raises(ValueError, match="initial_state"):
        nd.depthwise_conv1d(x, kernel, padding="causal", sequence_ids=ids, initial_state=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="initial_state"):
        nd.depthwise_conv1d_backward(np.ones((2, 6, 2)), x, kernel, padding="causal", sequence_ids=ids,
                                     initial_state=np.zeros((2, 2, 2)))
