"""Paired summaries of the raw runs: accuracy difference, FLOPs and wall-clock saved, targets, markdown.

Every difference is taken against the 'none' run of the same task and seed; means and spreads
(sample standard deviation) are over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from smartfrz.bench.policies import MAIN_POLICIES, PolicySpec
from smartfrz.zoo import get_task

TARGET_FLOPS = {"finetune": 0.40, "scratch": 0.25}  # training FLOPs SmartFRZ+cache should save (issue 11)
TARGET_WALL = {"finetune": 0.30, "scratch": 0.25}
TARGET_ACC_POINTS = 0.3
TARGET_WORST_SEED_POINTS = 1.0
TARGET_ORACLE_SHARE = 0.70
TARGET_RECORD_PREDICT = 0.01  # recording + prediction, as a share of training time


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd


def _policy_share(run: dict[str, Any]) -> float:
    """Recording + prediction over the run's own measured training time (NaN for runs from before the split).

    A run added from another bench has its training time rescaled to this bench's (``_timed_against``); its
    overhead was measured against the time it actually took.
    """
    if "policy_overhead_s" not in run:
        return math.nan
    return run["policy_overhead_s"] / run.get("train_time_s_measured", run["train_time_s"])


def paired(run: dict[str, Any], none: dict[str, Any]) -> dict[str, float]:
    """One run against the unfrozen run of the same task and seed."""
    if (run["task"], run["seed"]) != (none["task"], none["seed"]) or none["policy"] != "none":
        raise ValueError(f"run {run['task']}/{run['seed']} is not paired with {none['task']}/{none['seed']}/none")
    return {
        "acc": run["val_acc"],
        "delta_points": (run["val_acc"] - none["val_acc"]) * 100.0,
        "flops_saved": run["flops_saved_fraction"] if run["flops_saved_fraction"] is not None else math.nan,
        "wall_saved": 1.0 - run["train_time_s"] / none["train_time_s"],
        "blocks_frozen": run["blocks_frozen"],
        "first_freeze": run["events"][0]["step"] / run["total_steps"] if run["events"] else math.nan,
        "policy_share": _policy_share(run),
    }


def _row(task: str, policy: str, pairs: list[dict[str, float]], freezable: int) -> dict[str, Any]:
    scenario = get_task(task.split("@")[0]).scenario  # "task@recipe" names a task under a non-constant lr recipe
    row: dict[str, Any] = {"task": task, "scenario": scenario, "policy": policy, "seeds": len(pairs)}
    for key in ("acc", "delta_points", "flops_saved", "wall_saved", "blocks_frozen", "policy_share"):
        row[key + "_mean"], row[key + "_sd"] = _mean_sd([p[key] for p in pairs])
    firsts = [p["first_freeze"] for p in pairs if not math.isnan(p["first_freeze"])]
    row["first_freeze_mean"] = _mean_sd(firsts)[0] if firsts else None
    row["delta_points_min"] = min(p["delta_points"] for p in pairs)
    row["freezable_blocks"] = freezable
    return row


def _oracle_pairs(raw: dict[str, Any], task: str, nones: dict[int, dict[str, Any]]) -> list[dict[str, float]]:
    """The chosen oracle probe per seed against its none run; no freezing where no schedule kept accuracy."""
    out = []
    for entry in raw.get("oracle", []):
        if entry["task"] != task:
            continue
        none = nones[entry["seed"]]
        if entry["chosen"] is None:
            out.append(paired(none, none))
        else:
            out.append(paired(entry["probes"][entry["chosen"]]["run"], none))
    return out


def targets(rows: list[dict[str, Any]], policy: str) -> dict[str, Any] | None:
    """Whether ``policy`` meets the issue's targets on this task (from means over seeds)."""
    by = {r["policy"]: r for r in rows}
    if policy not in by:
        return None
    r = by[policy]
    share = r.get("policy_share_mean", math.nan)
    out: dict[str, Any] = {
        "policy": policy,
        "flops_saved_target": TARGET_FLOPS[r["scenario"]],
        "flops_saved_meets": r["flops_saved_mean"] >= TARGET_FLOPS[r["scenario"]],
        "wall_saved_target": TARGET_WALL[r["scenario"]],
        "wall_saved_meets": r["wall_saved_mean"] >= TARGET_WALL[r["scenario"]],
        "acc_within_0.3_points": r["delta_points_mean"] >= -TARGET_ACC_POINTS,
        "worst_seed_within_1_point": r["delta_points_min"] >= -TARGET_WORST_SEED_POINTS,
        "record_predict_share": None if math.isnan(share) else share,
    }
    oracle = by.get("oracle")
    if oracle is not None and oracle["flops_saved_mean"] > 0:
        out["share_of_oracle"] = r["flops_saved_mean"] / oracle["flops_saved_mean"]
    for base in ("freezeout", "autofreeze", "freezeout+cache"):  # the last: the same schedule with the cache
        if base in by:
            b = by[base]
            out[f"beats_{base.replace('+', '_')}"] = (
                r["flops_saved_mean"] > b["flops_saved_mean"] and r["delta_points_mean"] >= b["delta_points_mean"]
            )
    return out


