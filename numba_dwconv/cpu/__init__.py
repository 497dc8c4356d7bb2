"""Multi-threaded CPU kernels: numba ``nogil`` functions run in parts by :func:`numba_dwconv._jit.launch`."""
