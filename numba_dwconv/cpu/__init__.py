"""Multi-threaded CPU kernels (numba ``@njit(parallel=True)``)."""
