"""`python -m smartfrz.fit_predictor`: fit, evaluate and ship the attention freeze predictor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from smartfrz.calibration.probes import run_probes, summarise_probes
from smartfrz.predictor.baselines import BASELINES
from smartfrz.predictor.checkpoint import SCHEMA_VERSION, save_checkpoint
from smartfrz.predictor.fit import FitConfig, run_fit
from smartfrz.predictor.inference import FreezePredictor, load_predictor
from smartfrz.predictor.labels import LABEL_RULES, LabelRule
from smartfrz.predictor.latency import measure_latency
from smartfrz.predictor.model import ModelConfig
from smartfrz.predictor.report import code_version, probes_markdown, report_markdown, utc_now, write_report
from smartfrz.predictor.train import TrainConfig
from smartfrz.traces import open_traces


def _add_fit_args(p: argparse.ArgumentParser) -> None:
    """Options of the `fit` command."""
    p.add_argument("--traces", nargs="+", required=True, help="trace files or directories of run files")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path, e.g. predictor_data/default.pt")
    p.add_argument("--trained-on", default=None, help="one line for the data card (default: the trace paths)")
    p.add_argument("--label-rule", choices=LABEL_RULES, default="monotone", help="monotone: CKA >= tau from t on")
    p.add_argument(
        "--tau", type=float, default=0.999, help="CKA-vs-final threshold of the label rule (probe-calibrated)"
    )
    p.add_argument("--window", type=int, default=ModelConfig.window, help="snapshots per window W")
    p.add_argument(
        "--embed-dim", type=int, default=ModelConfig.embed_dim, help="dimension D of the fixed snapshot embedding"
    )
    p.add_argument("--hidden", type=int, default=ModelConfig.hidden, help="token width of the attention model")
    p.add_argument("--heads", type=int, default=ModelConfig.heads, help="attention heads")
    p.add_argument("--min-precision", type=float, default=0.95, help="threshold picked for this precision on val")
    p.add_argument("--val-frac", type=float, default=0.2, help="fraction of groups per family for validation")
    p.add_argument("--test-frac", type=float, default=0.2, help="fraction of groups per family for test")
    p.add_argument("--group-by", choices=("run", "task"), default="run", help="the unit no split may cut")
    p.add_argument("--lofo", action="store_true", help="also train without each family and score on it")
    p.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES), help="baselines to score")
    p.add_argument("--epochs", type=int, default=150, help="at most this many epochs (early stopping)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=20, help="early stopping: epochs without val improvement")
    p.add_argument("--max-batches", type=int, default=200, help="batches per epoch at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-latency", action="store_true", help="skip the 500-layer latency measurement")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids spinning on shared cores)")
    p.add_argument("--notes", default="", help="free text for the card's limits section (caveats of this fit)")
    p.add_argument("--probes", type=Path, nargs="*", default=[], help="probe result JSON files to cite in the card")


def _fit(args: argparse.Namespace) -> int:
    """Run the `fit` command: train, report, save checkpoint, report JSON and data card."""
    cfg = FitConfig(
        traces=list(args.traces),
        label_rule=LabelRule(args.label_rule, args.tau),
        model=ModelConfig(window=args.window, embed_dim=args.embed_dim, hidden=args.hidden, heads=args.heads),
        min_precision=args.min_precision,
        val_frac=args.val_frac,
        test_frac=args.test_frac,
        group_by=args.group_by,
        lofo=args.lofo,
        baselines=tuple(args.baselines),
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=args.patience,
            seed=args.seed,
            max_batches_per_epoch=args.max_batches,
        ),
    )
    main, data = run_fit(cfg)
    predictor = FreezePredictor(main.net, main.threshold, cfg.label_rule, {})
    report: dict[str, Any] = {
        "trained_on": args.trained_on or ", ".join(cfg.traces),
        "code_version": code_version(),
        "date": utc_now(),
        "schema_version": SCHEMA_VERSION,
        "label_rule": cfg.label_rule.to_dict(),
        "model_config": main.net.cfg.to_dict(),
        "train_config": cfg.train.to_dict(),
        "group_by": cfg.group_by,
        "min_precision": cfg.min_precision,
        "threshold": main.threshold,
        "threshold_met_on_val": main.threshold_met,
        "parameters": sum(p.numel() for p in main.net.parameters()),
        "data": data,
        "metrics": main.metrics,
        "training": {
            "best_epoch": main.train_result.best_epoch,
            "best_val_pr_auc": main.train_result.best_val_pr_auc,
            "epochs_run": main.train_result.epochs_run,
            "pos_weight": main.train_result.pos_weight,
            "history": main.train_result.history,
        },
        "latency": None if args.no_latency else measure_latency(predictor),
        "probes": {str(p): json.loads(p.read_text())["per_tau"] for p in args.probes},
        "limits": "trained only on the runs listed in the report; labels come from CKA against each run's own "
        "final model, so a 'converged' layer is one whose representation is already close to its end state. "
        f"Inputs are rounded to the traces' sample precision ({main.net.cfg.sample_dtype}) before the embedding. "
        + args.notes,
    }
    meta = {k: report[k] for k in ("trained_on", "code_version", "date", "label_rule", "threshold_met_on_val")}
    meta["test_metrics"] = {name: m["test"]["all"] for name, m in main.metrics.items()}
    save_checkpoint(args.out, main.net, main.threshold, cfg.label_rule, meta)
    stem = args.out.with_suffix("")
    json_path, card_path = write_report(report, stem)
    print(report_markdown(report))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB), {json_path}, {card_path}")
    return 0


def _latency(args: argparse.Namespace) -> int:
    """Run the `latency` command on a saved predictor."""
    result = measure_latency(load_predictor(args.predictor), n_layers=args.layers, repeats=args.repeats)
    print(json.dumps(result, indent=2))
    return 0


def _probes(args: argparse.Namespace) -> int:
    """Run the `probes` command: replay runs with each tau's freezing schedule, report accuracy loss."""
    traces = open_traces(args.traces)
    infos = traces.list_runs(include_flagged=False)
    wanted = [
        i.run_id for i in infos if (not args.runs or i.run_id in args.runs) and (not args.tasks or i.task in args.tasks)
    ]
    if args.runs and set(args.runs) - set(wanted):
        raise SystemExit(f"unknown or flagged run(s): {sorted(set(args.runs) - set(wanted))}")
    if not wanted:
        raise SystemExit(f"no unflagged runs in {args.traces} match --runs/--tasks")
    rules = [LabelRule(args.label_rule, tau) for tau in args.taus]
    summary = summarise_probes(run_probes(traces, wanted[: args.max_runs], rules))
    summary["traces"] = str(args.traces)
    summary["date"] = utc_now()
    summary["code_version"] = code_version()
    print(probes_markdown(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(probes_markdown(summary))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m smartfrz.fit_predictor",
        description="Fit the attention freeze predictor on collected traces (labels from CKA curves), "
        "compare it with baselines, and save a versioned checkpoint with its data card; "
        "or measure a predictor's latency; or run freeze probes that calibrate the label threshold tau.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train, evaluate and save a predictor")
    _add_fit_args(fit)
    fit.set_defaults(func=_fit)
    lat = sub.add_parser("latency", help="time a predictor on 500 layers, one CPU thread")
    lat.add_argument("--predictor", default="default", help="name in predictor_data/ or a path")
    lat.add_argument("--layers", type=int, default=500)
    lat.add_argument("--repeats", type=int, default=30, help="best of this many timed calls")
    lat.set_defaults(func=_latency)
    probes = sub.add_parser(
        "probes",
        help="calibrate tau: replay traced runs freezing blocks when the label rule says so",
        description="For each run and tau: replay the run's recipe (same task, data, seed), freeze each block "
        "(a prefix, head never) from the snapshot after which all its layers stay labelled converged, train to the "
        "end, and compare the final validation accuracy with the trace's unfrozen final_val_acc.",
    )
    probes.add_argument("--traces", type=Path, required=True, help="trace file or directory of zoo runs")
    probes.add_argument("--taus", type=float, nargs="+", default=[0.95, 0.99, 0.995, 0.999])
    probes.add_argument("--label-rule", choices=LABEL_RULES, default="monotone")
    probes.add_argument("--runs", nargs="*", default=None, help="run ids (default: all unflagged runs)")
    probes.add_argument("--tasks", nargs="*", default=None, help="only runs of these zoo tasks")
    probes.add_argument("--max-runs", type=int, default=1000, help="probe at most this many runs")
    probes.add_argument("--out", type=Path, default=None, help="JSON file for the results (+ .md beside it)")
    probes.add_argument("--threads", type=int, default=1, help="torch CPU threads for the replayed training")
    probes.set_defaults(func=_probes)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
