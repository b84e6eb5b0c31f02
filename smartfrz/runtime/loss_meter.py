"""The mean training loss between two weight snapshots, as the trace collector records it."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class LossMeter:
    """Sums the losses passed to ``Freezer.step`` and hands out their mean once per snapshot.

    A tensor loss is summed where it lives (detached), so passing it costs no device-to-host copy until
    a snapshot reads the mean.
    """

    def __init__(self) -> None:
        self._sum: Tensor | float = 0.0
        self._count = 0

    def add(self, loss: Tensor | float) -> None:
        """Add one step's training loss (a number or a one-element tensor)."""
        if isinstance(loss, Tensor):
            if loss.numel() != 1:
                shape = tuple(loss.shape)
                raise ValueError(f"freezer.step(loss) takes the scalar training loss, got a tensor of shape {shape}")
            value: Tensor | float = loss.detach().reshape(()).to(torch.float32)
        elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
            value = float(loss)
        else:
            raise TypeError(f"freezer.step(loss) takes a number or a scalar tensor, got {type(loss).__name__}")
        self._sum = self._sum + value
        self._count += 1

    def take(self) -> float:
        """The mean loss since the last call (NaN when none was passed), then start over."""
        total, count = self._sum, self._count
        self._sum, self._count = 0.0, 0
        if count == 0:
            return float("nan")
        mean = float(total) / count
        return mean if math.isfinite(mean) else float("nan")
