"""Predictor units: label rules, scale invariance, incremental embedding, checkpoints, metrics, splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from smartfrz.predictor import (
    SCHEMA_VERSION,
    AttentionPredictorNet,
    FreezePredictor,
    LabelRule,
    ModelConfig,
    PredictorLoadError,
    label_curves,
    load_predictor,
)
from smartfrz.predictor.baselines import baseline_inputs
from smartfrz.predictor.checkpoint import save_checkpoint
from smartfrz.predictor.features import baseline_features
from smartfrz.predictor.labels import block_freeze_snapshots, first_converged
from smartfrz.predictor.metrics import binary_metrics, choose_threshold
from smartfrz.predictor.split import grouped_split, holdout_family_split

CFG = ModelConfig(window=12, k=48, embed_dim=16, hidden=16, heads=4)


def _predictor(seed: int = 0) -> FreezePredictor:
    """An untrained but randomly initialised predictor (weights are not all zero: outputs vary)."""
    torch.manual_seed(seed)
    return FreezePredictor(AttentionPredictorNet(CFG), 0.5, LabelRule(), {})


def _windows(n: int = 16, seed: int = 0) -> torch.Tensor:
    """Random-walk windows of varied step sizes and drifts, like real weight trajectories."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 1, CFG.k, generator=gen)
    step = torch.randn(n, CFG.window, CFG.k, generator=gen) * torch.logspace(-4, -1, n)[:, None, None]
    drift = torch.linspace(0, 1, CFG.window)[None, :, None] * torch.randn(n, 1, CFG.k, generator=gen) * 0.05
    return base + step.cumsum(1) + drift * torch.rand(n, 1, 1, generator=gen)


# ---- labels -------------------------------------------------------------------------------------


def test_monotone_and_pointwise_rules_on_hand_made_curves():
    cka = np.array([[0.5, 0.96], [0.96, 0.99], [0.94, 0.97], [0.97, 1.0], [1.0, 1.0]])
    mono = label_curves(cka, LabelRule("monotone", 0.95))
    point = label_curves(cka, LabelRule("pointwise", 0.95))
    np.testing.assert_array_equal(mono[:, 0], [False, False, False, True, True])  # dip at t=2 resets
    np.testing.assert_array_equal(point[:, 0], [False, True, False, True, True])
    np.testing.assert_array_equal(mono[:, 1], [True] * 5)
    np.testing.assert_array_equal(first_converged(mono), [3, 0])
    assert first_converged(np.zeros((4, 1), bool))[0] == 4  # never converged -> T


def test_label_rule_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown label rule"):
        LabelRule("sometimes", 0.9)
    with pytest.raises(ValueError, match="tau"):
        LabelRule("monotone", 1.5)
    with pytest.raises(ValueError, match="non-finite"):
        label_curves(np.array([[0.5], [np.nan]]), LabelRule())
    with pytest.raises(ValueError, match=r"\[T, L\]"):
        label_curves(np.zeros(3), LabelRule())


# ---- model --------------------------------------------------------------------------------------


def test_scale_invariance_per_layer_factors():
    p = _predictor()
    w = _windows()
    ref = p.predict_proba(w)
    assert ref.std() > 1e-3, "predictions should vary across windows (else invariance is trivial)"
    assert ref.dtype == torch.float32 and ref.shape == (16,)
    pow2 = torch.tensor([2.0**-4, 0.5, 4.0, 2.0**12] * 4)[:, None, None]
    np.testing.assert_allclose(p.predict_proba(w * pow2).numpy(), ref.numpy(), atol=1e-6)  # fp16 rounding commutes
    factors = torch.tensor([1e-3, 0.37, 3.0, 1e3] * 4)[:, None, None]
    rounding = (p.predict_proba(w * factors) - ref).abs().max()  # fp16 rounding is all that differs
    moved = (p.predict_proba(_windows(seed=1)) - ref).abs().max()  # other trajectories: a real change
    # the smallest steps (1e-4 of the weights) sit below fp16's resolution, so rounding moves those windows a
    # little; it must stay well below what a different trajectory does (measured: 0.005 against 0.02)
    assert rounding < ref.std() / 2 and rounding < moved / 3, (rounding, ref.std(), moved)
    torch.manual_seed(0)
    exact = FreezePredictor(
        AttentionPredictorNet(dataclasses.replace(CFG, sample_dtype="float32")), 0.5, LabelRule(), {}
    )
    np.testing.assert_allclose(exact.predict_proba(w * factors).numpy(), exact.predict_proba(w).numpy(), atol=2e-5)


