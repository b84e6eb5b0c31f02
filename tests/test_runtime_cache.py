"""Activation cache: dtypes, budget, tuples, advancing, refusal, and training equivalence."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from test_runtime_support import data, mlp, train

from smartfrz.runtime import CacheConfig, FreezeOut, Freezer
from smartfrz.runtime.cache import ActivationCache

# Relative rounding of one element (floats: half an ulp of its own value; int8: half a step of its row's scale).
REL = {"float32": 0.0, "float16": 2.0**-11, "bfloat16": 2.0**-8, "int8": 0.5 / 127}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int8"])
def test_store_gather_roundtrip(dtype: str) -> None:
    """Rows come back in batch order, in the input dtype, within the storage dtype's precision."""
    cache = ActivationCache(CacheConfig(dtype=dtype), deterministic_inputs=True)
    x = torch.randn(10, 3, 4)
    idx = torch.tensor([5, 17, 2, 40, 8, 9, 11, 0, 3, 33])
    assert cache.store(x, idx) == 10
    perm = torch.tensor([3, 0, 9, 1])
    assert cache.lookup(idx[perm]).all()
    out = cache.gather(idx[perm])
    assert out.dtype == torch.float32 and out.shape == (4, 3, 4)
    want = x[perm]
    scale = want.abs().flatten(1).amax(1)[:, None, None] if dtype == "int8" else want.abs()
    assert bool(((out - want).abs() <= REL[dtype] * scale * 1.001 + 1e-7).all())
    assert cache.stats()["rows"] == 10 and cache.hit_rate == 1.0


def test_budget_caches_part_and_never_fails() -> None:
    """Rows beyond the byte budget are not cached; lookups report them as misses."""
    row_bytes = 64 * 2 + 5
    cache = ActivationCache(CacheConfig(dtype="float16", budget_mb=10 * row_bytes / 2**20), deterministic_inputs=True)
    x = torch.randn(16, 64)
    assert cache.store(x[:8], torch.arange(8)) == 8
    assert cache.store(x[8:], torch.arange(8, 16)) == 2
    assert cache.capacity == 10 and cache.rows == 10 and cache.nbytes <= 10 * row_bytes
    hits = cache.lookup(torch.arange(16))
    assert hits.tolist() == [True] * 10 + [False] * 6
    assert cache.hit_rate == pytest.approx(10 / 16)


def test_duplicates_tuples_and_shape_errors() -> None:
    """Duplicate indices in a batch are stored once; (hidden, int mask) tuples round-trip; shapes are fixed."""
    cache = ActivationCache(CacheConfig(dtype="float16"), deterministic_inputs=True)
    hidden = torch.randn(4, 5, 6)
    mask = (torch.arange(5)[None, :] < torch.tensor([[5], [2], [3], [1]])).long()  # every row differs
    idx = torch.tensor([7, 3, 7, 1])
    assert cache.store((hidden, mask), idx) == 3
    h, m = cache.gather(torch.tensor([7, 1, 3]))  # not the slots' order
    assert m.dtype == torch.int64 and torch.equal(m, mask[[0, 3, 1]])  # the rows of indices 7, 1, 3 in that order
    assert torch.allclose(h, hidden[[0, 3, 1]], atol=1e-2)
    with pytest.raises(ValueError, match="fixed per-sample shape"):
        cache.store((torch.randn(1, 9, 6), mask[:1, :]), torch.tensor([11]))


def test_refuses_to_serve_without_determinism() -> None:
    """Inputs not declared deterministic per index: the cache will not serve."""
    cache = ActivationCache(CacheConfig(), deterministic_inputs=False)
    cache.store(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="deterministic"):
        cache.lookup(torch.tensor([0]))
    with pytest.raises(RuntimeError, match="deterministic"):
        cache.gather(torch.tensor([0]))


def test_advance_maps_rows_and_keeps_budget() -> None:
    """Advancing applies the new blocks to every stored row; larger rows are dropped beyond the budget."""
    cache = ActivationCache(CacheConfig(dtype="float32", budget_mb=12 * (8 * 4 + 5) / 2**20, chunk_rows=3), True)
    x = torch.randn(12, 4)
    cache.store(x, torch.arange(100, 112))
    w = torch.randn(4, 8)
    cache.advance(lambda h: h @ w)
    assert cache.rows == 12
    assert torch.allclose(cache.gather(torch.arange(100, 112)), x @ w, atol=1e-5)
    cache.advance(lambda h: torch.cat([h, h], dim=1))  # rows double: only half fit
    assert cache.rows == 6 and int(cache.lookup(torch.arange(100, 112)).sum()) == 6


def _run(cache: CacheConfig | None, steps: int = 30) -> tuple[list[float], Freezer]:
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    freezer = Freezer(model, opt, FreezeOut(total_steps=steps, t0=0.3), cache=cache, deterministic_inputs=True)
    return train(freezer, model, opt, steps=steps, batch=16), freezer


