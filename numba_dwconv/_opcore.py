"""The bodies of the public ops, written once for 1D and 2D (``ops`` holds the documented wrappers).

Each function validates through :mod:`numba_dwconv._geometry`, places operands
through :mod:`numba_dwconv.dispatch` and calls the kernel module of its rank
(``conv1d`` or ``conv2d``) on the chosen target.  The pointwise step of the
separable ops sees every rank as ``(batch, positions, channels)`` (or
``(batch, channels, positions)``): a free reshape of the contiguous depthwise output.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from . import _dask, dispatch
from . import _geometry as geo
from . import _padding_rule as padding_rule
from ._reduction import Reduction


class Rank(NamedTuple):
    """What differs between 1D and 2D: the spatial rank, the kernel module and the problem builder."""

    rank: int
    module: str
    problem: Callable
    spatial_layout: str


RANK1 = Rank(1, "conv1d", geo.conv1d_problem, "length")
RANK2 = Rank(2, "conv2d", geo.conv2d_problem, "height, width")


def _layout(rank: Rank, channels_last: bool) -> str:
    return f"(batch, {rank.spatial_layout}, channels)" if channels_last else f"(batch, channels, {rank.spatial_layout})"


def _check_grad_outputs(rank: Rank, grad_outputs, expected_shape):
    geo.check_rank("grad_outputs", grad_outputs.shape, rank.rank + 2, "like the outputs")
    geo.check_shape("grad_outputs", grad_outputs.shape, expected_shape)


# ---------------------------------------------------------------------------- validated geometry
_PROBLEMS: dict = {}
_MAX_PROBLEMS = 512


def _typed_key(value):
    """A hashable key that tells ``1``, ``1.0`` and ``True`` apart (they hash alike but validate differently).

    Plain ints, strings, dtypes and tuples of plain ints (shapes) are their own key; anything else is
    keyed by its ``repr``, which names the type (``True``, ``1.0``, ``np.int64(1)``, ``ExplicitPadding(...)``).
    """
    kind = type(value)
    if kind is int or kind is str:
        return 0, value
    if kind is tuple:
        kinds = tuple(map(type, value))
        if kinds.count(int) == len(kinds):
            return 0, value
    if isinstance(value, np.dtype):  # hashable by value (its repr costs ~4 us)
        return 0, value
    if kind is geo.ExplicitPadding:  # a tuple of int pairs
        return 2, tuple(value)
    return 1, repr(value)


def _problem(rank: Rank, *args, **kwargs):
    """``rank.problem(*args, **kwargs)``, remembered for repeated calls with the same hashable arguments.

    Validation and padding arithmetic cost ~15 us of Python per call; a training loop repeats the same
    few shapes.  Arguments that cannot be hashed (lists) are validated every time; errors are never cached.
    """
    for a in args:
        if isinstance(a, list):  # mutable: validated every time
            return rank.problem(*args, **kwargs)
    key = (rank.rank, *map(_typed_key, args), _typed_key(tuple(sorted(kwargs.items()))) if kwargs else None)
    problem = _PROBLEMS.get(key)
    if problem is None:
        problem = rank.problem(*args, **kwargs)
        if len(_PROBLEMS) >= _MAX_PROBLEMS:
            _PROBLEMS.clear()
        _PROBLEMS[key] = problem
    return problem


# ---------------------------------------------------------------------------- padding rule
def _on_host(place, array, func):
    """``func(host array)`` in place: on the array itself on the CPU, on a copy sent back on the GPU."""
    if place.target == "cpu":
        func(array)
        return array
    host = dispatch.to_host(array)
    func(host)
    return place.operand(host, host.dtype)


def _rule_in_kernels(place, reduction, module: str) -> bool:
    """Whether the kernels that ran applied the padding rule themselves (no host pass needed).

    Backends whose kernels multiply padding as zeros say so (``PADDING_RULE_IN_KERNELS``); a reduced
    problem still needs the host pass for the taps it dropped.
    """
    return reduction.taps is None and getattr(place.backend(module), "PADDING_RULE_IN_KERNELS", False)


def _forward_rule(place, problem, kernel, out, native=False):
    """``out`` with Keras' padding rule for non-finite weights applied (see ``_padding_rule``)."""
    if native or not padding_rule.forward_needs_rule(problem, kernel):
        return out
    return _on_host(place, out, lambda host: padding_rule.apply_forward(problem, kernel, host))


