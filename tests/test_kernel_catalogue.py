"""Every GPU kernel compiles with numba-cuda's real compiler for sm_90 (H100/H200), no GPU needed.

The CUDA simulator runs kernels as Python and accepts code the real compiler
rejects (types it cannot lower, intrinsics, shared-memory sizes); this compiles each
entry of :func:`numba_dwconv.cuda.kernel_catalogue` to PTX with
``numba.cuda.compile_ptx``.  Needs numba-cuda with its NVVM (``pip install ".[cuda]"``);
skipped under the simulator and where numba-cuda is missing.  CI runs it after
installing the ``cuda`` extra.
"""

import os

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda (the `cuda` extra) is not installed")
if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1":
    pytest.skip("the simulator does not compile kernels", allow_module_level=True)

from numba import cuda  # noqa: E402

from numba_dwconv.cuda import kernel_catalogue  # noqa: E402
from numba_dwconv.cuda.catalogue import compiling_for  # noqa: E402
from numba_dwconv.cuda.vector import types  # noqa: E402


def _probe(a):
    pass


try:
    cuda.compile_ptx(_probe, (types.int32,), cc=(9, 0))
    COMPILER = None
except Exception as exc:  # no NVVM: say so instead of failing every entry
    COMPILER = f"{type(exc).__name__}: {exc}"

ENTRIES = kernel_catalogue()


def test_catalogue_names_are_unique_and_cover_every_module():
    names = [name for name, _, _ in ENTRIES]
    assert len(set(names)) == len(names)
    for prefix in ("conv1d.", "conv2d.", "pointwise.", "arrays."):
        assert any(name.startswith(prefix) for name in names), prefix


@pytest.mark.skipif(COMPILER is not None, reason=f"numba-cuda's compiler is unavailable ({COMPILER})")
@pytest.mark.parametrize(("name", "dispatcher", "signature"), ENTRIES, ids=[e[0] for e in ENTRIES])
def test_kernel_compiles_for_sm90(name, dispatcher, signature):
    with compiling_for((9, 0)):  # (device functions: no GPU to ask for its compute capability)
        ptx, _ = cuda.compile_ptx(dispatcher.py_func, signature, cc=(9, 0))
    assert ".entry" in ptx and "sm_90" in ptx
    if "_vector" in name and "sum_partials" not in name:  # the vector paths move 16 bytes per access
        assert "ld.global.v4" in ptx or "ld.global.v2" in ptx, name
        assert "st.global.v4" in ptx or "st.global.v2" in ptx, name
