"""Trace files: writer/reader round trip, windows (smartfrz.testing), merge, and the bad-file errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from smartfrz.testing import iter_windows, synthetic_run, write_synthetic_traces
from smartfrz.traces import (
    SCHEMA_VERSION,
    STAT_NAMES,
    TraceFormatError,
    atomic_h5,
    merge_traces,
    open_traces,
    write_run_file,
)


@pytest.fixture
def synth(tmp_path):
    """Three synthetic runs in one file, the last one flagged."""
    return write_synthetic_traces(tmp_path / "s.h5", n_runs=3, n_snapshots=12, n_layers=3, k=16, n_flagged=1)


def test_round_trip_exact(tmp_path):
    rec = synthetic_run("r-sgd-lr0.1-s0", n_snapshots=7, n_layers=2, k=8, seed=3)
    path = write_run_file(tmp_path / "r.h5", rec)
    assert not (tmp_path / "r.h5.tmp").exists()
    ts = open_traces(path)
    (info,) = ts.list_runs()
    assert (info.run_id, info.n_snapshots, info.n_layers, info.k) == ("r-sgd-lr0.1-s0", 7, 2, 8)
    run = ts.load_run(info.run_id)
    np.testing.assert_array_equal(run.samples, rec.samples.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(run.stats, rec.stats)
    np.testing.assert_array_equal(run.cka, rec.cka)
    np.testing.assert_array_equal(run.sample_idx, rec.sample_idx)
    assert run.stat_names == STAT_NAMES
    assert run.layer_names == rec.layer_names
    assert info.config == {"synthetic": True, "seed": 3}


def test_flagged_runs_excluded_by_default(synth):
    ts = open_traces(synth)
    assert len(ts.list_runs()) == 3
    ok = ts.list_runs(include_flagged=False)
    assert len(ok) == 2 and all(not r.flagged for r in ok)
    seen = {w.run_id for w in iter_windows(ts, 4)}
    assert seen == {r.run_id for r in ok}
    assert {w.run_id for w in iter_windows(ts, 4, include_flagged=True)} == {r.run_id for r in ts.list_runs()}


def test_windows_match_loaded_arrays(synth):
    ts = open_traces(synth)
    rid = ts.list_runs()[0].run_id
    run = ts.load_run(rid)
    windows = list(iter_windows(ts, 5, stride=2, runs=[rid]))
    # per layer: t = 4, 6, 8, 10 for T = 12
    assert len(windows) == 3 * 4
    for w in windows:
        assert w.samples.shape == (5, 16) and w.samples.dtype == np.float32
        np.testing.assert_array_equal(w.samples, run.samples[w.t - 4 : w.t + 1, w.layer_idx])
        np.testing.assert_array_equal(w.stats, run.stats[w.t - 4 : w.t + 1, w.layer_idx])
        assert w.cka == pytest.approx(float(run.cka[w.t, w.layer_idx]))
        assert w.cka_min_after == pytest.approx(float(run.cka[w.t :, w.layer_idx].min()))
        assert w.step == run.steps[w.t] and w.n_snapshots == 12
    with pytest.raises(ValueError, match="window"):
        next(iter_windows(ts, 0))


def test_merge_and_directory(tmp_path):
    d = tmp_path / "runs"
    for i in range(3):
        write_run_file(d / f"r{i}.h5", synthetic_run(f"r{i}", n_snapshots=5, n_layers=2, k=8, seed=i))
    merged = merge_traces(d, tmp_path / "merged.h5")
    a, b = open_traces(d), open_traces(merged)
    assert [r.run_id for r in a.list_runs()] == [r.run_id for r in b.list_runs()] == ["r0", "r1", "r2"]
    for rid in ("r0", "r2"):
        np.testing.assert_array_equal(a.load_run(rid).samples, b.load_run(rid).samples)
    with pytest.raises(TraceFormatError, match="also in"):
        merge_traces([d, merged], tmp_path / "twice.h5")
    with pytest.raises(KeyError, match=r"no run 'r9' in 3 files under .*runs \(3 runs, e\.g\. r0, r1, r2\)"):
        a.load_run("r9")  # one line, not every file's path


def _copy_with(tmp_path, src, edit):
    """Copy a trace file and apply ``edit(h5py.File)`` to the copy."""
    dst = tmp_path / "bad.h5"
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def test_wrong_schema_version(tmp_path, synth):
    bad = _copy_with(tmp_path, synth, lambda f: f.attrs.__setitem__("schema_version", SCHEMA_VERSION + 1))
    with pytest.raises(TraceFormatError, match=rf"bad\.h5.*schema_version {SCHEMA_VERSION + 1}"):
        open_traces(bad)


def test_missing_dataset(tmp_path, synth):
    def drop(f):
        del f["runs"][sorted(f["runs"])[0]]["cka"]

    bad = _copy_with(tmp_path, synth, drop)
    with pytest.raises(TraceFormatError, match=r"bad\.h5.*missing dataset.*cka"):
        open_traces(bad)


def test_wrong_shape(tmp_path, synth):
    def reshape(f):
        g = f["runs"][sorted(f["runs"])[0]]
        del g["val_acc"]
        g["val_acc"] = np.zeros(3, np.float32)

    with pytest.raises(TraceFormatError, match=r"bad\.h5.*'val_acc' has shape \(3,\), expected \(12,\)"):
        open_traces(_copy_with(tmp_path, synth, reshape))


def test_truncated_file(tmp_path, synth):
    bad = tmp_path / "cut.h5"
    bad.write_bytes(synth.read_bytes()[: synth.stat().st_size // 2])
    with pytest.raises(TraceFormatError, match=r"cut\.h5.*truncated or corrupt"):
        open_traces(bad)


def test_not_a_trace_file_and_empty_dir(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(TraceFormatError, match=r"x\.h5"):
        open_traces(tmp_path / "x.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(TraceFormatError, match="no 'schema_version'"):
        open_traces(tmp_path / "plain.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceFormatError, match=r"no \*\.h5"):
        open_traces(tmp_path / "empty")
    with pytest.raises(TraceFormatError, match="no such file"):
        open_traces(tmp_path / "nope.h5")


def test_tmp_files_are_ignored(tmp_path):
    write_run_file(tmp_path / "a.h5", synthetic_run("a", n_snapshots=3, n_layers=1, k=4))
    (tmp_path / "b.h5.tmp").write_bytes(b"half written")
    assert [r.run_id for r in open_traces(tmp_path).list_runs()] == ["a"]


def test_writer_rejects_bad_run_ids_and_leaves_no_tmp(tmp_path):
    with pytest.raises(ValueError, match="without '/'"):
        write_run_file(tmp_path / "x.h5", synthetic_run("a/b", n_snapshots=2, n_layers=1, k=4))
    assert list(tmp_path.iterdir()) == []


def test_stale_tmp_removed_but_live_tmp_kept(tmp_path):
    from smartfrz.traces.writer import remove_stale_tmp

    (tmp_path / "dead.h5.tmp").write_bytes(b"left by a killed writer")
    with atomic_h5(tmp_path / "live.h5") as f:
        f.attrs["x"] = 1
        assert remove_stale_tmp(tmp_path) == [tmp_path / "dead.h5.tmp"]
        assert (tmp_path / "live.h5.tmp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.h5"]
