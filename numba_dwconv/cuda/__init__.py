"""NVIDIA GPU kernels and launchers (numba-cuda ``@cuda.jit``); imported only when a GPU is used."""


def kernel_catalogue() -> list:
    """Every GPU kernel of the package, for compiling and inspecting them without a GPU.

    Returns
    -------
    list of (str, numba.cuda dispatcher, tuple)
        ``(name, dispatcher, signature)``: the signature is a tuple of numba types that a typical
        float32 call compiles the kernel for (``numba.cuda.compile_ptx(dispatcher.py_func, signature)``;
        on a machine without a GPU inside ``numba_dwconv.cuda.catalogue.compiling_for((9, 0))``, which names
        the compute capability the kernels' device functions compile for).  Nothing is compiled by this call.
    """
    from .catalogue import catalogue

    return catalogue()
