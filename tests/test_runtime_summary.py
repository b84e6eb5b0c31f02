"""What users see: the summary table, its machine form, one printed line per freeze, the index wrapper."""

from __future__ import annotations

import json

import pytest
import torch
from test_runtime_support import FreezeAt, RelChangePredictor, data, mlp, train

from smartfrz.runtime import FreezeOut, Freezer, FreezerSummary, with_index

EXPECTED_KEYS = {
    "policy", "steps", "blocks_total", "blocks_frozen", "frozen_blocks", "events", "flops_full", "flops_saved",
    "flops_saved_fraction", "cache", "overhead_s",
}  # fmt: skip


def test_summary_prints_a_table_and_keeps_the_dict_form(capsys: pytest.CaptureFixture[str]) -> None:
    """The old dict keys are all there; str() is a short table naming frozen blocks, FLOPs and the cache."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, FreezeOut(total_steps=8, t0=0.5), cache=True, deterministic_inputs=True)
    train(freezer, model, opt, steps=8)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "smartfrz: froze block 1/4 '0' at step 4 (50% of training) (freezeout schedule)",
        "smartfrz: froze block 2/4 '1' at step 6 (75% of training) (freezeout schedule)",
        "smartfrz: froze block 3/4 '2' at step 7 (88% of training) (freezeout schedule)",
    ]
    s = freezer.summary()
    assert isinstance(s, FreezerSummary) and set(s) >= EXPECTED_KEYS
    d = s.to_dict()
    assert dict(s) == d and s == d and json.loads(json.dumps(d)) == d
    assert d["blocks_frozen"] == 3 and d["frozen_blocks"] == ["0", "1", "2"] and d["total_steps"] == 8
    text = str(s)
    assert text.splitlines()[0] == "smartfrz summary: policy freezeout, 8 of 8 steps, 3 of 3 freezable blocks frozen"
    assert "    0  '0' frozen at step 4 (50% of training)" in text
    assert "    2  '2' frozen at step 7 (88% of training)" in text and "    3  '3' head, never freezes" in text
    assert f"FLOPs saved:  {100 * d['flops_saved_fraction']:.1f}%" in text
    assert f"hit rate {100 * d['cache']['hit_rate']:.1f}%" in text and "overhead:" in text
    assert 0.0 <= d["policy_s"] <= d["overhead_s"]  # the policy's share: a part of the freezer's time
    assert f"{d['policy_s']:.3f} s recording and prediction" in text
    assert repr(s) == text


def test_summary_shows_smartfrz_scores_against_the_threshold() -> None:
    """The latest P(converged) of each unfrozen block and the threshold, which the policy used to hide."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, RelChangePredictor(window=4, tol=1e-9), record_every=1, stage_every=2, verbose=False)
    train(freezer, model, opt, steps=2)
    early = freezer.summary()
    assert early.scores == {} and "no scores yet: 2 of 4 snapshots" in str(early)
    train(freezer, model, opt, steps=4, start=2)
    s = freezer.summary()
    assert s["scores_step"] == 6 and set(s["scores"]) == {"0", "1", "2"} and s["threshold"] == 0.5
    assert s["scores"] == {freezer.blocks[b].name: v for b, v in freezer.policy.block_scores.items()}
    p0 = s["scores"]["0"]
    assert f"    0  '0' training, P={p0:.3f} < 0.500" in str(s)
    assert "a block freezes when P >= 0.500" in str(s)


def test_freeze_lines_follow_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    """verbose=False prints nothing; a callable receives the lines (the callbacks' route to their logger)."""
    for verbose, printed in ((False, ""), (True, "smartfrz: froze block 1/4 '0' at step 2, score 0.9\n")):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train(Freezer(model, opt, FreezeAt(at=2, n=1), verbose=verbose), model, opt, steps=2)
        assert capsys.readouterr().out == printed
    got: list[str] = []
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(Freezer(model, opt, FreezeAt(at=2, n=1), verbose=got.append), model, opt, steps=2)
    assert got == ["smartfrz: froze block 1/4 '0' at step 2, score 0.9"] and capsys.readouterr().out == ""


def test_with_index_adds_the_sample_index() -> None:
    """Tuples, dicts and bare items get their index; a DataLoader collates it to int64 for the cache."""
    x, y = data(n=10)
    tuples = with_index(torch.utils.data.TensorDataset(x, y))
    assert len(tuples) == 10 and tuples[3][2] == 3 and torch.equal(tuples[3][0], x[3])
    dicts = with_index([{"input_ids": x[i]} for i in range(10)])
    assert dicts[7]["idx"] == 7 and torch.equal(dicts[7]["input_ids"], x[7])
    assert with_index(list(range(5)))[4] == (4, 4)
    with pytest.raises(KeyError, match="already have"):
        with_index([{"idx": 0}])[0]
    loader = torch.utils.data.DataLoader(tuples, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    xb, _, idx = next(iter(loader))
    assert idx.dtype == torch.int64 and torch.equal(xb, x[idx])
