"""The predictor protocol the runtime relies on, so any object with these members can drive SmartFRZ."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class PredictorProtocol(Protocol):
    """Judges whether a layer converged from a window of its sampled weights (see docs/architecture.md)."""

    window: int
    k: int
    threshold: float

    def predict_proba(self, windows: Tensor) -> Tensor:
        """P(converged) per window: ``[N, W, K] -> [N]``."""
        ...


@runtime_checkable
class IncrementalPredictorProtocol(PredictorProtocol, Protocol):
    """A predictor that embeds each snapshot once when recorded, so a stage only runs the attention."""

    def embed_snapshots(self, x: Tensor) -> Tensor:
        """Embed raw snapshots: ``[N, K] -> [N, D]``."""
        ...

    def predict_from_embeddings(self, emb: Tensor) -> Tensor:
        """P(converged) per window of embedded snapshots: ``[N, W, D] -> [N]``."""
        ...
