"""Argument normalisation, validation, padding and output shapes.

This module is the single place where the meaning of ``padding``, ``strides``,
``dilation_rate`` and ``data_format`` is decided.  It imports no numba: the
kernels receive plain integers (``pad_left``, ``stride``, ``dilation``) and only
do arithmetic.  Every error raised here names the argument and the value.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np

PADDINGS_1D = ("valid", "same", "causal")
PADDINGS_2D = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")
DEVICES = ("auto", "cpu", "cuda")
CPU_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
CUDA_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


class AxisGeometry(NamedTuple):
    """Geometry of one spatial axis of a convolution.

    Attributes
    ----------
    length : int
        Input length along the axis.
    kernel_size : int
        Number of kernel taps ``K``.
    stride : int
        Step between consecutive output positions.
    dilation : int
        Step between consecutive kernel taps.
    pad_left : int
        Zeros virtually prepended to the input.
    pad_right : int
        Zeros virtually appended to the input.
    out_length : int
        Output length along the axis.
    """

    length: int
    kernel_size: int
    stride: int
    dilation: int
    pad_left: int
    pad_right: int
    out_length: int


def as_positive_int(value, name: str) -> int:
    """Return ``value`` as an int if it is an integral, strictly positive number."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Invalid value for argument `{name}`: expected a positive integer. Received {name}={value!r}")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a positive integer. Received {name}={value!r}"
        ) from None
    if as_int <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly positive value. Received {name}={value!r}"
        )
    return as_int


def normalize_tuple(value, n: int, name: str) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ``n`` strictly positive ints (Keras' rule).

    An int is repeated ``n`` times; a tuple or list must hold exactly ``n`` ints.
    Anything else (floats, bools, strings, wrong lengths, values <= 0) raises a
    ValueError that names the argument and the value received.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        values = (int(value),) * n  # the common case first: no message formatted, no set built
    elif isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value):
        values = tuple(int(v) for v in value)
    else:
        values = None
    if values is not None and min(values, default=1) > 0:
        return values
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value!r}"
    if values is None:
        bad = [v for v in value if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))] \
            if isinstance(value, (tuple, list)) and len(value) == n else []
        raise ValueError(message + (f", including {bad[0]!r} that is not an integer" if bad else ""))
    bad = {v for v in values if v <= 0}
    raise ValueError(message + f", including values {bad} that do not satisfy `value > 0`")


class ExplicitPadding(tuple):
    """Zeros added before and after each spatial axis, ``((before, after), ...)``: PyTorch's padding.

    Not a Keras padding: the public ops take strings; the PyTorch bridge builds these (and a
    caller who wants explicit amounts may too).  The geometry is what padding the input with that
    many zeros and convolving ``valid`` gives, without the copy.
    """

    def __new__(cls, pairs):
        pairs = tuple((int(before), int(after)) for before, after in pairs)
        if any(v < 0 for pair in pairs for v in pair):
            raise ValueError(f"Explicit padding amounts must be >= 0. Received padding={pairs!r}")
        return super().__new__(cls, pairs)

    def __repr__(self):
        return f"ExplicitPadding({tuple(self)!r})"


def explicit_axis_geometry(length: int, kernel_size: int, stride: int, dilation: int, before: int,
                           after: int) -> AxisGeometry:
    """Geometry of an axis padded with ``before`` and ``after`` zeros (``out_length`` may be <= 0)."""
    extent = (kernel_size - 1) * dilation + 1
    padded = length + before + after
    out_length = (padded - extent) // stride + 1 if padded >= extent else 0
    return AxisGeometry(length, kernel_size, stride, dilation, before, after, out_length)


def _axes_geometry(lengths, kernel_sizes, strides, dilations, padding) -> list[AxisGeometry]:
    """The geometry of each spatial axis for a Keras padding string or an :class:`ExplicitPadding`."""
    if isinstance(padding, ExplicitPadding):
        if len(padding) != len(lengths):
            raise ValueError(f"Explicit padding needs one (before, after) pair per spatial axis ({len(lengths)}). "
                             f"Received padding={padding!r}")
        return [explicit_axis_geometry(*args, *pair)
                for args, pair in zip(zip(lengths, kernel_sizes, strides, dilations), padding)]
    return [axis_geometry(*args, padding) for args in zip(lengths, kernel_sizes, strides, dilations)]


