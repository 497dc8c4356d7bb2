"""NVIDIA GPU kernels and launchers (numba-cuda ``@cuda.jit``); imported only when a GPU is used."""
