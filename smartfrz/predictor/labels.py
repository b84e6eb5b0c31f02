"""Convergence labels from stored CKA curves; the rule is a fit-time option, not baked into traces."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LABEL_RULES = ("monotone", "pointwise")


@dataclass(frozen=True)
class LabelRule:
    """How a CKA curve becomes a per-snapshot converged/not-converged label."""

    rule: str = "monotone"
    tau: float = 0.999  # calibrated by freeze probes (mean loss <= 0.2 points), see predictor_data cards

    def __post_init__(self) -> None:
        """Reject unknown rules and thresholds outside (0, 1]."""
        if self.rule not in LABEL_RULES:
            raise ValueError(f"unknown label rule {self.rule!r}; choose one of {LABEL_RULES}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"label tau must be in (0, 1], got {self.tau}")

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
