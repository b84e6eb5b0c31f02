"""``python -m smartfrz.pipeline``: the whole job end to end, at smoke scale by default.

1. collect weight trajectories from a grid of real training runs (``smartfrz.collect``),
2. fit the attention freeze predictor on them (``smartfrz.fit_predictor fit``),
3. train held-out benchmark tasks with the freezer against the same training without it
   (``smartfrz.bench``) and print blocks frozen, FLOPs saved, wall-clock ratio and accuracy difference.

Each stage is the module's own command line, so every step can be rerun by hand; collection
resumes, so an interrupted pipeline picks up where it stopped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m smartfrz.pipeline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("out/pipeline"), help="folder for traces, predictor and results")
    p.add_argument("--preset", default="smoke", choices=["smoke", "default"], help="collection preset")
    p.add_argument(
        "--bench", default="quick", choices=["quick", "full"], help="benchmark scale: CI-sized, or the full suite"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for fitting and benchmarking")
    return p


def _stage(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.perf_counter()


def main(argv: Sequence[str] | None = None) -> int:
    """Run collect -> fit -> bench; return the first non-zero exit status."""
    from smartfrz import collect, fit_predictor
    from smartfrz.bench.__main__ import main as bench_main

    args = build_parser().parse_args(argv)
    traces, predictor, results = args.out / "traces", args.out / "predictor.pt", args.out / "bench"
    threads = ["--threads", str(args.threads)]
    started = _stage(f"1/3 collect ({args.preset} preset) -> {traces}")
    collect_args = ["--preset", args.preset, "--out", str(traces), "--resume"]
    if args.preset == "smoke":  # three seeds, so that the grouped train/val/test split has runs in each part
        collect_args += ["--seeds", "0,1,2"]
    status = collect.main(collect_args)
    if status:
        return status
    _stage(f"2/3 fit the predictor -> {predictor}")
    fit_args = ["fit", "--traces", str(traces / "runs"), "--out", str(predictor), "--no-latency", *threads]
    if args.preset == "smoke":  # smoke runs are short: a short window, a short fit
        fit_args += ["--window", "8", "--epochs", "5"]
    status = fit_predictor.main(fit_args)
    if status:
        return status
    _stage(f"3/3 train with and without the freezer -> {results}")
    bench_args = ["--out", str(results), "--predictor", str(predictor), *threads]
    status = bench_main([*bench_args, "--quick"] if args.bench == "quick" else bench_args)
    print(f"\npipeline finished in {time.perf_counter() - started:.0f} s; results in {results}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
