"""The frontier report: per-family totals and the markdown tables of `smartfrz probes frontier`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from smartfrz.calibration.frontier_probes import RunFrontier


def summarise_frontiers(runs: Sequence[RunFrontier]) -> dict[str, Any]:
    """Every run's frontier, and per family: runs, mean frozen share at the frontier, probes used."""
    fams = sorted({r.family for r in runs})
    per_family = {}
    for fam in fams:
        rs = [r for r in runs if r.family == fam]
        per_family[fam] = {
            "runs": len(rs),
            "mean_frozen_share": float(np.mean([r.frozen_share for r in rs])),
            "probes": sum(r.probes for r in rs),
            "new_probes": sum(r.new_probes for r in rs),
        }
    return {"runs": [asdict(r) for r in runs], "per_family": per_family}


def _block_cell(run: dict[str, Any]) -> str:
    """Each block's frontier as ``t (step, % of training)``, or ``never``."""
    cells = [
        f"{t} ({s}, {frac:.0%})" if s is not None else "never"
        for t, s, frac in zip(run["frontier"], run["frontier_steps"], run["frontier_fraction"], strict=True)
    ]
    return "; ".join(cells)


def _accs(per_seed: dict[str, float]) -> str:
    """``s0: 0.9777, s1: 0.9833``."""
    return ", ".join(f"s{s}: {a:.4f}" for s, a in per_seed.items())


def _runs_table(summary: dict[str, Any]) -> list[str]:
    """One row per run: the frontier, probes used, frozen share, accuracies, replay check, probe time."""
    out = [
        "| run | family | seeds | frontier per block: snapshot (step, % of training) | probes (new) "
        "| frozen share | trace acc | unfrozen acc per seed | probe SE (median, pts) | replay err | probe time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["runs"]:
        err = "-" if r["replay_max_abs_err"] is None else f"{r['replay_max_abs_err']:.1e}"
        out.append(
            f"| {r['run_id']} | {r['family']} | {len(r['seeds'])} | {_block_cell(r)} | {r['probes']} "
            f"({r['new_probes']}) | {r['frozen_share']:.1%} | {r['trace_acc']:.4f} | {_accs(r['reference_acc'])} "
            f"| {_points(median_se(r))} | {err} | {r['probe_time_s']:.0f} |"
        )
    return out


def _family_table(summary: dict[str, Any]) -> list[str]:
    """One row per family: runs, mean frozen share at the frontier, probes used."""
    out = ["| family | runs | mean frozen share | probes (new) |", "|---|---|---|---|"]
    for fam, s in summary["per_family"].items():
        out.append(f"| {fam} | {s['runs']} | {s['mean_frozen_share']:.1%} | {s['probes']} ({s['new_probes']}) |")
    return out


def paired_se(acc: dict[str, float], reference: dict[str, float]) -> float:
    """Standard error (points) of a probe's mean loss: the spread of its per-seed paired changes over sqrt(n).

    NaN with fewer than two seeds. A frontier step smaller than about two of these is within probe noise.
    """
    diffs = [100.0 * (acc[s] - reference[s]) for s in acc if s in reference]
    return float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) >= 2 else float("nan")


def median_se(run: dict[str, Any]) -> float:
    """Median paired standard error (points) over a run's trials that freeze something (freezing after the
    last snapshot or never is the unfrozen run again: zero spread); NaN when no such trial has two seeds."""
    freezing = [t for t in run["trials"] if min(t["schedule"]) < run["n_snapshots"] - 1]
    ses = [paired_se(t["acc"], run["reference_acc"]) for t in freezing]
    ses = [v for v in ses if np.isfinite(v)]
    return float(np.median(ses)) if ses else float("nan")


