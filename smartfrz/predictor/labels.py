"""Convergence labels from stored CKA curves; the rule is a fit-time option, not baked into traces."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LABEL_RULES = ("monotone", "pointwise", "horizon", "stable", "floor")
PAIRWISE_RULES = ("horizon", "stable")
"""Rules that need the snapshot-pair CKA matrix (``cka_pairs``), not only the curve against the final model."""
DEFAULT_HORIZON = 0.25
"""Look-ahead of the horizon rule (and the floor rule's closing span), as a fraction of training."""
SPAN_RULES = ("horizon", "floor")
"""Rules that read ``horizon``; their key carries it (``horizon@0.1:0.99``) when it is not the default."""


@dataclass(frozen=True)
class LabelRule:
    """How CKA becomes a per-snapshot converged/not-converged label.

    monotone: CKA against the final model stays >= tau from t on. pointwise: that CKA at t alone.
    stable: CKA between snapshot t and every later snapshot stays >= tau (the representation at t is
    close to all it becomes, not only to the end). horizon: the same over the next ``horizon`` fraction
    of training only, so the label does not depend on where the run happens to stop. floor: the layer's
    CKA distance to the final model, 1 - CKA, stays within 1/tau of the distance it still covers in the
    last ``horizon`` of training (its noise floor), from t on: a layer is converged when it is as close
    to the end as its own late jitter allows, whatever that jitter's size. Under a constant learning rate
    the jitter never dies out, so a fixed tau comes late there. Under decay the jitter shrinks, so a
    fixed tau comes early.

    ``acc_gate`` (any rule, off when None) also requires the run to be near its end accuracy: the
    run's validation accuracy, smoothed over 3 snapshots, stays within ``acc_gate`` points of its final
    value from t on. Freeze probes find that CKA alone calls layers converged while accuracy still
    climbs (predictor_data/frontier_rule_grid.md); the gate holds those back.

    ``remaining`` (any rule, off when None) also requires the layer's sampled weights to have covered
    most of their way to the end: ||w_t' - w_T|| <= remaining * ||w_0 - w_T|| at every t' >= t. Linear
    CKA of a layer that projects a low-dimensional input (a ViT patch embedding) is near 1 for almost any
    weights, so CKA alone calls such a layer converged at its initial weights.

    ``norm_cap`` (off when None) is a second way to pass that cap: the remaining distance is within this
    fraction of the final sampled weights' own norm, ||w_t' - w_T|| <= norm_cap * ||w_T||. A pretrained layer
    that drifts slowly and steadily under a constant rate covers its path only late, however small the
    path is against the weights themselves; measured against their size it is near its end early. On the
    probe frontier of ten fine-tuning runs it froze more blocks too early, not fewer (README, Results).
    """

    rule: str = "monotone"
    tau: float = 0.999
    horizon: float = DEFAULT_HORIZON  # fraction of training the horizon rule looks ahead (floor: its closing span)
    remaining: float | None = None  # cap on the weights' remaining distance to the end, relative to the whole
    acc_gate: float | None = None  # accuracy points below the final a labelled snapshot may sit (smoothed)
    norm_cap: float | None = None  # or: the remaining distance to the end relative to the final weights' norm

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
        if self.acc_gate is not None and not (np.isfinite(self.acc_gate) and self.acc_gate >= 0.0):
            raise ValueError(f"label acc_gate must be a finite number of points >= 0, got {self.acc_gate}")
        if self.norm_cap is not None and not (np.isfinite(self.norm_cap) and self.norm_cap >= 0.0):
            raise ValueError(f"label norm_cap must be a finite fraction >= 0, got {self.norm_cap}")

    @property
    def needs_pairs(self) -> bool:
        """True when the rule reads the snapshot-pair CKA matrix."""
        return self.rule in PAIRWISE_RULES

    def describe(self) -> str:
        """One line, e.g. ``horizon CKA >= 0.95 over 25% of training``."""
        if self.rule == "floor":
            head = f"floor: 1 - CKA within {1 / self.tau:g}x its last {self.horizon:.0%} of training"
        else:
            over = f" over {self.horizon:.0%} of training" if self.rule == "horizon" else ""
            head = f"{self.rule} CKA >= {self.tau:g}{over}"
        extra = ""
        if self.remaining is not None:
            extra += f", weights within {self.remaining:g} of their path's end"
        if self.norm_cap is not None:
            extra += f"{' or' if self.remaining is not None else ', weights'} within {self.norm_cap:g} of their norm"
        if self.acc_gate is not None:
            extra += f", accuracy within {self.acc_gate:g} points of the final"
        return head + extra

    @property
    def key(self) -> str:
        """``RULE[@HORIZON]:TAU[:REMAINING][,norm=FRACTION][,acc=POINTS]``, the form probes and reports name a
        rule by; the horizon and floor rules' span rides on the name when it is not the default
        (``horizon@0.1:0.99``)."""
        name = self.rule
        if self.rule in SPAN_RULES and self.horizon != DEFAULT_HORIZON:
            name += f"@{self.horizon:g}"
        tail = f":{self.remaining:g}" if self.remaining is not None else ""
        norm = f",norm={self.norm_cap:g}" if self.norm_cap is not None else ""
        gate = f",acc={self.acc_gate:g}" if self.acc_gate is not None else ""
        return f"{name}:{self.tau:g}{tail}{norm}{gate}"

    @classmethod
    def parse(cls, text: str) -> LabelRule:
        """The rule ``RULE[@HORIZON]:TAU[:REMAINING][,norm=FRACTION][,acc=POINTS]`` names (e.g.
        ``monotone:0.999:0.5``, ``horizon@0.1:0.99``, ``floor@0.1:0.5``, ``monotone:0.998:0.25,acc=1``,
        ``monotone:0.999:0.25,norm=0.05``); ValueError when malformed."""
        text, *options = text.split(",")
        extras: dict[str, float] = {}
        for option in options:
            key, eq, value = option.partition("=")
            if not eq or key not in ("norm", "acc") or key in extras:
                raise ValueError(f"want ,norm=FRACTION and/or ,acc=POINTS (once each) after the rule, got {option!r}")
            extras[key] = float(value)
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"want RULE:TAU or RULE:TAU:REMAINING, got {text!r}")
        name, _, horizon = parts[0].partition("@")
        if horizon and name not in SPAN_RULES:
            raise ValueError(f"only the {' and '.join(SPAN_RULES)} rules take a span (@H), got {text!r}")
        remaining = float(parts[2]) if len(parts) == 3 else None
        span = float(horizon) if horizon else DEFAULT_HORIZON
        return cls(name, float(parts[1]), span, remaining, extras.get("acc"), extras.get("norm"))

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


