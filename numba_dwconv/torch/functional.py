"""``torch.nn.functional.conv1d/conv2d`` for the depthwise case, on numba_dwconv's kernels.

Same tensors and weight layout as PyTorch: ``input`` (N, C, L) / (N, C, H, W) and ``weight``
(C*m, 1, K) / (C*m, 1, KH, KW), what ``nn.Conv1d(C, C*m, K, groups=C)`` stores.  Differentiable
(autograd through the custom operators of :mod:`numba_dwconv.torch._ops`), usable under
``torch.compile``.
"""

from __future__ import annotations

from torch import Tensor

from . import _ops


def _ints(value, rank: int, name: str, minimum: int, what: str) -> list[int]:
    """An int or a sequence of ``rank`` ints, each >= ``minimum``, as a list; else ValueError naming ``name``."""
    if type(value) is int and value >= minimum:  # the usual case, first
        return [value] * rank
    values = [value] * rank if isinstance(value, int) else list(value) if isinstance(value, (tuple, list)) else None
    if (values is None or len(values) != rank or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
            or any(v < minimum for v in values)):
        raise ValueError(f"`{name}` must be {what} or a tuple of {rank} of them. Received {name}={value!r}")
    return values


def _padding(padding, stride, rank: int) -> tuple[str, list[int]]:
    """``(mode, pads)`` for the operators: ``"valid"``, ``"same"``, ``"causal"``, or ``"explicit"`` with ``pads``.

    ``pads`` holds ``before, after`` per spatial axis (PyTorch pads both sides alike); the kernels
    read the zeros virtually, nothing is copied.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        allowed = ("valid", "same", "causal") if rank == 1 else ("valid", "same")
        if mode not in allowed:
            raise ValueError(f"`padding` must be one of {allowed}, an int or a tuple. Received padding={padding!r}")
        if mode == "same" and any(s != 1 for s in stride):
            raise ValueError(f"padding='same' is not supported for strided convolutions (as in PyTorch). "
                             f"Received stride={tuple(stride)}")
        return mode, []
    pads = _ints(padding, rank, "padding", 0, "'valid', 'same'" + (", 'causal'" if rank == 1 else "")
                 + ", a non-negative int")
    if not any(pads):
        return "valid", []
    return "explicit", [v for p in pads for v in (p, p)]


def _check(x: Tensor, weight: Tensor, rank: int, name: str) -> None:
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{name} takes torch tensors. Received input={type(x).__name__}, "
                        f"weight={type(weight).__name__}")
    if x.dim() != rank + 2:
        raise ValueError(f"`input` must be {rank + 2}D (N, C, {'L' if rank == 1 else 'H, W'}). "
                         f"Received input with shape={tuple(x.shape)}")
    channels = x.shape[1]
    if weight.dim() != rank + 2 or weight.shape[1] != 1 or channels == 0 or weight.shape[0] % channels:
        raise ValueError(f"`weight` must have shape (C*m, 1, {'K' if rank == 1 else 'KH, KW'}) for the {channels} "
                         f"input channels (a depthwise convolution, groups=C). Received weight with "
                         f"shape={tuple(weight.shape)}")


def _conv(rank, x, weight, bias, stride, padding, dilation, activation, name):
    _check(x, weight, rank, name)
    stride = _ints(stride, rank, "stride", 1, "a positive int")
    dilation = _ints(dilation, rank, "dilation", 1, "a positive int")
    mode, pads = _padding(padding, stride, rank)
    if _ops.plain_call(x, weight, bias):  # no autograd, no tracing: the operator's body without its dispatch
        return _ops.forward_impl(rank, x, weight, bias, stride, mode, pads, dilation, activation)
    op = _ops.dwconv1d_op if rank == 1 else _ops.dwconv2d_op
    return op(x, weight, bias, stride, mode, pads, dilation, activation)


def dwconv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, *,
             activation: str | None = None) -> Tensor:
    """``F.conv1d(input, weight, bias, stride, padding, dilation, groups=C)`` on numba_dwconv's kernels.

    Parameters
    ----------
    input : Tensor, shape (N, C, L)
        float32 or float64, on the CPU or a CUDA device.  Stored channels last (an ``(N, L, C)``
        tensor transposed), it runs the channels_last kernels without a copy.
    weight : Tensor, shape (C*m, 1, K)
    bias : Tensor, shape (C*m,), optional
    stride, dilation : int or tuple of 1 int
    padding : int, tuple, "valid", "same" or "causal"
        As PyTorch pads (zeros on both sides); ``"causal"`` pads ``(K-1)*dilation`` zeros on the left.
    activation : str, keyword-only, optional
        A name of :mod:`numba_dwconv.activations` applied inside the kernels after the bias.

    Returns
    -------
    Tensor, shape (N, C*m, L_out), in ``input``'s memory format
    """
    return _conv(1, input, weight, bias, stride, padding, dilation, activation, "dwconv1d")


def dwconv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, *,
             activation: str | None = None) -> Tensor:
    """``F.conv2d(input, weight, bias, stride, padding, dilation, groups=C)`` on numba_dwconv's kernels.

    ``input`` (N, C, H, W) (``torch.channels_last`` memory runs the channels_last kernels without a
    copy), ``weight`` (C*m, 1, KH, KW); ``padding`` an int, a pair, ``"valid"`` or ``"same"``; the
    rest as in :func:`dwconv1d`.
    """
    return _conv(2, input, weight, bias, stride, padding, dilation, activation, "dwconv2d")


__all__ = ["dwconv1d", "dwconv2d"]
