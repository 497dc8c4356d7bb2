"""Keras-compatible layers: ``DepthwiseConv1D/2D`` and ``SeparableConv1D/2D`` (NumPy weights in Keras' layout)."""

from .base import Layer
from .depthwise import DepthwiseConv1D, DepthwiseConv2D
from .separable import SeparableConv1D, SeparableConv2D
from .sequential import Sequential

__all__ = ["DepthwiseConv1D", "DepthwiseConv2D", "Layer", "SeparableConv1D", "SeparableConv2D", "Sequential"]
