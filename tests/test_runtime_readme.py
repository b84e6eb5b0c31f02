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


def test_shipped_default_predictor_loads_and_matches_its_report() -> None:
    """A broken or missing predictor_data/default.pt fails here, not silently elsewhere."""
    import json

    from smartfrz.predictor import load_predictor
    from smartfrz.predictor.inference import predictor_dir

    p = load_predictor("default")
    report = json.loads((predictor_dir() / "default.report.json").read_text())
    assert (p.window, p.k) == (report["model_config"]["window"], report["model_config"]["k"])
    assert p.threshold == pytest.approx(report["threshold"])
    gen = torch.Generator().manual_seed(0)
    windows = torch.randn(8, p.window, p.k, generator=gen) * torch.logspace(-3, 0, 8)[:, None, None]
    proba = p.predict_proba(windows.cumsum(1) + torch.randn(8, 1, p.k, generator=gen))
    assert proba.shape == (8,) and bool(((proba >= 0) & (proba <= 1)).all()) and proba.std() > 0


def test_runtime_example_runs_as_written() -> None:
    """Execute the documented loop verbatim with the shipped predictor: it trains, records, prints the summary."""
    pytest.importorskip("sklearn", reason="the example loads scikit-learn's digits")
    code = _first_python_block(ROOT / "README.md")
    added = [line for line in code.splitlines() if line.rstrip().endswith("# added")]
    assert len(added) == 3, added
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