# About 3x the measured worst step (fp32 6e-8, fp16 1.5e-3, bf16 2.2e-3, int8 4e-3 on losses ~0.8).
@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-6), ("float16", 5e-3), ("bfloat16", 7e-3), ("int8", 1.2e-2)])
def test_training_with_cache_matches_recomputed_prefix(dtype: str, tol: float) -> None:
    """Same losses, within the cache dtype's tolerance, as training that recomputes the frozen prefix."""
    reference, ref_freezer = _run(None)
    cached, freezer = _run(CacheConfig(dtype=dtype))
    assert ref_freezer.num_frozen == freezer.num_frozen == 3
    stats = freezer.summary()["cache"]
    assert stats["hit_rate"] > 0.3 and stats["rows"] == 96
    diffs = [abs(a - b) for a, b in zip(reference, cached, strict=True)]
    assert max(diffs) <= tol, diffs
    s = freezer.summary()
    assert s["flops_saved_forward"] > 0 and s["flops_saved_fraction"] > ref_freezer.summary()["flops_saved_fraction"]


def test_prefix_growth_advances_instead_of_recomputing() -> None:
    """After the prefix grows, cached samples are served without running the earlier blocks again."""

    calls = {"n": 0}
    model = mlp()
    model[0].register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(
        model, opt, FreezeOut(total_steps=20, t0=0.1), cache=CacheConfig("float32"), deterministic_inputs=True
    )
    x, _ = data()
    idx = torch.arange(32)
    train(freezer, model, opt, steps=4)  # block 0 frozen at step 2, block 1 at step 8
    freezer(x[idx], idx)  # fill the cache for these samples at prefix length 1
    assert freezer.num_frozen == 1
    train(freezer, model, opt, steps=5, start=4)
    assert freezer.num_frozen == 2
    before = calls["n"]
    with torch.no_grad():
        h = freezer.cache.gather(idx)
        model.eval()
        expected = model[1](model[0](x[idx]))
    assert calls["n"] == before + 1  # only the expected-value computation ran block 0
    assert torch.allclose(h, expected, atol=1e-5)


def test_cache_without_indices_recomputes(caplog: pytest.LogCaptureFixture) -> None:
    """No indices: one warning, the prefix is recomputed, training still works."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, FreezeOut(total_steps=6, t0=0.2), cache=True, deterministic_inputs=True)
    with caplog.at_level(logging.WARNING, logger="smartfrz.runtime"):
        train(freezer, model, opt, steps=6, use_idx=False)
    assert caplog.text.count("no dataset indices") == 1
    assert freezer.num_frozen >= 1 and freezer.cache.rows == 0


def _bert_losses(tiny_bert, cache: CacheConfig | None) -> tuple[list[float], Freezer]:
    from smartfrz.blocks import model_logits

    model = tiny_bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    freezer = Freezer(model, opt, FreezeOut(total_steps=12, t0=0.3), cache=cache, deterministic_inputs=True)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (24, 8), generator=g)
    ids[torch.arange(8)[None, :] >= torch.randint(3, 9, (24, 1), generator=g)] = 0  # padding: masks differ per row
    mask = (ids != 0).long()
    labels = (ids[:, 0] > 20).long()
    losses = []
    for step in range(12):
        idx = torch.randperm(24, generator=torch.Generator().manual_seed(step))[:8]
        # the same model input both ways: the cache path takes (ids, mask), the plain one HF's keyword
        out = freezer(ids[idx], idx, attention_mask=mask[idx]) if cache is None else freezer((ids[idx], mask[idx]), idx)
        loss = F.cross_entropy(model_logits(out), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        freezer.step()
        losses.append(loss.item())
    return losses, freezer


# About 5x the measured worst step (fp16 1.3e-6, bf16 7e-5, int8 5e-5; losses 0.69 -> 0.002), 10x below the
# 2.9e-3 that gathering the mask rows out of order causes.
@pytest.mark.parametrize(("dtype", "tol"), [("float16", 1e-5), ("bfloat16", 3e-4), ("int8", 3e-4)])
def test_bert_cache_with_hidden_and_mask_matches_recomputed(tiny_bert, dtype: str, tol: float) -> None:
    """A BERT-style model's (hidden_states, mask) prefix outputs cache and advance like tensors do."""
    reference, _ = _bert_losses(tiny_bert, None)
    cached, freezer = _bert_losses(tiny_bert, CacheConfig(dtype=dtype))
    assert freezer.num_frozen == 3 and freezer.cache is not None and freezer.cache.hits > 0
    assert max(abs(a - b) for a, b in zip(reference, cached, strict=True)) <= tol


def test_eval_mode_bypasses_the_cache() -> None:
    """Evaluating through the freezer (model.eval()) neither reads nor fills the cache: indices are training ones."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, FreezeOut(total_steps=4, t0=0.25), cache=True, deterministic_inputs=True)
    train(freezer, model, opt, steps=4)
    rows, lookups = freezer.cache.rows, freezer.cache.lookups  # type: ignore[union-attr]
    x, _ = data(seed=5)
    model.eval()
    with torch.no_grad():
        out = freezer(x[:8], torch.arange(8))
        assert torch.allclose(out, model(x[:8]), atol=1e-6)
    assert (freezer.cache.rows, freezer.cache.lookups) == (rows, lookups)  # type: ignore[union-attr]