def _share(share: float | None) -> str:
    """The recording + prediction target cell: met or not, with the measured share of training time."""
    if share is None:
        return "not measured"
    return f"{'yes' if share <= TARGET_RECORD_PREDICT else 'no'} ({100 * share:.2f}%)"


def _of_oracle(share: float | None) -> str:
    """The oracle target cell: met or not, with the share of the oracle's FLOPs savings (n/a: it saved none)."""
    if share is None:
        return "n/a"
    return f"{'yes' if share >= TARGET_ORACLE_SHARE else 'no'} ({100 * share:.0f}%)"


def _change(loss_points: float) -> str:
    """An oracle probe's accuracy change against its unfrozen run, in the table's sign (gain positive)."""
    return f"{-loss_points:+.2f} pts ({'lost' if loss_points > 0 else 'no loss'})"


def merge_shards(shards: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One raw result from bench shards that ran disjoint tasks with otherwise equal settings (one per core)."""
    if not shards:
        raise ValueError("no bench results to merge")
    first = shards[0]
    settings = {k: v for k, v in first["config"].items() if k != "tasks"}
    seen: set[str] = set()
    for i, shard in enumerate(shards):
        other = {k: v for k, v in shard["config"].items() if k != "tasks"}
        changed = sorted(k for k in settings.keys() | other.keys() if settings.get(k) != other.get(k))
        if changed:
            raise ValueError(f"bench shard {i} ran with other settings than shard 0: {changed}")
        if shard.get("predictor") != first.get("predictor"):
            raise ValueError(f"bench shard {i} used another predictor than shard 0")
        tasks = set(shard["config"]["tasks"])
        if tasks & seen:
            raise ValueError(f"tasks {sorted(tasks & seen)} appear in more than one bench shard")
        seen |= tasks
    merged = {k: v for k, v in first.items() if k != "summary"}
    merged["config"] = {**first["config"], "tasks": [t for s in shards for t in s["config"]["tasks"]]}
    merged["runs"] = [r for s in shards for r in s["runs"]]
    merged["oracle"] = [o for s in shards for o in s["oracle"]]
    merged["command"] = " ; ".join(s.get("command", "") for s in shards)
    return merged


PAIRING_SETTINGS = ("seeds", "recipes", "snapshots", "max_train", "max_val", "epochs", "batch_size", "cache_dtype")
"""Settings two bench results must share for their runs of one seed to be the same training run."""


def _timed_against(run: dict[str, Any], own_none: dict[str, Any], base_none: dict[str, Any]) -> dict[str, Any]:
    """``run`` with its training time rescaled to ``base_none``'s: the wall-clock ratio stays the one measured
    side by side with ``own_none`` in the same bench (times from two benches are not comparable)."""
    scale = base_none["train_time_s"] / own_none["train_time_s"]
    return {**run, "train_time_s": run["train_time_s"] * scale, "train_time_s_measured": run["train_time_s"]}


def add_policies(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the policies ``extra`` ran (other than 'none') taken from ``extra`` instead, on its tasks.

    For trying a new predictor (or rerunning SmartFRZ after a change) without re-running the other policies
    and the oracle: the two results must share the pairing settings, and every seed's 'none' run must end
    exactly alike (accuracy, steps, FLOPs), which shows both trained the same runs. ``extra`` may cover only
    some of ``base``'s tasks, with policies ``base`` has and, for SmartFRZ ones, the same predictor (a table
    must not mix two, nor leave a policy without runs on some task). Wall-clock savings of the added runs
    stay those measured against ``extra``'s own 'none' runs.
    """
    changed = [k for k in PAIRING_SETTINGS if base["config"].get(k) != extra["config"].get(k)]
    added = [p for p in extra["config"]["policies"] if p != "none"]
    new_predictor = any(PolicySpec.parse(p).needs_predictor for p in added)
    tasks = set(extra["config"]["tasks"])
    if not tasks <= set(base["config"]["tasks"]):
        changed.append("tasks")
    elif tasks != set(base["config"]["tasks"]):  # some of the tasks
        if not set(added) <= set(base["config"]["policies"]):
            changed.append("policies (new ones on a subset of the tasks)")
        if new_predictor and extra.get("predictor") != base.get("predictor"):
            changed.append("predictor (on a subset of the tasks)")
    if changed:
        raise ValueError(f"the added bench results ran with other settings: {changed}")

    def nones(raw: dict[str, Any]) -> dict[tuple[str, int], tuple[Any, ...]]:
        keys = ("val_acc", "total_steps", "flops_full")
        return {
            (r["task"], r["seed"]): tuple(r[k] for k in keys)
            for r in raw["runs"]
            if r["policy"] == "none" and r["task"].split("@")[0] in tasks
        }

    ours, theirs = nones(base), nones(extra)
    unpaired = sorted(f"{t} seed {s}" for t, s in ours.keys() | theirs.keys() if ours.get((t, s)) != theirs.get((t, s)))
    if unpaired:
        raise ValueError(f"the 'none' runs differ, so the results are not paired: {unpaired[:5]}")
    merged = {k: v for k, v in base.items() if k != "summary"}
    policies = [p for p in base["config"]["policies"] if p not in added] + added
    source = extra if new_predictor else base  # the predictor of the SmartFRZ rows the merged table shows
    merged["config"] = {**base["config"], "policies": policies, "predictor": source["config"].get("predictor")}
    merged["predictor"] = source.get("predictor")
    extra_none = {(r["task"], r["seed"]): r for r in extra["runs"] if r["policy"] == "none"}
    base_none = {(r["task"], r["seed"]): r for r in base["runs"] if r["policy"] == "none"}
    merged["runs"] = [r for r in base["runs"] if r["policy"] not in added or r["task"].split("@")[0] not in tasks] + [
        _timed_against(r, extra_none[r["task"], r["seed"]], base_none[r["task"], r["seed"]])
        for r in extra["runs"]
        if r["policy"] in added
    ]
    merged["command"] = f"{base.get('command', '')} ; policies {added} from: {extra.get('command', '')}"
    merged["added_policies"] = added
    return merged


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Per task and policy, paired means and spreads over seeds, the oracle row, and the targets."""
    policies = raw["config"]["policies"]
    tasks = list(dict.fromkeys(r["task"] for r in raw["runs"]))  # task@recipe labels in run order
    rows, checks = [], []
    for task in tasks:
        runs = [r for r in raw["runs"] if r["task"] == task]
        nones = {r["seed"]: r for r in runs if r["policy"] == "none"}
        freezable = len(runs[0]["blocks"]) - 1
        task_rows = []
        for policy in policies:
            pairs = [paired(r, nones[r["seed"]]) for r in runs if r["policy"] == policy]
            task_rows.append(_row(task, policy, pairs, freezable))
        oracle = _oracle_pairs(raw, task, nones)
        if oracle:
            task_rows.append(_row(task, "oracle", oracle, freezable))
        rows += task_rows
        main = next((p for p in MAIN_POLICIES if p in policies), "smartfrz")
        check = targets(task_rows, main)
        if check is not None:
            checks.append({"task": task, **check})
    return {"rows": rows, "targets": checks}


def _pm(mean: float | None, sd: float, scale: float = 1.0, digits: int = 1) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def markdown(summary: dict[str, Any], raw: dict[str, Any]) -> str:
    """The results table, the targets and the oracle's choices as markdown."""
    lines = [
        "| task (scenario) | policy | val acc % | Δacc (points) | FLOPs saved % | wall-clock saved % "
        "| blocks frozen | first freeze |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        first = "never" if r["first_freeze_mean"] is None else f"{100 * r['first_freeze_mean']:.0f}% of steps"
        lines.append(
            f"| {r['task']} ({r['scenario']}) | {r['policy']} | {_pm(r['acc_mean'], r['acc_sd'], 100)} "
            f"| {_pm(r['delta_points_mean'], r['delta_points_sd'], 1, 2)} "
            f"| {_pm(r['flops_saved_mean'], r['flops_saved_sd'], 100)} "
            f"| {_pm(r['wall_saved_mean'], r['wall_saved_sd'], 100)} "
            f"| {r['blocks_frozen_mean']:.1f} / {r['freezable_blocks']} | {first} |"
        )
    lines += ["", "Targets (means over seeds):", ""]
    lines += [
        "| task | policy | FLOPs saved >= target | wall-clock saved >= target | Δacc >= -0.3 | no seed below -1.0 "
        "| beats FreezeOut | beats AutoFreeze | beats FreezeOut+cache | >= 70% of the oracle "
        "| recording + prediction <= 1% |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def yn(value: Any) -> str:
        return "n/a" if value is None else ("yes" if value else "no")

    for t in summary["targets"]:
        lines.append(
            f"| {t['task']} | {t['policy']} | {yn(t['flops_saved_meets'])} (>= {100 * t['flops_saved_target']:.0f}%) "
            f"| {yn(t['wall_saved_meets'])} (>= {100 * t['wall_saved_target']:.0f}%) "
            f"| {yn(t['acc_within_0.3_points'])} | {yn(t['worst_seed_within_1_point'])} "
            f"| {yn(t.get('beats_freezeout'))} | {yn(t.get('beats_autofreeze'))} "
            f"| {yn(t.get('beats_freezeout_cache'))} | {_of_oracle(t.get('share_of_oracle'))} "
            f"| {_share(t.get('record_predict_share'))} |"
        )
    if raw.get("oracle"):
        lines += ["", "Oracle (CKA-ladder schedules probed from the earliest; kept: first within the tolerance):", ""]
        for entry in raw["oracle"]:
            tried = ", ".join(f"tau {p['tau']:g}: {_change(p['loss_points'])}" for p in entry["probes"]) or "none"
            kept = "no freezing" if entry["chosen"] is None else f"tau {entry['probes'][entry['chosen']]['tau']:g}"
            lines.append(f"- {entry['task']} seed {entry['seed']}: tried {tried}; kept {kept}")
    return "\n".join(lines) + "\n"
