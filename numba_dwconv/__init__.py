"""numba_dwconv: fast, exact depthwise convolutions in Python (numba kernels, Keras semantics).

Importing the package compiles nothing and imports neither numba nor CUDA:
kernels are compiled on first use (CPU kernels are cached on disk).
"""

from . import activations, constraints, initializers, layers, optimizers, regularizers
from .causal import StatefulGrads, depthwise_conv1d_update
from .dispatch import CudaUnavailableError, cuda_available
from .layers import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D, Sequential
from .ops import (
    DepthwiseGrads,
    SeparableGrads,
    depthwise_conv1d,
    depthwise_conv1d_backward,
    depthwise_conv1d_input_grad,
    depthwise_conv1d_kernel_grad,
    depthwise_conv2d,
    depthwise_conv2d_backward,
    depthwise_conv2d_input_grad,
    depthwise_conv2d_kernel_grad,
    separable_conv1d,
    separable_conv1d_backward,
    separable_conv2d,
    separable_conv2d_backward,
)

__version__ = "0.1.0"

__all__ = [
    "CudaUnavailableError",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "DepthwiseGrads",
    "SeparableConv1D",
    "SeparableConv2D",
    "SeparableGrads",
    "Sequential",
    "StatefulGrads",
    "__version__",
    "activations",
    "constraints",
    "cuda_available",
    "depthwise_conv1d",
    "depthwise_conv1d_backward",
    "depthwise_conv1d_input_grad",
    "depthwise_conv1d_kernel_grad",
    "depthwise_conv1d_update",
    "depthwise_conv2d",
    "depthwise_conv2d_backward",
    "depthwise_conv2d_input_grad",
    "depthwise_conv2d_kernel_grad",
    "initializers",
    "layers",
    "optimizers",
    "regularizers",
    "separable_conv1d",
    "separable_conv1d_backward",
    "separable_conv2d",
    "separable_conv2d_backward",
]
