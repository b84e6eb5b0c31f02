"""Label rules over snapshot-pair CKA, learning-rate schedules, masked windows and the policy simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smartfrz.collection.cka import GramStore, cka_against_final, cka_matrix
from smartfrz.predictor.dataset import RunLayout, WindowSet
from smartfrz.predictor.labels import (
    LabelRule,
    label_pairs,
    label_run,
    near_final_accuracy,
    remaining_norm,
    remaining_path,
)
from smartfrz.predictor.model import AttentionPredictorNet, ModelConfig, window_features
from smartfrz.predictor.simulate import choose_threshold_by_frontier, choose_threshold_by_savings, simulate, summarise
from smartfrz.train_context import CONTEXT_FEATURES
from smartfrz.zoo.schedules import lr_factor


def _pairs_from_curve(values: np.ndarray) -> np.ndarray:
    """[T, T, 1] CKA of a 1-D representation path: 1 - |r_t - r_t'|."""
    return (1.0 - np.abs(values[:, None] - values[None, :]))[..., None]


def test_horizon_rule_looks_only_ahead_and_ignores_where_the_run_stops() -> None:
    steps = np.arange(1, 11)
    # a representation that settles at snapshot 3, then moves again from snapshot 8 (e.g. a late lr change)
    path = np.array([0.0, 0.3, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.9, 0.9])
    pairs = _pairs_from_curve(path)
    horizon = label_pairs(pairs, steps, LabelRule("horizon", 0.99, horizon=0.3))[:, 0]
    stable = label_pairs(pairs, steps, LabelRule("stable", 0.99))[:, 0]
    monotone = label_run(pairs[:, -1], None, steps, LabelRule("monotone", 0.99))[:, 0]
    assert horizon.tolist() == [False, False, False, True, True, False, False, False, True, True]
    assert stable.tolist() == [False] * 8 + [True, True]
    assert monotone.tolist() == stable.tolist()
    with pytest.raises(ValueError, match="needs the trace's cka_pairs"):
        label_run(pairs[:, -1], None, steps, LabelRule("horizon", 0.99))
    with pytest.raises(ValueError, match="horizon"):
        LabelRule("horizon", 0.9, horizon=0.0)


def test_floor_rule_is_relative_to_the_layers_own_late_jitter() -> None:
    steps = np.arange(1, 11) * 10
    # layer 0: a constant-rate layer that stops approaching its end at 1 - CKA ~ 0.02 (jitter) from snapshot 3;
    # layer 1: a decaying-rate layer that approaches its end smoothly, moving little in the closing span
    jitter = np.array([0.30, 0.10, 0.05, 0.021, 0.019, 0.022, 0.020, 0.018, 0.021, 0.0])
    smooth = np.array([0.30, 0.20, 0.12, 0.08, 0.05, 0.03, 0.02, 0.01, 0.004, 0.0])
    cka = 1.0 - np.stack([jitter, smooth], axis=1)
    floor = label_run(cka, None, steps, LabelRule("floor", 0.5, horizon=0.25))
    # closing span: snapshots at step >= 75, i.e. from index 6 on (step 70 is the last before the span)
    assert floor[:, 0].tolist() == [False, False, False, True, True, True, True, True, True, True]
    assert floor[:, 1].tolist() == [False] * 5 + [True] * 5  # within 2 x 0.02 from snapshot 5 (0.03) on
    # a fixed tau strict enough for the smooth layer (0.985: from snapshot 7) holds the jitter layer to the end
    fixed = label_run(cka, None, steps, LabelRule("monotone", 0.985))
    assert fixed[:, 1].tolist().index(True) == 7 and fixed[:, 0].tolist().index(True) == 9
    # a layer that does not move in the closing span is converged only where it sits at its end
    still = 1.0 - np.array([[0.2], [0.1], [0.0], [0.0], [0.0]])
    assert label_run(still, None, np.arange(5), LabelRule("floor", 0.5, horizon=0.4))[:, 0].tolist() == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert "within 2x its last 25%" in LabelRule("floor", 0.5).describe()


