"""Fit report (JSON + markdown) and the data card shipped beside a checkpoint."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smartfrz._version import code_version as code_version  # re-exported for fit_predictor
from smartfrz.predictor.labels import DEFAULT_HORIZON, LabelRule
from smartfrz.train_context import LEGACY_CONTEXT

_COLS = ("n", "positives", "roc_auc", "pr_auc", "precision", "recall", "f1")


def utc_now() -> str:
    """ISO-8601 UTC timestamp (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _fmt(v: Any) -> str:
    """Table cell: 3 decimals for floats, '-' for None."""
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _table(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Markdown table of metric dicts, one row per (model, subset)."""
    lines = ["| model | subset | " + " | ".join(_COLS) + " |", "|" + "---|" * (len(_COLS) + 2)]
    lines += [f"| {a} | {b} | " + " | ".join(_fmt(m.get(c)) for c in _COLS) + " |" for a, b, m in rows]
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: data, threshold, test metrics, leave-one-family-out, latency."""
    d = report["data"]
    lines = [
        f"Label rule: `{report['label_rule']}`; window W={report['model_config']['window']}, "
        f"K={report['model_config']['k']}; {d['windows']} windows, {d['positive_fraction']:.1%} positive; "
        f"runs per family: {d['runs_per_family']}.",
        f"Split (grouped by {report['group_by']} within family): "
        + ", ".join(f"{s}: {v['runs']} runs / {v['windows']} windows" for s, v in d["split"].items())
        + ".",
        (
            f"Threshold {_validation_threshold(report):.4f}, chosen on validation for precision >= "
            f"{report['min_precision']}"
            + ("" if report["threshold_met_on_val"] else " (target NOT reached on validation: highest precision used)")
            if report.get("threshold_by", "precision") == "precision"
            else f"Threshold {_validation_threshold(report):.4f}: the lowest whose replay on the validation runs froze "
            "at most "
            f"{report.get('max_early_share', 0.1):.0%} of blocks before their label frontier"
        )
        + "."
        + _frontier_threshold_line(d.get("frontier_threshold")),
        "",
        "### Test split (held-out runs), threshold chosen on validation per model",
        "",
    ]
    rows = [(name, fam, m) for name, res in report["metrics"].items() for fam, m in res["test"].items()]
    lines += _table(rows)
    sims = [
        (name, fam, s)
        for name, res in report["metrics"].items()
        if "simulation" in res
        for fam, s in [("all", res["simulation"]["all"]), *res["simulation"]["per_family"].items()]
    ]
    if sims:
        lines += ["", "### Policy simulation on the test runs (runtime freeze rule replayed; parameter-time saved)", ""]
        lines += _simulation_table(sims)
    if d["lofo"]:
        lines += ["", "### Leave one family out (trained without the family, scored on it)", ""]
        lines += _table(
            [(name, fam, m) for fam, res in d["lofo"].items() for name, m in res.items() if isinstance(m, dict)]
        )
        lofo_sims = [
            (name, fam, m["simulation"])
            for fam, res in d["lofo"].items()
            for name, m in res.items()
            if isinstance(m, dict) and "simulation" in m
        ]
        if lofo_sims:
            lines += ["", "### Leave one family out: policy simulation on the held-out family's runs", ""]
            lines += _simulation_table(lofo_sims)
    lat = report.get("latency")
    if lat:
        lines += [
            "",
            f"Latency, {lat['n_layers']} layers, 1 CPU thread: incremental stage "
            f"{lat['incremental_stage_ms']:.2f} ms wall, "
            f"{lat['incremental_stage_cpu_ms']:.2f} ms CPU time "
            f"(embed newest {lat['embed_latest_ms']:.2f} ms + attention {lat['attention_ms']:.2f} ms); "
            f"full raw windows {lat['full_window_ms']:.1f} ms. Parameters: {report['parameters']}.",
        ]
    for source, per_tau in report.get("probes", {}).items():
        lines += ["", f"### Freeze probes (label-rule calibration), from {source}", ""]
        lines += probes_markdown({"per_tau": per_tau, "probes": []}).split("\n\n")[0].splitlines()
    t = report["training"]
    lines += ["", f"Training: best epoch {t['best_epoch']} of {t['epochs_run']}, pos_weight {t['pos_weight']:.2f}."]
    return "\n".join(lines) + "\n"


def _simulation_table(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Markdown rows: model, subset, runs, saved, frontier saved, captured, early blocks."""
    out = [
        "| model | subset | runs | saved | frontier saved | captured | blocks frozen early | runs freezing nothing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, fam, s in rows:
        out.append(
            f"| {name} | {fam} | {s['runs']} | {s['saved']:.1%} | {s['frontier_saved']:.1%} | {_fmt(s['captured'])} "
            f"| {s['early_blocks']} ({s['early_block_share']:.0%}) | {s['runs_freezing_nothing']} |"
        )
    return out


def write_report(report: dict[str, Any], stem: Path) -> tuple[Path, Path]:
    """Save ``<stem>.report.json`` and ``<stem>.card.md`` (the data card holds the markdown report)."""
    json_path = stem.with_name(stem.name + ".report.json")
    card_path = stem.with_name(stem.name + ".card.md")
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    card = [
        f"# smartfrz freeze predictor `{stem.name}`",
        "",
        f"- Trained on: {report['trained_on']}",
        f"- Trace sources: {', '.join(report['data']['traces'])}",
        f"- Code version: {report['code_version']}; date: {report['date']}; checkpoint schema "
        f"{report['schema_version']}",
        f"- Intended use: `smartfrz.predictor.load_predictor('{stem.name}')` for the SmartFRZ policy; "
        "P(converged) per layer window, freeze when >= threshold.",
        f"- Context inputs: {', '.join(report['model_config'].get('context', LEGACY_CONTEXT))} (NaN where unknown; "
        "pass the training loss to `freezer.step(loss)` and `total_steps` to the Freezer so they are known).",
        f"- Limits: {report['limits']}",
        "",
        "## Metrics",
        "",
        report_markdown(report),
    ]
    card_path.write_text("\n".join(card))
    return json_path, card_path


def _validation_threshold(report: dict[str, Any]) -> float:
    """The threshold chosen on the validation runs (the shipped one unless a frontier calibration replaced it)."""
    cal = report["data"].get("frontier_threshold")
    return cal["validation_threshold"] if cal else report["threshold"]


def _frontier_threshold_line(cal: dict[str, Any] | None) -> str:
    """The sentence on a threshold calibrated on probe-measured frontiers (empty when there was none)."""
    if not cal:
        return ""
    splits = Counter(cal["runs_split"].values())
    best = max(cal["sweep"], key=lambda row: row["net_saved"])
    return (
        f" Shipped threshold {cal['threshold']:.2f} instead (the validation one, {cal['validation_threshold']:.2f}, "
        f"scores the test tables below): the highest within {cal['slack']:.0%} of the most net savings on "
        f"{len(cal['runs_split'])} runs with probe-measured frontiers ({', '.join(cal['frontier'])}; their splits: "
        f"{dict(splits)}); best net {best['net_saved']:.1%} at {best['threshold']:.2f}."
    )


def probes_markdown(summary: dict[str, Any]) -> str:
    """Freeze-probe results per tau, then per probe."""
    lines = [
        "| rule | probes | mean loss (pts) | worst loss (pts) | std (pts) | runs with freezing | mean frozen share |",
        "|---|---|---|---|---|---|---|",
    ]
    for tau, s in summary["per_tau"].items():
        lines.append(
            f"| {tau} | {s['n']} | {s['mean_loss_points']:.2f} | {s['worst_loss_points']:.2f} | "
            f"{_fmt(s['std_loss_points'])} | {s['runs_with_freezing']} | {s['mean_frozen_param_step_fraction']:.1%} |"
        )
    lines += [
        "",
        "| run | rule | frozen blocks | reference acc | probe acc | loss (pts) | replay err |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["probes"]:
        rule = LabelRule(
            r["rule"],
            r["tau"],
            r.get("horizon", DEFAULT_HORIZON),
            r.get("remaining"),
            r.get("acc_gate"),
            r.get("norm_cap"),
        )
        lines.append(
            f"| {r['run_id']} | {rule.key} "
            f"| {r['frozen_blocks']}/{r['n_blocks'] - 1} "
            f"| {r['reference_acc']:.4f} | {r['probe_acc']:.4f} | {r['acc_loss_points']:.2f} "
            f"| {_fmt(r['replay_max_abs_err'])} |"
        )
    return "\n".join(lines) + "\n"
