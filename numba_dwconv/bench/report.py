"""The report's tables and its command line (``python -m numba_dwconv``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .causal import (
    chunked_stream_row,
    decode_step_row,
    format_activation_row,
    format_sequence_rows,
    fused_activation_rows,
)
from .conv1d import GPU_SHAPES, PUBLIC_SHAPES, QUICK_SHAPES, host_call_times, run_cpu, run_cuda
from .conv2d import GPU_SHAPES_2D, PUBLIC_SHAPES_2D, QUICK_SHAPES_2D, run_cpu_2d, run_cuda_2d
from .startup import CASES as STARTUP_CASES
from .startup import format_startup, measure_startup
from .timing import copy_bandwidth, gpu_copy_bandwidth

# Largest relative error (outputs and gradients, against the float64 reference) that a float32 row may show.
TOLERANCE = 1e-4


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def table_head(bandwidth: float, label: str, separable: bool = False) -> str:
    """The lines above a table's rows: the roofline it is measured against and the column names."""
    header = (
        f"{'device':6} {'shape':28} {'layout':14} {'fwd ms':>8} {'GB/s':>6} {'%roof':>6} "
        f"{'bwd ms':>8} {'%roof':>6} {'bwd/fwd':>7} {'xTorch f':>8} {'xTorch fb':>9} {'rel err':>8} {'check':>5}"
    )
    header += f" {'sep/dw+mm':>9}" if separable else ""
    return "\n".join([f"{label}: {bandwidth / 1e9:.1f} GB/s (read + write)", header, "-" * len(header)])


def format_row(r, separable: bool = False) -> str:
    """One line of the table for result row ``r``."""
    speed_f = f"{r['torch_forward_speedup']:.1f}" if "torch_forward_speedup" in r else "-"
    speed_fb = f"{r['torch_fwd_bwd_speedup']:.1f}" if "torch_fwd_bwd_speedup" in r else "-"
    err = f"{r['max_rel_error']:.1e}" if "max_rel_error" in r else "-"
    verdict = ("ok" if r["max_rel_error"] <= TOLERANCE else "FAIL") if "max_rel_error" in r else "-"
    bwd_roof = f"{r['backward_roofline_pct']:.0f}" if "backward_roofline_pct" in r else "-"
    return (
        f"{r['device']:6} {r['shape']:28} {r['layout']:14} {r['forward_ms']:8.2f} {r['forward_GBps']:6.1f} "
        f"{r['roofline_pct']:6.0f} {r['backward_ms']:8.2f} {bwd_roof:>6} {r['backward_over_forward']:7.2f} "
        f"{speed_f:>8} {speed_fb:>9} {err:>8} {verdict:>5}"
        + (f" {r['separable_over_dw_plus_cublas']:9.2f}" if "separable_over_dw_plus_cublas" in r
           else f" {'-':>9}" if separable else "")
    )


