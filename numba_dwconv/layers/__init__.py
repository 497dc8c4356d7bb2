"""Keras-compatible layers: ``DepthwiseConv1D`` and ``SeparableConv1D`` (NumPy weights in Keras' layout)."""

from .base import Layer
from .depthwise import DepthwiseConv1D
from .separable import SeparableConv1D

__all__ = ["DepthwiseConv1D", "Layer", "SeparableConv1D"]
