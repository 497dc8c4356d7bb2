"""causal-conv1d compatible functions (Dao-AILab's ``causal_conv1d_fn`` / ``causal_conv1d_update``) on our kernels.

Same signatures, layouts and results, with any kernel width, both memory layouts of ``x``
(``(batch, dim, seqlen)`` contiguous, or stored channels last), CPU and CUDA tensors:

* :func:`causal_conv1d_fn` ``(x, weight, bias, seq_idx, initial_states, return_final_states,
  final_states_out, activation)``: ``F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1,
  groups=dim)[..., :seqlen]`` (then the activation), starting from ``initial_states`` instead of
  zeros when given; ``seq_idx`` packs several sequences along a row.  Differentiable, the initial
  and final states included.
* :func:`causal_conv1d_update` ``(x, conv_state, weight, bias, activation, cache_seqlens,
  conv_state_indices)``: the decode step, ``conv_state`` updated in place (a circular buffer with
  ``cache_seqlens``; rows mapped to state slots with ``conv_state_indices``, a negative index
  marking a padding row whose outputs are zero and whose slot is untouched).

``activation``: None, ``"silu"``/``"swish"`` as in causal-conv1d, or any other name of
:mod:`numba_dwconv.activations`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import ops
from ._ops import (
    _FORMAT,
    _array,
    _device_kwargs,
    _tensor,
    channels_last_memory,
    empty_in_layout,
    from_layout,
    to_layout,
)


def _kernel(weight: Tensor) -> Tensor:
    """``(dim, width)`` weights as the ``(width, dim, 1)`` Keras kernel (contiguous, detached)."""
    return weight.detach().t().contiguous().unsqueeze(-1)


def _state_operand(state: Optional[Tensor], cl: bool):
    return None if state is None else _array(to_layout(state, cl))


def _ids(seq_idx: Optional[Tensor]):
    return None if seq_idx is None else _array(seq_idx.contiguous())


@torch.library.custom_op("numba_dwconv::causal_conv1d", mutates_args=())
def causal_conv1d_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], initial_states: Optional[Tensor],
                     seq_idx: Optional[Tensor], activation: Optional[str]) -> tuple[Tensor, Tensor]:
    """``(out, final_states)`` of the causal convolution; ``final_states`` (batch, dim, width - 1)."""
    cl = channels_last_memory(x)
    data = to_layout(x, cl)
    kw = dict(padding="causal", data_format=_FORMAT[cl], activation=activation, **_device_kwargs(x))
    b = None if bias is None else _array(bias)
    width = weight.shape[1]
    if seq_idx is not None:  # packed sequences: no state goes in; the final states are x's last positions
        out = ops.depthwise_conv1d(_array(data), _array(_kernel(weight)), b, sequence_ids=_ids(seq_idx), **kw)
        padded = torch.cat([x.detach().new_zeros((x.shape[0], x.shape[1], width - 1)), x.detach()], dim=2)
        final = _state_like(x, width - 1, cl).copy_(padded[:, :, x.shape[2]:])
        return from_layout(_tensor(out, x), cl).to(x.dtype), final
    out, final = ops.depthwise_conv1d(_array(data), _array(_kernel(weight)), b,
                                      initial_state=_state_operand(initial_states, cl), return_final_state=True, **kw)
    return from_layout(_tensor(out, x), cl).to(x.dtype), from_layout(_tensor(final, x), cl).to(x.dtype)


@torch.library.custom_op("numba_dwconv::causal_conv1d_backward", mutates_args=())
def causal_conv1d_backward_op(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                              initial_states: Optional[Tensor], seq_idx: Optional[Tensor],
                              activation: Optional[str]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`causal_conv1d_op`'s ``out``: ``(grad_x, grad_weight, grad_bias, grad_initial_states)``."""
    cl = channels_last_memory(x)
    kw = dict(padding="causal", data_format=_FORMAT[cl], activation=activation, **_device_kwargs(x))
    if activation is not None:
        kw["bias"] = None if bias is None else _array(bias)
    grads = ops.depthwise_conv1d_backward(_array(to_layout(grad, cl)), _array(to_layout(x, cl)),
                                          _array(_kernel(weight)), initial_state=_state_operand(initial_states, cl),
                                          sequence_ids=_ids(seq_idx), **kw)
    grad_x = from_layout(_tensor(grads[0], x), cl).to(x.dtype)
    grad_w = _tensor(grads[1], x)[:, :, 0].t().contiguous().to(weight.dtype)
    if initial_states is not None:
        grad_state = from_layout(_tensor(grads[3], x), cl).to(x.dtype)
    else:
        grad_state = _state_like(x, weight.shape[1] - 1, cl).zero_()
    return grad_x, grad_w, _tensor(grads[2], x).to(weight.dtype), grad_state


def _state_like(x: Tensor, positions: int, cl: bool) -> Tensor:
    """An empty (batch, dim, positions) tensor stored like ``x`` (channels last or contiguous)."""
    return empty_in_layout((x.shape[0], x.shape[1], positions), cl, x)


