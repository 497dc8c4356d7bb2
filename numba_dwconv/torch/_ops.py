"""The depthwise convolutions as PyTorch custom operators (``torch.library``), with fake kernels and autograd.

Four functional operators, ``numba_dwconv::dwconv{1,2}d`` and their ``_backward``: fresh outputs,
nothing mutated.  Tensors reach the numba kernels without a copy: CPU tensors as NumPy views, CUDA
tensors through the CUDA array interface, run on PyTorch's current stream of their device.

Layout: an input whose memory is channels last (``(N, L, C)`` transposed to ``(N, C, L)``, or
``torch.channels_last`` in 2D) runs the channels_last kernels on that memory and its results keep
that memory format; any other input runs the channels_first kernels (made contiguous first if
needed).  The fake kernels give the same shapes and strides, so ``torch.compile`` traces through.

Arguments reach the operators already normalised by :mod:`numba_dwconv.torch.functional`: strides
and dilations as lists, ``padding`` one of ``"valid"``, ``"same"``, ``"causal"`` (Keras geometry:
see SEMANTICS.md) or ``"explicit"`` with ``pads`` (``before, after`` zeros per spatial axis, what
PyTorch's integer padding adds), ``activation`` a name of :mod:`numba_dwconv.activations` or None.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .. import _geometry as geo
from .. import ops

_FORMAT = {True: "channels_last", False: "channels_first"}


# ---------------------------------------------------------------------------- layouts and views
def channels_last_memory(x: Tensor) -> bool:
    """Whether ``x`` (N, C, *spatial) is stored channels last (and not also plainly contiguous)."""
    if x.is_contiguous():
        return False
    return _to_channels_last(x).is_contiguous()


def _to_channels_last(x: Tensor) -> Tensor:
    """The (N, *spatial, C) view of an (N, C, *spatial) tensor."""
    return x.movedim(1, -1)


def to_layout(t: Tensor, channels_last: bool) -> Tensor:
    """An (N, C, *spatial) tensor as a layout's kernels read it: C-contiguous (N, *spatial, C) or (N, C, *spatial)."""
    return (_to_channels_last(t) if channels_last else t).contiguous()


def from_layout(t: Tensor, channels_last: bool) -> Tensor:
    """A kernels' result of a layout as an (N, C, *spatial) tensor (a view)."""
    return t.movedim(-1, 1) if channels_last else t


def _array(t: Tensor):
    """``t`` (detached) as an array the ops accept, without a copy: NumPy on the CPU, the tensor on CUDA.

    CPU views may be strided (the ops make small operands contiguous themselves); CUDA tensors must
    be contiguous already.
    """
    if t.requires_grad:
        t = t.detach()
    return t.numpy() if t.is_cpu else t.contiguous()


def _tensor(array, like: Tensor) -> Tensor:
    """An op result as a tensor on ``like``'s device, without a copy."""
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    return torch.as_tensor(array, device=like.device)


def _device_kwargs(x: Tensor) -> dict:
    """``device``/``stream`` arguments of the ops: PyTorch's current stream of ``x``'s GPU."""
    if x.is_cpu:
        return {"device": "cpu"}
    if x.device.type != "cuda":
        raise ValueError(f"numba_dwconv runs on CPU and CUDA tensors. Received a tensor on {x.device}")
    from numba import cuda

    with cuda.gpus[x.device.index or 0]:
        stream = cuda.external_stream(torch.cuda.current_stream(x.device).cuda_stream)
    return {"device": "cuda", "stream": stream}


def keras_kernel(weight: Tensor, channels: int) -> Tensor:
    """A ``(C*m, 1, *K)`` PyTorch weight as the ``(*K, C, m)`` Keras kernel (a view)."""
    spatial = weight.shape[2:]
    mult = weight.shape[0] // channels
    k = weight.reshape(channels, mult, *spatial)
    return k.permute(*range(2, 2 + len(spatial)), 0, 1)


def torch_weight_grad(grad_kernel: Tensor) -> Tensor:
    """A ``(*K, C, m)`` kernel gradient as a contiguous ``(C*m, 1, *K)`` weight gradient."""
    rank = grad_kernel.dim() - 2
    g = grad_kernel.permute(rank, rank + 1, *range(rank))
    return g.reshape(g.shape[0] * g.shape[1], 1, *g.shape[2:]).contiguous()


def _keras_padding(padding: str, pads):
    """The ops' ``padding`` argument: the Keras string, or the explicit amounts."""
    return padding if padding != "explicit" else _explicit(tuple(pads))


@functools.lru_cache(maxsize=256)
def _explicit(pads: tuple) -> geo.ExplicitPadding:
    return geo.ExplicitPadding(zip(pads[0::2], pads[1::2]))


def _out_shape(x: Tensor, weight: Tensor, stride, padding: str, pads, dilation) -> list:
    """``(N, C*m, *out)`` of the convolution, from the geometry the ops use (which also validate the arguments)."""
    out = []
    for axis, (length, size, s, d) in enumerate(zip(x.shape[2:], weight.shape[2:], stride, dilation)):
        if padding == "explicit":
            geometry = geo.explicit_axis_geometry(length, size, s, d, pads[2 * axis], pads[2 * axis + 1])
        else:
            geometry = geo.axis_geometry(length, size, s, d, padding)
        out.append(geometry.out_length)
    return [x.shape[0], weight.shape[0], *out]


