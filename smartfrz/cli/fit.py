"""`smartfrz fit`: fit the attention freeze predictor on collected traces and save a versioned checkpoint.

Labels come from the runs' CKA curves; the predictor is compared with baselines, and the checkpoint gets
a report (JSON) and a data card (Markdown) beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from smartfrz.cli._common import HELP_FORMAT, Hint, Lazy, add_debug, positive, resolve
from smartfrz.train_context import CONTEXT_FEATURES

NAME = "fit"
HELP = "fit, evaluate and save a freeze predictor"
LABEL_RULES = Lazy("smartfrz.predictor.labels:LABEL_RULES")
BASELINES = Lazy("smartfrz.predictor.baselines:BASELINES")
MODEL = "smartfrz.predictor.model:ModelConfig"
TRAIN = "smartfrz.predictor.train:TrainConfig"
FIT = "smartfrz.predictor.fit:FitConfig"
RULE = "smartfrz.predictor.labels:LabelRule"


def _default(target: str, name: str) -> Lazy:
    """The default of dataclass field ``name`` of ``module:Class``, read on first use (defined there once)."""
    return Lazy(target, lambda cls: getattr(cls, name))


HINTS: list[Hint] = [
    (ValueError, r"at least \d+ snapshots", "the runs are shorter than --min-window: pass a smaller --min-window"),
    (ValueError, r"split is empty", "give more runs (e.g. more --seeds when collecting)"),
]


def configure(p: argparse.ArgumentParser) -> None:
    """The options of `fit`."""
    p.add_argument("--traces", nargs="+", required=True, help="trace files or directories of run files")
    p.add_argument("--out", type=Path, required=True, help="checkpoint path, e.g. predictor_data/default.pt")
    p.add_argument("--trained-on", default=None, help="one line for the data card (default: the trace paths)")
    p.add_argument(
        "--label-rule",
        choices=LABEL_RULES,
        metavar="RULE",
        default="monotone",
        help="%(choices)s; monotone: CKA >= tau from t on; floor: 1 - CKA within 1/tau of what the layer still "
        "moves in the last --horizon of training",
    )
    p.add_argument(
        "--tau",
        type=float,
        default=_default(RULE, "tau"),
        help="CKA-vs-final threshold of the label rule (probe-calibrated)",
    )
    p.add_argument(
        "--window",
        type=positive,
        default=_default(MODEL, "window"),
        help="snapshots per window W (shorter ones are masked)",
    )
    p.add_argument(
        "--min-window",
        type=positive,
        default=_default(MODEL, "min_window"),
        help="judge a layer once it has this many snapshots",
    )
    p.add_argument(
        "--context",
        nargs="+",
        choices=CONTEXT_FEATURES,
        default=_default(MODEL, "context"),
        help="training context the model reads beside the weights (ablation: leave some out; "
        "loss_drop is the training loss's log drop since the first snapshot, unknown when the "
        "user's loop does not pass the loss to freezer.step)",
    )
    p.add_argument(
        "--horizon",
        type=float,
        default=_default(RULE, "horizon"),
        help="look-ahead of the horizon rule (the floor rule's closing span), fraction of training",
    )
    p.add_argument(
        "--remaining",
        type=float,
        default=_default(RULE, "remaining"),
        help="also require the layer's sampled weights to be within this fraction of their first snapshot's "
        "distance to the end (off by default); CKA alone calls input projections converged at init",
    )
    p.add_argument(
        "--norm-cap",
        type=float,
        default=_default(RULE, "norm_cap"),
        metavar="FRACTION",
        help="a second way past the --remaining cap: the weights' remaining distance to the end is within this "
        "fraction of their final norm (off by default); slowly drifting pretrained layers pass it early",
    )
    p.add_argument(
        "--acc-gate",
        type=float,
        default=_default(RULE, "acc_gate"),
        metavar="POINTS",
        help="also require the run's smoothed validation accuracy to stay within POINTS of its final from the "
        "snapshot on (off by default); freeze probes show CKA alone labels layers while accuracy still climbs",
    )
    p.add_argument(
        "--threshold-by",
        choices=("savings", "precision"),
        default="savings",
        help="savings: the lowest threshold whose replay on the val runs freezes at most --max-early-share of "
        "blocks before their label frontier; precision: --min-precision on val windows",
    )
    p.add_argument(
        "--frontier",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="probe-measured frontiers (files of smartfrz probes frontier --out): move those runs to the validation "
        "split and ship the highest threshold whose replay on them nets within --frontier-slack of the most "
        "savings (at or after each block's frontier, minus before it), instead of the --threshold-by one",
    )
    p.add_argument(
        "--frontier-slack",
        type=float,
        default=_default(FIT, "frontier_slack"),
        help="net savings share a higher threshold may give up against the best",
    )
    p.add_argument(
        "--max-early-share",
        type=float,
        default=_default(FIT, "max_early_share"),
        help="val blocks allowed to freeze early",
    )
    p.add_argument(
        "--embed-dim",
        type=positive,
        default=_default(MODEL, "embed_dim"),
        help="dimension D of the fixed snapshot embedding",
    )
    p.add_argument(
        "--hidden", type=positive, default=_default(MODEL, "hidden"), help="token width of the attention model"
    )
    p.add_argument("--heads", type=positive, default=_default(MODEL, "heads"), help="attention heads")
    p.add_argument(
        "--min-precision",
        type=float,
        default=_default(FIT, "min_precision"),
        help="threshold picked for this precision on val",
    )
    p.add_argument("--val-frac", type=float, default=0.2, help="fraction of groups per family for validation")
    p.add_argument("--test-frac", type=float, default=0.2, help="fraction of groups per family for test")
    p.add_argument("--group-by", choices=("run", "task"), default="run", help="the unit no split may cut")
    p.add_argument("--lofo", action="store_true", help="also train without each family and score on it")
    p.add_argument(
        "--baselines", nargs="*", choices=BASELINES, metavar="NAME", default=BASELINES, help="baselines to score"
    )
    p.add_argument(
        "--epochs", type=positive, default=_default(TRAIN, "epochs"), help="at most this many epochs (early stopping)"
    )
    p.add_argument("--batch-size", type=positive, default=_default(TRAIN, "batch_size"), help="windows per batch")
    p.add_argument("--lr", type=float, default=_default(TRAIN, "lr"), help="AdamW learning rate")
    p.add_argument(
        "--patience",
        type=positive,
        default=_default(TRAIN, "patience"),
        help="early stopping: epochs without val improvement",
    )
    p.add_argument(
        "--max-batches",
        type=positive,
        default=_default(TRAIN, "max_batches_per_epoch"),
        help="batches per epoch at most",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=_default(TRAIN, "ema_decay"),
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this per-batch decay (0: off)",
    )
    p.add_argument("--seed", type=int, default=0, help="training and projection seed")
    p.add_argument("--no-latency", action="store_true", help="skip the 500-layer latency measurement")
    p.add_argument("--threads", type=positive, default=1, help="torch CPU threads (1 avoids spinning on shared cores)")
    p.add_argument("--notes", default="", help="free text for the card's limits section (caveats of this fit)")
    p.add_argument("--probes", type=Path, nargs="*", default=[], help="probe result JSON files to cite in the card")
    add_debug(p)
    p.set_defaults(func=run, hints=HINTS)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `fit` on the `smartfrz` command."""
    configure(subparsers.add_parser(NAME, help=HELP, description=__doc__, formatter_class=HELP_FORMAT))


