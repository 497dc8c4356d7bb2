"""causal-conv1d compatible functions against the reference formula (PyTorch's F.conv1d) and finite differences."""

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from numba_dwconv.torch.causal import causal_conv1d_fn, causal_conv1d_update  # noqa: E402

ACT = {None: lambda v: v, "silu": F.silu, "swish": F.silu, "gelu": F.gelu}


def _reference(x, weight, bias=None, activation=None, initial_states=None):
    """``F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=dim)[..., :seqlen]``, states by concat."""
    dim, width = weight.shape
    seqlen = x.shape[2]
    if initial_states is not None:
        out = F.conv1d(torch.cat([initial_states, x], 2), weight.unsqueeze(1), bias, groups=dim)
    else:
        out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=dim)[..., :seqlen]
    return ACT[activation](out)


def _data(batch, dim, seqlen, width, channels_last, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seqlen, dim, dtype=dtype, generator=gen).transpose(1, 2) if channels_last else \
        torch.randn(batch, dim, seqlen, dtype=dtype, generator=gen)
    return x, torch.randn(dim, width, dtype=dtype, generator=gen), torch.randn(dim, dtype=dtype, generator=gen)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("width,activation,with_bias", [(4, None, True), (2, "silu", False), (1, "swish", True),
                                                        (7, "gelu", True)])
def test_fn_equals_the_reference_formula(width, activation, with_bias, channels_last):
    x, w, b = _data(2, 5, 13, width, channels_last)
    b = b if with_bias else None
    out = causal_conv1d_fn(x, w, b, activation=activation)
    torch.testing.assert_close(out, _reference(x, w, b, activation))
    assert out.shape == x.shape and out.stride() == x.stride()


@pytest.mark.parametrize("channels_last", [False, True])
def test_chunks_with_states_equal_the_whole_sequence_and_fill_final_states_out(channels_last):
    x, w, b = _data(2, 4, 20, 5, channels_last)
    whole = causal_conv1d_fn(x, w, b, activation="silu")
    state = torch.zeros(2, 4, 4, dtype=x.dtype)
    pieces = []
    for lo, hi in ((0, 3), (3, 4), (4, 11), (11, 20)):  # chunks shorter than the state included
        chunk = x[:, :, lo:hi]
        out, state_next = causal_conv1d_fn(chunk, w, b, initial_states=state, return_final_states=True,
                                           activation="silu")
        torch.testing.assert_close(state_next, torch.cat([state, chunk], 2)[:, :, -4:])
        pieces.append(out)
        state = state_next
    torch.testing.assert_close(torch.cat(pieces, 2), whole)
    target = torch.empty(2, 4, 4, dtype=x.dtype)
    out, returned = causal_conv1d_fn(x, w, b, return_final_states=True, final_states_out=target)
    assert returned is target
    torch.testing.assert_close(target, x[:, :, -4:])


@pytest.mark.parametrize("channels_last", [False, True])
def test_packed_sequences_equal_separate_calls(channels_last):
    x, w, b = _data(2, 3, 12, 3, channels_last)
    seq_idx = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, -1], [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]],
                           dtype=torch.int32)
    out = causal_conv1d_fn(x, w, b, seq_idx=seq_idx, activation="silu")
    for row in range(2):
        for seq in seq_idx[row].unique().tolist():
            cols = (seq_idx[row] == seq).nonzero()[:, 0]
            got = out[row:row + 1, :, cols]
            if seq < 0:
                assert not got.any()
            else:
                torch.testing.assert_close(got, _reference(x[row:row + 1, :, cols], w, b, "silu"))


def test_fn_gradients_including_both_states_by_finite_differences():
    x, w, b = _data(2, 3, 5, 4, False, seed=1)
    init = torch.randn(2, 3, 3, dtype=x.dtype)
    params = [t.clone().requires_grad_() for t in (x, w, b, init)]

    def loss_terms(x, w, b, init):
        out, final = causal_conv1d_fn(x, w, b, initial_states=init, return_final_states=True, activation="silu")
        return out, final

    assert torch.autograd.gradcheck(loss_terms, params)
    xs = x[:, :, :2].clone().requires_grad_()  # shorter than the state: the final state reaches into init
    assert torch.autograd.gradcheck(lambda a, c: causal_conv1d_fn(a, w, None, initial_states=c,
                                                                  return_final_states=True),
                                    [xs, init.clone().requires_grad_()])
    seq_idx = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, -1]], dtype=torch.int32)
    assert torch.autograd.gradcheck(lambda a, c: causal_conv1d_fn(a, c, b, seq_idx=seq_idx, activation="gelu"),
                                    [x.clone().requires_grad_(), w.clone().requires_grad_()])