def _whole_kernel_grad(place, reduction, grad_outputs, grad_bias, grad_kernel, module):
    """The kernel gradient the kernels computed for ``reduction.live``, as the caller's problem has it.

    Placed in the whole kernel's shape (zeros for dead taps), then Keras' padding rule for
    non-finite output gradients applied (unless the kernels did).
    """
    grad_kernel = reduction.grad_kernel(grad_kernel)
    if _rule_in_kernels(place, reduction, module):
        return grad_kernel
    channels = padding_rule.kernel_grad_channels(grad_bias)
    if not channels.size:
        return grad_kernel
    return _on_host(place, grad_kernel,
                    lambda host: padding_rule.apply_kernel_grad(reduction.problem, grad_outputs, channels, host))


# ---------------------------------------------------------------------------- fused activations
def _activation(activation):
    """``(Activation or callable, name the kernels apply or None)`` of an ``activation=`` argument (None: none)."""
    if activation is None:
        return None, None
    from . import activations
    from .cpu.fused import fusable

    act = activations.get(activation)
    name = getattr(act, "name", None)
    return act, (name if fusable(name) and act is activations.get(name) else None)


def _bias_operand(place, bias, out_channels: int, dtype):
    """``bias`` checked to have ``out_channels`` entries and placed as an operand of ``dtype``; None stays None."""
    if bias is None:
        return None
    bias = place.view("bias", bias)
    geo.check_shape("bias", bias.shape, (out_channels,))
    return place.operand(bias, dtype)


def _check_target(place, act, name) -> None:
    """On the GPU an activation must be a built-in one (a Python callable cannot run there)."""
    if act is not None and name is None and place.target != "cpu":
        raise NotImplementedError(f"On the GPU, `activation` must be a built-in activation name (a Python callable "
                                  f"cannot run there). Received activation={act!r}")


def _activated(act, out):
    """``act(out)`` on the host, in ``out``'s dtype (the path for callables)."""
    return np.asarray(act(out), dtype=out.dtype)


def _activate_on_target(place, act, name, out, grad_outputs=None):
    """``act(out)`` (or ``grad_outputs * act'(out)``) for results the kernels did not activate, where they are."""
    if name is not None:
        if place.target == "cuda":
            from .cuda.activations import activate as activate_on_gpu

            return activate_on_gpu(out, name, grad_outputs, place.stream)
        from .cpu.fused import activate

        return activate(out, name, grad_outputs)
    if grad_outputs is None:
        return _activated(act, out)
    from .activations import derivative_of

    return np.asarray(grad_outputs * derivative_of(act)(out), dtype=out.dtype)


def _fuses(place, name, problem, kernel) -> bool:
    """Whether the CPU kernels apply activation ``name`` themselves (not with Keras' padding rule to apply after)."""
    return name is not None and place.target == "cpu" and not padding_rule.forward_needs_rule(problem, kernel)


def _grad_at_preactivation(rank, place, problem, reduction, inputs, kernel, bias, grad_outputs, activation):
    """``grad_outputs * f'(z)`` with ``z = conv + bias`` recomputed (in the kernels when they can)."""
    act, name = _activation(activation)
    _check_target(place, act, name)
    out_channels = problem.channels * problem.multiplier
    bias = _bias_operand(place, bias, out_channels, problem.dtype)
    if bias is None:
        bias = place.zeros(out_channels, problem.dtype)
    live_inputs, live_kernel = reduction.inputs(inputs), reduction.kernel(kernel)
    if _fuses(place, name, problem, kernel):
        return place.call(f"{rank.module}_forward", reduction.live, live_inputs, live_kernel, bias, name,
                          grad_outputs, module=rank.module)
    pre = place.call(f"{rank.module}_forward", reduction.live, live_inputs, live_kernel, bias, module=rank.module)
    pre = _forward_rule(place, problem, kernel, pre, _rule_in_kernels(place, reduction, rank.module))
    return _activate_on_target(place, act, name, pre, grad_outputs)