def label_floor(cka: np.ndarray, steps: np.ndarray, rule: LabelRule) -> np.ndarray:
    """The floor rule on a [T, L] CKA-vs-final array; returns bool [T, L].

    The floor is the largest 1 - CKA from the last snapshot at least ``horizon`` x total steps before
    the end on, i.e. how far the layer still is from its end within the closing span. A snapshot is
    converged when 1 - CKA, from it on, never exceeds floor / tau. A layer that never moves in the
    closing span (floor 0) is converged only where it already sits at its final representation.
    """
    cka = np.asarray(cka, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.float64)
    if cka.ndim != 2 or len(steps) != cka.shape[0]:
        raise ValueError(f"CKA curves must be [T, L] with T = len(steps), got {cka.shape} and {len(steps)}")
    if not np.all(np.isfinite(cka)):
        raise ValueError("CKA curves contain non-finite values; flagged runs cannot be labelled")
    distance = np.clip(1.0 - cka, 0.0, None)
    later_max = np.maximum.accumulate(distance[::-1], axis=0)[::-1]
    before_span = np.flatnonzero(steps <= steps[-1] * (1.0 - rule.horizon) + 1e-9)
    floor = later_max[before_span[-1] if before_span.size else 0]
    return later_max * rule.tau <= floor + 1e-12


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


