"""Importing the package is fast and compiles nothing."""

import subprocess
import sys
import textwrap


def run_python(code):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_does_not_import_numba_or_cuda():
    assert run_python("import sys, numba_dwconv; print('numba' in sys.modules)") == "False"


def test_import_does_not_import_torch_keras_or_dask():
    code = "import sys, numba_dwconv; print(sorted(m for m in ('torch', 'keras', 'dask') if m in sys.modules))"
    assert run_python(code) == "[]"


def test_cuda_available_answers_without_failing():
    assert run_python("import numba_dwconv; print(numba_dwconv.cuda_available() in (True, False))") == "True"