def _trials_table(summary: dict[str, Any]) -> list[str]:
    """Every schedule the searches tried (monotonicity is assumed; these show where noise may break it)."""
    out = [
        "| run | block | at snapshot | mean loss (pts) | ± SE (pts) | safe | accuracy per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["runs"]:
        for t in r["trials"]:
            se = paired_se(t["acc"], r["reference_acc"])
            out.append(
                f"| {r['run_id']} | {t['block']} | {t['at']} | {t['loss_points']:.2f} | {_points(se)} "
                f"| {'yes' if t['safe'] else 'no'} | {_accs(t['acc'])} |"
            )
    return out


def _points(value: float) -> str:
    """``0.23`` or ``-`` for NaN."""
    return "-" if not np.isfinite(value) else f"{value:.2f}"


def _match_tables(match: dict[str, Any]) -> list[str]:
    """Per rule and family: blocks exact / late / unsafe, savings lost and captured; the unsafe freezes."""
    out = [
        "| rule | family | runs | blocks | exact | late | unsafe | runs with unsafe | frontier share | lost "
        "| captured | frozen early | net |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(k, "all", s) for k, s in match["per_rule"].items()]
    rows += [(k, fam, s) for fam, per in match["per_family"].items() for k, s in per.items()]
    for key, fam, s in rows:
        captured = "-" if np.isnan(s["captured"]) else f"{s['captured']:.0%}"
        out.append(
            f"| {key} | {fam} | {s['runs']} | {s['blocks']} | {s['exact']} | {s['late']} | {s['unsafe']} "
            f"| {s['runs_with_unsafe']} | {s['frontier_share']:.1%} | {s['lost_share']:.1%} | {captured} "
            f"| {s['unsafe_share']:.1%} | {s['net_share']:.1%} |"
        )
    best = ", ".join(f"{fam}: {k}" for fam, k in match["best_per_family"].items())
    out += [
        "",
        f"Best rule (most net savings: the frontier's savings taken, minus the share frozen before the frontier): "
        f"{match['best']}; per family: {best}. Captured: the frontier's savings a rule takes (late blocks lose some).",
    ]
    if match.get("held_out"):
        out += [
            "",
            "Chosen without the family (best net savings on the others), scored on it:",
            "",
            "| held-out family | rule chosen on the rest | unsafe | captured | frozen early | net | best net here |",
            "|---|---|---|---|---|---|---|",
        ]
        for fam, h in match["held_out"].items():
            top = match["per_family"][fam][match["best_per_family"][fam]]["net_share"]
            out.append(
                f"| {fam} | {h['rule']} | {h['unsafe']}/{h['blocks']} | {h['captured']:.0%} | {h['unsafe_share']:.1%} "
                f"| {h['net_share']:.1%} | {top:.1%} |"
            )
    unsafe = [(m, u) for m in match["matches"] for u in m["unsafe"]]
    if unsafe:
        out += ["", "| rule | run | block | frozen at | frontier |", "|---|---|---|---|---|"]
        out += [
            f"| {m['rule']} | {m['run_id']} | {u['block']} | {u['at']:.0%} | {u['frontier']:.0%} |" for m, u in unsafe
        ]
    return out


def frontier_markdown(summary: dict[str, Any]) -> str:
    """The frontier per run, every trial, and (when rules were given) their match to the frontier."""
    lines = [
        "# Freeze frontier",
        "",
        f"Per block, the earliest snapshot at which freezing the prefix loses at most {summary['tol']:g} points "
        f"(mean over {summary['seeds']} seed(s), each against its own unfrozen run). Traces: {summary['traces']}; "
        f"code {summary['code_version']}; {summary['date']}. Frozen share: traced parameter x step updates skipped. "
        "Probe SE: the standard error of a probe's mean loss over its seeds; a tolerance near it makes the "
        "frontier noisy.",
        "",
        *_runs_table(summary),
        "",
        *_family_table(summary),
        "",
        "## Trials",
        "",
        *_trials_table(summary),
    ]
    if summary.get("match"):
        lines += ["", "## Label rules against the frontier", "", *_match_tables(summary["match"])]
    return "\n".join(lines) + "\n"