@causal_conv1d_op.register_fake
def _(x, weight, bias, initial_states, seq_idx, activation):
    cl = channels_last_memory(x)
    out = _state_like(x, x.shape[2], cl)
    return out, _state_like(x, weight.shape[1] - 1, cl)


@causal_conv1d_backward_op.register_fake
def _(grad, x, weight, bias, initial_states, seq_idx, activation):
    cl = channels_last_memory(x)
    state = _state_like(x, weight.shape[1] - 1, cl)
    return _state_like(x, x.shape[2], cl), weight.new_empty(weight.shape), weight.new_empty(weight.shape[0]), state


def _setup_context(ctx, inputs, output):
    x, weight, bias, initial_states, seq_idx, activation = inputs
    ctx.save_for_backward(x, weight, bias, initial_states, seq_idx)
    ctx.activation = activation


def _backward(ctx, grad_out, grad_final):
    x, weight, bias, initial_states, seq_idx = ctx.saved_tensors
    grad_x, grad_w, grad_b, grad_state = causal_conv1d_backward_op(grad_out, x, weight, bias, initial_states, seq_idx,
                                                                   ctx.activation)
    if grad_final is not None and grad_final.numel():
        # final_states are the last width - 1 positions of [initial_states (or zeros), x]
        positions, length = grad_final.shape[2], x.shape[2]
        take = min(positions, length)
        grad_x = grad_x.clone()
        grad_x[:, :, length - take:] += grad_final[:, :, positions - take:]
        if initial_states is not None and positions > length:
            grad_state = grad_state.clone()
            grad_state[:, :, length:] += grad_final[:, :, :positions - length]
    return (grad_x, grad_w, grad_b if bias is not None else None,
            grad_state if initial_states is not None else None, None, None)


causal_conv1d_op.register_autograd(_backward, setup_context=_setup_context)


def _activation(activation):
    if activation is not None and not isinstance(activation, str):
        raise ValueError(f"`activation` must be None or an activation name such as 'silu'. "
                         f"Received activation={activation!r}")
    return activation


def _check_weight(x: Tensor, weight: Tensor, what: str) -> None:
    if weight.dim() != 2 or weight.shape[0] != x.shape[1] or weight.shape[1] < 1:
        raise ValueError(f"`weight` must have shape (dim, width) with dim = {x.shape[1]} (the channels of `{what}`). "
                         f"Received weight with shape={tuple(weight.shape)}")


def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
                     final_states_out=None, activation=None):
    """Causal depthwise convolution of ``x`` (batch, dim, seqlen) with ``weight`` (dim, width).

    Parameters
    ----------
    x : Tensor, shape (batch, dim, seqlen)
        Contiguous or stored channels last (``x.stride(1) == 1``: the channels_last kernels run on it).
    weight : Tensor, shape (dim, width)
        Any width >= 1.
    bias : Tensor, shape (dim,), optional
    seq_idx : int Tensor, shape (batch, seqlen), optional
        Packed sequences: an output never reads an input of another sequence; negative ids are
        padding (zero outputs). Not with ``initial_states`` or ``return_final_states``.
    initial_states : Tensor, shape (batch, dim, width - 1), optional
        The inputs before position 0 (oldest first) instead of zeros.
    return_final_states : bool
        Also return the last ``width - 1`` positions of ``[initial_states, x]``: the next chunk's
        ``initial_states``.
    final_states_out : Tensor, shape (batch, dim, width - 1), optional
        Written with the final states (and returned) when ``return_final_states``.
    activation : str, optional
        None, "silu"/"swish", or any name of :mod:`numba_dwconv.activations`.

    Returns
    -------
    out : Tensor, shape (batch, dim, seqlen), or ``(out, final_states)``
    """
    _check_weight(x, weight, "x")
    if x.dim() != 3:
        raise ValueError(f"`x` must be (batch, dim, seqlen). Received x with shape={tuple(x.shape)}")
    if seq_idx is not None and (initial_states is not None or return_final_states):
        raise ValueError("`seq_idx` cannot be combined with `initial_states` or `return_final_states` (each packed "
                         "sequence starts from zeros)")
    if initial_states is not None and tuple(initial_states.shape) != (x.shape[0], x.shape[1], weight.shape[1] - 1):
        raise ValueError(f"`initial_states` must have shape {(x.shape[0], x.shape[1], weight.shape[1] - 1)}. "
                         f"Received initial_states with shape={tuple(initial_states.shape)}")
    out, final = causal_conv1d_op(x, weight, bias, initial_states, seq_idx, _activation(activation))
    if not return_final_states:
        return out
    if final_states_out is not None:
        with torch.no_grad():
            final_states_out.copy_(final)
        return out, final_states_out
    return out, final


