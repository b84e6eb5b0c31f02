"""Convergence labels from stored CKA curves; the rule is a fit-time option, not baked into traces."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LABEL_RULES = ("monotone", "pointwise", "horizon", "stable")
PAIRWISE_RULES = ("horizon", "stable")
"""Rules that need the snapshot-pair CKA matrix (``cka_pairs``), not only the curve against the final model."""


@dataclass(frozen=True)
class LabelRule:
    """How CKA becomes a per-snapshot converged/not-converged label.

    monotone: CKA against the final model stays >= tau from t on. pointwise: that CKA at t alone.
    stable: CKA between snapshot t and every later snapshot stays >= tau (the representation at t is
    close to all it becomes, not only to the end). horizon: the same over the next ``horizon`` fraction
    of training only, so the label does not depend on where the run happens to stop.

    ``remaining`` (any rule, off when None) also requires the layer's sampled weights to have covered
    most of their way to the end: ||w_t' - w_T|| <= remaining * ||w_0 - w_T|| at every t' >= t. Linear
    CKA of a layer that projects a low-dimensional input (a ViT patch embedding) is near 1 for almost any
    weights, so CKA alone calls such a layer converged at its initial weights.
    """

    rule: str = "monotone"
    tau: float = 0.999
    horizon: float = 0.25  # fraction of training the horizon rule looks ahead
    remaining: float | None = None  # cap on the weights' remaining distance to the end, relative to the whole

    def __post_init__(self) -> None:
        """Reject unknown rules, thresholds outside (0, 1] and horizons outside (0, 1]."""
        if self.rule not in LABEL_RULES:
            raise ValueError(f"unknown label rule {self.rule!r}; choose one of {LABEL_RULES}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"label tau must be in (0, 1], got {self.tau}")
        if not 0.0 < self.horizon <= 1.0:
            raise ValueError(f"label horizon must be a fraction in (0, 1], got {self.horizon}")
        if self.remaining is not None and not 0.0 <= self.remaining <= 1.0:
            raise ValueError(f"label remaining must be a fraction in [0, 1], got {self.remaining}")

    @property
    def needs_pairs(self) -> bool:
        """True when the rule reads the snapshot-pair CKA matrix."""
        return self.rule in PAIRWISE_RULES

    def describe(self) -> str:
        """One line, e.g. ``horizon CKA >= 0.95 over 25% of training``."""
        extra = f" over {self.horizon:.0%} of training" if self.rule == "horizon" else ""
        if self.remaining is not None:
            extra += f", weights within {self.remaining:g} of their path's end"
        return f"{self.rule} CKA >= {self.tau:g}{extra}"

    @property
    def key(self) -> str:
        """``RULE:TAU`` or ``RULE:TAU:REMAINING``, the form probes and reports name a rule by."""
        tail = f":{self.remaining:g}" if self.remaining is not None else ""
        return f"{self.rule}:{self.tau:g}{tail}"

    @classmethod
    def parse(cls, text: str) -> LabelRule:
        """The rule ``RULE:TAU[:REMAINING]`` names (e.g. ``monotone:0.999:0.5``); ValueError when malformed."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"want RULE:TAU or RULE:TAU:REMAINING, got {text!r}")
        remaining = float(parts[2]) if len(parts) == 3 else None
        return cls(parts[0], float(parts[1]), remaining=remaining)

    def to_dict(self) -> dict[str, object]:
        """Plain dict for checkpoints and reports."""
        return asdict(self)


def label_curves(cka: np.ndarray, rule: LabelRule) -> np.ndarray:
    """Label every (snapshot, layer) of a [T, L] CKA-vs-final array; returns bool [T, L].

    monotone: converged at t when CKA stays >= tau at every later snapshot t' >= t.
    pointwise: converged at t when CKA at t alone is >= tau.
    """
    cka = np.asarray(cka, dtype=np.float64)
    if cka.ndim != 2:
        raise ValueError(f"CKA curves must be [T, L], got shape {cka.shape}")
    if not np.all(np.isfinite(cka)):
        raise ValueError("CKA curves contain non-finite values; flagged runs cannot be labelled")
    if rule.rule == "pointwise":
        return cka >= rule.tau
    suffix_min = np.minimum.accumulate(cka[::-1], axis=0)[::-1]
    return suffix_min >= rule.tau