def empty_in_layout(shape, channels_last: bool, like: Tensor) -> Tensor:
    """An empty tensor of ``shape`` (N, C, *spatial) stored channels last or contiguous."""
    if channels_last:
        return from_layout(like.new_empty([shape[0], *shape[2:], shape[1]]), True)
    return like.new_empty(shape)


def plain_call(x, weight, bias) -> bool:
    """Whether a forward call may skip the operator's dispatch: plain tensors, no gradient to record, no tracing.

    The custom operator's dispatch (autograd wrapper, schema checks) costs ~20 us a call, more than
    the kernels on a small input.  Skipped only when nothing would use it: autograd off or no input
    requiring a gradient, not under ``torch.compile`` (which must see the operator), and plain
    tensors or parameters (fake, functorch-wrapped or other subclass tensors take the operator).
    """
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))):
        return False
    return _plain_types(x, weight, bias)


def _plain_tensors(*tensors) -> bool:
    """Not under ``torch.compile``, and every tensor given a plain tensor or parameter (None: skipped)."""
    return not torch.compiler.is_compiling() and _plain_types(*tensors)


def _plain_types(*tensors) -> bool:
    """Every tensor given (None: skipped) a plain tensor or parameter, not wrapped by functorch."""
    for t in tensors:
        if t is not None and ((type(t) is not Tensor and type(t) is not torch.nn.Parameter) or _is_wrapped(t)):
            return False
    return True


_is_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", lambda t: False)


def _keras_kernel_array(weight: Tensor, channels: int):
    """:func:`keras_kernel` as an array the ops take: on the CPU a small C-contiguous NumPy copy.

    (NumPy is cheaper than torch's view ops; contiguous, a call with plain tensors takes the ops' plain path;
    on 64-byte lines (PyTorch's allocations are), the CPU kernels use it as it is: see
    :func:`numba_dwconv._memory.aligned`.)
    """
    if weight.is_cpu:
        w = (weight.detach() if weight.requires_grad else weight).numpy()
        if w.ndim == 3:
            view = w.reshape(channels, -1, w.shape[2]).transpose(2, 0, 1)
        else:
            view = w.reshape(channels, -1, w.shape[2], w.shape[3]).transpose(2, 3, 0, 1)
        kernel = torch.empty(view.shape, dtype=weight.dtype).numpy()  # (PyTorch aligns it; asking NumPy where its
        kernel[...] = view  # array lies, .ctypes, costs ~15 us after a large kernel)
        return kernel
    return _array(keras_kernel(weight.detach(), channels))


def _host_layout(x: Tensor):
    """``(array, cl)``: a CPU tensor (N, C, *spatial) as :func:`to_layout`'s array, and :func:`channels_last_memory`.

    Decided on NumPy's view and flags (each torch view op costs microseconds, more after a large kernel has
    swept the caches: the 2D forward's module call spent ~40 us in them); a copy only where neither layout
    is contiguous, as :func:`to_layout` makes.
    """
    array = (x.detach() if x.requires_grad else x).numpy()
    if array.flags.c_contiguous:
        return array, False
    moved = _channels_last_view(array)  # (np.moveaxis: ~15 us after a large kernel, this ~1)
    if moved.flags.c_contiguous:
        return moved, True
    return np.ascontiguousarray(array), False


def _host_in_layout(t: Tensor, cl: bool):
    """A CPU tensor (N, C, *spatial) as a C-contiguous array of the layout ``cl`` (:func:`to_layout`, on NumPy)."""
    array = (t.detach() if t.requires_grad else t).numpy()
    return np.ascontiguousarray(_channels_last_view(array) if cl else array)


def _channels_last_view(array):
    """An (N, C, *spatial) array as (N, *spatial, C) (a view)."""
    return array.transpose(0, *range(2, array.ndim), 1)


def _channels_first_view(array):
    """An (N, *spatial, C) array as (N, C, *spatial) (a view)."""
    return array.transpose(0, array.ndim - 1, *range(1, array.ndim - 1))


def forward_impl(rank: int, x, weight, bias, stride, padding, pads, dilation, activation):
    """The forward operators' body: numba_dwconv's op on views of the tensors, the result as a tensor."""
    func = ops.depthwise_conv1d if rank == 1 else ops.depthwise_conv2d
    kernel = _keras_kernel_array(weight, x.shape[1])
    bias = None if bias is None else _array(bias)
    if x.is_cpu:
        array, cl = _host_layout(x)
    else:
        cl = channels_last_memory(x)
        array = _array(to_layout(x, cl))
    out = func(array, kernel, bias, tuple(stride), _keras_padding(padding, pads), _FORMAT[cl], tuple(dilation),
               activation=activation, **_device_kwargs(x))
    if isinstance(out, np.ndarray):  # (one strided from_numpy: cheaper than from_layout's torch view)
        return torch.from_numpy(_channels_first_view(out) if cl else out)
    return from_layout(_tensor(out, x), cl)


