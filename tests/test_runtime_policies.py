"""Recorder and policies: ring-buffer windows, SmartFRZ decisions (both predictor paths), AutoFreeze."""

from __future__ import annotations

import pytest
import torch
from test_runtime_support import IncrementalRelChangePredictor, RelChangePredictor, mlp, train
from torch import nn

import smartfrz.ops
from smartfrz.predictor import AttentionPredictorNet, FreezePredictor, LabelRule, ModelConfig
from smartfrz.runtime import AutoFreeze, FreezeOut, Freezer
from smartfrz.runtime.recorder import WeightRecorder
from smartfrz.runtime.smartfrz_policy import SmartFRZ


def test_recorder_windows_are_chronological_and_one_fused_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows hold the last W snapshots oldest first; each snapshot is one samples-only record_weights call (no
    pass over every weight for statistics nothing reads); frozen layers stop."""
    calls = []
    real = smartfrz.ops.record_weights

    def counting(w, i, p=None, stats=True):
        calls.append(len(w) if not stats else "with stats")
        return real(w, i, p, stats)

    monkeypatch.setattr(smartfrz.ops, "record_weights", counting)
    layers = [nn.Linear(6, 5), nn.Linear(5, 3)]
    rec = WeightRecorder(layers, k=8, window=3, seed=1)
    history = []
    for t in range(5):
        with torch.no_grad():
            for m in layers:
                m.weight.add_(t + 1.0)
        history.append([m.weight.detach().flatten()[rec.sample_idx[i]].clone() for i, m in enumerate(layers)])
        rec.record()
    assert calls == [2] * 5
    win = rec.windows([0, 1])
    for layer in (0, 1):
        assert torch.equal(win[layer], torch.stack([history[t][layer] for t in (2, 3, 4)]))
    rec.set_active([1])
    frozen_row = rec.ring[0].clone()
    rec.record()
    assert calls[-1] == 1 and torch.equal(rec.ring[0], frozen_row)
    fresh = WeightRecorder(layers, k=8, window=3, seed=1)
    fresh.load_state_dict(rec.state_dict())
    assert torch.equal(fresh.windows([1]), rec.windows([1])) and fresh.active == [1]


def _smartfrz_run(predictor: object, lrs: list[float], steps: int = 12) -> Freezer:
    model = mlp(bn=False)
    groups = [{"params": list(block.parameters()), "lr": lr} for block, lr in zip(model, lrs, strict=True)]
    opt = torch.optim.SGD(groups, lr=0.1)
    freezer = Freezer(model, opt, predictor, record_every=2, stage_every=4)  # type: ignore[arg-type]
    train(freezer, model, opt, steps=steps)
    return freezer


@pytest.mark.parametrize("cls", [RelChangePredictor, IncrementalRelChangePredictor])
def test_smartfrz_freezes_converged_prefix_only(cls: type[RelChangePredictor]) -> None:
    """Blocks whose weights stopped moving freeze at the first stage with a full window; the rest keep training."""
    predictor = cls(window=4, k=16)
    if isinstance(predictor, IncrementalRelChangePredictor):

        def unused(windows: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the incremental path must not call predict_proba")

        predictor.predict_proba = unused  # type: ignore[method-assign]
    freezer = _smartfrz_run(predictor, lrs=[0.0, 0.0, 0.1, 0.1])
    assert [(e.step, e.block) for e in freezer.events.events] == [(8, 0), (8, 1)]
    assert all(e.score == pytest.approx(1.0) for e in freezer.events.events)
    assert predictor.calls == 2  # stages at steps 8 and 12 (step 4: window not full yet)
    rec = freezer.policy.recorder
    assert rec is not None and rec.active == [2]  # only block 2's layer is still recorded
    if isinstance(predictor, IncrementalRelChangePredictor):
        assert predictor.embedded == 3 * 4 + 1 * 2  # 3 layers x 4 snapshots, then 1 layer x 2 snapshots


def test_smartfrz_needs_every_earlier_block_and_spares_the_head() -> None:
    """A converged block behind a training one waits; with everything converged all but the head freeze."""
    assert _smartfrz_run(RelChangePredictor(window=4, k=16), lrs=[0.1, 0.0, 0.0, 0.1]).num_frozen == 0
    freezer = _smartfrz_run(RelChangePredictor(window=4, k=16), lrs=[0.0, 0.0, 0.0, 0.0])
    assert freezer.num_frozen == 3 and freezer.blocks[3].module.weight.requires_grad


def _policy_run(policy: object, lrs: list[float], steps: int = 12, **freezer_kwargs: object) -> Freezer:
    model = mlp(bn=False)
    groups = [{"params": list(block.parameters()), "lr": lr} for block, lr in zip(model, lrs, strict=True)]
    opt = torch.optim.SGD(groups, lr=0.1)
    freezer = Freezer(model, opt, policy, verbose=False, **freezer_kwargs)  # type: ignore[arg-type]
    train(freezer, model, opt, steps=steps)
    return freezer


def test_smartfrz_backstop_freezes_no_later_than_freezeout() -> None:
    """Layers that never settle freeze on FreezeOut's steps, between stages too; settled ones freeze earlier."""
    moving = [0.1, 0.1, 0.1, 0.1]
    alone = SmartFRZ(RelChangePredictor(window=4, k=16), 1, 5, total_steps=12, backstop=0.5)  # stages at 5, 10
    fixed = _policy_run(FreezeOut(total_steps=12, t0=0.5), moving)
    steps = [(e.step, e.block) for e in fixed.events.events]
    assert steps == [(6, 0), (8, 1), (10, 2)]
    assert [(e.step, e.block) for e in _policy_run(alone, moving).events.events] == steps
    early = SmartFRZ(RelChangePredictor(window=4, k=16), 2, 4, total_steps=12, backstop=0.9)
    frozen = _policy_run(early, lrs=[0.0, 0.0, 0.1, 0.1])
    events = frozen.events.events
    assert [(e.step, e.block) for e in events] == [(8, 0), (8, 1), (12, 2)]  # the predictor's two, then the backstop
    after = SmartFRZ(RelChangePredictor(window=4, k=16), 2, 4, total_steps=12, backstop=0.5)
    events = _policy_run(after, lrs=[0.1, 0.1, 0.0, 0.1]).events.events
    assert [(e.step, e.block) for e in events] == [(6, 0), (8, 1), (8, 2)]  # block 2 right behind the backstop's 1
    lines = [frozen.events.line(e) for e in frozen.events.events]
    assert "backstop" not in lines[0] and lines[2].endswith("by the backstop schedule")
    assert "by the backstop schedule" in str(frozen.summary())
    unfilled = SmartFRZ(RelChangePredictor(window=8, k=16), 1, 4, total_steps=12, backstop=0.1)
    first = _policy_run(unfilled, [0.0, 0.0, 0.1, 0.1], steps=2)  # the window is not full when it freezes
    assert first.events.events[0].score is None and first.events.events[0].backstop
    assert first.events.line(first.events.events[0]).endswith(", no score yet, by the backstop schedule")
    assert "no score yet, by the backstop schedule" in str(first.summary())  # was "(smartfrz schedule)"
    waiting = SmartFRZ(RelChangePredictor(window=4, k=16), 2, 4, total_steps=12, backstop=0.9)
    assert "or on FreezeOut's t0=0.9 schedule at the latest" in str(
        _policy_run(waiting, [0.0, 0.0, 0.1, 0.1], 10).summary()
    )
    with pytest.raises(ValueError, match="total_steps"):
        SmartFRZ(RelChangePredictor(), backstop=0.5)
    with pytest.raises(ValueError, match="t0"):
        SmartFRZ(RelChangePredictor(), total_steps=12, backstop=1.5)