def remaining_norm(samples: np.ndarray) -> np.ndarray:
    """[T, L] distance of each snapshot's sampled weights [T, L, K] to the last, over the last's norm (0 <= ...)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3:
        raise ValueError(f"weight samples must be [T, L, K], got shape {samples.shape}")
    to_end = np.linalg.norm(samples - samples[-1:], axis=2)
    size = np.linalg.norm(samples[-1], axis=1)[None]
    return np.where(size > 0, to_end / np.where(size > 0, size, 1.0), np.where(to_end > 0, np.inf, 0.0))


def remaining_path(samples: np.ndarray) -> np.ndarray:
    """[T, L] distance of each snapshot's sampled weights [T, L, K] to the last, over the first's (0 <= ...)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3:
        raise ValueError(f"weight samples must be [T, L, K], got shape {samples.shape}")
    to_end = np.linalg.norm(samples - samples[-1:], axis=2)
    whole = to_end[:1]
    return np.where(whole > 0, to_end / np.where(whole > 0, whole, 1.0), 0.0)  # a layer that never moved: 0


def near_final_accuracy(val_acc: np.ndarray, points: float, window: int = 3) -> np.ndarray:
    """[T] bool: the validation accuracy (a fraction), smoothed over ``window`` snapshots, stays within
    ``points`` accuracy points of its final smoothed value from each snapshot on.

    The smoothing (edge-padded moving mean) damps the noise of the small per-snapshot validation sample.
    """
    acc = np.asarray(val_acc, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0:
        raise ValueError(f"validation accuracy must be a non-empty [T] curve, got shape {acc.shape}")
    if not np.all(np.isfinite(acc)):
        raise ValueError("validation accuracy contains non-finite values; the accuracy gate cannot read it")
    w = min(window, acc.size)
    padded = np.pad(acc, (w // 2, w - 1 - w // 2), mode="edge")
    smooth = np.convolve(padded, np.ones(w) / w, mode="valid")
    final = smooth[-w:].mean()
    return np.minimum.accumulate(smooth[::-1])[::-1] >= final - points / 100.0


def label_run(
    cka: np.ndarray,
    pairs: np.ndarray | None,
    steps: np.ndarray,
    rule: LabelRule,
    samples: np.ndarray | None = None,
    val_acc: np.ndarray | None = None,
) -> np.ndarray:
    """Labels [T, L] of one run under ``rule``; ValueError when the run lacks what the rule reads.

    Pairwise rules read the snapshot-pair CKA ``pairs``; the ``remaining`` and ``norm_cap`` caps read the
    sampled weights (a snapshot passes when either holds from it on); an ``acc_gate`` reads the per-snapshot
    validation accuracy.
    """
    if rule.needs_pairs:
        if pairs is None:
            raise ValueError(f"label rule {rule.rule!r} needs the trace's cka_pairs, which this run lacks")
        labels = label_pairs(pairs, steps, rule)
    elif rule.rule == "floor":
        labels = label_floor(cka, steps, rule)
    else:
        labels = label_curves(cka, rule)
    if rule.acc_gate is not None:
        if val_acc is None:
            raise ValueError("a label rule with `acc_gate` needs the run's per-snapshot validation accuracy")
        labels = labels & near_final_accuracy(val_acc, rule.acc_gate)[:, None]
    if rule.remaining is None and rule.norm_cap is None:
        return labels
    if samples is None:
        raise ValueError("a label rule with `remaining` or `norm_cap` needs the run's sampled weights")
    near_end = np.zeros(labels.shape, dtype=bool)
    for cap, distance in ((rule.remaining, remaining_path), (rule.norm_cap, remaining_norm)):
        if cap is not None:
            near_end |= np.maximum.accumulate(distance(samples)[::-1], axis=0)[::-1] <= cap
    return labels & near_end


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
