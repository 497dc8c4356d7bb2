"""``python -m numba_dwconv warmup``: compile the CPU kernels into numba's on-disk cache ahead of use.

numba compiles each kernel on its first call with new argument types (seconds to tens
of seconds each on a small machine) and caches the machine code on disk
(``NUMBA_CACHE_DIR``, or ``__pycache__`` next to the package's sources); a later process
loads it in well under a second.  Running the warm-up once when a container image or a
CI cache is built moves all of that out of the first real call.

Jobs run in parallel child processes, one per ``(rank, layout)`` with every dtype of it
in turn, so no two processes ever compile the same kernel (numba's cache index is a
file per function, rewritten whole by whoever adds an entry).  The kernels every job
shares (the partial-sum reduction; the layers' GELU) are compiled first, by one process.
(The separable layers' pointwise step is a BLAS product: nothing to compile.)  A last fresh
process then runs every job again and must compile nothing: the check that the cache is complete.

GPU kernels are not part of it: they are generated per problem shape (compile-time
constants) and numba-cuda cannot cache generated kernels, so they compile once per
process (see the README).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

RANKS = (1, 2)
LAYOUTS = ("channels_last", "channels_first")
DTYPES = ("float32", "float64")
# (kernel size, stride, padding, depth multiplier) of the problems each job runs, forward and backward:
# the kernels that the common layer configurations choose (2D kernel sizes up to 5x5 are compile-time
# constants of small functions of their own, numba_dwconv._entries, each its own entry in the cache; 7x7
# compiles the kernels that wider kernels of whole channel vectors share).
# 1D: short kernels (K <= 8) and long ones (K >= 20) have kernels of their own; K = 9 takes the general ones.
PROBLEMS_1D = ((3, 1, "same", 1), (4, 1, "causal", 1), (3, 2, "same", 1), (3, 1, "same", 2), (9, 1, "same", 1),
               (31, 1, "same", 1))
KERNEL_SIZES_2D = (3, 5, 7)


STRIDES = (1, 2)
MULTIPLIERS = (1, 2)


def _problems(rank: int, kernel_sizes, strides, multipliers):
    if rank == 1:
        return tuple(p for p in PROBLEMS_1D if p[1] in strides and p[3] in multipliers)
    problems = tuple((k, s, "same", 1) for k in kernel_sizes for s in strides if 1 in multipliers)
    # a 2D depth multiplier above 1 has kernels of its own (channels_last: one set for every m > 1)
    return problems + tuple((3, 1, "valid", m) for m in multipliers if m != 1)


def run_job(rank: int, layout: str, dtypes, kernel_sizes=KERNEL_SIZES_2D, strides=STRIDES,
            multipliers=MULTIPLIERS) -> None:
    """Forward and backward of every problem of one ``(rank, layout)``, each dtype."""
    import numpy as np

    from . import ops

    forward = ops.depthwise_conv1d if rank == 1 else ops.depthwise_conv2d
    backward = ops.depthwise_conv1d_backward if rank == 1 else ops.depthwise_conv2d_backward
    channels = 16  # whole 64-byte vectors of float32: the layers' usual channel counts take those kernels
    for dtype in dtypes:
        for k, stride, padding, mult in _problems(rank, kernel_sizes, strides, multipliers):
            spatial = (2 * k + 5,) * rank
            shape = (1,) + (spatial + (channels,) if layout == "channels_last" else (channels,) + spatial)
            x = np.ones(shape, dtype)
            kernel = np.ones((k,) * rank + (channels, mult), dtype)
            y = forward(x, kernel, strides=stride, padding=padding, data_format=layout)
            backward(np.ones_like(y), x, kernel, strides=stride, padding=padding, data_format=layout)


def run_shared(dtypes) -> None:
    """The kernels every job calls (partial sums, the workers' hand-over) and the layers' GELU, compiled first."""
    import numpy as np

    from ._jit import launch
    from .cpu import elementwise
    from .cpu.partials import sum_partials

    for dtype in dtypes:
        launch(sum_partials, np.ones(8, dtype), 2, np.empty(4, dtype), parts=2)
        elementwise.gelu(np.ones(4, dtype))
        elementwise.gelu_derivative(np.ones(4, dtype))


def _child(args: list) -> dict:
    """Run one job in a fresh process; what it compiled (kernel names) and how long it took."""
    start = time.perf_counter()
    env = {**os.environ, "NUMBA_DWCONV_COMPILE_MESSAGES": "0"}
    out = subprocess.run([sys.executable, "-m", "numba_dwconv.warmup", "--child", json.dumps(args)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"warm-up job {args} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    return result


def _child_main(spec: str) -> int:
    from . import _compile_log

    kind, payload = json.loads(spec)
    if kind == "shared":
        run_shared(payload["dtypes"])
    else:
        for job in payload["jobs"]:
            run_job(job["rank"], job["layout"], payload["dtypes"], tuple(payload["kernel_sizes"]),
                    tuple(payload["strides"]), tuple(payload["multipliers"]))
    print(json.dumps({"compiled": _compile_log.compiled_kernels()}))
    return 0


def warmup(ranks=RANKS, layouts=LAYOUTS, dtypes=("float32",), kernel_sizes=KERNEL_SIZES_2D, strides=STRIDES,
           multipliers=MULTIPLIERS, jobs=None, say=print) -> dict:
    """Compile the chosen CPU kernels into numba's on-disk cache, in parallel processes.

    Parameters
    ----------
    ranks : sequence of {1, 2}
    layouts : sequence of {"channels_last", "channels_first"}
    dtypes : sequence of {"float32", "float64"}
    kernel_sizes : sequence of int
        2D kernel sizes to compile (each size up to 16 compiles its own size-specialised functions).
    strides : sequence of {1, 2}
        Strides to compile for (some 2D strides have kernels of their own).
    multipliers : sequence of {1, 2}
        Depth multipliers to compile for (each 2D multiplier has kernels of its own).
    jobs : int, optional
        Parallel processes (default: the number of cores).
    say : callable
        Where progress lines go.

    Returns
    -------
    dict
        ``{"jobs": [...], "recompiled_in_check": [...], "seconds": float}``.
    """
    _check_choice("ranks", ranks, RANKS)
    _check_choice("layouts", layouts, LAYOUTS)
    _check_choice("dtypes", dtypes, DTYPES)
    _check_choice("strides", strides, STRIDES)
    _check_choice("multipliers", multipliers, MULTIPLIERS)
    for k in kernel_sizes:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"kernel_sizes must be positive integers, got {k!r}")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    start = time.perf_counter()
    common = {"dtypes": list(dtypes), "kernel_sizes": list(kernel_sizes), "strides": list(strides),
              "multipliers": list(multipliers)}
    say(f"numba_dwconv warm-up: compiling the CPU kernels for ranks {list(ranks)}, {list(layouts)}, "
        f"{list(dtypes)} into numba's cache (once per machine; {jobs} parallel processes)")
    shared = _child(["shared", common])
    say(f"  shared kernels (partial sums, GELU): {len(shared['compiled'])} compiled in {shared['seconds']:.1f} s")
    specs = [{"rank": r, "layout": layout} for r in ranks for layout in layouts]
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_child, ["jobs", {**common, "jobs": [spec]}]): spec for spec in specs}
        for future in concurrent.futures.as_completed(futures):
            spec, result = futures[future], future.result()
            results.append({**spec, **result})
            say(f"  {spec['rank']}D {spec['layout']}: {len(result['compiled'])} kernels compiled in "
                f"{result['seconds']:.1f} s")
    check = _child(["jobs", {**common, "jobs": specs}])
    if check["compiled"]:
        say(f"  check: a fresh process still compiled {check['compiled']} (now cached)")
    else:
        say(f"  check: a fresh process loaded every kernel from the cache in {check['seconds']:.1f} s")
    total = time.perf_counter() - start
    say(f"warm-up done in {total:.1f} s")
    return {"jobs": [shared] + results, "recompiled_in_check": check["compiled"], "seconds": total}


def _check_choice(name, values, allowed):
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name} must be among {list(allowed)}, got {v!r}")


def main(argv=None) -> int:
    """Entry point of ``python -m numba_dwconv warmup`` (``--help`` lists the options)."""
    parser = argparse.ArgumentParser(prog="python -m numba_dwconv warmup",
                                     description="Compile numba_dwconv's CPU kernels into numba's on-disk cache.")
    parser.add_argument("--rank", type=int, nargs="+", default=list(RANKS), choices=RANKS)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=DTYPES)
    parser.add_argument("--layout", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--kernel-size", type=int, nargs="+", default=list(KERNEL_SIZES_2D),
                        help="2D kernel sizes (default: 3 5 7)")
    parser.add_argument("--stride", type=int, nargs="+", default=list(STRIDES), choices=STRIDES)
    parser.add_argument("--multiplier", type=int, nargs="+", default=list(MULTIPLIERS), choices=MULTIPLIERS)
    parser.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=None, help="parallel processes (default: every core)")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be a positive integer, got {args.jobs}")
    if "cuda" in args.device:
        print("warm-up --device cuda: nothing to cache; the GPU kernels are generated per problem shape and "
              "numba-cuda cannot cache generated kernels, so each process compiles the ones it uses "
              "(about a second each on first use)", file=sys.stderr)
    if "cpu" in args.device:
        warmup(args.rank, args.layout, args.dtype, args.kernel_size, args.stride, args.multiplier, args.jobs)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        raise SystemExit(_child_main(sys.argv[2]))
    raise SystemExit(main())
