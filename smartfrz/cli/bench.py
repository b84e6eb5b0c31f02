"""`smartfrz bench`: SmartFRZ against FreezeOut, AutoFreeze and no freezing, paired by seed.

Trains benchmark tasks (held out from the shipped predictor's training data) under several freezing
policies, paired by seed and interleaved per seed, and reports final accuracy and its difference from no
freezing, training FLOPs and wall-clock saved, freeze timelines, and a hindsight oracle. Writes results.json,
results.md and PNG plots under --out.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from smartfrz.cli._common import HELP_FORMAT, Hint, Lazy, add_debug, positive, resolve

NAME = "bench"
HELP = "train held-out tasks with and without freezing and report accuracy, FLOPs and time saved"
CARD_KEYS = ("trained_on", "tasks", "preset", "families", "code_version", "date")
TRAINING_PRESETS = ("default", "corpus")  # the collection presets behind the shipped predictor
QUICK: dict[str, Any] = {
    "tasks": ["synth_resmlp"],
    "max_train": 512,
    "max_val": 1000,
    "epochs": 3,
    "batch_size": 32,
    "snapshots": 48,  # every step: the predictor's window fills by mid-run
    "oracle_taus": (0.95, 0.99),
}
HINTS: list[Hint] = [
    (ValueError, "trained the shipped predictor", "pass --allow-seen-tasks to run them anyway"),
    (RuntimeError, "^(predictor checkpoint|no predictor named)", "train one (smartfrz fit) and pass --predictor PATH"),
]


def configure(p: argparse.ArgumentParser) -> None:
    """The options of `bench`."""
    p.add_argument("--out", type=Path, default=Path("bench_results"), help="output folder")
    p.add_argument("--quick", action="store_true", help="CI scale: one tiny task, 3 epochs, about a minute on 2 cores")
    tasks = Lazy("smartfrz.bench.tasks:BENCH_TASKS", lambda tasks: [t.name for t in tasks])
    p.add_argument("--tasks", nargs="+", default=tasks, help="tasks to run (--quick: synth_resmlp)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds, paired across policies")
    p.add_argument(
        "--policies",
        nargs="+",
        default=Lazy("smartfrz.bench.policies:DEFAULT_POLICIES"),
        help="none, freezeout, autofreeze, smartfrz, smartfrz-backstop (SmartFRZ no later than FreezeOut), "
        "each but none optionally +cache; 'none' is required",
    )
    p.add_argument("--predictor", default="default", help="SmartFRZ predictor: a name in predictor_data/ or a .pt path")
    p.add_argument("--snapshots", type=positive, help="SmartFRZ snapshots per run (default: 40, --quick: 48)")
    p.add_argument("--autofreeze-stages", type=positive, default=10, help="AutoFreeze decisions per run")
    p.add_argument("--no-oracle", action="store_true", help="skip the hindsight oracle's probe runs")
    p.add_argument(
        "--oracle-taus",
        nargs="+",
        type=float,
        default=Lazy("smartfrz.bench.oracle:DEFAULT_TAUS"),
        help="CKA thresholds to probe (--quick: 0.95 0.99)",
    )
    p.add_argument(
        "--oracle-tolerance",
        type=float,
        default=Lazy("smartfrz.bench.oracle:DEFAULT_TOLERANCE_POINTS", float),
        help="accuracy points the oracle may lose",
    )
    p.add_argument("--oracle-snapshots", type=positive, default=20, help="CKA snapshots of the unfrozen run")
    p.add_argument("--max-train", type=positive, help="cap on training samples (--quick: 512)")
    p.add_argument("--max-val", type=positive, help="cap on validation samples (--quick: 1000)")
    p.add_argument("--epochs", type=positive, help="override the tasks' epochs (--quick: 3)")
    p.add_argument("--batch-size", type=positive, help="override the tasks' batch size (--quick: 32)")
    p.add_argument(
        "--recipes",
        nargs="+",
        default=["constant"],
        help="learning-rate recipes per task: SCHEDULE or SCHEDULE:WARMUP (constant, step, cosine, linear; "
        "e.g. constant cosine:0.05)",
    )
    p.add_argument("--cache-dtype", default="float16", choices=["float16", "bfloat16", "float32", "int8"])
    p.add_argument("--threads", type=positive, help="torch intra-op threads (default: torch's)")
    p.add_argument("--allow-seen-tasks", action="store_true", help="allow tasks the predictor was trained on")
    p.add_argument("--no-plots", action="store_true", help="skip the matplotlib figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="train nothing: merge the results.json of bench runs on disjoint --tasks (e.g. one per core) into --out",
    )
    p.add_argument(
        "--add-policies",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="with --merge: bench runs (shards, merged the same way) of other policies on the same seeds and on "
        "all of the tasks or some of them, e.g. `--policies none smartfrz smartfrz+cache --predictor NEW`; their "
        "policies replace the merged ones on their tasks, and their 'none' runs must end exactly as the merged "
        "ones (the proof of pairing); on some of the tasks only, with policies and a predictor the merged ones have",
    )
    add_debug(p)
    p.set_defaults(func=run, hints=HINTS)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `bench` on the `smartfrz` command."""
    configure(subparsers.add_parser(NAME, help=HELP, description=__doc__, formatter_class=HELP_FORMAT))


