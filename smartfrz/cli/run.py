"""`smartfrz run`: the whole job end to end, at smoke scale by default.

1. collect weight trajectories from a grid of real training runs (`smartfrz collect`),
2. fit the attention freeze predictor on them (`smartfrz fit`),
3. train held-out benchmark tasks with the freezer against the same training without it (`smartfrz bench`)
   and print blocks frozen, FLOPs saved, wall-clock ratio and accuracy difference.

Collection resumes, so an interrupted pipeline picks up where it stopped. A stage that fails stops the
pipeline with one line naming the stage and the cause.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from smartfrz.cli import bench, collect, fit
from smartfrz.cli._common import HELP_FORMAT, Hint, StageError, add_debug, library_errors, message, positive

NAME = "run"
HELP = "the whole pipeline: collect -> fit -> bench"
HINTS: list[Hint] = [*collect.HINTS, *fit.HINTS, *bench.HINTS]
STAGES = 3


def configure(p: argparse.ArgumentParser) -> None:
    """The options of `run`."""
    p.add_argument("--out", type=Path, default=Path("out/pipeline"), help="folder for traces, predictor and results")
    p.add_argument("--preset", default="smoke", choices=["smoke", "default"], help="collection preset")
    p.add_argument("--bench", default="quick", choices=["quick", "full"], help="benchmark scale: CI-sized, or full")
    p.add_argument("--threads", type=positive, default=1, help="torch CPU threads for fitting and benchmarking")
    add_debug(p)
    p.set_defaults(func=run, hints=HINTS)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `run` on the `smartfrz` command."""
    configure(subparsers.add_parser(NAME, help=HELP, description=__doc__, formatter_class=HELP_FORMAT))


def _stage(number: int, title: str) -> None:
    print(f"\n=== {number}/{STAGES} {title}", flush=True)


def _collect(args: argparse.Namespace, traces: Path) -> None:
    """Stage 1: the preset's grid (three seeds at smoke size, so the grouped split has runs in each part)."""
    from smartfrz.collection.grid import build_grid
    from smartfrz.collection.presets import PRESETS
    from smartfrz.collection.summary import format_summary

    grid = build_grid(PRESETS[args.preset], seeds=[0, 1, 2] if args.preset == "smoke" else None)
    summary = collect.collect_grid(grid, traces, resume=True, debug=args.debug)
    print(format_summary(summary))
    bad = summary["failed"] + [{"run_id": m, "error": "no run file"} for m in summary["missing"]]
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(grid)} runs failed, e.g. {bad[0]['run_id']}: {bad[0]['error']} "
            f"(all in {traces / 'summary.json'})"
        )


def _fit(args: argparse.Namespace, traces: Path, predictor: Path) -> None:
    """Stage 2: fit with the default settings (a short fit on the short smoke runs)."""
    import torch

    from smartfrz.predictor.fit import FitConfig
    from smartfrz.predictor.train import TrainConfig

    torch.set_num_threads(args.threads)
    cfg = FitConfig(traces=[str(traces / "runs")])
    if args.preset == "smoke":
        cfg = replace(cfg, train=TrainConfig(epochs=5))
    fit.fit_and_save(cfg, predictor, latency=False)


def _bench(args: argparse.Namespace, predictor: Path, results: Path) -> None:
    """Stage 3: the benchmark with `smartfrz bench`'s defaults (or --quick's) and this predictor."""
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    options = parser.parse_args([])  # the command's defaults
    options.quick, options.predictor = args.bench == "quick", str(predictor)
    bench.run_bench(bench.make_config(options), results, threads=args.threads, command=args.command)


def run(args: argparse.Namespace) -> int:
    """Run collect -> fit -> bench; a failing stage raises StageError naming it."""
    traces, predictor, results = args.out / "traces", args.out / "predictor.pt", args.out / "bench"
    started = time.perf_counter()
    stages = [
        (f"collect ({args.preset} preset) -> {traces}", lambda: _collect(args, traces)),
        (f"fit the predictor -> {predictor}", lambda: _fit(args, traces, predictor)),
        (f"train with and without the freezer -> {results}", lambda: _bench(args, predictor, results)),
    ]
    for number, (title, stage) in enumerate(stages, 1):
        _stage(number, title)
        try:
            stage()
        except library_errors() as err:
            if args.debug:
                raise
            name = title.split(" ")[0]
            raise StageError(f"pipeline stopped at stage {number}/{STAGES} ({name}): {message(err)}") from err
    print(f"\npipeline finished in {time.perf_counter() - started:.0f} s; results in {results}")
    return 0