def test_inputs_rounded_like_the_traces():
    p = _predictor()
    w = _windows()
    assert torch.equal(p.predict_proba(w), p.predict_proba(w.half().float()))
    with pytest.raises(ValueError, match="sample_dtype"):
        ModelConfig(sample_dtype="bfloat16")


def test_incremental_embedding_equals_full_windows():
    p = _predictor()
    w = _windows()
    snaps = w.reshape(-1, CFG.k)
    emb = torch.cat([p.embed_snapshots(s) for s in snaps.split(7)])  # embedded one chunk at a time
    inc = p.predict_from_embeddings(emb.reshape(16, CFG.window, CFG.embed_dim))
    np.testing.assert_allclose(inc.numpy(), p.predict_proba(w).numpy(), atol=1e-5)  # matmul blocking differs


def test_predictions_deterministic_and_no_grad():
    w = _windows().requires_grad_(True)
    a, b = _predictor(3).predict_proba(w), _predictor(3).predict_proba(w)
    assert torch.equal(a, b) and not a.requires_grad
    assert torch.all((a >= 0) & (a <= 1))
    p = _predictor(3)
    p.threshold = float(a.median())
    assert torch.equal(p.predict(w), a >= p.threshold) and 0 < int(p.predict(w).sum()) < len(a)


def test_predictor_input_errors():
    p = _predictor()
    with pytest.raises(ValueError, match="shape"):
        p.predict_proba(torch.zeros(2, CFG.window + 1, CFG.k))
    with pytest.raises(ValueError, match="floating"):
        p.predict_proba(torch.zeros(2, CFG.window, CFG.k, dtype=torch.long))
    bad = _windows(2)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        p.predict_proba(bad)
    assert p.predict_proba(torch.zeros(0, CFG.window, CFG.k)).shape == (0,)


def test_default_size_within_budget():
    net = AttentionPredictorNet(ModelConfig())
    assert sum(q.numel() for q in net.parameters()) <= 1_000_000


# ---- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_roundtrip_and_name_lookup(tmp_path, monkeypatch):
    p = _predictor(1)
    save_checkpoint(tmp_path / "mine.pt", p.net, 0.73, LabelRule("pointwise", 0.9), {"trained_on": "x"})
    monkeypatch.setenv("SMARTFRZ_PREDICTOR_DIR", str(tmp_path))
    q = load_predictor("mine")
    assert (q.window, q.k, q.threshold) == (CFG.window, CFG.k, 0.73)
    assert q.label_rule == LabelRule("pointwise", 0.9)
    w = _windows()
    assert torch.equal(q.predict_proba(w), p.predict_proba(w))
    with pytest.raises(PredictorLoadError, match="no predictor named 'other'"):
        load_predictor("other")


def test_predictor_dir_without_the_installed_package_data_says_what_to_do(monkeypatch):
    from smartfrz.predictor import inference

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.delenv("SMARTFRZ_PREDICTOR_DIR", raising=False)
    monkeypatch.setattr(inference.resources, "files", missing)
    with pytest.raises(
        RuntimeError, match=r"pip install -e \.`\?\); install the package or set \$SMARTFRZ_PREDICTOR_DIR"
    ):
        inference.predictor_dir()


