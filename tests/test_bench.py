"""The bench report runs end to end (timings are reported, never asserted)."""

import json
import subprocess
import sys


def test_quick_report_as_json():
    out = subprocess.run(
        [sys.executable, "-m", "numba_dwconv", "--quick", "--repeat", "1", "--no-torch", "--json", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["copy_bandwidth_GBps"] > 0
    assert {row["layout"] for row in result["rows"]} == {"channels_last", "channels_first"}
    for row in result["rows"]:
        assert row["forward_ms"] > 0 and row["backward_ms"] > 0
        assert row["max_rel_error"] < 1e-4
    [startup] = result["startup"]  # --quick: one case
    for process in ("cold_cache_process", "warm_cache_process"):
        assert startup[process]["first_forward_s"] > 0 and startup[process]["first_backward_s"] > 0
    assert any("x" in row["shape"] for row in result["rows"])  # the 2D rows ("B4 28x28 C64 K3 s1")


def test_bad_option_is_refused():
    out = subprocess.run([sys.executable, "-m", "numba_dwconv", "--repeat", "0"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--repeat" in out.stderr
