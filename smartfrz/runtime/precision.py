"""The autocast setting a forward ran under, so later work for the same activations runs alike.

The activation cache computes rows during the user's forward (inside their ``torch.autocast``
block) but pushes them through newly frozen blocks in ``Freezer.step()``, usually outside it.
Replaying the forward's setting there keeps the advanced rows in the dtype the forward would
have produced, on CPU (bfloat16) and CUDA (float16 or bfloat16) alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Autocast:
    """One device type's autocast setting: enabled or not, and its compute dtype."""

    device_type: str
    enabled: bool
    dtype: torch.dtype

    @classmethod
    def current(cls, device: torch.device) -> Autocast:
        """The setting in force now for ``device``'s type (disabled for types autocast does not know)."""
        kind = device.type
        try:
            return cls(kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
        except RuntimeError:  # a device type without autocast support
            return cls(kind, False, torch.float32)

    def replay(self) -> torch.autocast:
        """A context that runs code under this setting (enabled or explicitly disabled)."""
        dtype = self.dtype if self.enabled else None
        return torch.autocast(self.device_type, dtype=dtype, enabled=self.enabled)
