"""A fresh machine: setup provides Fashion-MNIST in the project folder, found with the system copy hidden."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from smartfrz import collect
from smartfrz.zoo import DataOptions, data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Hide the system-wide Fashion-MNIST (and any $SMARTFRZ_FASHION_MNIST) from the zoo's lookup."""
    monkeypatch.delenv(data.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_ROOT", tmp_path / "no-system-copy")


def test_lookup_order(tmp_path, monkeypatch, no_system_data):
    monkeypatch.setattr(data, "FASHION_MNIST_PROJECT_ROOT", tmp_path / "project")
    assert data.fashion_mnist_root(None) == tmp_path / "no-system-copy"  # nothing anywhere: the reader explains
    (tmp_path / "project").mkdir()
    assert data.fashion_mnist_root(None) == tmp_path / "project"
    (tmp_path / "no-system-copy").mkdir()
    assert data.fashion_mnist_root(None) == tmp_path / "no-system-copy"
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "env"))
    assert data.fashion_mnist_root(None) == tmp_path / "env"
    assert data.fashion_mnist_root(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_missing_data_names_the_fetch_script(tmp_path, monkeypatch, no_system_data):
    monkeypatch.setattr(data, "FASHION_MNIST_PROJECT_ROOT", tmp_path / "project")
    with pytest.raises(FileNotFoundError, match=r"scripts/fetch_data\.sh"):
        data.load_fashion_mnist(DataOptions())


def test_smoke_collection_runs_with_the_system_data_hidden(tmp_path, no_system_data):
    """setup_env.sh (CI runs it first) unpacked Fashion-MNIST into data/: a run on it needs nothing else."""
    assert data.fashion_mnist_root(None) == data.FASHION_MNIST_PROJECT_ROOT, "run scripts/fetch_data.sh first"
    out = tmp_path / "smoke"
    tiny = ["--max-train", "64", "--epochs", "1", "--snapshots", "3", "--probe-size", "16", "--k", "64"]
    tiny += ["--val-snapshot-size", "32", "--no-progress"]
    status = collect.main(["--tasks", "fmnist_vgg", *tiny, "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert status == 0 and summary["tasks"]["fmnist_vgg"]["runs"] == 1, summary["failed"]


def _fetch_copy(tmp_path: Path) -> Path:
    """A copy of scripts/fetch_data.sh in an empty checkout, so that it fills tmp_path/data."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "fetch_data.sh", tmp_path / "scripts")
    return tmp_path / "scripts" / "fetch_data.sh"


def test_fetch_script_copies_the_system_package(tmp_path):
    script = _fetch_copy(tmp_path)
    system = tmp_path / "system"
    system.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (system / name).write_bytes(b"x")
    env = {**os.environ, "SMARTFRZ_FASHION_MNIST_SYSTEM": str(system)}
    bin_dir = tmp_path / "bin"  # a PATH with the core tools but no apt-get or dpkg-deb
    bin_dir.mkdir()
    for tool in ("dirname", "mktemp", "mkdir", "cp", "rm", "mv", "grep", "head"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    no_apt = {**env, "PATH": str(bin_dir)}
    proc = subprocess.run(["/bin/bash", str(script)], env=no_apt, capture_output=True, text=True)
    assert proc.returncode == 1 and "no apt-get/dpkg-deb" in proc.stderr and "zalandoresearch" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "data").exists()
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(b"y")
    proc = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes() == b"y"
