"""The bench report runs end to end (timings are reported, never asserted)."""

import json
import os
import subprocess
import sys

from numba_dwconv.bench import startup


def test_quick_report_as_json():
    out = subprocess.run(
        [sys.executable, "-m", "numba_dwconv", "--quick", "--repeat", "1", "--no-torch", "--no-startup", "--json", "-"],
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
    assert any("x" in row["shape"] for row in result["rows"])  # the 2D rows ("B4 28x28 C64 K3 s1")
    assert {r["activation"] for r in result["fused_activations"]} == {"silu", "gelu"}
    for r in result["fused_activations"]:
        assert r["forward_over_plain"] > 0 and r["backward_over_plain"] > 0 and r["layer_over_op"] > 0
    assert result["chunked_stream"]["chunked_over_whole"] > 0
    assert result["decode_step"]["update_us"] > 0 and result["decode_step"]["numpy_over_ours"] > 0
    assert "startup" not in result  # --no-startup (a cold first call recompiles every kernel: tested below)


def test_first_call_of_a_fresh_process():
    # The usual kernel cache (shared with the other tests): what a warm process reports.
    times = startup.first_call(2, "channels_last")
    assert set(times) == {"import_s", "first_forward_s", "first_backward_s"}
    assert all(seconds > 0 for seconds in times.values())


def test_startup_cases_run_cold_then_warm_in_one_empty_cache(monkeypatch):
    calls = []

    def fake_first_call(rank, layout, dtype="float32", cache_dir=None):
        calls.append((rank, layout, cache_dir, os.listdir(cache_dir)))
        with open(os.path.join(cache_dir, f"written{len(calls)}"), "w"):  # what a compiling process leaves behind
            pass
        return {"import_s": 0.5, "first_forward_s": 10.0 / len(calls), "first_backward_s": 20.0 / len(calls)}

    monkeypatch.setattr(startup, "first_call", fake_first_call)
    told = []
    results = startup.measure_startup([(1, "channels_first"), (2, "channels_last")], told.append)
    # each case: a fresh empty cache for the cold process, the same (now filled) cache for the warm one
    assert [c[:2] for c in calls] == [(1, "channels_first")] * 2 + [(2, "channels_last")] * 2
    assert calls[0][3] == [] and calls[1][3] == ["written1"] and calls[2][3] == []
    assert calls[0][2] == calls[1][2] != calls[2][2]
    assert not os.path.exists(calls[0][2])  # removed afterwards
    assert len(told) == 2 and "2D channels_last" in told[1]
    assert results[1]["cold_cache_process"]["first_forward_s"] == 10.0 / 3
    table = startup.format_startup(results).splitlines()
    assert table[-1].split() == ["2D", "channels_last", "0.50", "3.33", "6.67", "2.50", "5.00"]


def test_bad_option_is_refused():
    out = subprocess.run([sys.executable, "-m", "numba_dwconv", "--repeat", "0"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--repeat" in out.stderr


def test_the_checks_relative_error_is_the_ratio_of_euclidean_norms():
    """The report's check column (summed without BLAS, whose spinning threads slowed the next timed call)."""
    import numpy as np

    from numba_dwconv.bench.timing import relative_error

    rng = np.random.default_rng(0)
    want = rng.standard_normal((3, 40, 7)).astype(np.float32)
    got = want + 1e-3 * rng.standard_normal(want.shape).astype(np.float32)
    expected = np.sqrt(sum(float(d) ** 2 for d in (got.astype(np.float64) - want).ravel()))
    expected /= np.sqrt(sum(float(v) ** 2 for v in want.astype(np.float64).ravel()))
    assert abs(relative_error(got, want) - expected) <= 1e-12 * expected
    assert relative_error(want, want) == 0.0
    assert relative_error(np.ones(3), np.zeros(3)) == np.sqrt(3) / 1e-30
