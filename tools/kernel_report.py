"""Static check of every GPU kernel (no GPU needed): registers, spills and the main loop's instruction mix.

Compiles each entry of ``numba_dwconv.cuda.kernel_catalogue()`` for sm_90 with the
shared ``sass_report.py`` tool (``ptxas`` + ``nvdisasm``) and prints one row per kernel:
registers, spill bytes, stack bytes (local-memory arrays: register arrays whose indices
did not become constants), and for the innermost loop with the most float math the
integer/address instructions per float instruction and the widths of its global
loads and stores.  Targets for the vector paths: <= 2 integer per float, 128-bit
accesses, no spills, no stack.

    pip install ".[cuda]" nvidia-cuda-nvdisasm
    python tools/kernel_report.py [--sass-report ../shared/tools/sass_report.py] [NAME-SUBSTRING ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re


def _load(path):
    spec = importlib.util.spec_from_file_location("sass_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main_loop_figures(sass_report, dispatcher, signature) -> dict:
    """Registers, spills and the main innermost loop's mix of one kernel."""
    from numba_dwconv.cuda.catalogue import compiling_for

    with compiling_for((9, 0)):  # (device functions: no GPU to ask for its compute capability)
        info, text = sass_report.compile_sass(dispatcher, signature)
    found = sass_report.loops(text)
    inner = [lp for lp in found
             if not any(o is not lp and lp[0] <= o[0] and o[1] <= lp[1] and (o[0], o[1]) != (lp[0], lp[1])
                        for o in found)]
    row = {"registers": int(re.search(r"Used (\d+) registers", info).group(1)),
           "spill bytes": sum(int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", info)),
           "stack bytes": int(re.search(r"(\d+) bytes stack frame", info).group(1))}
    if not inner:
        return row
    mix = [sass_report._mix(body) for _, _, body in inner]
    best = max(mix, key=lambda m: m["fp32 math"] + m["fp64 math"] + m["fp16 math"])
    floats = best["fp32 math"] + best["fp64 math"] + best["fp16 math"]
    row["int per float"] = best["int/address math"] / max(floats, 1)
    for op in ("LDG", "STG"):
        row[op] = "/".join(f"{best[f'{op} width {w} bit']}x{w}" for w in ("128", "64", "32")
                           if best[f"{op} width {w} bit"]) or "-"
    return row


def main():
    """Print the table for the kernels named on the command line (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tools", "sass_report.py")
    parser.add_argument("--sass-report", default=default, help="path of sass_report.py")
    parser.add_argument("names", nargs="*", help="only kernels whose name contains one of these")
    args = parser.parse_args()
    sass_report = _load(args.sass_report)
    from numba_dwconv.cuda import kernel_catalogue

    print("| kernel | registers | spill bytes | stack bytes | int/addr per float (main loop) | loads | stores |")
    print("|---|---|---|---|---|---|---|")
    for name, dispatcher, signature in kernel_catalogue():
        if args.names and not any(n in name for n in args.names):
            continue
        row = main_loop_figures(sass_report, dispatcher, signature)
        ratio = f"{row['int per float']:.2f}" if "int per float" in row else "-"
        print(f"| {name} | {row['registers']} | {row['spill bytes']} | {row['stack bytes']} | {ratio} | "
              f"{row.get('LDG', '-')} | "
              f"{row.get('STG', '-')} |", flush=True)


if __name__ == "__main__":
    main()