def label_pairs(pairs: np.ndarray, steps: np.ndarray, rule: LabelRule) -> np.ndarray:
    """Label every (snapshot, layer) from a [T, T, L] snapshot-pair CKA matrix; returns bool [T, L].

    stable: min over t' >= t of CKA(t, t') >= tau. horizon: the same over snapshots whose step is at
    most ``horizon`` x total steps after t; near the end the horizon is cut at the last snapshot.
    """
    pairs = np.asarray(pairs, dtype=np.float64)
    n_t = pairs.shape[0]
    if pairs.ndim != 3 or pairs.shape[1] != n_t or len(steps) != n_t:
        raise ValueError(f"CKA pairs must be [T, T, L] with T = len(steps), got {pairs.shape} and {len(steps)}")
    if not np.all(np.isfinite(pairs)):
        raise ValueError("CKA pairs contain non-finite values; flagged runs cannot be labelled")
    steps = np.asarray(steps, dtype=np.float64)
    reach = steps[-1] * (rule.horizon if rule.rule == "horizon" else 1.0)
    out = np.empty((n_t, pairs.shape[2]), dtype=bool)
    for t in range(n_t):
        ahead = (steps >= steps[t]) & (steps <= steps[t] + reach + 1e-9)
        out[t] = pairs[t, ahead].min(axis=0) >= rule.tau
    return out


def remaining_path(samples: np.ndarray) -> np.ndarray:
    """[T, L] distance of each snapshot's sampled weights [T, L, K] to the last, over the first's (0 <= ...)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3:
        raise ValueError(f"weight samples must be [T, L, K], got shape {samples.shape}")
    to_end = np.linalg.norm(samples - samples[-1:], axis=2)
    whole = to_end[:1]
    return np.where(whole > 0, to_end / np.where(whole > 0, whole, 1.0), 0.0)  # a layer that never moved: 0


def label_run(
    cka: np.ndarray,
    pairs: np.ndarray | None,
    steps: np.ndarray,
    rule: LabelRule,
    samples: np.ndarray | None = None,
) -> np.ndarray:
    """Labels [T, L] of one run under ``rule``; ValueError when the run lacks what the rule reads.

    Pairwise rules read the snapshot-pair CKA ``pairs``; a ``remaining`` cap reads the sampled weights.
    """
    if rule.needs_pairs:
        if pairs is None:
            raise ValueError(f"label rule {rule.rule!r} needs the trace's cka_pairs, which this run lacks")
        labels = label_pairs(pairs, steps, rule)
    else:
        labels = label_curves(cka, rule)
    if rule.remaining is None:
        return labels
    if samples is None:
        raise ValueError("a label rule with `remaining` needs the run's sampled weights")
    later_max = np.maximum.accumulate(remaining_path(samples)[::-1], axis=0)[::-1]
    return labels & (later_max <= rule.remaining)


def first_converged(labels: np.ndarray) -> np.ndarray:
    """First snapshot from which a layer stays converged to the end, per layer; T when never."""
    labels = np.asarray(labels, dtype=bool)
    t_count = labels.shape[0]
    stays = np.logical_and.accumulate(labels[::-1], axis=0)[::-1]
    first = np.full(labels.shape[1], t_count, dtype=np.int64)
    for layer in range(labels.shape[1]):
        hits = np.flatnonzero(stays[:, layer])
        if hits.size:
            first[layer] = hits[0]
    return first


def block_freeze_snapshots(labels: np.ndarray, layer_block: np.ndarray, n_blocks: int) -> np.ndarray:
    """Snapshot index at which each non-head block freezes (T = never); non-decreasing (a prefix)."""
    if np.any(layer_block < 0):
        raise ValueError("the trace has no block index for some layers (block = -1); probes need blocks")
    first = first_converged(labels)
    n_t = labels.shape[0]
    out = np.full(n_blocks - 1, n_t, dtype=np.int64)
    for b in range(n_blocks - 1):
        members = first[layer_block == b]
        out[b] = members.max() if members.size else 0
    return np.maximum.accumulate(out)