def test_smartfrz_reuses_its_scores_at_a_stage_without_a_new_snapshot() -> None:
    """Backstop stages between recordings see the same windows and context: the predictor is not asked again."""
    predictor = RelChangePredictor(window=2, k=16)
    policy = SmartFRZ(predictor, 4, 4, total_steps=20, backstop=0.5)  # records 4, 8, ...; backstop 10, 14, 17
    freezer = _policy_run(policy, [0.1] * 4, steps=20)
    assert [(e.step, e.block) for e in freezer.events.events] == [(10, 0), (14, 1), (17, 2)]
    assert predictor.calls == 3  # steps 8, 12 and 16; stages 10, 14 and 17 reuse the latest (was 6 calls)


def test_freezer_gives_its_total_steps_to_a_smartfrz_policy_without_one() -> None:
    """The progress input needs the run length: a SmartFRZ passed in without it takes the freezer's."""
    policy = SmartFRZ(RelChangePredictor(window=4, k=16), 2, 4)
    _policy_run(policy, [0.1] * 4, steps=2, total_steps=12)
    assert policy.total_steps == 12
    planned = SmartFRZ(RelChangePredictor(window=4, k=16), 2, 4, total_steps=20)
    with pytest.raises(ValueError, match="plans 20"):
        _policy_run(planned, [0.1] * 4, steps=2, total_steps=12)


