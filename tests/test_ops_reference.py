"""The op tests once more against the pure-PyTorch reference, which defines the ops' semantics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_op_tests_pass_on_the_reference():
    """tests/test_ops.py in a fresh process with SMARTFRZ_NATIVE=0: the reference must agree with the kernels."""
    env = {**os.environ, "SMARTFRZ_NATIVE": "0"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_ops.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " failed" not in out.stdout
