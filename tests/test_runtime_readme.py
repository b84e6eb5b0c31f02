"""The runtime example in README.md runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from smartfrz.cadence import record_every_for

ROOT = Path(__file__).resolve().parents[1]


def _first_python_block(path: Path) -> str:
    """The first python code block that builds a Freezer (the runtime example)."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S) if "Freezer(" in b]
    assert blocks, f"no python code block with the runtime example in {path}"
    return blocks[0]


def _ensure_default_predictor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Use the shipped default predictor; if none is shipped yet, an untrained one of the default architecture."""
    from smartfrz.predictor import AttentionPredictorNet, LabelRule, ModelConfig, PredictorLoadError, load_predictor
    from smartfrz.predictor.checkpoint import save_checkpoint
    from smartfrz.predictor.inference import PREDICTOR_DIR_ENV

    try:
        load_predictor("default")
    except PredictorLoadError:
        torch.manual_seed(0)
        save_checkpoint(tmp_path / "default.pt", AttentionPredictorNet(ModelConfig()), 0.5, LabelRule(), {})
        monkeypatch.setenv(PREDICTOR_DIR_ENV, str(tmp_path))


def test_runtime_example_runs_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Execute the documented loop verbatim: it trains, records, and prints the summary."""
    pytest.importorskip("sklearn", reason="the example loads scikit-learn's digits")
    code = _first_python_block(ROOT / "README.md")
    added = [line for line in code.splitlines() if line.rstrip().endswith("# added")]
    assert len(added) == 3, added
    _ensure_default_predictor(monkeypatch, tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/runtime.md", "exec"), namespace)
    freezer = namespace["freezer"]
    summary = freezer.summary()  # type: ignore[attr-defined]
    assert summary["steps"] == 10 * 15 and str(summary) in out.getvalue()
    assert summary["policy"]["name"] == "smartfrz" and summary["policy"]["record_every"] == record_every_for(150)
    recorder = freezer.policy.recorder  # type: ignore[attr-defined]
    assert recorder.count >= recorder.window  # a full window precedes any freeze; recording stops when all froze
    assert recorder.count == 150 // record_every_for(150) or summary["blocks_frozen"] == summary["blocks_total"] - 1