def _payload(tmp_path) -> dict:
    save_checkpoint(tmp_path / "ok.pt", _predictor().net, 0.5, LabelRule(), {})
    return torch.load(tmp_path / "ok.pt", weights_only=True)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "schema_version"),
        (lambda d: d.pop("threshold"), r"missing key\(s\) \['threshold'\]"),
        (lambda d: d.pop("state_dict"), "missing key"),
        (lambda d: d.update(format="something-else"), "not a smartfrz predictor"),
        (lambda d: d["state_dict"].pop("time"), "incompatible"),
        (lambda d: d["model_config"].update(k=999), "incompatible"),
        (lambda d: d.update(threshold=2.0), "threshold"),
        (lambda d: d["label_rule"].update(rule="nope"), "incompatible"),
    ],
)
def test_bad_checkpoints_give_clear_errors(tmp_path, mutate, message):
    payload = _payload(tmp_path)
    mutate(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(PredictorLoadError, match=message) as err:
        load_predictor(tmp_path / "bad.pt")
    assert "bad.pt" in str(err.value)


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(PredictorLoadError, match=r"junk\.pt.*corrupt"):
        load_predictor(tmp_path / "junk.pt")
    _payload(tmp_path)
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PredictorLoadError, match=r"cut\.pt"):
        load_predictor(tmp_path / "cut.pt")
    with pytest.raises(PredictorLoadError, match="no such file"):
        load_predictor(tmp_path / "absent.pt")


# ---- metrics, splits, features, probes schedule ------------------------------------------------


def test_threshold_reaches_precision_target():
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.4
    p = np.clip(y * 0.3 + rng.random(2000) * 0.7, 0, 1)
    thr, met = choose_threshold(y, p, 0.95)
    m = binary_metrics(y, p, thr)
    assert met and m["precision"] >= 0.95 and m["recall"] > 0
    lower = binary_metrics(y, p, thr - 1e-3)  # the lowest threshold that meets it: recall is maximal
    assert lower["recall"] >= m["recall"]
    _, met_never = choose_threshold(y, rng.random(2000), 0.999)
    assert not met_never
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.ones(5, bool), np.ones(5), 0.9)


def test_grouped_split_keeps_runs_whole_and_covers_families():
    group = np.repeat([f"r{i}" for i in range(12)], 5)
    family = np.repeat(["a"] * 6 + ["b"] * 3 + ["c"] * 3, 5)
    split = grouped_split(group, family, 0.2, 0.2, seed=1)
    for g in set(group):
        assert len(set(split[group == g])) == 1
    for fam in "abc":
        assert set(split[family == fam]) == {"train", "val", "test"}
    lofo = holdout_family_split(group, family, "b", 0.2, seed=1)
    assert set(lofo[family == "b"]) == {"test"} and "test" not in set(lofo[family != "b"])


def test_baseline_features_scale_free():
    x = _windows(4).transpose(0, 1).numpy()  # [T, L, K]
    f = baseline_features(x, 6)
    assert np.isnan(f[:5]).all() and np.isfinite(f[5:]).all()
    np.testing.assert_allclose(baseline_features(x * 123.0, 6)[5:], f[5:], rtol=1e-4, atol=1e-4)


def test_gboost_ctx_sees_only_the_context_its_attention_model_sees():
    """A model without the loss input is compared with trees that lack it too (the default: every context)."""
    feats = np.arange(12, dtype=np.float32).reshape(3, 4)
    context = np.arange(100, 112, dtype=np.float32).reshape(3, 4)  # CONTEXT_FEATURES columns
    legacy = baseline_inputs("gboost_ctx", feats, context, ("progress", "lr_rel", "depth"))
    assert legacy.shape == (3, 7) and np.array_equal(legacy[:, 4:], context[:, :3])
    assert np.array_equal(baseline_inputs("gboost_ctx", feats, context), np.concatenate([feats, context], axis=1))
    assert np.array_equal(baseline_inputs("gboost_ctx", feats, context, ("depth",))[:, 4], context[:, 2])


def test_block_freeze_schedule_is_a_prefix_and_spares_the_head():
    labels = np.zeros((6, 4), bool)
    labels[1:, 0] = True  # block 0 from t=1
    labels[4:, 1] = True  # block 1 (layers 1, 2) from t=4: layer 2 from t=2
    labels[2:, 2] = True
    labels[0:, 3] = True  # block 2 converged from 0 but behind block 1
    sched = block_freeze_snapshots(labels, np.array([0, 1, 1, 2]), n_blocks=4)
    np.testing.assert_array_equal(sched, [1, 4, 4])  # block 3 = head: never listed
    with pytest.raises(ValueError, match="block"):
        block_freeze_snapshots(labels, np.array([0, -1, 1, 2]), n_blocks=4)
