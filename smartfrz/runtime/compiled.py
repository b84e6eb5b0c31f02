"""torch.compile and the freezer: spot a compiled model the freezer would bypass or recompile too often.

Without the cache the freezer calls the user's (compiled) model, and each freeze recompiles it once
(dynamo guards on ``requires_grad`` and on the frozen blocks' eval mode). With the cache the freezer
runs the blocks one by one, so only compiled *blocks* are compiled code; a compiled whole model is
never called.
"""

from __future__ import annotations

import torch
from torch import nn

BYPASSED = (
    "the model is torch.compile'd, but with the activation cache the freezer runs its blocks one by one, so the "
    "compiled model is never called and training runs eagerly; compile the blocks instead, after building the "
    "freezer: `for b in freezer.blocks: b.module.compile()` (each block compiles a few graphs: raise "
    "torch._dynamo.config.recompile_limit to about 4 per block)"
)
RECOMPILES = (
    "the model is torch.compile'd and has {blocks} blocks: each freeze recompiles it once (requires_grad changes), "
    "so up to {freezes} recompilations may exceed torch._dynamo.config.recompile_limit={limit}, after which dynamo "
    "runs it eagerly; raise the limit to at least {need}"
)


def is_compiled(module: nn.Module) -> bool:
    """Whether calling ``module`` runs compiled code (a ``torch.compile`` wrapper or ``module.compile()``)."""
    optimized = isinstance(module, torch._dynamo.eval_frame.OptimizedModule)
    return optimized or getattr(module, "_compiled_call_impl", None) is not None


def compile_advice(model: nn.Module, cached: bool, num_blocks: int) -> str | None:
    """A warning for a compiled model the freezer would bypass (cache) or recompile past dynamo's limit."""
    if not is_compiled(model):
        return None
    if cached:
        return BYPASSED
    limit = int(getattr(torch._dynamo.config, "recompile_limit", 8))
    need = num_blocks  # the first compilation plus one per freeze (the head never freezes)
    if need > limit:
        return RECOMPILES.format(blocks=num_blocks, freezes=num_blocks - 1, limit=limit, need=need)
    return None