def _update_reference(x3, state, weight, bias, activation, cache_seqlens, indices):
    """Written from the docstring: each row convolves [its slot's state (oldest first), x] and shifts/writes x in."""
    state = state.clone()
    batch, dim, steps = x3.shape
    state_len = state.shape[2]
    out = torch.zeros(batch, dim, steps, dtype=x3.dtype)
    for row in range(batch):
        slot = row if indices is None else int(indices[row])
        if slot < 0:
            continue
        if cache_seqlens is None:
            seq = torch.cat([state[slot], x3[row]], 1)
            state[slot] = seq[:, -state_len:]
        else:
            start = int(cache_seqlens[row])
            oldest_first = [(start + j) % state_len for j in range(state_len)]
            seq = torch.cat([state[slot][:, oldest_first], x3[row]], 1)
            for t in range(steps):
                state[slot][:, (start + t) % state_len] = x3[row][:, t]
        out[row] = ACT[activation](F.conv1d(seq[None], weight.unsqueeze(1), bias, groups=dim)[0, :, -steps:])
    return out, state


@pytest.mark.parametrize("state_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("state_len,circular,with_slots", [(3, False, False), (3, False, True), (6, False, True),
                                                           (6, True, False), (5, True, True)])
def test_update_equals_the_reference_over_random_steps(state_len, circular, with_slots, state_layout):
    gen = torch.Generator().manual_seed(state_len)
    dim, width, slots = 4, 4, 5
    w = torch.randn(dim, width, dtype=torch.float64, generator=gen)
    b = torch.randn(dim, dtype=torch.float64, generator=gen)
    state = torch.randn(slots, dim, state_len, dtype=torch.float64, generator=gen)
    if state_layout == "channels_last":
        state = state.transpose(1, 2).contiguous().transpose(1, 2)
    expected = state.clone()
    for step in range(5):
        batch = 3 if with_slots else slots
        indices = torch.randperm(slots, generator=gen)[:batch].to(torch.int32) if with_slots else None
        if with_slots:
            indices[1] = -1  # a padding row
        seqlen = 1 + step % 3
        x = torch.randn(batch, dim, seqlen, dtype=torch.float64, generator=gen)
        lens = torch.randint(0, 50, (batch,), generator=gen, dtype=torch.int32) if circular else None
        got = causal_conv1d_update(x[:, :, 0] if seqlen == 1 else x, state, w, b, "silu", lens, indices)
        want, expected = _update_reference(x, expected, w, b, "silu", lens, indices)
        torch.testing.assert_close(got, want[:, :, 0] if seqlen == 1 else want)
        torch.testing.assert_close(state, expected)


def test_every_causal_operator_passes_opcheck():
    x, w, b = _data(2, 3, 9, 4, False, dtype=torch.float32)
    init = torch.randn(2, 3, 3)
    ops = torch.ops.numba_dwconv
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]] * 2, dtype=torch.int32)
    x_cl = x.transpose(1, 2).contiguous().transpose(1, 2)
    for args in ((x.clone().requires_grad_(), w.clone().requires_grad_(), b, init.clone().requires_grad_(), None,
                  "silu"),
                 (x_cl, w, None, None, seq_idx, None)):
        torch.library.opcheck(ops.causal_conv1d.default, args)
    torch.library.opcheck(ops.causal_conv1d_backward.default, (torch.randn_like(x), x, w, b, init, None, "silu"))
    state = torch.randn(4, 3, 3)
    torch.library.opcheck(ops.causal_conv1d_update.default, (x[:, :, :2], state, w, b, None, None,
                                                             torch.tensor([2, 0], dtype=torch.int32)))


def test_bad_arguments_raise_clear_errors():
    x, w, b = _data(1, 3, 6, 3, False, dtype=torch.float32)
    with pytest.raises(ValueError, match="seq_idx"):
        causal_conv1d_fn(x, w, seq_idx=torch.zeros(1, 6, dtype=torch.int32), initial_states=torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="weight"):
        causal_conv1d_fn(x, torch.randn(4, 3))
    with pytest.raises(ValueError, match="initial_states"):
        causal_conv1d_fn(x, w, initial_states=torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="conv_state"):
        causal_conv1d_update(x[:, :, 0], torch.zeros(1, 3, 1), w)
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d_fn(x, w, activation=True)
    state = torch.zeros(1, 3, 2, dtype=torch.float64)  # not the computation dtype: refused, nothing changes
    with pytest.raises(ValueError, match="dtype"):
        causal_conv1d_update(x[:, :, 0], state, w)
    assert not state.any()