def test_freezer_backstop_auto_explicit_and_refused() -> None:
    """ "auto" backstops only a predictor with a known run length; a number where it cannot apply is refused."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    predictor = RelChangePredictor(window=4, k=16)
    assert Freezer(model, opt, predictor, total_steps=12, verbose=False).policy.backstop == 0.5
    assert Freezer(model, opt, predictor, verbose=False).policy.backstop is None  # no run length: no schedule
    assert Freezer(model, opt, predictor, total_steps=12, backstop=0.8, verbose=False).policy.backstop == 0.8
    assert Freezer(model, opt, predictor, total_steps=12, backstop=None, verbose=False).policy.backstop is None
    with pytest.raises(ValueError, match="give total_steps"):
        Freezer(model, opt, predictor, backstop=0.5)
    with pytest.raises(ValueError, match=r"\['backstop'\] configure"):  # was silently ignored
        Freezer(model, opt, SmartFRZ(predictor, 2, 4), total_steps=12, backstop=0.5)
    Freezer(model, opt, FreezeOut(total_steps=12), backstop=None, verbose=False)  # None asks for nothing


def test_autofreeze_uses_gradient_norm_change() -> None:
    """Blocks whose gradient norm changed least between intervals (at or below the percentile) freeze, as a prefix."""
    model = mlp(bn=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    freezer = Freezer(model, opt, AutoFreeze(interval=2, percentile=50.0))
    layers = [model[0][0], model[1][0], model[2][0], model[3]]
    for step, norms in enumerate([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 3, 5], [1, 1, 3, 5]]):
        for m, n in zip(layers, norms, strict=True):
            m.weight.grad = torch.full_like(m.weight, n / m.weight.numel() ** 0.5)
        opt.step()
        freezer.step()
        assert freezer.num_frozen == (2 if step == 3 else 0)
    assert [(e.step, e.block, e.score) for e in freezer.events.events] == [(4, 0, 0.0), (4, 1, 0.0)]
    acc = freezer.policy._acc.clone()  # type: ignore[attr-defined]
    opt.step()
    assert not torch.equal(freezer.policy._acc, acc)  # type: ignore[attr-defined]  # the hook accumulates ...
    freezer.close()
    acc = freezer.policy._acc.clone()  # type: ignore[attr-defined]
    opt.step()
    assert torch.equal(freezer.policy._acc, acc)  # type: ignore[attr-defined]  # ... until close()


def _full_path_probs(policy: SmartFRZ, rows: list[int]) -> torch.Tensor:
    """P(converged) of these recorder rows through predict_proba on the raw windows (no embedded ring)."""
    assert policy.recorder is not None
    windows, valid = policy.recorder.partial_windows(rows, embedded=False)
    return policy.predictor.predict_proba(windows, context=policy._context(rows), valid=valid)  # type: ignore[call-arg]


def test_smartfrz_incremental_path_equals_full_path_after_freezes_and_resume() -> None:
    """Stage predictions (incremental) match predict_proba on raw windows: short, wrapped, after freezes, resumed."""
    torch.manual_seed(0)
    predictor = FreezePredictor(AttentionPredictorNet(ModelConfig(window=4, k=16)), 0.5, LabelRule(), {})
    model = mlp(bn=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = {"record_every": 1, "stage_every": 1000, "total_steps": 40, "verbose": False}  # stages run by hand
    freezer = Freezer(model, opt, predictor, **settings)  # type: ignore[arg-type]
    policy = freezer.policy
    assert isinstance(policy, SmartFRZ) and policy.incremental and policy.recorder is not None
    for steps, frozen in ((3, 0), (7, 0), (2, 1), (5, 2)):  # 3 < W snapshots, then a wrapped ring, then freezes
        if frozen:
            freezer._freeze_to(frozen, None, {})
        train(freezer, model, opt, steps=steps)
        rows = policy.recorder.active
        torch.testing.assert_close(policy._predict(rows), _full_path_probs(policy, rows), atol=1e-5, rtol=0)
    fresh = mlp(bn=False)
    resumed = Freezer(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1), predictor, **settings)  # type: ignore[arg-type]
    resumed.load_state_dict(freezer.state_dict())
    assert isinstance(resumed.policy, SmartFRZ) and resumed.policy.recorder is not None
    assert resumed.policy.recorder.active == rows
    assert torch.equal(resumed.policy._predict(rows), policy._predict(rows))
