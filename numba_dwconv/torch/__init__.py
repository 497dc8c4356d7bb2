"""PyTorch bridge: numba_dwconv's depthwise kernels as differentiable PyTorch operators and modules.

Imported only when used (``import numba_dwconv`` never imports torch)::

    from numba_dwconv.torch import DepthwiseConv1d, convert, dwconv1d

* :func:`dwconv1d`, :func:`dwconv2d`: ``F.conv1d/conv2d`` for ``groups = C`` (PyTorch's weight
  layout and padding), with an optional fused ``activation``;
* :class:`DepthwiseConv1d`, :class:`DepthwiseConv2d`: drop-in ``nn.Conv1d/nn.Conv2d`` subclasses
  (same parameters and state dicts);
* :func:`convert`: swaps every depthwise convolution of a model for ours;
* :func:`causal_conv1d_fn`, :func:`causal_conv1d_update`: the causal-conv1d library's API (any
  width, both layouts, CPU and CUDA; see :mod:`numba_dwconv.torch.causal`).

The operators are ``torch.library`` custom ops (``torch.ops.numba_dwconv.dwconv1d`` ...) with fake
kernels and autograd, so they work under ``torch.compile``.  CPU tensors pass to the kernels as
NumPy views, CUDA tensors through the CUDA array interface; nothing is copied.
"""

from __future__ import annotations

from .causal import causal_conv1d_fn, causal_conv1d_update
from .functional import dwconv1d, dwconv2d
from .modules import DepthwiseConv1d, DepthwiseConv2d, convert

__all__ = ["DepthwiseConv1d", "DepthwiseConv2d", "causal_conv1d_fn", "causal_conv1d_update", "convert", "dwconv1d",
           "dwconv2d"]
