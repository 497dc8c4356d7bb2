"""Steady-state speed of the working tree against a git revision (ratios, best of N).

Usage: ``python tools/compare_revision.py [REV] [--rounds R] [--repeat N]`` (REV defaults to ``HEAD``).

The revision's package is exported to a temporary folder under another name.  Each version is
timed in its own processes (two versions in one process disturb each other: OpenMP worker threads
of one keep spinning while the other runs), alternating, ``R`` rounds each; a case's time is its
best over every round of ``N`` calls.  Shapes: the bench report's public 1D and 2D sets, both
layouts, fp32, forward and backward.  Ratio > 1: the working tree is slower.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cases():
    from numba_dwconv.bench.conv1d import LAYOUTS, PUBLIC_SHAPES, make_problem
    from numba_dwconv.bench.conv2d import PUBLIC_SHAPES_2D, _problem

    for shape in PUBLIC_SHAPES:
        for layout in LAYOUTS:
            x, kernel, bias, _, grad_y = make_problem(shape, layout)
            yield (f"{shape.label()} | {layout}", "depthwise_conv1d", (x, kernel, bias), (grad_y, x, kernel),
                   dict(padding=shape.padding, data_format=layout))
    for shape in PUBLIC_SHAPES_2D:
        for layout in LAYOUTS:
            x, kernel, bias, _, grad_y = _problem(shape, layout)
            yield (f"{shape.label()} | {layout}", "depthwise_conv2d", (x, kernel, bias), (grad_y, x, kernel),
                   dict(strides=shape.stride, padding="same", data_format=layout))


def _child(package: str, folder: str, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    if folder:
        sys.path.insert(0, folder)
    module = importlib.import_module(package)
    times = {}
    for label, op, fwd_args, bwd_args, opts in _cases():
        for suffix, call_args in (("", fwd_args), ("_backward", bwd_args)):
            fn = getattr(module, op + suffix)
            fn(*call_args, **opts)
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                fn(*call_args, **opts)
                best = min(best, time.perf_counter() - start)
            times[f"{label}{suffix}"] = best
    print(json.dumps(times))


def main(argv=None) -> None:
    """Print the table (or, with --child, one version's times as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", nargs="?", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child, args.repeat)
        return
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "numba_dwconv"], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        (Path(folder) / "numba_dwconv").rename(Path(folder) / "dwconv_at_revision")
        best = {"new": {}, "old": {}}
        for _ in range(args.rounds):
            for key, package, path in (("new", "numba_dwconv", ""), ("old", "dwconv_at_revision", folder)):
                out = subprocess.run([sys.executable, __file__, "--repeat", str(args.repeat), "--child", package, path],
                                     check=True, capture_output=True, text=True).stdout
                for case, value in json.loads(out.splitlines()[-1]).items():
                    best[key][case] = min(value, best[key].get(case, float("inf")))
    print(f"working tree vs {args.rev}: time new/old, best of {args.rounds} rounds x {args.repeat} calls (> 1: slower)")
    print("| shape | layout | forward new ms | forward new/old | backward new ms | backward new/old |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in best["new"]:
        if case.endswith("_backward"):
            continue
        fn, fo = best["new"][case], best["old"][case]
        bn, bo = best["new"][case + "_backward"], best["old"][case + "_backward"]
        print(f"| {case} | {fn * 1e3:.2f} | {fn / fo:.2f} | {bn * 1e3:.2f} | {bn / bo:.2f} |")


if __name__ == "__main__":
    main()