def _notes(args, with_torch: bool, checked: bool) -> str:
    """What the columns mean and why some are empty."""
    if args.no_torch:
        torch_note = "xTorch: skipped (--no-torch)"
    elif not with_torch:
        torch_note = "xTorch: PyTorch is not installed; install torch for the comparison (pip install torch)"
    else:
        torch_note = ("xTorch: time of PyTorch's conv1d/conv2d(groups=C) on the same device over ours (> 1: we are "
                      "faster; float32, except the 2D GPU rows: the row's dtype)\n"
                      "sep/dw+mm: our separable forward over (our depthwise forward + PyTorch's cuBLAS matmul of the "
                      "pointwise size), C -> C filters (<= 1.3 is the target)")
    check_note = (f"rel err: largest relative error of outputs and gradients against numba_dwconv.reference on a "
                  f"slice; check: ok when <= {TOLERANCE:g}" if checked else "rel err: skipped (--no-check)")
    return f"{torch_note}\n{check_note}"


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    """Entry point of ``python -m numba_dwconv``."""
    parser = argparse.ArgumentParser(prog="python -m numba_dwconv", description="The numba_dwconv bench report.")
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (a few seconds)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement; the best is kept")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    parser.add_argument("--plot", metavar="PATH", help="draw a roofline plot (PNG) to PATH (needs matplotlib)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--no-check", action="store_true", help="skip the correctness check")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the first-call measurement (fresh processes compiling from an empty cache)")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                        help="which rows to run (default: the CPU, and the GPU when one is available)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat <= 0:
        parser.error(f"--repeat must be a positive integer, got {args.repeat}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before minutes of measuring)
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib (or the 'bench' extra)")
    shapes = QUICK_SHAPES if args.quick else PUBLIC_SHAPES
    repeat = args.repeat or (3 if args.quick else 7)
    reference = None
    if not args.no_check:
        from .. import reference
    from ..dispatch import cuda_available

    with_torch = not args.no_torch and _torch_available()
    result = {"repeat": repeat, "rows": []}
    rooflines = []
    quiet = args.json == "-"  # stdout carries the JSON only

    def say(text=""):
        if not quiet:
            print(text, flush=True)

    def section(label, bandwidth, separable=False):
        """Print a table's head now and return the callback that prints each row as it is measured."""
        say()
        say(table_head(bandwidth, label, separable))
        return lambda row: say(format_row(row, separable))

    if args.device in ("all", "cpu"):
        if not args.no_startup:
            startup = measure_startup(STARTUP_CASES[2:3] if args.quick else STARTUP_CASES, _to_stderr)  # quick: 2D last
            say(format_startup(startup))
            result["startup"] = startup
        bandwidth = copy_bandwidth()
        rows = run_cpu(shapes, repeat, bandwidth, with_torch, reference,
                       section("CPU copy roofline (np.copyto)", bandwidth))
        result.update(copy_bandwidth_GBps=bandwidth / 1e9)
        rows_2d = run_cpu_2d(QUICK_SHAPES_2D if args.quick else PUBLIC_SHAPES_2D, repeat, bandwidth, with_torch,
                             reference, section("2D depthwise, CPU copy roofline (np.copyto)", bandwidth))
        result["rows"] += rows + rows_2d
        rooflines.append(("CPU", bandwidth, rows + rows_2d))
        say()
        say("Sequence features, CPU float32 channels_last (ratios measured in this run; fused activation: op with "
            "activation= over the op without; layer/op: DepthwiseConv1D(activation=...) over the op with it)")
        result["fused_activations"] = fused_activation_rows(shapes[:1] if args.quick else shapes[:5], repeat,
                                                            lambda row: say(format_activation_row(row)))
        stream, decode = chunked_stream_row(repeat, args.quick), decode_step_row(repeat, args.quick)
        say(format_sequence_rows(stream, decode))
        result.update(chunked_stream=stream, decode_step=decode)
        if with_torch:
            from .torch_bridge import bridge_report

            say()
            result["torch_bridge"] = bridge_report(repeat, args.quick, say)
    if args.device == "cuda" or (args.device == "all" and cuda_available()):
        from numba import config as numba_config

        if numba_config.ENABLE_CUDASIM:
            say("GPU rows skipped: numba's CUDA simulator is active (NUMBA_ENABLE_CUDASIM=1)")
        else:
            gpu_bandwidth = gpu_copy_bandwidth()
            rows = run_cuda(QUICK_SHAPES if args.quick else GPU_SHAPES, repeat, gpu_bandwidth, with_torch,
                            reference, section("GPU device-to-device copy", gpu_bandwidth))
            host_fwd, host_bwd = host_call_times()
            say(f"GPU host time per warm small call (B1 L256 C64 K3, 1000 back-to-back calls): "
                f"forward {host_fwd * 1e6:.1f} us, backward {host_bwd * 1e6:.1f} us")
            result.update(gpu_copy_bandwidth_GBps=gpu_bandwidth / 1e9, gpu_host_forward_us=host_fwd * 1e6,
                          gpu_host_backward_us=host_bwd * 1e6)
            rows_2d = run_cuda_2d(QUICK_SHAPES_2D if args.quick else GPU_SHAPES_2D, repeat, gpu_bandwidth,
                                  with_torch, reference,
                                  section("2D depthwise, GPU device-to-device copy", gpu_bandwidth, True))
            result["rows"] += rows + rows_2d
            rooflines.append(("GPU", gpu_bandwidth, rows + rows_2d))
    rows = result["rows"]
    say()
    say(_notes(args, with_torch, reference is not None))
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.plot:
        from .plot import roofline_plot

        roofline_plot(rooflines, args.plot)
        print(f"roofline plot written to {args.plot}", file=sys.stderr if args.json == "-" else sys.stdout)
    bad = [r for r in rows if r.get("max_rel_error", 0.0) > TOLERANCE]
    if bad:
        print(f"CORRECTNESS CHECK FAILED for {len(bad)} rows", file=sys.stderr)
        return 1
    return 0
