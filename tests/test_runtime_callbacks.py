"""Lightning and Hugging Face Trainer callbacks (skipped when those optional libraries are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_runtime_support import data, lightning_mlp, quiet_trainer

from smartfrz.runtime import FreezeOut


def test_lightning_callback_freezes_and_checkpoints(tmp_path: Path) -> None:
    """FreezeOut through the Lightning loop: blocks freeze on schedule, state goes into the callback's dict."""
    pl = pytest.importorskip("lightning.pytorch", reason="Lightning not installed (pip install lightning)")
    from smartfrz.runtime.lightning_callback import SmartFRZCallback

    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    callback = SmartFRZCallback(FreezeOut(total_steps=8, t0=0.25), module_attr="net")
    module = lightning_mlp(pl, lr=1e-2, adam=True)
    trainer = quiet_trainer(pl, tmp_path, callback, max_steps=8)
    trainer.fit(module, loader)
    freezer = callback.freezer
    assert freezer is not None and freezer.step_count == 8
    assert [(e.step, e.block) for e in freezer.events.events] == [(2, 0), (4, 1), (6, 2)]
    assert not any(p.requires_grad for p in module.net[0].parameters()) and module.net[3].weight.requires_grad
    opt = trainer.optimizers[0]
    assert all(p not in opt.state for p in module.net[0].parameters()) and module.net[3].weight in opt.state
    state = callback.state_dict()
    assert state["num_frozen"] == 3 and state["step"] == 8
    assert freezer.policy.ctx is not None
    assert 0.0 < freezer.policy.ctx.loss.take() < 10.0  # the loop's losses reached the freezer


def test_hf_trainer_callback_freezes_bert_blocks(tmp_path: Path, tiny_bert) -> None:
    """A tiny BERT classifier under transformers.Trainer: embeddings and encoder layers freeze on schedule."""
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (pip install accelerate)")
    from smartfrz.runtime.hf_callback import SmartFRZTrainerCallback

    model = tiny_bert()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (32, 8), generator=g)
    dataset = [{"input_ids": ids[i], "labels": int(ids[i, 0] > 20)} for i in range(32)]
    callback = SmartFRZTrainerCallback(FreezeOut(total_steps=6, t0=0.3))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])
    trainer.train()
    freezer = callback.freezer
    assert freezer is not None
    assert [b.name for b in freezer.blocks] == [
        "bert.embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "head",
    ]
    assert [(e.step, e.block) for e in freezer.events.events] == [(2, 0), (4, 1), (5, 2)]
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert not any(p.requires_grad for p in model.bert.encoder.parameters())
    assert model.classifier.weight.requires_grad
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert all(p not in opt.state for p in model.bert.embeddings.parameters()) and model.classifier.weight in opt.state
    assert freezer.policy.ctx is not None
    assert 0.0 < freezer.policy.ctx.loss.take() < 10.0  # the Trainer's logged losses reached the freezer
