"""How well a label rule's freeze schedule matches the probe-measured frontier, per run and per family.

Per block, a rule freezes before the frontier (unsafe: the probes say that loses accuracy), after it
(late: savings lost) or exactly at it. Savings are traced parameter x step shares (``frozen_share``).
The rule to choose is the one with the most net savings: the frontier's savings it takes minus the
share it freezes before the frontier. Counting unsafe blocks instead would weigh a block frozen one
snapshot early (within probe noise) like one frozen at 10% of training instead of 80%, and would always
pick the rule that freezes least. Whether that choice carries to unseen families is checked by choosing
on all families but one and scoring the held-out one (``held_out``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from smartfrz.calibration.frontier_probes import frozen_share
from smartfrz.calibration.probes import rule_schedule
from smartfrz.predictor.labels import LabelRule
from smartfrz.traces import RunRecord


@dataclass
class RuleMatch:
    """One rule on one run: its freeze snapshots against the frontier's."""

    run_id: str
    family: str
    rule: str  # LabelRule.key
    rule_at: list[int]  # snapshot per freezable block (T = never)
    frontier: list[int]
    exact: int
    late: int
    unsafe: list[dict[str, float]]  # block, at, frontier (fractions of training; 1 = never)
    frontier_share: float  # savings at the frontier
    lost_share: float  # of those, lost by freezing after the frontier
    unsafe_share: float  # savings taken before the frontier (param x step frozen too early)


def match_schedule(run: RunRecord, rule_key: str, rule_at: Sequence[int], frontier: Sequence[int]) -> RuleMatch:
    """Compare freeze snapshots ``rule_at`` with ``frontier`` block by block."""
    r, f = np.asarray(rule_at, dtype=np.int64), np.asarray(frontier, dtype=np.int64)
    if r.shape != f.shape:
        raise ValueError(f"run {run.run_id}: {len(r)} rule freeze times for a frontier of {len(f)} blocks")
    ends = np.append(run.steps, run.steps[-1]) / float(run.steps[-1])  # index T (never): 1
    unsafe = [{"block": int(b), "at": float(ends[r[b]]), "frontier": float(ends[f[b]])} for b in np.flatnonzero(r < f)]
    front = frozen_share(run, f)
    return RuleMatch(
        run_id=run.run_id,
        family=run.info.family,
        rule=rule_key,
        rule_at=r.tolist(),
        frontier=f.tolist(),
        exact=int((r == f).sum()),
        late=int((r > f).sum()),
        unsafe=unsafe,
        frontier_share=front,
        lost_share=front - frozen_share(run, np.maximum(r, f)),
        unsafe_share=frozen_share(run, np.minimum(r, f)) - front,
    )


def match_rule(run: RunRecord, rule: LabelRule, frontier: Sequence[int]) -> RuleMatch:
    """The rule's schedule on ``run`` against its frontier."""
    return match_schedule(run, rule.key, rule_schedule(run, rule), frontier)


def aggregate_matches(ms: Sequence[RuleMatch]) -> dict[str, Any]:
    """Counts and mean shares over some matches of one rule."""
    blocks = sum(len(m.frontier) for m in ms)
    front = float(np.mean([m.frontier_share for m in ms]))
    lost = float(np.mean([m.lost_share for m in ms]))
    early = float(np.mean([m.unsafe_share for m in ms]))
    return {
        "runs": len(ms),
        "blocks": blocks,
        "exact": sum(m.exact for m in ms),
        "late": sum(m.late for m in ms),
        "unsafe": sum(len(m.unsafe) for m in ms),
        "runs_with_unsafe": sum(bool(m.unsafe) for m in ms),
        "frontier_share": front,
        "lost_share": lost,
        "unsafe_share": early,
        "captured": (front - lost) / front if front > 0 else float("nan"),
        "net_share": front - lost - early,
    }


def _best(per_rule: dict[str, dict[str, Any]]) -> str | None:
    """The rule with the most net savings (taken at or after the frontier, minus frozen before it)."""
    return max(per_rule, key=lambda k: (per_rule[k]["net_share"], -per_rule[k]["unsafe"]), default=None)


def _held_out(matches: Sequence[RuleMatch], rules: list[str], fams: list[str]) -> dict[str, dict[str, Any]]:
    """Per family: the rule chosen on the other families and how it does on this one (empty with one family)."""
    if len(fams) < 2:
        return {}
    out = {}
    for fam in fams:
        rest = {k: aggregate_matches([m for m in matches if m.rule == k and m.family != fam]) for k in rules}
        chosen = _best(rest)
        out[fam] = {"rule": chosen, **aggregate_matches([m for m in matches if m.rule == chosen and m.family == fam])}
    return out


def summarise_matches(matches: Sequence[RuleMatch]) -> dict[str, Any]:
    """Per rule, overall and per family; the best rule overall and per family; the held-out-family choice."""
    rules = list(dict.fromkeys(m.rule for m in matches))
    fams = sorted({m.family for m in matches})
    per_rule = {k: aggregate_matches([m for m in matches if m.rule == k]) for k in rules}
    per_family = {
        f: {k: aggregate_matches([m for m in matches if m.rule == k and m.family == f]) for k in rules} for f in fams
    }
    return {
        "per_rule": per_rule,
        "per_family": per_family,
        "best": _best(per_rule),
        "best_per_family": {f: _best(per_family[f]) for f in fams},
        "held_out": _held_out(matches, rules, fams),
        "matches": [asdict(m) for m in matches],
    }
