"""Resume through the Lightning callback (state held until the freezer exists), with gradient accumulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_runtime_support import data, lightning_mlp, quiet_trainer

from smartfrz.runtime import FreezeOut

pl = pytest.importorskip("lightning.pytorch", reason="Lightning not installed (pip install lightning)")
from smartfrz.runtime.lightning_callback import SmartFRZCallback  # noqa: E402


def _fit(tmp_path: Path, max_steps: int, accumulate: int = 1, ckpt: Path | None = None, save: Path | None = None):
    """Fit a fresh module and callback (FreezeOut over 8 optimizer steps); optionally resume and save."""
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    callback = SmartFRZCallback(FreezeOut(total_steps=8, t0=0.25), module_attr="net")
    torch.manual_seed(0)
    module = lightning_mlp(pl, bn=False)
    trainer = quiet_trainer(pl, tmp_path, callback, max_steps=max_steps, accumulate_grad_batches=accumulate)
    trainer.fit(module, loader, ckpt_path=ckpt)
    if save is not None:
        trainer.save_checkpoint(save)
    return callback, module


@pytest.mark.parametrize("accumulate", [1, 2])
def test_resume_from_a_lightning_checkpoint_continues_the_schedule(tmp_path: Path, accumulate: int) -> None:
    """Stop at step 3 (block 0 frozen), resume to 8: the same events and frozen state as one run to 8."""
    whole, _ = _fit(tmp_path, 8, accumulate)
    assert whole.freezer is not None and whole.freezer.step_count == 8  # optimizer steps, not batches
    want = [(e.step, e.block) for e in whole.freezer.events.events]
    assert want == [(2, 0), (4, 1), (6, 2)]
    ckpt = tmp_path / "half.ckpt"
    first, _ = _fit(tmp_path, 3, accumulate, save=ckpt)
    assert first.freezer is not None and first.freezer.num_frozen == 1
    resumed, module = _fit(tmp_path, 8, accumulate, ckpt=ckpt)
    assert resumed.freezer is not None
    assert resumed._pending is None  # the held state was applied when the freezer was built
    assert [(e.step, e.block) for e in resumed.freezer.events.events] == want
    assert resumed.freezer.step_count == 8 and resumed.freezer.num_frozen == 3
    assert not any(p.requires_grad for p in module.net[0].parameters()) and module.net[3].weight.requires_grad
