"""Every Python snippet of README.md runs as written, in order, in one namespace (as a reader would paste them)."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).parents[1] / "README.md"
GPU_ONLY = "# GPU only (not run by tests/test_readme.py)"


def _snippets():
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    return [block for block in blocks if not block.startswith(GPU_ONLY)]


def test_readme_snippets_run_in_order(tmp_path, monkeypatch):
    snippets = _snippets()
    assert len(snippets) >= 3
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for index, code in enumerate(snippets):
        exec(compile(code, f"README.md python snippet {index}", "exec"), namespace)
    assert namespace["y"].shape == (8, 2048, 512)
    assert namespace["grads"].grad_kernel.shape == (4, 256, 2)
    assert np.isfinite(namespace["error"]).all()
