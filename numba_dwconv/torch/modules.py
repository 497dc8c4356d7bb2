"""Drop-in modules for depthwise ``nn.Conv1d``/``nn.Conv2d`` and one-line model conversion.

:class:`DepthwiseConv1d` and :class:`DepthwiseConv2d` *are* ``nn.Conv1d``/``nn.Conv2d`` with
``groups=in_channels`` (subclasses: same parameters, initialisation, ``state_dict`` keys and
shapes, ``repr``) whose forward runs numba_dwconv's kernels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _module_globals  # (the global hooks)

from . import _plain, functional

_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2}


class _DepthwiseMixin:
    _rank = 0

    def _setup(self, padding, activation):
        self._keras_padding = padding  # what the kernels get: PyTorch's own value, or "causal"
        self.activation = activation
        self._plain = None  # the prepared forward of the last plain call (numba_dwconv.torch._plain)

    def __call__(self, *args, **kwargs):
        """``nn.Module.__call__``, except that a repeated plain call runs its prepared forward straight away.

        ``nn.Module.__call__`` costs 15-20 us after a large call has swept the CPU caches (measured, B16
        112x112 C32: 1.5 % of the call), though without hooks it only calls ``forward``.  Here a module with a
        prepared forward (:mod:`numba_dwconv.torch._plain`) and without hooks, not traced or compiled, not
        recording autograd for its weight, runs it at once; every other call goes through
        ``nn.Module.__call__`` (which ``torch.fx`` patches and ``torch.compile`` traces as usual).
        """
        plain = self._plain
        if (plain is not None and not kwargs and len(args) == 1 and not _hooked(self)
                and self._compiled_call_impl is None and not torch.compiler.is_compiling()
                and not torch._C._get_tracing_state()):
            out = plain.run(self, args[0])
            if out is not None and out is not _plain.MISMATCH:
                return out
        return super().__call__(*args, **kwargs)

    def forward(self, input):
        """The depthwise convolution of ``input`` (see :func:`numba_dwconv.torch.dwconv1d`)."""
        plain = self._plain
        compiling = torch.compiler.is_compiling()
        out = None
        if plain is not None and not compiling:
            out = plain.run(self, input)
            if out is not None and out is not _plain.MISMATCH:
                return out
        conv = functional.dwconv1d if self._rank == 1 else functional.dwconv2d
        result = conv(input, self.weight, self.bias, self.stride, self._keras_padding, self.dilation,
                      activation=self.activation)
        if (plain is None or out is _plain.MISMATCH) and self._rank == 2 and not compiling:
            self._plain = _plain.PlainForward.make(self, input)
        return result

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_plain"] = None  # (prepared launches hold compiled entries: made again after loading)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_plain", None)

    def extra_repr(self):
        text = super().extra_repr()
        if self._keras_padding == "causal":
            text = text.replace("padding=(0,)", "padding=causal")
        return text + (f", activation={self.activation!r}" if self.activation is not None else "")

    @classmethod
    def from_conv(cls, conv, *, activation=None):
        """The module computing what ``conv`` (a depthwise ``nn.Conv1d``/``nn.Conv2d``) computes, sharing its weights.

        Raises
        ------
        ValueError
            ``conv`` is not a depthwise convolution of this rank with zero padding.
        """
        rank = _CONVS.get(type(conv)) if not isinstance(conv, _DepthwiseMixin) else conv._rank
        if rank != cls._rank or not _is_depthwise(conv):
            raise ValueError(f"{cls.__name__}.from_conv needs an nn.Conv{cls._rank}d with groups == in_channels, "
                             f"out_channels a multiple of it and padding_mode='zeros'. Received {conv!r}")
        padding = getattr(conv, "_keras_padding", conv.padding)
        with torch.device("meta"):  # no parameters allocated: the conv's own are shared
            module = cls(conv.in_channels, conv.kernel_size, conv.stride,
                         "valid" if padding == "causal" else padding, conv.dilation,
                         conv.out_channels // conv.in_channels, conv.bias is not None, activation=activation)
        module._setup(padding, activation)
        module.weight = conv.weight
        module.bias = conv.bias
        module.train(conv.training)
        return module


def _hooked(module) -> bool:
    """Whether ``nn.Module.__call__`` would run hooks around ``module``'s forward (the test of its fast path)."""
    hooks = _module_globals
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or hooks._global_forward_hooks or hooks._global_forward_pre_hooks
                or hooks._global_backward_hooks or hooks._global_backward_pre_hooks)


def _is_depthwise(conv) -> bool:
    return (conv.groups == conv.in_channels and conv.out_channels % conv.in_channels == 0
            and conv.padding_mode == "zeros" and not getattr(conv, "transposed", False))


class DepthwiseConv1d(_DepthwiseMixin, nn.Conv1d):
    """``nn.Conv1d(in_channels, in_channels * depth_multiplier, kernel_size, groups=in_channels)`` on our kernels.

    Parameters
    ----------
    in_channels : int
    kernel_size, stride, dilation : int or tuple of 1 int
    padding : int, tuple, "valid", "same" or "causal"
        ``"causal"``: ``(K-1)*dilation`` zeros on the left (for causal sequence models).
    depth_multiplier : int
        Outputs per input channel.
    bias : bool
    device, dtype
        As for ``nn.Conv1d``.
    activation : str, keyword-only, optional
        A name of :mod:`numba_dwconv.activations` applied inside the kernels after the bias.
    """

    _rank = 1

    def __init__(self, in_channels, kernel_size, stride=1, padding=0, dilation=1, depth_multiplier=1, bias=True,
                 device=None, dtype=None, *, activation=None):
        super().__init__(in_channels, in_channels * depth_multiplier, kernel_size, stride,
                         0 if padding == "causal" else padding, dilation, groups=in_channels, bias=bias,
                         padding_mode="zeros", device=device, dtype=dtype)
        self._setup(padding, activation)


class DepthwiseConv2d(_DepthwiseMixin, nn.Conv2d):
    """``nn.Conv2d(in_channels, in_channels * depth_multiplier, kernel_size, groups=in_channels)`` on our kernels.

    Parameters as :class:`DepthwiseConv1d` (``padding``: an int, a pair, ``"valid"`` or ``"same"``).
    """

    _rank = 2

    def __init__(self, in_channels, kernel_size, stride=1, padding=0, dilation=1, depth_multiplier=1, bias=True,
                 device=None, dtype=None, *, activation=None):
        super().__init__(in_channels, in_channels * depth_multiplier, kernel_size, stride, padding, dilation,
                         groups=in_channels, bias=bias, padding_mode="zeros", device=device, dtype=dtype)
        self._setup(padding, activation)


_OURS = {1: DepthwiseConv1d, 2: DepthwiseConv2d}


def convert(model: nn.Module) -> nn.Module:
    """Replace, in place, every depthwise ``nn.Conv1d``/``nn.Conv2d`` of ``model`` by ours; return ``model``.

    A convolution is replaced when ``groups == in_channels``, ``out_channels`` is a multiple of it
    and ``padding_mode == "zeros"``; the new module shares its parameters (an optimizer built before
    keeps working).  Other modules are untouched.  A depthwise convolution passed as ``model``
    itself is returned converted.
    """
    rank = _CONVS.get(type(model))
    if rank is not None:
        return _OURS[rank].from_conv(model) if _is_depthwise(model) else model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            rank = _CONVS.get(type(child))
            if rank is not None and _is_depthwise(child):
                setattr(parent, name, _OURS[rank].from_conv(child))
    return model