def test_remaining_cap_keeps_a_layer_that_looks_converged_to_cka_but_has_not_moved() -> None:
    """A patch-embedding-like layer: CKA 1 against the final model at every snapshot, weights on their way."""
    n_t = 11
    start, end = np.zeros(8), np.ones(8)
    walk = np.stack([start + (end - start) * t / (n_t - 1) for t in range(n_t)])  # straight to the end
    still = np.ones((n_t, 8))  # a second layer that never moves
    samples = np.stack([walk, still], axis=1)  # [T, L=2, K]
    cka = np.ones((n_t, 2))
    steps = np.arange(1, n_t + 1)
    np.testing.assert_allclose(remaining_path(samples)[:, 0], 1 - np.arange(n_t) / (n_t - 1))
    assert (remaining_path(samples)[:, 1] == 0).all()
    plain = label_run(cka, None, steps, LabelRule())
    capped = label_run(cka, None, steps, LabelRule(remaining=0.5), samples)
    assert plain.all()
    assert capped[:, 0].tolist() == [False] * 5 + [True] * 6 and capped[:, 1].all()
    back_and_forth = samples.copy()
    back_and_forth[7, 0] = start  # wanders back to its start late: not converged before that
    assert label_run(cka, None, steps, LabelRule(remaining=0.5), back_and_forth)[:, 0].tolist() == (
        [False] * 8 + [True] * 3
    )
    with pytest.raises(ValueError, match="needs the run's sampled weights"):
        label_run(cka, None, steps, LabelRule(remaining=0.5))
    with pytest.raises(ValueError, match="remaining must be a fraction"):
        LabelRule(remaining=1.5)


def test_norm_cap_lets_a_slow_steady_drift_that_is_small_against_the_weights_pass_early() -> None:
    """A pretrained-like layer drifts 1% of its norm, steadily: the path cap holds it to the end, the norm cap not."""
    n_t = 11
    start = np.full(8, 10.0)
    drift = np.stack([start + 0.1 * t / (n_t - 1) for t in range(n_t)])[:, None]  # [T, 1, K]
    cka, steps = np.ones((n_t, 1)), np.arange(1, n_t + 1)
    np.testing.assert_allclose(remaining_norm(drift)[:, 0], (0.1 - 0.1 * np.arange(n_t) / (n_t - 1)) / 10.1)
    path_only = label_run(cka, None, steps, LabelRule(remaining=0.25), drift)[:, 0]
    assert path_only.tolist() == [False] * 8 + [True] * 3
    assert label_run(cka, None, steps, LabelRule(remaining=0.25, norm_cap=0.05), drift).all()
    assert label_run(cka, None, steps, LabelRule(norm_cap=0.05), drift).all()  # the norm cap alone
    walk = np.stack([np.ones(8) * t / (n_t - 1) for t in range(n_t)])[:, None]  # from 0 to its norm: far from it
    assert label_run(cka, None, steps, LabelRule(norm_cap=0.05), walk)[:, 0].tolist() == [False] * 10 + [True]
    assert LabelRule(remaining=0.25, norm_cap=0.05).describe().endswith("path's end or within 0.05 of their norm")
    with pytest.raises(ValueError, match="needs the run's sampled weights"):
        label_run(cka, None, steps, LabelRule(norm_cap=0.05))
    with pytest.raises(ValueError, match="norm_cap"):
        LabelRule(norm_cap=-0.1)


def test_accuracy_gate_holds_labels_back_until_accuracy_stays_near_its_final() -> None:
    acc = np.array([0.1, 0.5, 0.8, 0.9, 0.95, 0.96, 0.96, 0.96])  # smoothed: ..., 0.937, 0.957, 0.96, 0.96
    near = near_final_accuracy(acc, points=1.0)
    assert near.tolist() == [False] * 5 + [True] * 3
    dip = np.array([0.96, 0.96, 0.96, 0.5, 0.5, 0.96, 0.96, 0.96])  # near the final early, then a dip
    assert near_final_accuracy(dip, points=1.0).tolist() == [False] * 6 + [True] * 2
    cka = np.ones((8, 2))
    steps = np.arange(8)
    gated = label_run(cka, None, steps, LabelRule(acc_gate=1.0), val_acc=acc)
    assert gated.tolist() == [[v, v] for v in near.tolist()]
    assert label_run(cka, None, steps, LabelRule(acc_gate=100.0), val_acc=acc).all()  # a loose gate: CKA decides
    with pytest.raises(ValueError, match="needs the run's per-snapshot validation accuracy"):
        label_run(cka, None, steps, LabelRule(acc_gate=1.0))
    with pytest.raises(ValueError, match="non-finite"):
        near_final_accuracy(np.array([0.5, np.nan]), 1.0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="acc_gate"):
            LabelRule(acc_gate=bad)


