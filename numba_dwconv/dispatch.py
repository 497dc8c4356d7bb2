"""Device choice and array-kind detection.

``device="auto"`` runs the work where the data lives: NumPy (or anything
array-like) on the CPU.  ``device="cpu"`` forces the CPU kernels.  ``device="cuda"``
needs the GPU backend, which this version does not ship yet: asking for it raises
:class:`CudaUnavailableError` with what is missing.
"""

from __future__ import annotations

import numpy as np

from ._geometry import normalize_device


class CudaUnavailableError(RuntimeError):
    """Raised when GPU execution is requested but cannot be provided."""


def _is_cuda_array(array) -> bool:
    return array is not None and hasattr(array, "__cuda_array_interface__")


def select_device(device, *arrays) -> str:
    """Return ``"cpu"`` or ``"cuda"``: where the operation will run.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        The caller's choice; ``"auto"`` picks ``"cuda"`` when any operand exposes
        ``__cuda_array_interface__`` and ``"cpu"`` otherwise.
    *arrays
        The operands (``None`` entries are ignored).
    """
    device = normalize_device(device)
    if device == "auto":
        device = "cuda" if any(_is_cuda_array(a) for a in arrays) else "cpu"
    if device == "cuda":
        raise CudaUnavailableError(
            "device='cuda' was requested (or an operand lives on a CUDA device), but this build of "
            "numba_dwconv has no GPU backend yet. Pass NumPy arrays with device='cpu' or device='auto'."
        )
    return device


def host_array(array) -> np.ndarray:
    """View ``array`` as a NumPy array without copying when it already is one."""
    return np.asarray(array)


def host_operand(array: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous array of ``dtype`` for the CPU kernels (a copy only when needed)."""
    return np.ascontiguousarray(array, dtype=dtype)


def backend(device: str):
    """The kernel module for ``device`` (imported lazily, so importing the package compiles nothing)."""
    from .cpu import conv1d

    return conv1d
