"""What the GPU tests share: whether CUDA runs here, whether it is the simulator, and the tiny launches.

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba is
imported) every GPU thread runs as Python, so the launch configurations are
shrunk to a few threads (:func:`tiny_launches`, applied to every test by
``conftest.py``): multi-block grids, grid-stride loops and the two-pass
reductions all run on small shapes.
"""

import os

import pytest

import numba_dwconv as nd

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"

requires_cuda = pytest.mark.skipif(not nd.cuda_available(), reason="no CUDA device (and not under the simulator)")
hardware_only = pytest.mark.skipif(SIMULATOR or not nd.cuda_available(), reason="needs a real GPU")


def tiny_launches(monkeypatch):
    """Shrink every GPU launch configuration (only under the simulator)."""
    if not SIMULATOR:
        return
    from numba_dwconv.cuda import conv1d, conv1d_generic, conv2d, conv2d_generic, pointwise

    monkeypatch.setattr(conv1d_generic, "LAUNCH",
                        conv1d_generic.LaunchConfig(tile_x=4, tile_y=2, reduce_rows=5, max_grid_y=3))
    monkeypatch.setattr(conv1d, "VECTOR", conv1d.VectorLaunch(threads=4, lanes=2, groups=2, max_grid=3,
                                                                 work_per_thread=1))
    monkeypatch.setattr(pointwise, "LAUNCH", pointwise.PointwiseLaunch(tile=4, reg=2, reduce_length=5, max_grid=3))
    monkeypatch.setattr(conv2d_generic, "LAUNCH",
                        conv2d_generic.LaunchConfig2D(threads=8, reduce_positions=7, max_grid=3))
    monkeypatch.setattr(conv2d, "VECTOR", conv2d.Vector2DLaunch(threads=8, max_groups=2, max_grid=3,
                                                                   work_per_thread=1))
