"""A module's repeated plain CPU forward, straight to a prepared launch.

The general path of a module call (argument normalisation, the operator's body, the NumPy-level op,
the kernels' host function) runs some hundred Python steps.  Right after a large call has swept the
CPU caches each costs microseconds: 110-150 us on a 1.1 ms 2D forward, more than the gap to PyTorch's
own convolution.  A :class:`PlainForward` remembers what a module's last such call was (the input's
shape, strides and dtype, the weight's and bias', the module's options) and, while calls repeat it,
runs the prepared launch of :mod:`numba_dwconv.cpu.conv2d_prepared` on views of the tensors: the
same kernel with the same arguments, so the same bits as the general path.

Used only where the general path would skip the operator's dispatch too (:func:`_ops.plain_call`: no
autograd recording, not traced, plain tensors) and only for 2D channels_last memory, ``m = 1``, no
activation, finite taps (others: the general path).  The weight is read on every call (never cached:
it may change in place in ways PyTorch does not count, through ``.data`` or a NumPy view).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _geometry as geo
from .. import _opcore
from ..cpu import conv2d_prepared
from . import _ops, functional

_FLOATS = (torch.float32, torch.float64)
# (None outside every functorch transform)
_functorch_level = getattr(getattr(torch._C, "_functorch", None), "maybe_current_level", lambda: None)


class PlainForward:
    """A module's prepared forward for inputs like one it was made for (:meth:`make`)."""

    __slots__ = ("shape", "strides", "dtype", "weight", "bias", "options", "plan", "_arrays")

    @classmethod
    def make(cls, module, x):
        """The prepared forward of ``module`` for inputs like ``x``, or None where there is none (see the module)."""
        weight, bias = module.weight, module.bias
        if (module._rank != 2 or module.activation is not None or type(x) is not torch.Tensor or not x.is_cpu
                or x.dtype not in _FLOATS or not _ops.channels_last_memory(x) or not weight.is_cpu
                or weight.dtype != x.dtype or not weight.is_contiguous() or weight.shape[0] != x.shape[1]):
            return None
        if bias is not None and (not bias.is_cpu or bias.dtype != x.dtype or not bias.is_contiguous()):
            return None
        mode, pads = functional._padding(module._keras_padding, list(module.stride), 2)
        n, c, h, w = x.shape
        problem = _opcore._problem(_opcore.RANK2, (n, h, w, c), (*weight.shape[2:], c, 1), tuple(module.stride),
                                   _ops._keras_padding(mode, pads), "channels_last", tuple(module.dilation),
                                   np.dtype(str(x.dtype).removeprefix("torch.")))
        if geo.reduce_problem(problem)[1] is not None:  # (taps dropped: the general path's reduction)
            return None
        plan = conv2d_prepared.forward_plan(problem, x.data_ptr())
        if plan is None:
            return None
        self = cls()
        dtype = problem.dtype
        self.shape, self.strides, self.dtype = tuple(x.shape), tuple(s * dtype.itemsize for s in x.stride()), dtype
        self.weight = _layout(weight)
        self.bias = None if bias is None else _layout(bias)
        self.options = _options(module)
        self.plan = plan
        self._arrays = None  # (weight, bias, their addresses and layouts, their NumPy views) of the last call
        return self

    def run(self, module, x):
        """``module(x)``, or :data:`MISMATCH`, or None.

        :data:`MISMATCH`: not a call this forward was prepared for (shapes, strides, dtypes, options);
        None: it must take the general path this time (autograd recording, a tensor subclass, a functorch
        transform or wrapper, a tensor NumPy cannot view; a tap that is not finite).  The caller has checked
        that nothing is being traced (``torch.compiler.is_compiling``).

        Every check reads as little as it can: after a large call has swept the CPU caches each call into
        PyTorch costs 2-8 us (measured), so the input is checked on its NumPy view (one call into PyTorch, then
        NumPy's own fields) and ``torch.is_grad_enabled`` is asked once.
        """
        params = module._parameters
        weight, bias = params["weight"], params["bias"]
        if type(x) is not torch.Tensor or _functorch_level() is not None:
            return None  # (a subclass, or not a tensor: the general path says what is wrong)
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad)):
            return None
        try:
            array = (x.detach() if x.requires_grad else x).numpy()
        except (RuntimeError, TypeError):  # (another device, a conjugate or negative view, no storage)
            return MISMATCH if not x.is_cpu else None
        if not (array.shape == self.shape and array.strides == self.strides and array.dtype is self.dtype
                and (self.plan.alignment is None or x.data_ptr() % 64 == self.plan.alignment)
                and _options(module) == self.options):
            return MISMATCH
        arrays = self._parameter_arrays(weight, bias)
        if arrays is None:
            return MISMATCH
        out = self.plan.from_torch_weight(array.transpose(0, 2, 3, 1).reshape(-1), *arrays)
        return None if out is None else torch.from_numpy(out.transpose(0, 3, 1, 2))

    def _parameter_arrays(self, weight, bias):
        """NumPy views ``(weight, bias)`` (bias None: None), or None where they differ from the prepared ones.

        The views are kept while the same tensors hold the same memory with the same layout: a view reads what
        the tensor holds now, so only a tensor whose data moved (``.data`` replaced, ``set_``) needs a new one,
        and the address tells (the kept view holds the old memory, so no new data can start there).  Detaching
        and viewing the two parameters cost ~5 us after a large call (measured).
        """
        meta = (weight.data_ptr(), *_layout(weight), None if bias is None else (bias.data_ptr(), *_layout(bias)))
        kept = self._arrays
        if kept is not None and kept[0] is weight and kept[1] is bias and kept[2] == meta:
            return kept[3]
        if (meta[1:4] != self.weight or (bias is None) != (self.bias is None)
                or (bias is not None and meta[4][1:] != self.bias)
                or not _ops._plain_types(weight, bias)
                or not weight.is_cpu or (bias is not None and not bias.is_cpu)):
            return None
        arrays = ((weight.detach() if weight.requires_grad else weight).numpy(),
                  None if bias is None else (bias.detach() if bias.requires_grad else bias).numpy())
        self._arrays = (weight, bias, meta, arrays)
        return arrays


MISMATCH = object()  # what PlainForward.run returns for a call it was not prepared for


def _layout(tensor) -> tuple:
    """What a parameter's NumPy view depends on besides its address: shape, strides, dtype (on the CPU)."""
    return tensor.shape, tensor.stride(), tensor.dtype


def _options(module) -> tuple:
    return module.stride, module._keras_padding, module.dilation, module.activation