def _backward_impl(rank: int, grad, x, weight, bias, stride, padding, pads, dilation, activation):
    """The backward operators' body: the gradients of x, weight and bias as tensors (CPU: on NumPy views)."""
    func = ops.depthwise_conv1d_backward if rank == 1 else ops.depthwise_conv2d_backward
    kernel = _keras_kernel_array(weight, x.shape[1])
    kw = _device_kwargs(x)
    if activation is not None:
        kw.update(activation=activation, bias=None if bias is None else _array(bias))
    if x.is_cpu:
        x_array, cl = _host_layout(x)
        grad_array = _host_in_layout(grad, cl)
    else:
        cl = channels_last_memory(x)
        x_array, grad_array = _array(to_layout(x, cl)), _array(to_layout(grad, cl))
    gx, gk, gb = func(grad_array, x_array, kernel, tuple(stride), _keras_padding(padding, pads), _FORMAT[cl],
                      tuple(dilation), **kw)  # (tuples: hashable geometry)
    if isinstance(gx, np.ndarray):  # (NumPy's views and copies: cheaper than torch's view ops here)
        k = gk.ndim - 2
        weight_grad = gk.transpose(k, k + 1, *range(k)).reshape(gk.shape[k] * gk.shape[k + 1], 1, *gk.shape[:k])
        return (torch.from_numpy(_channels_first_view(gx) if cl else gx),
                torch.from_numpy(np.ascontiguousarray(weight_grad)), torch.from_numpy(gb))
    return from_layout(_tensor(gx, x), cl), torch_weight_grad(_tensor(gk, x)), _tensor(gb, x)


# ---------------------------------------------------------------------------- the operators
@torch.library.custom_op("numba_dwconv::dwconv1d", mutates_args=())
def dwconv1d_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int], padding: str,
                pads: list[int], dilation: list[int], activation: Optional[str]) -> Tensor:
    """1D depthwise convolution of ``x`` (N, C, L) with ``weight`` (C*m, 1, K)."""
    return forward_impl(1, x, weight, bias, stride, padding, pads, dilation, activation)


@torch.library.custom_op("numba_dwconv::dwconv2d", mutates_args=())
def dwconv2d_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int], padding: str,
                pads: list[int], dilation: list[int], activation: Optional[str]) -> Tensor:
    """2D depthwise convolution of ``x`` (N, C, H, W) with ``weight`` (C*m, 1, KH, KW)."""
    return forward_impl(2, x, weight, bias, stride, padding, pads, dilation, activation)


@torch.library.custom_op("numba_dwconv::dwconv1d_backward", mutates_args=())
def dwconv1d_backward_op(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int],
                         padding: str, pads: list[int], dilation: list[int],
                         activation: Optional[str]) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`dwconv1d_op` with respect to ``x``, ``weight`` and the bias."""
    return _backward_impl(1, grad, x, weight, bias, stride, padding, pads, dilation, activation)


@torch.library.custom_op("numba_dwconv::dwconv2d_backward", mutates_args=())
def dwconv2d_backward_op(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int],
                         padding: str, pads: list[int], dilation: list[int],
                         activation: Optional[str]) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`dwconv2d_op` with respect to ``x``, ``weight`` and the bias."""
    return _backward_impl(2, grad, x, weight, bias, stride, padding, pads, dilation, activation)


def _fake_forward(x, weight, bias, stride, padding, pads, dilation, activation):
    shape = _out_shape(x, weight, stride, padding, pads, dilation)
    return empty_in_layout(shape, channels_last_memory(x), x)


def _fake_backward(grad, x, weight, bias, stride, padding, pads, dilation, activation):
    grad_x = empty_in_layout(list(x.shape), channels_last_memory(x), x)
    return grad_x, weight.new_empty(weight.shape), weight.new_empty(weight.shape[0])


for _op in (dwconv1d_op, dwconv2d_op):
    _op.register_fake(_fake_forward)
for _op in (dwconv1d_backward_op, dwconv2d_backward_op):
    _op.register_fake(_fake_backward)


def _setup_context(ctx, inputs, output):
    x, weight, bias, *args = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.args = tuple(args)  # stride, padding, pads, dilation, activation


def _autograd(rank: int, backward_op):
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        if not torch.is_grad_enabled() and _plain_tensors(grad, x, weight, bias):  # (as plain_call: the body alone)
            grad_x, grad_w, grad_b = _backward_impl(rank, grad, x, weight, bias, *ctx.args)
        else:
            grad_x, grad_w, grad_b = backward_op(grad, x, weight, bias, *ctx.args)
        return grad_x, grad_w, (grad_b if bias is not None else None), *(None,) * len(ctx.args)

    return backward


dwconv1d_op.register_autograd(_autograd(1, dwconv1d_backward_op), setup_context=_setup_context)
dwconv2d_op.register_autograd(_autograd(2, dwconv2d_backward_op), setup_context=_setup_context)