def test_rule_keys_round_trip_and_bad_keys_are_refused() -> None:
    for key in (
        "monotone:0.999",
        "monotone:0.999:0.5",
        "horizon:0.95",
        "horizon@0.1:0.99",
        "horizon@0.5:0.9:0.25",
        "monotone:0.998:0.25,acc=1",
        "floor:0.5",
        "floor@0.1:0.25:0.25,acc=1",
        "monotone:0.999:0.25,norm=0.05",
        "monotone:0.999:0.25,norm=0.05,acc=1",
    ):
        assert LabelRule.parse(key).key == key
    assert LabelRule.parse("stable:0.99:0.25") == LabelRule("stable", 0.99, remaining=0.25)
    assert LabelRule.parse("horizon@0.1:0.99") == LabelRule("horizon", 0.99, horizon=0.1)
    assert LabelRule.parse("monotone:0.99,acc=0.5") == LabelRule("monotone", 0.99, acc_gate=0.5)
    assert LabelRule.parse("monotone:0.99,acc=0.5,norm=0.1") == LabelRule("monotone", 0.99, acc_gate=0.5, norm_cap=0.1)
    assert LabelRule.parse("horizon@0.25:0.99").key == "horizon:0.99"  # the default look-ahead is not spelled out
    for bad in (
        "monotone",
        "monotone:x",
        "monotone:0.9:0.5:1",
        "nope:0.9",
        "monotone@0.1:0.9",
        "floor:0",
        "horizon@2:0.9",
        "monotone:0.9,x=1",
        "monotone:0.9,acc=-1",
        "monotone:0.9,acc=1,acc=2",
        "monotone:0.9,norm",
    ):
        with pytest.raises(ValueError):
            LabelRule.parse(bad)


