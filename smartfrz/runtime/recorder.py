"""Weight recorder: one fused ``record_weights`` call per snapshot, kept in a per-layer ring buffer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from smartfrz import ops
from smartfrz.layers import draw_sample_indices

Embedder = Callable[[Tensor], Tensor]


class WeightRecorder:
    """Samples K fixed weight positions of every active layer and keeps the last W snapshots.

    Frozen layers are dropped from the active set, so a snapshot costs one fused op over the
    layers still training; it reads only the sampled positions (the op's per-layer statistics, a pass
    over every weight, are for the offline traces). When ``embed`` is given (a predictor's ``embed_snapshots``), each
    snapshot is also embedded once, when recorded, for the incremental prediction path.
    """

    def __init__(
        self, layers: Sequence[nn.Module], k: int, window: int, seed: int = 0, embed: Embedder | None = None
    ) -> None:
        if not layers:
            raise ValueError("WeightRecorder needs at least one layer to record")
        if window < 1 or k < 1:
            raise ValueError(f"window and k must be >= 1, got window={window}, k={k}")
        self.layers = list(layers)
        self.k, self.window, self.seed = k, window, seed
        self.embed = embed
        device = self.layers[0].weight.device
        self.sample_idx = draw_sample_indices([m.weight.numel() for m in self.layers], k, seed).to(device)
        self.ring = torch.zeros(len(self.layers), window, k, device=device)
        self.emb_ring: Tensor | None = None
        self.count = 0  # snapshots recorded so far (all active layers are recorded together)
        self.set_active(range(len(self.layers)))

    def set_active(self, active: Sequence[int] | range) -> None:
        """Record only these layers from now on (frozen layers are never recorded again)."""
        self.active = list(active)
        self._active_t = torch.tensor(self.active, dtype=torch.int64, device=self.ring.device)
        self._active_idx = self.sample_idx.index_select(0, self._active_t)

    def _follow_device(self) -> None:
        """Move the buffers to the weights' device if the model moved after the recorder was built."""
        device = self.layers[self.active[0]].weight.device
        if device == self.ring.device:
            return
        self.sample_idx, self.ring = self.sample_idx.to(device), self.ring.to(device)
        if self.emb_ring is not None:
            self.emb_ring = self.emb_ring.to(device)
        self.set_active(self.active)

    @property
    def pos(self) -> int:
        """Ring slot of the latest snapshot."""
        return (self.count - 1) % self.window

    @property
    def full(self) -> bool:
        """True once every active layer has a full window of snapshots."""
        return self.count >= self.window

    @torch.no_grad()
    def record(self) -> None:
        """Take one snapshot of all active layers (one fused op) and append it to the ring."""
        if not self.active:
            return
        self._follow_device()
        weights = [self.layers[i].weight.detach() for i in self.active]
        samples, _ = ops.record_weights(weights, self._active_idx, stats=False)
        slot = self.count % self.window
        self.ring[self._active_t, slot] = samples
        if self.embed is not None:
            emb = self.embed(samples).to(self.ring.device, torch.float32)
            if self.emb_ring is None:
                self.emb_ring = torch.zeros(len(self.layers), self.window, emb.shape[-1], device=self.ring.device)
            self.emb_ring[self._active_t, slot] = emb
        self.count += 1

    def _chronological(self, ring: Tensor, layers: Sequence[int]) -> Tensor:
        """Rows ``layers`` of a ring buffer, reordered oldest snapshot first."""
        rows = torch.tensor(list(layers), dtype=torch.int64, device=ring.device)
        return ring.index_select(0, rows).roll(-(self.count % self.window), dims=1)  # slot count % W is the oldest

    def valid_mask(self, n: int) -> Tensor:
        """``[n, W]`` bool: which window positions hold a recorded snapshot (the last min(count, W))."""
        pos = torch.arange(self.window, device=self.ring.device)
        return (pos >= self.window - min(self.count, self.window)).expand(n, -1)

    def partial_windows(self, layers: Sequence[int], embedded: bool) -> tuple[Tensor, Tensor]:
        """Windows of these layers (raw [n, W, K] or embedded [n, W, D]), oldest first, and their valid masks.

        Before the ring fills, the unrecorded (left) positions are zeros and marked invalid.
        """
        ring = self.emb_ring if embedded else self.ring
        if ring is None or self.count == 0:
            raise RuntimeError("no snapshot recorded yet (or the recorder was built without an embedder)")
        return self._chronological(ring, layers), self.valid_mask(len(layers))

    def windows(self, layers: Sequence[int]) -> Tensor:
        """Raw windows ``[n, W, K]`` of these layers, oldest snapshot first."""
        if not self.full:
            raise RuntimeError(f"only {self.count} of {self.window} snapshots recorded; no full window yet")
        return self._chronological(self.ring, layers)

    def embedded_windows(self, layers: Sequence[int]) -> Tensor:
        """Embedded windows ``[n, W, D]`` of these layers, oldest snapshot first."""
        if self.emb_ring is None or not self.full:
            raise RuntimeError("no full window of embedded snapshots (recorder built without an embedder?)")
        return self._chronological(self.emb_ring, layers)

    def state_dict(self) -> dict[str, Any]:
        """Windows and position, so a resumed run sees the same windows."""
        return {
            "k": self.k,
            "window": self.window,
            "seed": self.seed,
            "count": self.count,
            "active": list(self.active),
            "ring": self.ring.cpu(),
            "emb_ring": None if self.emb_ring is None else self.emb_ring.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore windows recorded before a checkpoint; k, window and seed must match."""
        for key in ("k", "window", "seed"):
            if state[key] != getattr(self, key):
                raise ValueError(f"recorder state has {key}={state[key]}, this recorder {key}={getattr(self, key)}")
        if tuple(state["ring"].shape) != tuple(self.ring.shape):
            raise ValueError(f"recorder state ring {tuple(state['ring'].shape)} != {tuple(self.ring.shape)}")
        device = self.ring.device
        self.ring = state["ring"].to(device)  # an older state's "stats" entry is not needed: ignored
        self.emb_ring = None if state["emb_ring"] is None else state["emb_ring"].to(device)
        self.count = int(state["count"])
        self.set_active(state["active"])
