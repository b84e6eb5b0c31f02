"""What ``Freezer.summary()`` returns: a readable table when printed, a plain dict for machines."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


def percent_of(step: int, total: int | None) -> str:
    """`` (30% of training)`` when the planned length is known, else nothing."""
    return f" ({100 * step / total:.0f}% of training)" if total else ""


def score_text(score: float | None, threshold: float | None) -> str:
    """A policy score as text: ``P=0.970 >= 0.924`` against a threshold, else the bare score."""
    if score is None:
        return "-"
    if threshold is None:
        return f"score {score:.3g}"
    return f"P={score:.3f} {'>=' if score >= threshold else '<'} {threshold:.3f}"


def freeze_text(score: float | None, threshold: float | None, backstop: bool = False) -> str:
    """Why a block froze: its score, and ``by the backstop schedule`` when the backstop froze it (SmartFRZ).

    Events saved before they carried ``backstop`` are inferred: a SmartFRZ score below the threshold.
    """
    text = score_text(score, threshold) if score is not None else "no score yet"
    if backstop or (score is not None and threshold is not None and score < threshold):
        text += ", by the backstop schedule"
    return text


def _flops(n: float) -> str:
    """A FLOP count with an SI prefix."""
    for scale, unit in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}FLOP"
    return f"{n:.0f} FLOP"


def _bytes(n: float) -> str:
    """A byte count in binary units."""
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


@dataclass(eq=False, repr=False)
class FreezerSummary(Mapping[str, Any]):
    """Blocks frozen and when, FLOPs saved, cache statistics, the freezer's own time and the latest scores.

    ``print(summary)`` shows a short table; ``summary["steps"]``, ``dict(summary)`` and
    :meth:`to_dict` give the machine form (the keys of the dict ``summary()`` used to return, plus
    ``total_steps``, ``block_names``, ``scores``, ``scores_step`` and ``threshold``).
    """

    policy: dict[str, Any]
    steps: int
    total_steps: int | None
    block_names: list[str]
    blocks_frozen: int
    events: list[dict[str, Any]]
    flops: dict[str, float | None]
    cache: dict[str, float | int] | None
    overhead_s: float
    policy_s: float = 0.0  # the part of overhead_s spent by the policy: recording and prediction
    scores: dict[str, float] = field(default_factory=dict)  # latest score of each unfrozen block, by name
    scores_step: int | None = None  # the step those scores were computed at
    threshold: float | None = None  # the score a block needs to freeze (SmartFRZ), when there is one
    window: tuple[int, int] | None = None  # (snapshots recorded, window) while SmartFRZ's first window fills

    def to_dict(self) -> dict[str, Any]:
        """The machine form: plain values only."""
        return {
            "policy": self.policy,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "blocks_total": len(self.block_names),
            "blocks_frozen": self.blocks_frozen,
            "frozen_blocks": self.block_names[: self.blocks_frozen],
            "block_names": self.block_names,
            "events": self.events,
            **self.flops,
            "cache": self.cache,
            "overhead_s": self.overhead_s,
            "policy_s": self.policy_s,
            "scores": self.scores,
            "scores_step": self.scores_step,
            "threshold": self.threshold,
        }

    def __getitem__(self, key: str) -> Any:
        """One entry of :meth:`to_dict`."""
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        """The keys of :meth:`to_dict`."""
        return iter(self.to_dict())

    def __len__(self) -> int:
        """Number of keys of :meth:`to_dict`."""
        return len(self.to_dict())

    def _block_rows(self) -> list[str]:
        """One line per block: frozen when, or its latest score, or the head."""
        frozen_at = {e["block"]: e for e in self.events}
        width = max(len(n) for n in self.block_names) + 2
        rows = []
        for b, name in enumerate(self.block_names):
            if b == len(self.block_names) - 1:
                state = "head, never freezes"
            elif b < self.blocks_frozen:
                event = frozen_at.get(b)
                state = (
                    "frozen"
                    if event is None
                    else f"frozen at step {event['step']}{percent_of(event['step'], self.total_steps)}"
                )
                if event is not None and (event.get("score") is not None or event.get("backstop")):
                    state += f", {freeze_text(event['score'], self.threshold, event.get('backstop', False))}"
            else:
                score = self.scores.get(name)
                state = f"training, {score_text(score, self.threshold)}"
                if (
                    score is not None
                    and self.threshold is not None
                    and score >= self.threshold
                    and b > self.blocks_frozen
                ):
                    state += " (waits: blocks freeze in order)"
            rows.append(f"  {b:>3}  {name!r:<{width}} {state}")
        return rows

    def __str__(self) -> str:
        """A short table for people."""
        name = self.policy.get("name", "?")
        of_total = f" of {self.total_steps}" if self.total_steps else ""
        lines = [
            f"smartfrz summary: policy {name}, {self.steps}{of_total} steps, "
            f"{self.blocks_frozen} of {len(self.block_names) - 1} freezable blocks frozen"
        ]
        lines += self._block_rows()
        if self.scores_step is not None and self.threshold is not None:
            backstop = self.policy.get("backstop")
            latest = f", or on FreezeOut's t0={backstop:g} schedule at the latest" if backstop is not None else ""
            lines.append(
                f"  scores from step {self.scores_step}; a block freezes when P >= {self.threshold:.3f}{latest}"
            )
        if self.window is not None:
            lines.append(f"  no scores yet: {self.window[0]} of {self.window[1]} snapshots of the first window")
        full, saved = self.flops.get("flops_full"), self.flops.get("flops_saved")
        if full is None or saved is None:
            lines.append("FLOPs saved:  not measured")
        else:
            fraction = saved / full if full else 0.0
            lines.append(f"FLOPs saved:  {100 * fraction:.1f}% ({_flops(saved)} of {_flops(full)})")
        if self.cache is None:
            lines.append("cache:        off")
        else:
            c = self.cache
            lines.append(
                f"cache:        hit rate {100 * float(c['hit_rate']):.1f}%, {c['rows']} rows, "
                f"{_bytes(float(c['bytes']))} (room for {c['capacity_rows']} rows)"
            )
        per_step = f" ({1e3 * self.overhead_s / self.steps:.2f} ms/step)" if self.steps else ""
        lines.append(f"overhead:     {self.overhead_s:.3f} s in freezer.step(){per_step}")
        lines.append(
            f"              {self.policy_s:.3f} s recording and prediction, "
            f"{max(0.0, self.overhead_s - self.policy_s):.3f} s freezing (and filling the cache)"
        )
        return "\n".join(lines)

    __repr__ = __str__