def test_cka_matrix_matches_cka_against_final() -> None:
    rng = np.random.default_rng(0)
    store = GramStore(2**30)
    for _ in range(5):
        grams = []
        for m in (4, 6):
            x = rng.normal(size=(m, 3))
            g = x @ x.T
            grams.append((g / np.linalg.norm(g)).astype(np.float32))
        store.append(grams)
    pairs = cka_matrix(store)
    assert pairs.shape == (5, 5, 2)
    np.testing.assert_allclose(np.diagonal(pairs, axis1=0, axis2=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pairs[:, -1], cka_against_final(store), atol=1e-6)
    np.testing.assert_allclose(pairs, pairs.transpose(1, 0, 2), atol=1e-6)


@pytest.mark.parametrize(
    ("schedule", "warmup", "expected"),
    [
        ("constant", 0.0, [1.0, 1.0, 1.0, 1.0]),
        ("linear", 0.0, [1.0, 0.75, 0.5, 0.25]),
        ("step", 0.0, [1.0, 1.0, 0.1, 0.01]),
        ("cosine", 0.25, [1.0, 1.0, 0.75, 0.25]),
    ],
)
def test_lr_schedules(schedule: str, warmup: float, expected: list[float]) -> None:
    got = [lr_factor(schedule, s, 4, warmup) for s in range(4)]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_unknown_schedule_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("exponential", 0, 10)


def test_masked_windows_ignore_padding_and_scale() -> None:
    torch.manual_seed(0)
    net = AttentionPredictorNet(ModelConfig(window=8, k=32, embed_dim=16)).eval()
    x = torch.randn(4, 8, 32).cumsum(1)
    valid = torch.ones(4, 8, dtype=torch.bool)
    valid[0, :5] = False
    valid[1, :2] = False
    out = net(x, None, valid)
    garbage = x.clone()
    garbage[0, :5] = 1e3 * torch.randn(5, 32)
    torch.testing.assert_close(net(garbage, None, valid), out)
    torch.testing.assert_close(net(4.0 * x, None, valid), out, atol=1e-4, rtol=0)
    # a short window is not judged like a full one that merely starts with the same snapshots
    assert not torch.allclose(net(x, None, torch.ones_like(valid))[0], out[0])
    tokens, feats = window_features(net.embed(x), valid)
    assert torch.isfinite(tokens).all() and torch.isfinite(feats).all()
    assert feats[0, -1] == pytest.approx(3 / 8) and feats[2, -1] == 1.0


def test_context_changes_the_prediction_and_unknown_is_allowed() -> None:
    torch.manual_seed(0)
    net = AttentionPredictorNet(ModelConfig(window=4, k=16, embed_dim=8)).eval()
    x = torch.randn(2, 4, 16).cumsum(1)
    nan = float("nan")
    known = net(x, torch.tensor([[0.2, 1.0, 0.0, 0.5], [0.9, 0.1, 1.0, 2.0]]))
    for hidden in ([nan, 1.0, 0.0, 0.5], [0.2, 1.0, 0.0, nan]):  # no total_steps; no loss passed
        unknown = net(x, torch.tensor([hidden, [0.9, 0.1, 1.0, 2.0]]))
        assert torch.isfinite(unknown).all() and not torch.allclose(known[0], unknown[0])
    with pytest.raises(ValueError, match="context must be"):
        net(x, torch.zeros(2, 3))
    legacy = AttentionPredictorNet(ModelConfig(window=4, k=16, embed_dim=8, context=("progress", "lr_rel", "depth")))
    assert torch.isfinite(legacy.eval()(x, torch.zeros(2, 3))).all()
    with pytest.raises(ValueError, match="distinct names"):
        ModelConfig(context=("progress", "epoch"))


def _window_set(labels: np.ndarray, block: np.ndarray) -> WindowSet:
    """A WindowSet for one run whose examples are every (t, layer) of labels [T, L]."""
    n_t, n_l = labels.shape
    t, layer = np.meshgrid(np.arange(n_t), np.arange(n_l), indexing="ij")
    n = n_t * n_l
    return WindowSet(
        window=3,
        emb=torch.zeros(1, 1),
        end=np.zeros(n, np.int64),
        first=np.zeros(n, np.int64),
        y=labels.ravel().astype(bool),
        context=np.zeros((n, len(CONTEXT_FEATURES)), np.float32),
        features=np.zeros((n, 1), np.float32),
        run_id=np.full(n, "r"),
        family=np.full(n, "f"),
        group=np.full(n, "r"),
        layer=layer.ravel(),
        t=t.ravel(),
        layouts={"r": RunLayout(block, np.full(n_l, 10), n_t)},
    )


def test_simulator_replays_the_prefix_walk_against_a_known_frontier() -> None:
    n_t = 10
    block = np.array([0, 1, 2])  # 3 layers, blocks 0 and 1 freezable, block 2 is the head
    labels = np.zeros((n_t, 3), bool)
    labels[4:, 0] = True  # frontier: block 0 safe from snapshot 4, block 1 from snapshot 6
    labels[6:, 1] = True
    data = _window_set(labels, block)
    probs = np.zeros((n_t, 3))
    probs[2:, 0] = 0.9  # the predictor freezes block 0 at snapshot 2: two snapshots early
    probs[7, 1] = 0.9  # and block 1 at snapshot 7 (a single stage above threshold suffices; it never thaws)
    (run,) = simulate(data, probs.ravel(), threshold=0.5)
    assert run.frontier == [4, 6] and run.predicted == [2, 7]
    assert run.early == [{"block": 0, "at": 0.3, "frontier": 0.5}]
    # parameter-time: block b frozen for (T - 1 - at) of T snapshot intervals, 10 of 30 weights each
    assert run.saved == pytest.approx((10 * 7 / 10 + 10 * 2 / 10) / 30)
    assert run.frontier_saved == pytest.approx((10 * 5 / 10 + 10 * 3 / 10) / 30)
    # block 0 frozen two intervals before its frontier: 10 weights x 2 of 10 intervals, of 30 weights
    assert run.early_saved == pytest.approx(10 * 2 / 10 / 30)
    assert run.net_saved == pytest.approx(run.saved - 2 * run.early_saved)
    summary = summarise([run])["all"]
    assert summary["captured"] == pytest.approx(run.saved / run.frontier_saved)
    assert summary["net_saved"] == pytest.approx(run.net_saved)
    assert summary["early_blocks"] == 1 and summary["early_block_share"] == 0.5
    # block 1 cannot freeze before block 0: the prefix waits
    probs2 = np.zeros((n_t, 3))
    probs2[1:, 1] = 0.9
    probs2[5:, 0] = 0.9
    assert simulate(data, probs2.ravel(), 0.5)[0].predicted == [5, 5]
    # the threshold search refuses the early freeze: block 0 scores 0.9 from 2, so only >0.9 avoids it
    thr, summ = choose_threshold_by_savings(data, probs.ravel(), max_early_share=0.0, grid=np.array([0.5, 0.95]))
    assert thr == 0.95 and summ["all"]["early_blocks"] == 0
    # a probe-measured frontier replaces the labels': block 0 safe from 1, block 1 only at 8
    (probed,) = simulate(data, probs.ravel(), 0.5, frontiers={"r": [1, 8]})
    assert probed.frontier == [1, 8] and probed.predicted == [2, 7]
    assert probed.early == [{"block": 1, "at": 0.8, "frontier": 0.9}]
    # the runtime's backstop (FreezeOut t0=0.5 over 2 blocks: steps at 50% and 75% of training, so the
    # snapshots ending 50% and 80%, 4 and 7 of 10) caps each, and the predictor extends its prefix at once
    assert simulate(data, np.zeros(n_t * 3), 0.5, backstop=0.5)[0].predicted == [4, 7]
    assert simulate(data, probs.ravel(), 0.5, backstop=0.5)[0].predicted == [2, 7]
    only_second = np.zeros((n_t, 3))
    only_second[1:, 1] = 0.9  # block 1 passes from snapshot 1, block 0 never: it follows the backstop's block 0
    assert simulate(data, only_second.ravel(), 0.5, backstop=0.5)[0].predicted == [4, 4]


def test_frontier_threshold_takes_the_most_net_savings_and_prefers_the_higher_of_near_ties() -> None:
    n_t = 10
    block = np.array([0, 1, 2])
    data = _window_set(np.zeros((n_t, 3), bool), block)
    probs = np.zeros((n_t, 3))
    probs[2:, 0] = 0.6  # block 0 passes 0.6 from snapshot 2 (its frontier: 2) and 0.8 from 6
    probs[6:, 0] = 0.8
    probs[3:, 1] = 0.7  # block 1 passes 0.7 from 3, but its frontier is 5: early below 0.7
    frontiers = {"r": [2, 5]}
    thr, sweep = choose_threshold_by_frontier(
        data, probs.ravel(), frontiers, slack=0.0, grid=np.array([0.5, 0.65, 0.9])
    )
    by = {row["threshold"]: row for row in sweep}
    # 0.5: block 0 at 2 (exact), block 1 at 3 (2 early intervals): net = saved - 2 x early
    assert by[0.5]["early_saved"] == pytest.approx(10 * 2 / 10 / 30)
    # 0.65: block 0 waits for 6 and block 1 for it; nothing early but less saved. 0.9: nothing at all.
    assert by[0.65]["early_saved"] == 0.0 and by[0.9]["saved"] == 0.0
    assert thr == max(by, key=lambda t: (by[t]["net_saved"], t))
    loose, _ = choose_threshold_by_frontier(data, probs.ravel(), frontiers, slack=1.0, grid=np.array([0.5, 0.65, 0.9]))
    assert loose == 0.9  # any net is within a slack of 1: the highest threshold
    with pytest.raises(ValueError, match="probe-measured frontier"):
        choose_threshold_by_frontier(data, probs.ravel(), {"other": [1, 1]})


class _ContextSpy:
    """A contextual predictor that records what the policy passes and says 'converged' once asked."""

    window, k, threshold, min_window = 6, 16, 0.5, 3

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def predict_proba(self, windows: torch.Tensor, context: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        self.calls.append((context, valid))
        return torch.ones(windows.shape[0])


def test_smartfrz_judges_short_windows_with_context_and_the_user_lr() -> None:
    from smartfrz.runtime import Freezer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    spy = _ContextSpy()
    freezer = Freezer(model, optimizer, spy, total_steps=40, record_every=2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    for step in range(1, 7):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
        freezer.step()
        if step < 6:
            assert not spy.calls, "judged before min_window snapshots"
    context, valid = spy.calls[0]  # step 6: the third snapshot, window of 6 with 3 real snapshots
    assert valid.tolist() == [[False] * 3 + [True] * 3] * 2
    np.testing.assert_allclose(context[:, 0].numpy(), 6 / 40)
    np.testing.assert_allclose(context[:, 1].numpy(), 0.25)  # lr 0.025 after 6 StepLR steps, peak 0.1
    np.testing.assert_allclose(context[:, 2].numpy(), [0.0, 0.5])  # depth of the two freezable layers
    assert freezer.num_frozen == 2


class _LossSpy(_ContextSpy):
    """A contextual predictor that also reads the training loss's drop."""

    context_features = CONTEXT_FEATURES


def test_smartfrz_passes_the_loss_drop_of_interval_means_and_unknown_without_a_loss() -> None:
    """As the collector records it: log(first interval's mean loss / this interval's), NaN without losses."""
    from smartfrz.runtime import Freezer

    col = CONTEXT_FEATURES.index("loss_drop")
    cases = (
        ([4.0, 4.0, 2.0, 2.0, 1.0, 3.0], np.log(4.0 / 2.0)),
        ([4.0, 4.0, 2.0, 2.0, None, None], np.log(4.0 / 2.0)),  # no loss in the third interval: keep the latest
        ([None, None, 4.0, None, 2.0, None], np.log(4.0 / 2.0)),  # the first interval with a loss is the reference
        (None, np.nan),
    )
    for losses, want in cases:
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        spy = _LossSpy()
        freezer = Freezer(model, torch.optim.SGD(model.parameters(), lr=0.1), spy, total_steps=40, record_every=2)
        for step in range(6):
            loss = None if losses is None else losses[step]
            freezer.step(None if loss is None else torch.tensor(loss))
        context, _ = spy.calls[0]  # intervals: mean 4, 2, 2; the drop at the third snapshot is log(4 / 2)
        np.testing.assert_allclose(context[:, col].numpy(), want)
        assert context.shape == (2, len(CONTEXT_FEATURES))
    with pytest.raises(ValueError, match="scalar training loss"):
        freezer.step(torch.ones(3))
    with pytest.raises(TypeError, match="number or a scalar tensor"):
        freezer.step("0.5")


def test_a_run_read_twice_is_refused(tmp_path) -> None:
    from smartfrz.predictor.dataset import load_windows
    from smartfrz.testing import write_synthetic_traces

    a = write_synthetic_traces(tmp_path / "a.h5", n_runs=2, n_snapshots=10, k=16)
    b = write_synthetic_traces(tmp_path / "b.h5", n_runs=1, n_snapshots=10, k=16)  # same first run id as a.h5
    with pytest.raises(ValueError, match="more than one"):
        load_windows([a, b], 4, LabelRule(), lambda x: x[..., :4], 16)


def test_lr_context_matches_the_runtime_when_a_schedule_ends_at_zero() -> None:
    """Cosine and linear decay record lr 0 at the last snapshot; that must not throw the whole curve away."""
    from types import SimpleNamespace

    from smartfrz.predictor.dataset import run_context

    lr = np.array([0.0, 0.05, 0.1, 0.05, 0.0])  # warm-up from 0, decay to 0
    loss = np.array([2.0, 1.0, 0.5, 0.5, 0.25])
    run = SimpleNamespace(
        steps=np.arange(1, 6) * 10, lr=lr, depth=np.array([0.0, 1.0]), layer_names=["a", "b"], train_loss=loss
    )
    ctx = run_context(run)
    np.testing.assert_allclose(ctx[:, 1, CONTEXT_FEATURES.index("loss_drop")], np.log(2.0 / loss), rtol=1e-6)
    np.testing.assert_allclose(ctx[:, 0, 1], [1.0, 1.0, 1.0, 0.5, 0.0])  # 1 while the peak is still 0
    np.testing.assert_allclose(ctx[:, 0, 0], [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(ctx[0, :, 2], [0.0, 1.0])
    assert np.all(run_context(SimpleNamespace(**{**vars(run), "lr": None}))[..., 1] == 1.0)


def test_simulator_never_freezes_an_unjudged_layer_even_at_threshold_zero() -> None:
    labels = np.zeros((6, 3), bool)
    data = _window_set(labels, np.array([0, 1, 2]))
    probs = np.full((6, 3), np.nan)
    probs[3:] = 0.0  # judged from snapshot 3 on
    assert simulate(data, probs.ravel(), 0.0)[0].predicted == [3, 3]
