"""Checkpoint and resume: a resumed run makes the same freeze decisions at the same steps."""

from __future__ import annotations

import io
import math

import pytest
import torch
from test_runtime_support import RelChangePredictor, mlp, train

from smartfrz.runtime import CacheConfig, Freezer

TAUS = [4.0, 8.0, 16.0, 1e9]  # per-block learning-rate decay: earlier blocks settle first
STEPS, RESUME_AT = 60, 42  # resume just before the second freeze: it needs the restored windows


def _setup(cache: CacheConfig | None = None) -> tuple[torch.nn.Module, torch.optim.Optimizer, object, Freezer]:
    model = mlp()
    opt = torch.optim.SGD([{"params": list(b.parameters())} for b in model], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda t, tau=tau: math.exp(-t / tau) for tau in TAUS])
    predictor = RelChangePredictor(window=4, k=16, tol=1e-2)
    freezer = Freezer(
        model, opt, predictor, record_every=2, stage_every=4, cache=cache, deterministic_inputs=cache is not None
    )
    return model, opt, sched, freezer


def _events(freezer: Freezer) -> list[tuple[int, int, float | None]]:
    return [(e.step, e.block, e.score) for e in freezer.events.events]


@pytest.mark.parametrize(("freezer_first", "cache"), [(True, None), (False, None), (True, CacheConfig("float16"))])
def test_resumed_run_makes_the_same_decisions(freezer_first: bool, cache: CacheConfig | None) -> None:
    """Interrupt between two freezes, restore everything in fresh objects, and compare with one run.

    With the cache, the resumed run starts with an empty cache that refills: same decisions at the
    same steps, losses equal within the cache dtype's precision.
    """
    full_model, full_opt, full_sched, full = _setup(cache)
    full_losses = train(full, full_model, full_opt, steps=STEPS, scheduler=full_sched)  # type: ignore[arg-type]
    assert len(full.events.events) == 2 and full.events.events[0].step < RESUME_AT < full.events.events[1].step

    model, opt, sched, freezer = _setup(cache)
    first = train(freezer, model, opt, steps=RESUME_AT, scheduler=sched)  # type: ignore[arg-type]
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "frz": freezer.state_dict(),
        },  # type: ignore[attr-defined]
        buf,
    )
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2, opt2, sched2, freezer2 = _setup(cache)
    model2.load_state_dict(ckpt["model"])
    if freezer_first:
        freezer2.load_state_dict(ckpt["frz"])
        opt2.load_state_dict(ckpt["opt"])
    else:
        opt2.load_state_dict(ckpt["opt"])
        freezer2.load_state_dict(ckpt["frz"])
    sched2.load_state_dict(ckpt["sched"])  # type: ignore[attr-defined]
    assert freezer2.num_frozen == 1 and not any(p.requires_grad for p in model2[0].parameters())
    assert not model2[0].training
    rest = train(freezer2, model2, opt2, steps=STEPS - RESUME_AT, scheduler=sched2, start=RESUME_AT)  # type: ignore[arg-type]
    if cache is None:  # bit-identical
        assert _events(freezer2) == _events(full)
        assert first + rest == full_losses
        for a, b in zip(model2.parameters(), full_model.parameters(), strict=True):
            assert torch.equal(a, b)
    else:  # rows advanced at a freeze vs recomputed after the resume differ by fp16 rounding only
        assert [e[:2] for e in _events(freezer2)] == [e[:2] for e in _events(full)]
        assert [e[2] for e in _events(freezer2)] == pytest.approx([e[2] for e in _events(full)], rel=1e-3)
        assert first + rest == pytest.approx(full_losses, abs=1e-2)
        assert full.cache.rows > 0 and freezer2.cache.hits > 0  # type: ignore[union-attr]


def test_cache_settings_survive_a_resume() -> None:
    """The cache configuration comes back with the checkpoint, and the resumed cache refills and serves."""
    config = CacheConfig(dtype="bfloat16", location="host", budget_mb=3.0, chunk_rows=7)
    model, opt, sched, freezer = _setup(config)
    train(freezer, model, opt, steps=20, scheduler=sched)  # type: ignore[arg-type]
    state = freezer.state_dict()
    model2, opt2, sched2, freezer2 = _setup(None)
    model2.load_state_dict(model.state_dict())
    freezer2.load_state_dict(state)
    assert freezer2.cache is not None and freezer2.cache.config == config
    assert freezer2.cache.lookups == freezer.cache.lookups  # type: ignore[union-attr]
    train(freezer2, model2, opt2, steps=10, scheduler=sched2, start=20)  # type: ignore[arg-type]
    assert freezer2.cache.rows > 0 and freezer2.cache.hits > freezer.cache.hits  # type: ignore[union-attr]
