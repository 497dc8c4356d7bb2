"""What the convolution layers share: Keras' spatial arguments, the channel axis and output shapes."""

from __future__ import annotations

import numpy as np

from .. import _geometry as geo
from .. import activations as activations_module
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

    def _op_args(self, padding=None) -> tuple:
        """(strides, padding, data_format, dilation_rate), the positional arguments of the ops after the weights."""
        return self.strides, self.padding if padding is None else padding, self.data_format, self.dilation_rate

    # -- streaming (causal 1D layers) ----------------------------------------------------------------
    def _state_positions(self) -> int:
        """``(K - 1) * d``, after checking that the layer can stream (else a ValueError naming it)."""
        if self.rank != 1 or self.padding != "causal" or self.strides != (1,):
            raise ValueError(
                f"Layer {self.name!r} cannot stream: initial_state()/step() need a 1D layer with padding='causal' "
                f"and strides=1. Received a {self.rank}D layer with padding={self.padding!r}, strides={self.strides}"
            )
        return (self.kernel_size[0] - 1) * self.dilation_rate[0]

    def initial_state(self, batch_size: int):
        """The zero state of :meth:`step` for ``batch_size`` sequences: the ``(K-1)*d`` inputs before position 0.

        Shape ``(batch, (K-1)*d, channels)`` (or ``(batch, channels, (K-1)*d)``); the layer must be built.
        """
        positions = self._state_positions()
        batch = geo.as_positive_int(batch_size, "batch_size")
        if not self.built:
            raise ValueError(f"Layer {self.name!r} has no weights yet: build it or call it once before initial_state()")
        channels = self._specs[0].shape[-2]
        shape = (batch, positions, channels) if self._channels_last else (batch, channels, positions)
        return np.zeros(shape, dtype=self.dtype)

    def step(self, inputs, state=None):
        """Process the next chunk of causal sequences (any length, 1 included) with the carried ``state``.

        Returns ``(outputs, new_state)``: the outputs equal those of calling the layer on the whole
        sequence so far, at the chunk's positions; pass ``new_state`` with the next chunk.  ``state``
        None means the start of the sequences (zeros).  For inference: nothing is kept for
        :meth:`backward`.
        """
        positions = self._state_positions()
        inputs = np.asarray(inputs)
        if inputs.dtype.kind != "f":
            raise TypeError(f"Layer {self.name!r} expects floating-point inputs. Received inputs with "
                            f"dtype={inputs.dtype}")
        self.build(inputs.shape)
        inputs = inputs.astype(self.dtype, copy=False)
        axis = 1 if self._channels_last else 2
        if state is None:
            state = self.initial_state(inputs.shape[0])
        state = np.asarray(state)
        expected = list(inputs.shape)
        expected[axis] = positions
        geo.check_shape("state", state.shape, expected)
        extended = np.concatenate([state.astype(self.dtype, copy=False), inputs], axis=axis)
        fused = self._fused_activation()
        if fused is not None:
            outputs = self._forward(extended, fused, padding="valid")
        else:
            pre = self._forward(extended, padding="valid")
            outputs = pre if self.activation is activations_module.linear else self.activation(pre)
        total = extended.shape[axis]
        new_state = extended[:, total - positions:] if axis == 1 else extended[:, :, total - positions:]
        return outputs, np.ascontiguousarray(new_state)


__all__ = ["ConvLayer"]