def fit_config(args: argparse.Namespace) -> Any:
    """The FitConfig the arguments describe."""
    from smartfrz.predictor.fit import FitConfig
    from smartfrz.predictor.labels import LabelRule
    from smartfrz.predictor.model import ModelConfig
    from smartfrz.predictor.train import TrainConfig

    args = argparse.Namespace(**{k: resolve(v) for k, v in vars(args).items()})
    model = ModelConfig(
        window=args.window,
        min_window=args.min_window,
        embed_dim=args.embed_dim,
        hidden=args.hidden,
        heads=args.heads,
        context=tuple(args.context),
    )
    return FitConfig(
        traces=[str(t) for t in args.traces],
        label_rule=LabelRule(args.label_rule, args.tau, args.horizon, args.remaining, args.acc_gate, args.norm_cap),
        model=model,
        threshold_by=args.threshold_by,
        max_early_share=args.max_early_share,
        frontier=[str(f) for f in args.frontier] if args.frontier else None,
        frontier_slack=args.frontier_slack,
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
            ema_decay=args.ema,
        ),
    )


def fit_and_save(
    cfg: Any,
    out: Path,
    *,
    trained_on: str | None = None,
    latency: bool = True,
    notes: str = "",
    probes: list[Path] | None = None,
) -> dict[str, Any]:
    """Fit a predictor (a FitConfig), save checkpoint, report JSON and data card; return the report."""
    from smartfrz.predictor.checkpoint import SCHEMA_VERSION, save_checkpoint
    from smartfrz.predictor.fit import run_fit
    from smartfrz.predictor.inference import FreezePredictor
    from smartfrz.predictor.latency import measure_latency
    from smartfrz.predictor.report import code_version, report_markdown, utc_now, write_report

    main, data = run_fit(cfg)
    predictor = FreezePredictor(main.net, main.threshold, cfg.label_rule, {})
    report: dict[str, Any] = {
        "trained_on": trained_on or ", ".join(cfg.traces),
        "code_version": code_version(),
        "date": utc_now(),
        "schema_version": SCHEMA_VERSION,
        "label_rule": cfg.label_rule.to_dict(),
        "model_config": main.net.cfg.to_dict(),
        "train_config": cfg.train.to_dict(),
        "group_by": cfg.group_by,
        "min_precision": cfg.min_precision,
        "threshold_by": cfg.threshold_by,
        "max_early_share": cfg.max_early_share,
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
        "latency": measure_latency(predictor) if latency else None,
        "probes": {str(p): json.loads(p.read_text())["per_tau"] for p in probes or []},
        "limits": "trained only on the runs listed in the report; labels come from CKA against each run's own "
        "final model, so a 'converged' layer is one whose representation is already close to its end state. "
        f"Inputs are rounded to the traces' sample precision ({main.net.cfg.sample_dtype}) before the embedding. "
        + notes,
    }
    meta = {k: report[k] for k in ("trained_on", "code_version", "date", "label_rule", "threshold_met_on_val")}
    meta["test_metrics"] = {name: m["test"]["all"] for name, m in main.metrics.items()}
    save_checkpoint(out, main.net, main.threshold, cfg.label_rule, meta)
    json_path, card_path = write_report(report, out.with_suffix(""))
    print(report_markdown(report))
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB), {json_path}, {card_path}")
    return report


def run(args: argparse.Namespace) -> int:
    """Fit and save."""
    import torch

    torch.set_num_threads(args.threads)
    fit_and_save(
        fit_config(args),
        args.out,
        trained_on=args.trained_on,
        latency=not args.no_latency,
        notes=args.notes,
        probes=args.probes,
    )
    return 0
