"""Summarise a collection from its run files: finished/flagged/failed runs, time, sizes, accuracy per task."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from smartfrz.collection.grid import RunSpec
from smartfrz.collection.workers import RunOutcome, run_path
from smartfrz.traces.reader import TraceFormatError, validate_file


def build_summary(
    specs: Sequence[RunSpec], outcomes: Sequence[RunOutcome], out_dir: Path, elapsed_s: float
) -> dict[str, Any]:
    """Read every grid run's file (present or not) and aggregate; failures come from ``outcomes``."""
    failed = {o.run_id: o.error.strip().splitlines()[-1] for o in outcomes if o.state == "failed"}
    runs, missing = [], []
    for spec in specs:
        path = run_path(out_dir, spec)
        if not path.exists():
            if spec.run_id not in failed:
                missing.append(spec.run_id)
            continue
        try:
            (info,) = validate_file(path)
        except (TraceFormatError, ValueError) as err:
            failed[spec.run_id] = f"invalid file: {err}"
            continue
        runs.append(
            {
                "run_id": info.run_id,
                "task": info.task,
                "family": info.family,
                "scenario": info.scenario,
                "lr": info.lr,
                "seed": info.seed,
                "status": info.status,
                "flag_reason": info.flag_reason,
                "final_val_acc": info.final_val_acc,
                "wall_time_s": float(info.attrs["wall_time_s"]),
                "n_snapshots": info.n_snapshots,
                "n_layers": info.n_layers,
                "file_bytes": path.stat().st_size,
            }
        )
    per_task: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        per_task[r["task"]].append(r)
    tasks = {}
    for name, rs in sorted(per_task.items()):
        ok = [r for r in rs if r["status"] == "ok"]
        accs = [r["final_val_acc"] for r in ok]
        tasks[name] = {
            "family": rs[0]["family"],
            "scenario": rs[0]["scenario"],
            "runs": len(rs),
            "ok": len(ok),
            "final_val_acc_mean": mean(accs) if accs else None,
            "final_val_acc_min": min(accs) if accs else None,
            "final_val_acc_max": max(accs) if accs else None,
            "mean_run_time_s": mean(r["wall_time_s"] for r in rs),
            "mean_file_mb": mean(r["file_bytes"] for r in rs) / 2**20,
            "n_snapshots": sorted({r["n_snapshots"] for r in rs}),
            "n_layers": rs[0]["n_layers"],
        }
    return {
        "out_dir": str(out_dir),
        "grid_runs": len(specs),
        "finished_ok": sum(r["status"] == "ok" for r in runs),
        "flagged": [{"run_id": r["run_id"], "reason": r["flag_reason"]} for r in runs if r["status"] != "ok"],
        "failed": [{"run_id": k, "error": v} for k, v in sorted(failed.items())],
        "missing": missing,
        "resumed_skipped": sum(o.state == "skipped" for o in outcomes),
        "elapsed_s": elapsed_s,
        "sum_run_wall_time_s": sum(r["wall_time_s"] for r in runs),
        "total_file_mb": sum(r["file_bytes"] for r in runs) / 2**20,
        "tasks": tasks,
        "runs": runs,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable table of a summary."""
    lines = [
        f"collection in {summary['out_dir']}: {summary['finished_ok']}/{summary['grid_runs']} runs ok, "
        f"{len(summary['flagged'])} flagged, {len(summary['failed'])} failed, {len(summary['missing'])} missing "
        f"({summary['resumed_skipped']} already done); {summary['elapsed_s']:.0f} s elapsed, "
        f"{summary['sum_run_wall_time_s']:.0f} s of runs, {summary['total_file_mb']:.1f} MiB of run files",
        f"{'task':28s} {'scenario':9s} {'runs':>4s} {'ok':>3s} {'acc mean':>8s} {'min':>6s} {'max':>6s} "
        f"{'s/run':>6s} {'MiB/run':>7s} {'T':>7s} {'L':>3s}",
    ]
    for name, t in summary["tasks"].items():
        acc = (
            f"{t['final_val_acc_mean']:8.4f} {t['final_val_acc_min']:6.3f} {t['final_val_acc_max']:6.3f}"
            if t["ok"]
            else f"{'-':>8s} {'-':>6s} {'-':>6s}"
        )
        snaps = "/".join(str(n) for n in t["n_snapshots"])
        lines.append(
            f"{name:28s} {t['scenario']:9s} {t['runs']:4d} {t['ok']:3d} {acc} "
            f"{t['mean_run_time_s']:6.1f} {t['mean_file_mb']:7.2f} {snaps:>7s} {t['n_layers']:3d}"
        )
    for f in summary["flagged"]:
        lines.append(f"FLAGGED {f['run_id']}: {f['reason']}")
    for f in summary["failed"]:
        lines.append(f"FAILED  {f['run_id']}: {f['error']}")
    for m in summary["missing"]:
        lines.append(f"MISSING {m}")
    return "\n".join(lines)


def save_summary(summary: dict[str, Any], path: Path) -> None:
    """Write the summary as JSON."""
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
