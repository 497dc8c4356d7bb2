"""What the convolution layers share: Keras' spatial arguments, the channel axis and output shapes."""

from __future__ import annotations

from .. import _geometry as geo
from .base import Layer, _check_bool


class ConvLayer(Layer):
    """Base of the depthwise and separable layers of spatial rank :attr:`rank`.

    Normalises ``kernel_size``, ``strides``, ``dilation_rate`` (tuples of ``rank``
    positive ints), ``padding`` (lower case; ``causal`` only in 1D),
    ``data_format`` (None -> ``channels_last``) and ``use_bias`` with the messages
    of :mod:`numba_dwconv._geometry`.
    """

    rank = 1

    def __init__(self, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                 activity_regularizer, **layer_kwargs):
        super().__init__(activation, activity_regularizer, **layer_kwargs)
        self.kernel_size = geo.normalize_tuple(kernel_size, self.rank, "kernel_size")
        self.strides = geo.normalize_tuple(strides, self.rank, "strides")
        self.dilation_rate = geo.normalize_tuple(dilation_rate, self.rank, "dilation_rate")
        paddings = geo.PADDINGS_1D if self.rank == 1 else geo.PADDINGS_2D
        self.padding = geo.normalize_padding(padding, paddings)
        self.data_format = geo.normalize_data_format("channels_last" if data_format is None else data_format)
        self.use_bias = _check_bool(use_bias, "use_bias")

    @property
    def _channels_last(self) -> bool:
        return self.data_format == "channels_last"

    def _channel_axis(self) -> int:
        return -1 if self._channels_last else 1

    def _channels_of(self, input_shape) -> int:
        return int(input_shape[-1] if self._channels_last else input_shape[1])

    def _spatial_of(self, input_shape) -> tuple:
        return tuple(input_shape[1:-1] if self._channels_last else input_shape[2:])

    def _check_inputs(self, shape) -> None:
        ndim = self.rank + 2
        if len(shape) != ndim:
            raise ValueError(
                f"Input 0 of layer {self.name!r} is incompatible with the layer: expected ndim={ndim}, found "
                f"ndim={len(shape)}. Full shape received: {tuple(shape)}"
            )

    def _output_channels(self, channels: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_output_shape(self, input_shape) -> tuple:
        """Output shape for ``input_shape`` (batch and spatial sizes may be None)."""
        input_shape = tuple(input_shape)
        self._check_inputs(input_shape)
        channels = input_shape[-1] if self._channels_last else input_shape[1]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the inputs must be defined. Found `None` in input shape: {input_shape}"
            )
        spatial_in = self._spatial_of(input_shape)
        spatial_out = []
        for size, k, s, d in zip(spatial_in, self.kernel_size, self.strides, self.dilation_rate):
            if size is None:
                spatial_out.append(None)
                continue
            axis = geo.axis_geometry(int(size), k, s, d, self.padding)
            geo.check_output_size([axis], input_shape, self.kernel_size, self.strides, self.dilation_rate,
                                  self.padding)
            spatial_out.append(axis.out_length)
        out_channels = self._output_channels(int(channels))
        if self._channels_last:
            return (input_shape[0], *spatial_out, out_channels)
        return (input_shape[0], out_channels, *spatial_out)

    def _spatial_config(self) -> dict:
        return {"kernel_size": self.kernel_size, "strides": self.strides, "padding": self.padding,
                "data_format": self.data_format, "dilation_rate": self.dilation_rate}

    def _op_args(self) -> tuple:
        """(strides, padding, data_format, dilation_rate), the positional arguments of the ops after the weights."""
        return self.strides, self.padding, self.data_format, self.dilation_rate


__all__ = ["ConvLayer"]
