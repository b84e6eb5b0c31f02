"""FLOPs accounting: per-block forward cost measured once, then saved work summed per step.

Costs follow the usual model: backward about twice the forward. A frozen prefix saves its
backward; samples served from the activation cache also save the prefix's forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

BACKWARD_FACTOR = 2.0


def measure_block_flops(run_block: Callable[[int, Any], Any], x: Any, num_blocks: int, batch: int) -> list[float]:
    """Forward FLOPs per sample of each block, counted with ``FlopCounterMode`` on one batch."""
    flops: list[float] = []
    h = x
    with torch.no_grad():
        for b in range(num_blocks):
            counter = FlopCounterMode(display=False)
            with counter:
                h = run_block(b, h)
            flops.append(counter.get_total_flops() / batch)
    return flops


class FlopAccount:
    """Sums the FLOPs full training would spend and those the frozen prefix and the cache saved."""

    def __init__(self) -> None:
        self.block_flops: list[float] | None = None
        self.full = 0.0  # FLOPs of the same steps without freezing
        self.saved_backward = 0.0
        self.saved_forward = 0.0

    @property
    def measured(self) -> bool:
        """Whether the per-block forward costs are known."""
        return self.block_flops is not None

    def on_step(self, batch: int, num_frozen: int, cache_hits: int) -> None:
        """Account one optimizer step of ``batch`` samples with ``num_frozen`` blocks frozen."""
        if self.block_flops is None or batch <= 0:
            return
        prefix = sum(self.block_flops[:num_frozen])
        self.full += (1 + BACKWARD_FACTOR) * sum(self.block_flops) * batch
        self.saved_backward += BACKWARD_FACTOR * prefix * batch
        self.saved_forward += prefix * cache_hits

    def summary(self) -> dict[str, float | None]:
        """Full, spent and saved FLOPs, and the saved fraction (None before measuring)."""
        if self.block_flops is None:
            return {"flops_full": None, "flops_saved": None, "flops_saved_fraction": None}
        saved = self.saved_backward + self.saved_forward
        return {
            "flops_full": self.full,
            "flops_saved": saved,
            "flops_saved_backward": self.saved_backward,
            "flops_saved_forward": self.saved_forward,
            "flops_saved_fraction": saved / self.full if self.full else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        """Measured costs and running sums."""
        return {
            "block_flops": self.block_flops,
            "full": self.full,
            "saved_backward": self.saved_backward,
            "saved_forward": self.saved_forward,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore measured costs and running sums."""
        self.block_flops = state["block_flops"]
        self.full, self.saved_backward = float(state["full"]), float(state["saved_backward"])
        self.saved_forward = float(state["saved_forward"])
