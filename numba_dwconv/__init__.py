"""numba_dwconv: fast, exact depthwise convolutions in Python (numba kernels, Keras semantics).

Importing the package compiles nothing and does not import numba: kernels are
compiled on first use and cached on disk.
"""

from .dispatch import CudaUnavailableError
from .ops import (
    DepthwiseGrads,
    depthwise_conv1d,
    depthwise_conv1d_backward,
    depthwise_conv1d_input_grad,
    depthwise_conv1d_kernel_grad,
)

__version__ = "0.1.0"

__all__ = [
    "CudaUnavailableError",
    "DepthwiseGrads",
    "__version__",
    "depthwise_conv1d",
    "depthwise_conv1d_backward",
    "depthwise_conv1d_input_grad",
    "depthwise_conv1d_kernel_grad",
]