def make_config(args: argparse.Namespace) -> Any:
    """The BenchConfig the arguments describe (--quick fills in what was not given)."""
    from smartfrz.bench.policies import PolicySpec
    from smartfrz.bench.runner import BenchConfig

    quick: dict[str, Any] = QUICK if args.quick else {}
    tasks = list(args.tasks) if not isinstance(args.tasks, Lazy) else quick.get("tasks") or list(args.tasks)
    seen = set(training_tasks()) & set(tasks)
    if seen and not args.allow_seen_tasks:
        raise ValueError(
            f"tasks {sorted(seen)} trained the shipped predictor (presets {TRAINING_PRESETS}); a benchmark on them "
            "is not a held-out result"
        )
    policies = [PolicySpec.parse(p) for p in args.policies]
    taus = args.oracle_taus if not isinstance(args.oracle_taus, Lazy) else quick.get("oracle_taus", args.oracle_taus)
    return BenchConfig(
        tasks=tasks,
        seeds=list(args.seeds),
        policies=policies,
        predictor=args.predictor if any(p.needs_predictor for p in policies) else None,
        snapshots=args.snapshots or quick.get("snapshots", 40),
        autofreeze_stages=args.autofreeze_stages,
        oracle=not args.no_oracle,
        oracle_taus=tuple(taus),
        oracle_tolerance=resolve(args.oracle_tolerance),
        oracle_snapshots=args.oracle_snapshots,
        max_train=args.max_train or quick.get("max_train"),
        max_val=args.max_val or quick.get("max_val"),
        epochs=args.epochs or quick.get("epochs"),
        batch_size=args.batch_size or quick.get("batch_size"),
        cache_dtype=args.cache_dtype,
        progress=not args.no_progress,
        recipes=tuple(_recipe(r) for r in args.recipes),
    )


def training_tasks() -> tuple[str, ...]:
    """Every task of the presets behind the shipped predictor."""
    from smartfrz.collection.presets import PRESETS

    return tuple(dict.fromkeys(t for name in TRAINING_PRESETS for t in PRESETS[name].tasks))


def _recipe(text: str) -> tuple[str, float]:
    """Parse ``SCHEDULE[:WARMUP]`` into a validated (schedule, warm-up fraction)."""
    from smartfrz.zoo.schedules import lr_factor

    schedule, _, warmup = text.partition(":")
    try:
        value = float(warmup) if warmup else 0.0
        lr_factor(schedule, 0, 1, value)
    except ValueError as err:
        raise ValueError(f"bad --recipes entry {text!r}: {err}") from None
    return schedule, value


def load(name: str | None) -> tuple[Any, dict[str, Any] | None]:
    """The SmartFRZ predictor and a description of it, or (None, None) when no SmartFRZ policy runs."""
    if name is None:
        return None, None
    from smartfrz.predictor import load_predictor

    predictor = load_predictor(name)
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
    from smartfrz.bench.report import markdown, summarise

    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(raw)
    raw = {**raw, "summary": summary}
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(raw, indent=1, allow_nan=True))
    paths["markdown"].write_text(markdown(summary, raw))
    if plots:
        from smartfrz.bench.plots import timeline_plot, tradeoff_plot

        for task in dict.fromkeys(r["task"] for r in raw["runs"]):  # task@recipe labels
            paths[f"timeline_{task}"] = timeline_plot(raw, task, out / f"timeline_{task}.png")
        paths["tradeoff"] = tradeoff_plot(summary, out / "tradeoff.png")
    return paths


def run_bench(cfg: Any, out: Path, *, threads: int | None = None, plots: bool = True, command: str = "") -> Path:
    """Run a BenchConfig, write its outputs under `out` (after each task too) and return results.md."""
    import torch

    from smartfrz.bench.runner import run_benchmark
    from smartfrz.bench.tasks import held_out, register_bench_tasks

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    register_bench_tasks()
    predictor, info = load(cfg.predictor)

    def finish(raw: dict[str, Any], plots: bool) -> dict[str, Path]:
        raw["predictor"] = info
        raw["held_out"] = held_out(raw["config"]["tasks"], training_tasks())
        raw["command"] = command
        return write_outputs(raw, out, plots)

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        raw = run_benchmark(cfg, predictor, on_task=lambda partial: finish(partial, False))
    finally:
        torch.set_num_threads(before)
    paths = finish(raw, plots)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths["markdown"]


def _read_shards(folders: list[Path]) -> dict[str, Any]:
    """The merged raw results of bench shards in ``folders``."""
    from smartfrz.bench.report import merge_shards

    missing = [str(f / "results.json") for f in folders if not (f / "results.json").is_file()]
    if missing:
        raise FileNotFoundError(f"no bench results at {missing}")
    return merge_shards([json.loads((f / "results.json").read_text()) for f in folders])


def merge(folders: list[Path], out: Path, plots: bool, added: list[Path] | None = None) -> Path:
    """Merge the results of bench shards (and, if given, other policies' runs) under `out`; its results.md."""
    from smartfrz.bench.report import add_policies

    raw = _read_shards(folders)
    if added:
        raw = add_policies(raw, _read_shards(added))
    paths = write_outputs(raw, out, plots)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths["markdown"]


def run(args: argparse.Namespace) -> int:
    """Benchmark (or merge earlier shards) and write the outputs."""
    if args.add_policies and not args.merge:
        raise ValueError("--add-policies goes with --merge (the bench results to add them to)")
    if args.merge:
        merge(args.merge, args.out, plots=not args.no_plots, added=args.add_policies)
        return 0
    run_bench(make_config(args), args.out, threads=args.threads, plots=not args.no_plots, command=args.command)
    return 0
