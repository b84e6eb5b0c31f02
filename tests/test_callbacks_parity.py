"""Lightning and HF Trainer callbacks at parity with the plain loop: planned length, events, logs, checkpoints."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from test_runtime_support import RelChangePredictor, data, lightning_mlp, quiet_trainer


def _always_converged() -> RelChangePredictor:
    """P(converged) ~ 1 for every layer: all freezable blocks freeze at the first stage with a full window."""
    return RelChangePredictor(window=4, k=16, threshold=0.5, tol=1e9)


def test_lightning_callback_plans_from_the_trainer_and_logs(tmp_path: Path) -> None:
    """total_steps = estimated_stepping_batches; freeze lines via Lightning's logger; metrics to logger and bar."""
    pl = pytest.importorskip("lightning.pytorch", reason="Lightning not installed (pip install lightning)")
    from smartfrz.runtime.lightning_callback import SmartFRZCallback

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lightning.pytorch").addHandler(handler)
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)  # 6 steps/epoch
    callback = SmartFRZCallback(_always_converged(), module_attr="net")
    trainer = quiet_trainer(
        pl, tmp_path, callback, max_epochs=14, logger=pl.loggers.CSVLogger(tmp_path, name="run"), log_every_n_steps=1
    )
    try:
        trainer.fit(lightning_mlp(pl), loader)
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(handler)
    freezer = callback.freezer
    assert freezer is not None and freezer.total_steps == 84 and freezer.policy.record_every == 84 // 40
    assert [(e.step, e.block) for e in freezer.events.events] == [(8, 0), (8, 1), (8, 2)]
    froze = [line for line in lines if line.startswith("smartfrz: froze")]
    assert froze[0].startswith("smartfrz: froze block 1/4 '0' at step 8 (10% of training), P=1.000 >= 0.500")
    assert len(froze) == 3
    assert trainer.progress_bar_metrics["smartfrz/blocks_frozen"] == 3.0
    assert 0 < trainer.progress_bar_metrics["smartfrz/flops_saved"] < 1
    with open(next(tmp_path.glob("run/*/metrics.csv"))) as f:
        rows = [r for r in csv.DictReader(f) if r.get("smartfrz/blocks_frozen")]
    assert float(rows[0]["smartfrz/blocks_frozen"]) == 0.0 and float(rows[-1]["smartfrz/blocks_frozen"]) == 3.0


def _hf_train(tmp: Path, model: torch.nn.Module, callback: object, resume: str | None = None) -> object:
    """A tiny BERT under transformers.Trainer: 8 steps of 8 samples, checkpoints every 3 steps."""
    transformers = pytest.importorskip("transformers")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (32, 8), generator=g)
    dataset = [{"input_ids": ids[i], "labels": int(ids[i, 0] > 20)} for i in range(32)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp),
        max_steps=8,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="steps",
        save_steps=3,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_hf_callback_resumes_with_the_same_decisions(tmp_path: Path, tiny_bert) -> None:
    """The freezer state rides in Trainer checkpoints; resume_from_checkpoint gives the uninterrupted decisions."""
    pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (pip install accelerate)")
    from smartfrz.runtime.hf_callback import STATE_FILE, SmartFRZTrainerCallback

    def callback(**kw: object) -> SmartFRZTrainerCallback:
        return SmartFRZTrainerCallback(_always_converged(), record_every=1, stage_every=1, verbose=False, **kw)

    full = callback()
    trainer = _hf_train(tmp_path / "a", tiny_bert(), full)
    decisions = [(e.step, e.block, e.score) for e in full.freezer.events.events]  # type: ignore[union-attr]
    assert [d[:2] for d in decisions] == [(4, 0), (4, 1), (4, 2)]
    assert (tmp_path / "a" / "checkpoint-3" / STATE_FILE).is_file()
    logged = [h for h in trainer.state.log_history if "smartfrz/event" in h]  # type: ignore[attr-defined]
    assert [h["smartfrz/blocks_frozen"] for h in logged] == [1, 2, 3] and all(h["step"] == 4 for h in logged)
    assert logged[0]["smartfrz/event"].startswith("smartfrz: froze block 1/4 'bert.embeddings' at step 4 (50%")

    resumed = callback()  # same output_dir: the checkpoint folder is found from the resumed step
    _hf_train(tmp_path / "a", tiny_bert(), resumed, resume=str(tmp_path / "a" / "checkpoint-3"))
    assert resumed.freezer is not None and resumed.freezer.step_count == 8
    got = resumed.freezer.events.events
    assert [(e.step, e.block) for e in got] == [d[:2] for d in decisions]
    assert [e.score for e in got] == pytest.approx([d[2] for d in decisions])

    with pytest.raises(RuntimeError, match="resume_from="):  # elsewhere: say where to point
        _hf_train(tmp_path / "b", tiny_bert(), callback(), resume=str(tmp_path / "a" / "checkpoint-3"))
    pointed = callback(resume_from=tmp_path / "a" / "checkpoint-3")
    _hf_train(tmp_path / "b", tiny_bert(), pointed, resume=str(tmp_path / "a" / "checkpoint-3"))
    assert [(e.step, e.block) for e in pointed.freezer.events.events] == [d[:2] for d in decisions]  # type: ignore[union-attr]


def test_lightning_checkpoint_restores_the_freezer(tmp_path: Path) -> None:
    """A Lightning checkpoint carries the freezer; fit(ckpt_path=...) resumes with the uninterrupted decisions."""
    pl = pytest.importorskip("lightning.pytorch", reason="Lightning not installed (pip install lightning)")
    from smartfrz.runtime.lightning_callback import SmartFRZCallback

    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)

    def fit(steps: int, ckpt: Path | None = None) -> tuple[SmartFRZCallback, object]:
        # no backstop: its schedule follows each fit's max_steps, and the parity checked here is the predictor's
        callback = SmartFRZCallback(
            _always_converged(), module_attr="net", record_every=1, stage_every=1, backstop=None
        )
        trainer = quiet_trainer(pl, tmp_path, callback, max_steps=steps)
        trainer.fit(lightning_mlp(pl), loader, ckpt_path=ckpt)
        return callback, trainer

    full, _ = fit(8)
    decisions = [(e.step, e.block) for e in full.freezer.events.events]  # type: ignore[union-attr]
    assert decisions == [(4, 0), (4, 1), (4, 2)]
    _, first = fit(3)
    first.save_checkpoint(tmp_path / "step3.ckpt")  # type: ignore[attr-defined]
    resumed, _ = fit(8, tmp_path / "step3.ckpt")
    assert resumed.freezer is not None and resumed.freezer.step_count == 8
    assert [(e.step, e.block) for e in resumed.freezer.events.events] == decisions
