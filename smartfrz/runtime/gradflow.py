"""Checks that gradients still reach the first trainable block after a freeze.

Freezing a prefix means the first trainable block's input no longer requires grad. A block wrapped
in ``torch.utils.checkpoint.checkpoint(..., use_reentrant=True)`` then silently gets no gradient for
its parameters (PyTorch only warns "None of the inputs have requires_grad=True"); the
``use_reentrant=False`` variant is unaffected. This module detects the symptom after a backward.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

STARVED_HINT = (
    "block {name!r} got no gradient after the blocks before it froze, while later blocks did. Its parameters "
    "stop training. The usual cause is torch.utils.checkpoint.checkpoint(..., use_reentrant=True) around it: "
    "the reentrant variant passes no gradient to parameters when its inputs do not require grad, and a frozen "
    "prefix's output never does. Use checkpoint(..., use_reentrant=False)."
)


def starved(first: nn.Module, rest: Sequence[nn.Module]) -> bool | None:
    """Whether ``first`` got no gradient while ``rest`` did; None when the gradients cannot tell (all None)."""
    params = [p for p in first.parameters() if p.requires_grad]
    later = [p for m in rest for p in m.parameters() if p.requires_grad]
    if not params or not any(p.grad is not None for p in later):
        return None  # a block without trainable parameters, or gradients already cleared
    return all(p.grad is None for p in params)
