"""Command line: `python -m smartfrz.bench [--quick] [--out DIR] ...` (see --help)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from smartfrz.bench.oracle import DEFAULT_TAUS, DEFAULT_TOLERANCE_POINTS
from smartfrz.bench.policies import DEFAULT_POLICIES, PolicySpec
from smartfrz.bench.report import markdown, summarise
from smartfrz.bench.runner import BenchConfig, run_benchmark
from smartfrz.bench.tasks import BENCH_TASKS, held_out, register_bench_tasks
from smartfrz.collection.presets import PRESETS

CARD_KEYS = ("trained_on", "tasks", "preset", "families", "code_version", "date")
TRAINING_PRESETS = ("default", "corpus")  # the collection presets behind the shipped predictor
TRAINING_TASKS = tuple(dict.fromkeys(t for name in TRAINING_PRESETS for t in PRESETS[name].tasks))
QUICK: dict[str, Any] = {
    "tasks": ["synth_resmlp"],
    "max_train": 512,
    "max_val": 1000,
    "epochs": 3,
    "batch_size": 32,
    "snapshots": 48,  # every step: the predictor's window fills by mid-run
    "oracle_taus": (0.95, 0.99),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m smartfrz.bench",
        description=(
            "Train benchmark tasks (held out from the shipped predictor's training data) under several freezing "
            "policies, paired by seed and interleaved per seed, and report final accuracy and its difference from "
            "no freezing, training FLOPs and wall-clock saved, freeze timelines, and a hindsight oracle. Writes "
            "results.json, results.md and PNG plots under --out."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("bench_results"), help="output folder (default: bench_results)")
    p.add_argument("--quick", action="store_true", help="CI scale: one tiny task, 3 epochs, about a minute on 2 cores")
    p.add_argument("--tasks", nargs="+", help=f"tasks to run (default: {[t.name for t in BENCH_TASKS]})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds, paired across policies (default: 0 1)")
    p.add_argument(
        "--policies",
        nargs="+",
        default=list(DEFAULT_POLICIES),
        help="none, freezeout, autofreeze, smartfrz, each optionally +cache (default: %(default)s); 'none' is required",
    )
    p.add_argument("--predictor", default="default", help="SmartFRZ predictor: a name in predictor_data/ or a .pt path")
    p.add_argument("--snapshots", type=int, help="SmartFRZ snapshots per run (default: 40, the training cadence)")
    p.add_argument("--autofreeze-stages", type=int, default=10, help="AutoFreeze decisions per run (default: 10)")
    p.add_argument("--no-oracle", action="store_true", help="skip the hindsight oracle's probe runs")
    p.add_argument("--oracle-taus", nargs="+", type=float, help=f"CKA thresholds to probe (default: {DEFAULT_TAUS})")
    p.add_argument(
        "--oracle-tolerance", type=float, default=DEFAULT_TOLERANCE_POINTS, help="accuracy points the oracle may lose"
    )
    p.add_argument("--oracle-snapshots", type=int, default=20, help="CKA snapshots of the unfrozen run (default: 20)")
    p.add_argument("--max-train", type=int, help="cap on training samples")
    p.add_argument("--max-val", type=int, help="cap on validation samples")
    p.add_argument("--epochs", type=int, help="override the tasks' epochs")
    p.add_argument("--batch-size", type=int, help="override the tasks' batch size")
    p.add_argument(
        "--recipes",
        nargs="+",
        default=["constant"],
        help="learning-rate recipes per task: SCHEDULE or SCHEDULE:WARMUP (e.g. constant cosine:0.05)",
    )
    p.add_argument("--cache-dtype", default="float16", choices=["float16", "bfloat16", "float32", "int8"])
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--allow-seen-tasks", action="store_true", help="allow tasks the predictor was trained on")
    p.add_argument("--no-plots", action="store_true", help="skip the matplotlib figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace) -> BenchConfig:
    """The benchmark configuration from the arguments (quick mode fills what was not given)."""
    quick: dict[str, Any] = QUICK if args.quick else {}
    tasks = args.tasks or quick.get("tasks") or [t.name for t in BENCH_TASKS]
    seen = set(TRAINING_TASKS) & set(tasks)
    if seen and not args.allow_seen_tasks:
        raise SystemExit(
            f"tasks {sorted(seen)} trained the shipped predictor (presets {TRAINING_PRESETS}); a benchmark on them "
            "is not a held-out result. Pass --allow-seen-tasks to run them anyway."
        )
    policies = [PolicySpec.parse(p) for p in args.policies]
    return BenchConfig(
        tasks=tasks,
        seeds=args.seeds,
        policies=policies,
        predictor=args.predictor if any(p.base == "smartfrz" for p in policies) else None,
        snapshots=args.snapshots or quick.get("snapshots", 40),
        autofreeze_stages=args.autofreeze_stages,
        oracle=not args.no_oracle,
        oracle_taus=tuple(args.oracle_taus or quick.get("oracle_taus", DEFAULT_TAUS)),
        oracle_tolerance=args.oracle_tolerance,
        oracle_snapshots=args.oracle_snapshots,
        max_train=args.max_train or quick.get("max_train"),
        max_val=args.max_val or quick.get("max_val"),
        epochs=args.epochs or quick.get("epochs"),
        batch_size=args.batch_size or quick.get("batch_size"),
        cache_dtype=args.cache_dtype,
        progress=not args.no_progress,
        recipes=tuple(_recipe(r) for r in args.recipes),
    )


def _recipe(text: str) -> tuple[str, float]:
    """Parse ``SCHEDULE[:WARMUP]`` into a validated (schedule, warm-up fraction)."""
    from smartfrz.zoo.schedules import lr_factor

    schedule, _, warmup = text.partition(":")
    try:
        value = float(warmup) if warmup else 0.0
        lr_factor(schedule, 0, 1, value)
    except ValueError as err:
        raise SystemExit(f"error: bad --recipes entry {text!r}: {err}") from None
    return schedule, value


def load(name: str | None) -> tuple[Any, dict[str, Any] | None]:
    """The SmartFRZ predictor and a description of it, or (None, None) when no SmartFRZ policy runs."""
    if name is None:
        return None, None
    from smartfrz.predictor import PredictorLoadError, load_predictor

    try:
        predictor = load_predictor(name)
    except PredictorLoadError as err:
        raise SystemExit(f"{err}\nTrain one (python -m smartfrz.fit_predictor) and pass --predictor PATH.") from None
    meta = predictor.meta if isinstance(predictor.meta, dict) else {}
    info = {
        "name": name,
        "threshold": predictor.threshold,
        "window": predictor.window,
        "k": predictor.k,
        "label_rule": predictor.label_rule.to_dict(),
        "card": {k: meta[k] for k in CARD_KEYS if k in meta},
    }
    return predictor, info


def write_outputs(raw: dict[str, Any], out: Path, plots: bool) -> dict[str, Path]:
    """results.json (raw runs + summary), results.md, and the figures."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(raw)
    raw = {**raw, "summary": summary}
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(raw, indent=1, allow_nan=True))
    paths["markdown"].write_text(markdown(summary, raw))
    if plots:
        from smartfrz.bench.plots import timeline_plot, tradeoff_plot

        for task in dict.fromkeys(r["task"] for r in raw["runs"]):
            paths[f"timeline_{task}"] = timeline_plot(raw, task, out / f"timeline_{task}.png")
        paths["tradeoff"] = tradeoff_plot(summary, out / "tradeoff.png")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its outputs."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    register_bench_tasks()
    cfg = make_config(args)
    predictor, info = load(cfg.predictor)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python -m smartfrz.bench " + " ".join(sys.argv[1:] if argv is None else argv)

    def finish(raw: dict[str, Any], plots: bool) -> dict[str, Path]:
        raw["predictor"] = info
        raw["held_out"] = held_out(raw["config"]["tasks"], TRAINING_TASKS)
        raw["command"] = command
        return write_outputs(raw, args.out, plots)

    try:
        raw = run_benchmark(cfg, predictor, on_task=lambda partial: finish(partial, False))
    finally:
        torch.set_num_threads(threads)
    paths = finish(raw, not args.no_plots)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