@torch.library.custom_op("numba_dwconv::causal_conv1d_update", mutates_args=("conv_state",))
def causal_conv1d_update_op(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Optional[Tensor],
                            activation: Optional[str], cache_seqlens: Optional[Tensor],
                            conv_state_indices: Optional[Tensor]) -> Tensor:
    """The decode step on (batch, dim, seqlen) ``x``; ``conv_state`` updated in place."""
    width, state_len = weight.shape[1], conv_state.shape[2]
    slots = None if conv_state_indices is None else conv_state_indices.detach().cpu().numpy()
    direct = cache_seqlens is None and state_len == width - 1
    if direct and (conv_state.is_contiguous() or conv_state.movedim(1, -1).is_contiguous()):
        cl = not conv_state.is_contiguous()
        state = conv_state.detach().movedim(1, -1) if cl else conv_state.detach()
        data = to_layout(x, cl)
        out = ops.depthwise_conv1d_update(_array(data), _array(state), _array(_kernel(weight)),
                                          None if bias is None else _array(bias), 1, _FORMAT[cl],
                                          activation=activation, state_indices=slots, **_device_kwargs(x))
        return from_layout(_tensor(out, x), cl)
    return _update_through_window(x, conv_state, weight, bias, activation, cache_seqlens, conv_state_indices)


def _update_through_window(x, conv_state, weight, bias, activation, cache_seqlens, conv_state_indices):
    """Longer or circular states: gather each row's last ``width - 1`` inputs, convolve, write the inputs back."""
    batch, dim, seqlen = x.shape
    width, state_len = weight.shape[1], conv_state.shape[2]
    rows = torch.arange(batch, device=x.device) if conv_state_indices is None else conv_state_indices.long()
    live = rows >= 0
    slots = rows[live]
    state = conv_state[slots].detach()  # (live, dim, state_len)
    if cache_seqlens is None:
        window = torch.cat([state, x[live].to(state.dtype)], dim=2)
        conv_state[slots] = window[:, :, -state_len:]
        tail = window[:, :, window.shape[2] - (width - 1 + seqlen):]
    else:
        start = cache_seqlens.long()[live]
        read = torch.remainder(start[:, None] + torch.arange(-(width - 1), 0, device=x.device), state_len)
        past = state.gather(2, read[:, None, :].expand(-1, dim, -1))
        tail = torch.cat([past, x[live].to(state.dtype)], dim=2)
        write = torch.remainder(start[:, None] + torch.arange(seqlen, device=x.device), state_len)
        updated = state.clone()
        updated.scatter_(2, write[:, None, :].expand(-1, dim, -1), x[live].to(state.dtype))
        conv_state[slots] = updated
    out = x.new_zeros((batch, weight.shape[0], seqlen))
    if tail.shape[0]:
        y = ops.depthwise_conv1d(_array(tail.contiguous()), _array(_kernel(weight)),
                                 None if bias is None else _array(bias), 1, "valid", "channels_first",
                                 activation=activation, **_device_kwargs(x))
        out[live] = _tensor(y, x).to(out.dtype)
    return out


@causal_conv1d_update_op.register_fake
def _(x, conv_state, weight, bias, activation, cache_seqlens, conv_state_indices):
    return x.new_empty(x.shape)


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None, cache_seqlens=None,
                         conv_state_indices=None):
    """One decode step (or ``seqlen`` of them), ``conv_state`` updated in place.

    Parameters
    ----------
    x : Tensor, shape (batch, dim) or (batch, dim, seqlen)
    conv_state : Tensor, shape (batch or slots, dim, state_len), state_len >= width - 1
        The last inputs of each row's sequence, oldest first (with ``cache_seqlens``: a circular
        buffer written at ``cache_seqlens % state_len``).  Updated in place.
    weight : Tensor, shape (dim, width)
    bias : Tensor, shape (dim,), optional
    activation : str, optional
    cache_seqlens : int Tensor, shape (batch,), optional
    conv_state_indices : int Tensor, shape (batch,), optional
        The slot of ``conv_state`` of each row (continuous batching); negative: a padding row.

    Returns
    -------
    Tensor, shape of ``x``
    """
    if x.dim() not in (2, 3):
        raise ValueError(f"`x` must be (batch, dim) or (batch, dim, seqlen). Received x with shape={tuple(x.shape)}")
    _check_weight(x, weight, "x")
    one = x.dim() == 2
    x3 = x.unsqueeze(-1) if one else x
    if conv_state.dim() != 3 or conv_state.shape[1] != x.shape[1] or conv_state.shape[2] < weight.shape[1] - 1:
        raise ValueError(f"`conv_state` must have shape (slots, {x.shape[1]}, state_len) with state_len >= "
                         f"{weight.shape[1] - 1}. Received conv_state with shape={tuple(conv_state.shape)}")
    if conv_state_indices is None and conv_state.shape[0] != x.shape[0]:
        raise ValueError(f"Without `conv_state_indices`, `conv_state` needs one slot per row ({x.shape[0]}). "
                         f"Received conv_state with shape={tuple(conv_state.shape)}")
    if cache_seqlens is not None and x3.shape[2] > conv_state.shape[2]:
        raise ValueError(f"With `cache_seqlens`, at most state_len={conv_state.shape[2]} new positions fit the "
                         f"circular state. Received {x3.shape[2]}")
    out = causal_conv1d_update_op(x3, conv_state, weight, bias, _activation(activation), cache_seqlens,
                                  conv_state_indices)
    return out[..., 0] if one else out


__all__ = ["causal_conv1d_fn", "causal_conv1d_update"]