# ---------------------------------------------------------------------------- ops
def _input_grad_shape(rank, grad_outputs, kernel, input_size, name, data_format) -> tuple:
    """The inputs' shape of an input-gradient call: ``input_size`` validated, batch and channels from the operands."""
    if rank.rank == 1:
        spatial = (geo.as_positive_int(input_size, name),)
    else:
        spatial = geo.normalize_tuple(input_size, rank.rank, name)
    geo.check_rank("grad_outputs", grad_outputs.shape, rank.rank + 2, "like the outputs")
    geo.check_rank("kernel", kernel.shape, rank.rank + 2, f"({rank.spatial_layout} kernel sizes, channels, "
                   "depth_multiplier)")
    batch, channels = grad_outputs.shape[0], kernel.shape[rank.rank]
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    return (batch, *spatial, channels) if channels_last else (batch, channels, *spatial)


def _kernel_grad_shape(rank, grad_outputs, inputs, kernel_size, data_format) -> tuple:
    """The kernel's shape of a kernel-gradient call: ``kernel_size`` validated, channels and multiplier derived."""
    sizes = geo.normalize_tuple(kernel_size, rank.rank, "kernel_size")
    channels_last = geo.normalize_data_format(data_format) == "channels_last"
    geo.check_rank("inputs", inputs.shape, rank.rank + 2, _layout(rank, channels_last))
    geo.check_rank("grad_outputs", grad_outputs.shape, rank.rank + 2, "like the outputs")
    channels = inputs.shape[rank.rank + 1] if channels_last else inputs.shape[1]
    out_channels = grad_outputs.shape[rank.rank + 1] if channels_last else grad_outputs.shape[1]
    geo.check_channels("inputs", channels)
    if out_channels % channels or out_channels == 0:
        raise ValueError(
            f"`grad_outputs` must have a positive multiple of the {channels} input channels. "
            f"Received grad_outputs with shape={tuple(grad_outputs.shape)}"
        )
    return (*sizes, channels, out_channels // channels)


# ---------------------------------------------------------------------------- plain CPU calls
_PLAIN: dict = {}  # key of a plain call (_plain_key) -> its validated problem
_PLAIN_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _plain_key(rank: Rank, inputs, kernel, bias, options, device, stream, activation):
    """A key for a forward call that needs no conversion, placement or post-pass on the CPU; None for any other.

    Plain: NumPy arrays of one native float32/float64 dtype, C-contiguous, no stream or activation, on
    the CPU.  Such a call, once validated (the key holds every shape and option), goes straight to the
    kernels: after a large call Python's own data is out of the CPU caches, and the ~20 checks and
    conversions of the general path cost 70-95 us (measured), ~6 % of a 1.4 ms 2D forward.
    """
    if stream is not None or activation is not None or not (device == "auto" or device == "cpu"):
        return None
    if type(inputs) is not np.ndarray or type(kernel) is not np.ndarray:
        return None
    dtype = inputs.dtype
    if dtype not in _PLAIN_DTYPES or kernel.dtype != dtype:
        return None
    if not inputs.flags.c_contiguous or not kernel.flags.c_contiguous:
        return None
    if bias is not None and (type(bias) is not np.ndarray or bias.dtype != dtype or not bias.flags.c_contiguous):
        return None
    for option in options:
        if isinstance(option, list):  # mutable: validated every time
            return None
    return (rank.rank, inputs.shape, kernel.shape, dtype, None if bias is None else bias.shape,
            *map(_typed_key, options))


def forward(rank: Rank, inputs, kernel, bias, strides, padding, data_format, dilation_rate, device, stream,
            activation=None):
    plain = _plain_key(rank, inputs, kernel, bias, (strides, padding, data_format, dilation_rate), device, stream,
                       activation)
    if plain is not None:
        problem = _PLAIN.get(plain)
        if problem is not None and math.isfinite(kernel.sum()):  # (else Keras' padding rule may apply: below)
            return dispatch.ON_CPU.call(f"{rank.module}_forward", problem, inputs, kernel, bias, module=rank.module)
    if _dask.is_dask(inputs):  # lazy, block by block (numba_dwconv._dask)
        return _dask.forward(rank.rank, inputs, kernel, bias, strides, padding, data_format, dilation_rate, device,
                             activation)
    place = dispatch.place(device, (inputs,), (kernel, bias), stream)
    inputs = place.view("inputs", inputs)
    kernel = place.view("kernel", kernel)
    dtype = np.result_type(inputs.dtype, kernel.dtype)
    problem = _problem(rank, inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    out_channels = problem.channels * problem.multiplier
    bias = _bias_operand(place, bias, out_channels, dtype)
    if bias is None:
        bias = place.zeros(out_channels, dtype)
    reduction = Reduction(place, problem)
    act, name = _activation(activation)
    _check_target(place, act, name)
    native = _rule_in_kernels(place, reduction, rank.module)
    if _fuses(place, name, problem, kernel):
        return place.finish(place.call(f"{rank.module}_forward", reduction.live, reduction.inputs(inputs),
                                       reduction.kernel(kernel), bias, name, module=rank.module))
    out = place.call(f"{rank.module}_forward", reduction.live, reduction.inputs(inputs), reduction.kernel(kernel), bias,
                     module=rank.module)
    if plain is not None and place is dispatch.ON_CPU and reduction.taps is None and act is None:
        if len(_PLAIN) >= _MAX_PROBLEMS:
            _PLAIN.clear()
        _PLAIN[plain] = reduction.live  # (the problem itself: no taps dropped); the next such call goes at the top
    out = _forward_rule(place, problem, kernel, out, native)
    return place.finish(out if act is None else _activate_on_target(place, act, name, out))


def backward(rank: Rank, grad_outputs, inputs, kernel, strides, padding, data_format, dilation_rate, device, stream,
             bias=None, activation=None):
    if _dask.is_dask(inputs) or _dask.is_dask(grad_outputs):
        from . import _dask_grads

        return _dask_grads.backward(rank.rank, grad_outputs, inputs, kernel, strides, padding, data_format,
                                    dilation_rate, device, bias, activation)
    place = dispatch.place(device, (grad_outputs, inputs), (kernel,), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    inputs = place.view("inputs", inputs)
    kernel = place.view("kernel", kernel)
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype, kernel.dtype)
    problem = _problem(rank, inputs.shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(rank, grad_outputs, problem.output_shape)
    grad_outputs = place.operand(grad_outputs, dtype)
    reduction = Reduction(place, problem)
    if activation is not None:  # the gradient at the pre-activation, which the kernels below take
        grad_outputs = _grad_at_preactivation(rank, place, problem, reduction, inputs, kernel, bias, grad_outputs,
                                              activation)
    elif bias is not None:
        geo.check_shape("bias", place.view("bias", bias).shape, (problem.channels * problem.multiplier,))
    live, kernel_op, inputs = reduction.live, reduction.kernel(kernel), reduction.inputs(inputs)
    if hasattr(place.backend(rank.module), f"{rank.module}_backward"):  # a backend's one-pass backward
        grad_inputs, grad_kernel, grad_bias = place.call(f"{rank.module}_backward", live, grad_outputs, kernel_op,
                                                         inputs, module=rank.module)
    else:
        grad_inputs = place.call(f"{rank.module}_input_grad", live, grad_outputs, kernel_op, module=rank.module)
        grad_kernel, grad_bias = place.call(f"{rank.module}_kernel_grad", live, grad_outputs, inputs,
                                            module=rank.module)
    grad_inputs = reduction.grad_inputs(grad_inputs)
    grad_kernel = _whole_kernel_grad(place, reduction, grad_outputs, grad_bias, grad_kernel, rank.module)
    return place.finish((grad_inputs, grad_kernel, grad_bias))


def input_grad(rank: Rank, grad_outputs, kernel, input_size, name, strides, padding, data_format, dilation_rate,
               device, stream):
    if _dask.is_dask(grad_outputs):
        from . import _dask_grads

        kernel = np.asarray(kernel.compute() if _dask.is_dask(kernel) else kernel)
        input_shape = _input_grad_shape(rank, grad_outputs, kernel, input_size, name, data_format)
        return _dask_grads.input_grad(rank.rank, grad_outputs, kernel, input_shape, strides, padding, data_format,
                                      dilation_rate, device)
    place = dispatch.place(device, (grad_outputs,), (kernel,), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    kernel = place.view("kernel", kernel)
    dtype = np.result_type(grad_outputs.dtype, kernel.dtype)
    input_shape = _input_grad_shape(rank, grad_outputs, kernel, input_size, name, data_format)
    problem = _problem(rank, input_shape, kernel.shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(rank, grad_outputs, problem.output_shape)
    reduction = Reduction(place, problem)
    grad_inputs = place.call(f"{rank.module}_input_grad", reduction.live, place.operand(grad_outputs, dtype),
                             reduction.kernel(kernel), module=rank.module)
    return place.finish(reduction.grad_inputs(grad_inputs))


def kernel_grad(rank: Rank, grad_outputs, inputs, kernel_size, strides, padding, data_format, dilation_rate,
                device, stream):
    if _dask.is_dask(inputs) or _dask.is_dask(grad_outputs):
        from . import _dask_grads

        kernel_shape = _kernel_grad_shape(rank, grad_outputs, inputs, kernel_size, data_format)
        return _dask_grads.kernel_grad(rank.rank, grad_outputs, inputs, kernel_shape, strides, padding, data_format,
                                       dilation_rate, device)
    place = dispatch.place(device, (grad_outputs, inputs), (), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    inputs = place.view("inputs", inputs)
    dtype = np.result_type(grad_outputs.dtype, inputs.dtype)
    kernel_shape = _kernel_grad_shape(rank, grad_outputs, inputs, kernel_size, data_format)
    problem = _problem(rank, inputs.shape, kernel_shape, strides, padding, data_format, dilation_rate, dtype)
    _check_grad_outputs(rank, grad_outputs, problem.output_shape)
    reduction = Reduction(place, problem)
    grad_outputs = place.operand(grad_outputs, dtype)
    grad_kernel, grad_bias = place.call(f"{rank.module}_kernel_grad", reduction.live, grad_outputs,
                                        reduction.inputs(inputs), module=rank.module)
    grad_kernel = _whole_kernel_grad(place, reduction, grad_outputs, grad_bias, grad_kernel, rank.module)
    return place.finish((grad_kernel, grad_bias))


# ---------------------------------------------------------------------------- separable
def _separable_operands(rank, place, inputs, depthwise_kernel, pointwise_kernel, extra_dtypes, strides, padding,
                        data_format, dilation_rate):
    """(problem, filters, dtype, inputs, depthwise kernel, pointwise as (Cm, F)) of a validated separable call."""
    inputs = place.view("inputs", inputs)
    depthwise_kernel = place.view("depthwise_kernel", depthwise_kernel)
    pointwise_kernel = place.view("pointwise_kernel", pointwise_kernel)
    dtype = np.result_type(inputs.dtype, depthwise_kernel.dtype, pointwise_kernel.dtype, *extra_dtypes)
    problem = _problem(rank, inputs.shape, depthwise_kernel.shape, strides, padding, data_format, dilation_rate,
                       dtype, kernel_name="depthwise_kernel")
    depth_channels = problem.channels * problem.multiplier
    filters = geo.pointwise_filters(pointwise_kernel.shape, depth_channels, rank.rank)
    pointwise = place.operand(pointwise_kernel, dtype).reshape(depth_channels, filters)
    return problem, filters, dtype, inputs, depthwise_kernel, pointwise


def _depthwise_step(rank, place, problem, inputs, depthwise_kernel):
    """``(reduction, its inputs, its depthwise kernel, depthwise outputs)`` of a separable call (no bias)."""
    reduction = Reduction(place, problem)
    inputs, depthwise = reduction.inputs(inputs), reduction.kernel(depthwise_kernel)
    out = place.call(f"{rank.module}_forward", reduction.live, inputs, depthwise,
                     place.zeros(problem.channels * problem.multiplier, problem.dtype), module=rank.module)
    native = _rule_in_kernels(place, reduction, rank.module)
    return reduction, inputs, depthwise, _forward_rule(place, problem, depthwise_kernel, out, native)


def _flat_positions(array, channels_last):
    """A ``(batch, positions, channels)`` / ``(batch, channels, positions)`` view of a contiguous array."""
    shape = tuple(array.shape)  # a plain tuple (the CUDA simulator's shape refuses negative indices)
    if channels_last:
        return array.reshape(shape[0], math.prod(shape[1:-1]), shape[-1])
    return array.reshape(shape[0], shape[1], math.prod(shape[2:]))


def _with_channels(shape, channels, channels_last):
    return (*shape[:-1], channels) if channels_last else (shape[0], channels, *shape[2:])


def separable_forward(rank, inputs, depthwise_kernel, pointwise_kernel, bias, strides, padding, data_format,
                      dilation_rate, device, stream, activation=None):
    if _dask.is_dask(inputs):
        from . import _dask_separable

        return _dask_separable.separable_forward(rank.rank, inputs, depthwise_kernel, pointwise_kernel, bias,
                                                 strides, padding, data_format, dilation_rate, device, activation)
    place = dispatch.place(device, (inputs,), (depthwise_kernel, pointwise_kernel, bias), stream)
    bias = None if bias is None else place.view("bias", bias)
    extra = () if bias is None else (bias.dtype,)
    problem, filters, dtype, inputs, depthwise, pointwise = _separable_operands(
        rank, place, inputs, depthwise_kernel, pointwise_kernel, extra, strides, padding, data_format, dilation_rate)
    if bias is not None:
        geo.check_shape("bias", bias.shape, (filters,))
        bias = place.operand(bias, dtype)
    *_, depthwise_out = _depthwise_step(rank, place, problem, inputs, depthwise)
    out = place.call("pointwise_forward", _flat_positions(depthwise_out, problem.channels_last), pointwise, bias,
                     problem.channels_last, module="pointwise")
    out = out.reshape(_with_channels(problem.output_shape, filters, problem.channels_last))
    act, name = _activation(activation)
    _check_target(place, act, name)
    if act is not None:
        out = _activate_on_target(place, act, name, out)
    return place.finish(out)


def separable_backward(rank, grad_outputs, inputs, depthwise_kernel, pointwise_kernel, strides, padding, data_format,
                       dilation_rate, device, stream, bias=None, activation=None):
    if _dask.is_dask(inputs) or _dask.is_dask(grad_outputs):
        from . import _dask_separable

        return _dask_separable.separable_backward(rank.rank, grad_outputs, inputs, depthwise_kernel,
                                                  pointwise_kernel, strides, padding, data_format, dilation_rate,
                                                  device, bias, activation)
    place = dispatch.place(device, (grad_outputs, inputs), (depthwise_kernel, pointwise_kernel), stream)
    grad_outputs = place.view("grad_outputs", grad_outputs)
    problem, filters, dtype, inputs, depthwise, pointwise = _separable_operands(
        rank, place, inputs, depthwise_kernel, pointwise_kernel, (grad_outputs.dtype,), strides, padding,
        data_format, dilation_rate)
    depth_channels = problem.channels * problem.multiplier
    _check_grad_outputs(rank, grad_outputs, _with_channels(problem.output_shape, filters, problem.channels_last))
    grad_outputs = place.operand(grad_outputs, dtype)
    reduction, inputs, live_depthwise, depthwise_out = _depthwise_step(rank, place, problem, inputs, depthwise)
    bias = _bias_operand(place, bias, filters, dtype)
    act, name = _activation(activation)
    _check_target(place, act, name)
    if act is not None:  # the gradient at the pre-activation: pointwise output + bias, recomputed
        pre = place.call("pointwise_forward", _flat_positions(depthwise_out, problem.channels_last), pointwise, bias,
                         problem.channels_last, module="pointwise")
        grad_outputs = _activate_on_target(place, act, name, pre.reshape(grad_outputs.shape), grad_outputs)
    grad_depthwise_out, grad_pointwise, grad_bias = place.call(
        "pointwise_backward", _flat_positions(grad_outputs, problem.channels_last),
        _flat_positions(depthwise_out, problem.channels_last), pointwise, problem.channels_last, module="pointwise")
    grad_depthwise_out = grad_depthwise_out.reshape(problem.output_shape)
    live = reduction.live
    grad_inputs = place.call(f"{rank.module}_input_grad", live, grad_depthwise_out, live_depthwise,
                             module=rank.module)
    grad_depthwise, grad_depthwise_bias = place.call(f"{rank.module}_kernel_grad", live, grad_depthwise_out, inputs,
                                                     module=rank.module)
    grad_inputs = reduction.grad_inputs(grad_inputs)
    grad_depthwise = _whole_kernel_grad(place, reduction, grad_depthwise_out, grad_depthwise_bias, grad_depthwise,
                                        rank.module)
    grad_pointwise = grad_pointwise.reshape((1,) * rank.rank + (depth_channels, filters))
    return place.finish((grad_inputs, grad_depthwise, grad_pointwise, grad_bias))
