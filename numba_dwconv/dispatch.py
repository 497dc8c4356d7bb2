"""Device choice, array-kind detection and operand placement.

* ``device="auto"`` runs where the data lives: if the data operands (``inputs``,
  ``grad_outputs``) expose ``__cuda_array_interface__`` (numba device arrays,
  CuPy arrays, PyTorch CUDA tensors) the GPU kernels run on them without a copy
  and return a numba device array; otherwise the CPU kernels run and return NumPy.
  Small operands (kernel, bias) move to where the data is.
* ``device="cuda"``: NumPy operands are copied to the GPU; if every operand was
  NumPy the result is copied back and returned as NumPy.
* ``device="cpu"``: device arrays are copied to the host first.

Nothing here imports numba.cuda until a GPU is actually needed, so importing the
package never fails for lack of CUDA.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _geometry as geo

INSTALL_HINT = 'pip install ".[cuda]" from a checkout of numba_dwconv, which is not on PyPI yet'


class CudaUnavailableError(RuntimeError):
    """GPU execution was requested (or the data lives on a GPU) but CUDA cannot be used here."""


def is_cuda_array(array) -> bool:
    """True for GPU arrays: ``__cuda_array_interface__`` (numba, CuPy, PyTorch CUDA) or a numba device array.

    The second test (duck-typed on ``copy_to_host``) recognises the arrays of numba's
    CUDA simulator, which do not expose the interface.
    """
    if array is None or isinstance(array, np.ndarray):
        return False
    return hasattr(array, "__cuda_array_interface__") or (
        hasattr(array, "copy_to_host") and hasattr(array, "is_c_contiguous")
    )


def to_host(array):
    """``array`` as a NumPy array: itself, or a copy of a numba device array."""
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


def _import_cuda():
    try:
        from numba import cuda
    except Exception as exc:  # numba without its CUDA target, or a numba-cuda that fails to import
        raise CudaUnavailableError(
            f"The GPU backend needs numba-cuda, which could not be imported ({type(exc).__name__}: {exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from exc
    return cuda


def cuda_available() -> bool:
    """Whether the GPU backend can run here (numba-cuda importable and a CUDA device present).

    Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) this is True.
    """
    import warnings

    try:
        with warnings.catch_warnings():  # a third-party import-time warning must not read as "no GPU"
            warnings.simplefilter("ignore")
            cuda = _import_cuda()
            return bool(cuda.is_available())
    except Exception:
        return False


_cuda_checked = None  # the numba.cuda module once a GPU has been found (checked once per process)


def require_cuda():
    """Return the ``numba.cuda`` module, or raise :class:`CudaUnavailableError` saying what is missing."""
    global _cuda_checked
    if _cuda_checked is not None:
        return _cuda_checked
    cuda = _import_cuda()
    try:
        available = cuda.is_available()
    except Exception as exc:  # pragma: no cover - driver errors
        raise CudaUnavailableError(f"CUDA could not be initialised: {exc}. Install the NVIDIA driver and "
                                   f"{INSTALL_HINT}") from exc
    if not available:
        raise CudaUnavailableError(
            "No usable CUDA GPU was found (numba.cuda.is_available() is False): an NVIDIA GPU, its driver and "
            f"numba-cuda are needed ({INSTALL_HINT}). Use device='cpu' (or NumPy inputs with device='auto')."
        )
    _cuda_checked = cuda
    return cuda


class Placement:
    """Where an operation runs and in what form its results are returned.

    Attributes
    ----------
    target : {"cpu", "cuda"}
    to_host : bool
        GPU results are copied back to NumPy (``device="cuda"`` with only NumPy operands).
    stream : numba.cuda stream or 0
    """

    def __init__(self, target: str, to_host: bool, stream):
        self.target = target
        self.to_host = to_host
        self.stream = stream

    # -- operands ------------------------------------------------------------------------------------
    def view(self, name: str, array):
        """``array`` in a form with ``.shape``/``.dtype`` on the target side, dtype checked; no transfer yet."""
        if type(array) is np.ndarray and self.target == "cpu" and array.dtype.isnative:  # the common case, first
            geo.check_dtype(name, array.dtype, "cpu")
            return array
        if self.target == "cpu":
            if is_cuda_array(array):
                from .cuda import arrays

                array = arrays.as_device_array(array).copy_to_host()
            array = np.asarray(array)
        else:
            if is_cuda_array(array):
                from .cuda import arrays

                array = arrays.as_device_array(array)
            else:
                array = np.asarray(array)
        if isinstance(array, np.ndarray) and not array.dtype.isnative:  # e.g. '>f4': converted once, like a cast
            array = array.astype(array.dtype.newbyteorder("="))
        geo.check_dtype(name, array.dtype, self.target)
        return array

    def operand(self, array, dtype):
        """A C-contiguous array of ``dtype`` on the target (a copy only when needed)."""
        if self.target == "cpu":
            return np.ascontiguousarray(array, dtype=dtype)
        from .cuda import arrays

        return arrays.device_operand(array, dtype, self.stream)

    def zeros(self, n: int, dtype):
        """A zero vector on the target (the bias of a call without one)."""
        if self.target == "cpu":
            return None  # the CPU kernels allocate their own
        from .cuda import arrays

        return arrays.device_zeros(n, dtype, self.stream)

    # -- kernels -------------------------------------------------------------------------------------
    def backend(self, module: str):
        """The kernel module ``module`` of the target (imported lazily: importing the package compiles nothing)."""
        return _backend(self.target, module)

    def call(self, name: str, *args, module: str = "conv1d"):
        """Run ``backend(module).name(*args)``, passing the stream on the GPU."""
        func = getattr(self.backend(module), name)
        if self.target == "cpu":
            return func(*args)
        return func(*args, stream=self.stream)

    def finish(self, result):
        """The result as the caller gets it (copied to NumPy when ``to_host``)."""
        if self.to_host:
            if isinstance(result, tuple):
                return tuple(r.copy_to_host(stream=self.stream) for r in result)
            return result.copy_to_host(stream=self.stream)
        return result


ON_CPU = Placement("cpu", False, 0)  # shared: a placement is never modified


@functools.lru_cache(maxsize=None)
def _backend(target: str, module: str):
    """``numba_dwconv.<target>.<module>``, imported on first use (importlib's lookup costs ~20 us a call)."""
    import importlib

    return importlib.import_module(f".{target}.{module}", __package__)


def place(device, data, others=(), stream=None) -> Placement:
    """Decide where an operation runs.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
    data : sequence
        The large operands (inputs, grad_outputs): ``auto`` follows them.
    others : sequence
        The small operands (kernel, bias); they move to where the data is.
    stream : numba.cuda stream, optional
        For GPU calls; ``None`` means the default stream.
    """
    if stream is None and (device == "auto" or device == "cpu") and all(
            a is None or type(a) is np.ndarray for group in (data, others) for a in group):
        return ON_CPU  # the common case, decided without the checks below (a small call notices them)
    device = geo.normalize_device(device)
    on_gpu = [is_cuda_array(a) for a in data if a is not None]
    any_gpu = any(on_gpu) or any(is_cuda_array(a) for a in others if a is not None)
    if device == "auto":
        device = "cuda" if any(on_gpu) else "cpu"
    if device == "cpu":
        if stream is not None:
            raise ValueError(f"`stream` applies to GPU calls only. Received stream={stream!r} with device='cpu'")
        return Placement("cpu", False, 0)
    require_cuda()
    if stream is None:
        stream = 0
    elif not isinstance(stream, int) and not hasattr(stream, "synchronize"):
        raise ValueError(f"`stream` must be a numba.cuda stream (or None). Received stream={stream!r}")
    return Placement("cuda", not any_gpu, stream)