def normalize_padding(padding, allowed: tuple[str, ...] = PADDINGS_1D) -> str:
    """Return the lower-cased padding string, or raise ValueError."""
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise ValueError(
            f"The `padding` argument must be one of {', '.join(repr(p) for p in allowed)}. Received padding={padding!r}"
        )
    return padding.lower()


def normalize_data_format(data_format) -> str:
    """Return the lower-cased data format, or raise ValueError."""
    if not isinstance(data_format, str) or data_format.lower() not in DATA_FORMATS:
        raise ValueError(
            "The `data_format` argument must be one of 'channels_last', 'channels_first'. "
            f"Received data_format={data_format!r}"
        )
    return data_format.lower()


def normalize_device(device) -> str:
    """Return the lower-cased device string, or raise ValueError."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"The `device` argument must be one of 'auto', 'cpu', 'cuda'. Received device={device!r}")
    return device.lower()


def axis_geometry(length: int, kernel_size: int, stride: int, dilation: int, padding: str) -> AxisGeometry:
    """Padding and output length of one axis (see SEMANTICS.md).

    ``out_length`` may come out <= 0 for ``valid`` padding; callers turn that into
    an error with :func:`check_output_size`, which knows the full shapes.
    """
    extent = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        out_length = (length - extent) // stride + 1 if length >= extent else 0
        pad_left = pad_right = 0
    elif padding == "same":
        out_length = -(-length // stride)
        total = max((out_length - 1) * stride + extent - length, 0)
        pad_left = total // 2
        pad_right = total - pad_left
    elif padding == "causal":
        out_length = -(-length // stride)
        pad_left = extent - 1
        pad_right = 0
    else:  # pragma: no cover - normalize_padding rejects everything else first
        raise ValueError(f"Unknown padding={padding!r}")
    return AxisGeometry(length, kernel_size, stride, dilation, pad_left, pad_right, out_length)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# Strides and dilations up to this (or up to the input length) go to the kernels as they are.
REDUCE_ABOVE = 64


def needs_reduction(axis: AxisGeometry) -> bool:
    """Whether a stride or dilation exceeds both the input length and ``REDUCE_ABOVE`` (:func:`reduce_axis` applies).

    Below that the kernels' own geometry handles any value exactly with small integers and
    small scratch buffers; above, the values could overflow or size a buffer.
    """
    return max(axis.stride, axis.dilation) > max(axis.length, REDUCE_ABOVE)


def reduce_axis(axis: AxisGeometry) -> tuple[AxisGeometry, int, int]:
    """The same convolution along ``axis`` as a small ``valid`` one on a zero-padded or cropped input.

    A tap is *live* if some output reads an input through it; the others read only
    padding zeros and add nothing (the rule for non-finite weights on padding is
    applied apart, see :mod:`numba_dwconv._padding_rule`).  Keeping the live taps,
    the stride only when there is more than one output (it is <= the length then)
    and the dilation only between two live taps (it is then below the length plus
    the outputs' span) bounds every value by the data's size: strides and
    dilations up to and beyond 2**63 reach the kernels as small integers, and no
    scratch buffer grows with them.

    Returns
    -------
    (AxisGeometry, int, int)
        The reduced axis (no padding: its input is ``length`` positions of the
        original input's zero-padded line, starting at position ``-offset``), the
        index of its first tap in the original kernel, and ``offset``.
    """
    length, size, stride, dilation, pad_left, _, out_length = axis
    if out_length == 1:
        stride = 1
    # Tap i reads positions i*d - pad .. (out-1)*s + i*d - pad, in steps of s <= length
    # (with more than one output): it is live iff that span meets [0, length).
    first = max(0, _ceil_div(pad_left - (out_length - 1) * stride, dilation))
    last = min(size - 1, (length - 1 + pad_left) // dilation)
    if first > last:  # every tap reads padding only: keep one, reading zeros
        first, last = 0, 0
    size = last - first + 1
    offset = pad_left - first * dilation
    dilation = dilation if size > 1 else 1
    reduced_length = (out_length - 1) * stride + (size - 1) * dilation + 1
    return AxisGeometry(reduced_length, size, stride, dilation, 0, 0, out_length), first, offset


def reduce_problem(problem):
    """``(problem, taps, offsets)``: ``problem`` as a small ``valid`` one when a stride or dilation is huge.

    Returns ``(problem, None, None)`` when no axis :func:`needs_reduction`.  Otherwise
    every spatial axis is reduced by :func:`reduce_axis` (an axis that does not need
    it keeps all its taps, its padding made explicit): ``taps`` holds one slice per
    axis selecting the kernel's live taps and ``offsets`` where each axis' reduced
    input starts (``-offset`` in the original input's positions).
    """
    names = ("axis",) if isinstance(problem, Conv1DProblem) else ("height", "width")
    axes = [getattr(problem, name) for name in names]
    if not any(needs_reduction(axis) for axis in axes):
        return problem, None, None
    reduced, taps, offsets = {}, [], []
    for name, axis in zip(names, axes):
        if needs_reduction(axis):
            reduced[name], first, offset = reduce_axis(axis)
        else:
            first, offset = 0, axis.pad_left
            extent = (axis.out_length - 1) * axis.stride + (axis.kernel_size - 1) * axis.dilation + 1
            reduced[name] = axis._replace(length=extent, pad_left=0, pad_right=0)
        taps.append(slice(first, first + reduced[name].kernel_size))
        offsets.append(offset)
    return problem._replace(**reduced), tuple(taps), tuple(offsets)


def check_output_size(axes, input_shape, kernel_shape, strides, dilation_rate, padding) -> None:
    """Raise ValueError if any axis has an output size <= 0."""
    if any(axis.out_length <= 0 for axis in axes):
        raise ValueError(
            "Computed output size would be zero or negative. Received "
            f"inputs shape={tuple(input_shape)}, kernel shape={tuple(kernel_shape)}, "
            f"dilation_rate={tuple(dilation_rate)}, strides={tuple(strides)}, padding={padding!r}."
        )


def check_dtype(name: str, dtype, target: str) -> np.dtype:
    """Return ``dtype`` if ``target`` ("cpu" or "cuda") computes in it, else raise TypeError naming it."""
    dtype = np.dtype(dtype)
    allowed = CPU_DTYPES if target == "cpu" else CUDA_DTYPES
    if dtype not in allowed:
        names = " or ".join(d.name for d in allowed)
        where = "the CPU" if target == "cpu" else "the GPU"
        raise TypeError(f"`{name}` must have dtype {names} on {where}. Received {name}.dtype={dtype}")
    return dtype


def check_rank(name: str, shape, rank: int, layout: str) -> None:
    """Raise ValueError if ``shape`` does not have ``rank`` dimensions."""
    if len(shape) != rank:
        raise ValueError(
            f"`{name}` must be a {rank}D array of shape {layout}. Received {name} with shape={tuple(shape)}"
        )


class Conv1DProblem(NamedTuple):
    """Everything a 1D kernel launcher needs, decided once.

    Attributes
    ----------
    batch, channels, multiplier : int
        Batch size ``B``, input channels ``C`` and depth multiplier ``m``.
    axis : AxisGeometry
        Geometry of the length axis.
    channels_last : bool
        True for ``(batch, length, channels)``, False for ``(batch, channels, length)``.
    dtype : numpy.dtype
        Computation and result dtype.
    """

    batch: int
    channels: int
    multiplier: int
    axis: AxisGeometry
    channels_last: bool
    dtype: np.dtype

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of the inputs (and of their gradient)."""
        if self.channels_last:
            return (self.batch, self.axis.length, self.channels)
        return (self.batch, self.channels, self.axis.length)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Shape of the outputs (and of their gradient)."""
        out_channels = self.channels * self.multiplier
        if self.channels_last:
            return (self.batch, self.axis.out_length, out_channels)
        return (self.batch, out_channels, self.axis.out_length)

    @property
    def kernel_shape(self) -> tuple[int, int, int]:
        """Shape of the kernel, Keras layout ``(K, C, m)``."""
        return (self.axis.kernel_size, self.channels, self.multiplier)


def check_channels(name: str, channels: int) -> None:
    """Raise ValueError for zero channels: every op refuses them alike (none could infer a depth multiplier)."""
    if channels <= 0:
        raise ValueError(f"`{name}` must have at least one channel (a depthwise convolution of no channels "
                         f"has no depth multiplier to infer). Received {name} with {channels} channels")


def _kernel_dims(kernel_shape, spatial_layout: str, channels: int, channels_name: str, kernel_name: str):
    """(spatial kernel sizes, multiplier) of a depthwise kernel ``(*spatial, C, m)``, checked against ``channels``."""
    rank = spatial_layout.count(",") + 1
    check_rank(kernel_name, kernel_shape, rank + 2, f"({spatial_layout}, channels, depth_multiplier)")
    *sizes, kernel_channels, multiplier = (int(v) for v in kernel_shape)
    check_channels(channels_name, channels)
    if min(sizes) <= 0 or multiplier <= 0:
        raise ValueError(
            f"`{kernel_name}` must have positive kernel sizes and depth multiplier. "
            f"Received {kernel_name} with shape={tuple(kernel_shape)}"
        )
    if kernel_channels != channels:
        raise ValueError(
            f"`{kernel_name}` has {kernel_channels} channels but {channels_name} has {channels}. "
            f"Received {kernel_name} with shape={tuple(kernel_shape)}"
        )
    return tuple(sizes), multiplier


def conv1d_problem(
    input_shape,
    kernel_shape,
    strides,
    padding,
    data_format,
    dilation_rate,
    dtype,
    *,
    input_name: str = "inputs",
    kernel_name: str = "kernel",
) -> Conv1DProblem:
    """Validate the arguments of a 1D depthwise convolution and decide its geometry.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the inputs, ``(B, L, C)`` or ``(B, C, L)`` depending on ``data_format``.
    kernel_shape : tuple of int
        Shape of the kernel, ``(K, C, m)``.
    strides, padding, data_format, dilation_rate
        As in :func:`numba_dwconv.depthwise_conv1d`.
    dtype : numpy.dtype
        Computation dtype (already checked).
    input_name, kernel_name : str
        Names used for the inputs and the kernel in error messages.

    Returns
    -------
    Conv1DProblem
    """
    data_format = normalize_data_format(data_format)
    if not isinstance(padding, ExplicitPadding):
        padding = normalize_padding(padding, PADDINGS_1D)
    (stride,) = normalize_tuple(strides, 1, "strides")
    (dilation,) = normalize_tuple(dilation_rate, 1, "dilation_rate")
    channels_last = data_format == "channels_last"
    layout = "(batch, length, channels)" if channels_last else "(batch, channels, length)"
    check_rank(input_name, input_shape, 3, layout)
    if channels_last:
        batch, length, channels = (int(v) for v in input_shape)
    else:
        batch, channels, length = (int(v) for v in input_shape)
    (kernel_size,), multiplier = _kernel_dims(kernel_shape, "kernel_size", channels, input_name, kernel_name)
    (axis,) = _axes_geometry((length,), (kernel_size,), (stride,), (dilation,), padding)
    check_output_size([axis], input_shape, kernel_shape, (stride,), (dilation,), padding)
    return Conv1DProblem(batch, channels, multiplier, axis, channels_last, np.dtype(dtype))


def check_shape(name: str, shape, expected) -> None:
    """Raise ValueError if ``shape`` differs from ``expected``."""
    if tuple(shape) != tuple(expected):
        raise ValueError(f"`{name}` must have shape {tuple(expected)}. Received {name} with shape={tuple(shape)}")


class Conv2DProblem(NamedTuple):
    """Everything a 2D kernel launcher needs, decided once.

    Attributes
    ----------
    batch, channels, multiplier : int
    height, width : AxisGeometry
        Geometry of the two spatial axes.
    channels_last : bool
        True for ``(batch, H, W, channels)``, False for ``(batch, channels, H, W)``.
    dtype : numpy.dtype
    """

    batch: int
    channels: int
    multiplier: int
    height: AxisGeometry
    width: AxisGeometry
    channels_last: bool
    dtype: np.dtype

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of the inputs (and of their gradient)."""
        if self.channels_last:
            return (self.batch, self.height.length, self.width.length, self.channels)
        return (self.batch, self.channels, self.height.length, self.width.length)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """Shape of the outputs (and of their gradient)."""
        out_channels = self.channels * self.multiplier
        if self.channels_last:
            return (self.batch, self.height.out_length, self.width.out_length, out_channels)
        return (self.batch, out_channels, self.height.out_length, self.width.out_length)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Shape of the kernel, Keras layout ``(KH, KW, C, m)``."""
        return (self.height.kernel_size, self.width.kernel_size, self.channels, self.multiplier)


def conv2d_problem(input_shape, kernel_shape, strides, padding, data_format, dilation_rate, dtype, *,
                   input_name: str = "inputs", kernel_name: str = "kernel") -> Conv2DProblem:
    """Validate the arguments of a 2D depthwise convolution and decide its geometry (see :func:`conv1d_problem`).

    ``padding`` is ``valid`` or ``same``: ``causal`` raises a ValueError in 2D.
    """
    data_format = normalize_data_format(data_format)
    if isinstance(padding, str) and padding.lower() == "causal":
        raise ValueError(
            "The `padding` argument 'causal' is only supported by 1D convolutions; 2D convolutions take 'valid' "
            f"or 'same'. Received padding={padding!r}"
        )
    if not isinstance(padding, ExplicitPadding):
        padding = normalize_padding(padding, PADDINGS_2D)
    stride_h, stride_w = normalize_tuple(strides, 2, "strides")
    dilation_h, dilation_w = normalize_tuple(dilation_rate, 2, "dilation_rate")
    channels_last = data_format == "channels_last"
    layout = "(batch, height, width, channels)" if channels_last else "(batch, channels, height, width)"
    check_rank(input_name, input_shape, 4, layout)
    if channels_last:
        batch, height, width, channels = (int(v) for v in input_shape)
    else:
        batch, channels, height, width = (int(v) for v in input_shape)
    (kernel_h, kernel_w), multiplier = _kernel_dims(kernel_shape, "kernel_height, kernel_width", channels,
                                                    input_name, kernel_name)
    axes = _axes_geometry((height, width), (kernel_h, kernel_w), (stride_h, stride_w), (dilation_h, dilation_w),
                          padding)
    check_output_size(axes, input_shape, kernel_shape, (stride_h, stride_w), (dilation_h, dilation_w), padding)
    return Conv2DProblem(batch, channels, multiplier, axes[0], axes[1], channels_last, np.dtype(dtype))


def pointwise_filters(pointwise_shape, channels: int, rank: int = 1) -> int:
    """Validate a pointwise kernel ``(1, [1,] channels, filters)`` (Keras layout) and return ``filters``."""
    ones = (1,) * rank
    layout = f"({'1, ' * rank}channels * depth_multiplier, filters)"
    check_rank("pointwise_kernel", pointwise_shape, rank + 2, layout)
    *leading, kernel_channels, filters = (int(v) for v in pointwise_shape)
    if tuple(leading) != ones or kernel_channels != channels or filters <= 0:
        raise ValueError(
            f"`pointwise_kernel` must have shape ({'1, ' * rank}{channels}, filters) with filters > 0 (the depthwise "
            f"step gives {channels} channels). Received pointwise_kernel with shape={tuple(pointwise_shape)}"
        )
    return filters


__all__ = [
    "AxisGeometry",
    "Conv1DProblem",
    "Conv2DProblem",
    "ExplicitPadding",
    "as_positive_int",
    "axis_geometry",
    "check_channels",
    "check_dtype",
    "check_output_size",
    "check_rank",
    "check_shape",
    "needs_reduction",
    "reduce_axis",
    "reduce_problem",
    "conv1d_problem",
    "conv2d_problem",
    "normalize_data_format",
    "normalize_device",
    "normalize_padding",
    "normalize_tuple",
    "pointwise_filters",
]
