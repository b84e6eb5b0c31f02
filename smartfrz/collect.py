"""``python -m smartfrz.collect``: train a grid of runs and write their weight trajectories to HDF5.

Each run (task x learning rate x seed) is written atomically to ``<out>/runs/<run_id>.h5``; a summary
goes to ``<out>/summary.json`` and, with ``--merge``, all runs are merged into ``<out>/traces.h5``.
``python -m smartfrz.collect merge SRC... --out FILE`` merges existing run files or directories;
``python -m smartfrz.collect plot TRACES --out PNG`` plots the CKA curves per layer depth.
The Python API for your own model and data loaders is :func:`trace_run`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from smartfrz.collection.grid import RunSpec, build_grid
from smartfrz.collection.presets import PRESETS
from smartfrz.collection.summary import build_summary, format_summary, save_summary
from smartfrz.collection.tracer import TraceResult, trace_run
from smartfrz.collection.workers import RUNS_DIR, run_grid
from smartfrz.traces.merge import merge_traces

__all__ = ["TraceResult", "main", "trace_run"]

MERGED_NAME = "traces.h5"


def _csv(kind: type):
    """argparse type: a comma-separated list of ``kind``."""

    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}: {text!r}") from err

    return parse


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The collection CLI."""
    p = argparse.ArgumentParser(
        prog="python -m smartfrz.collect",
        description=__doc__.split("\n\n")[0]
        + " Presets: "
        + "; ".join(f"{n}: {pr.description}" for n, pr in PRESETS.items())
        + ". Merge only: python -m smartfrz.collect merge SRC [SRC...] --out FILE. "
        + "Plot CKA curves: python -m smartfrz.collect plot TRACES --out PNG.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="smoke", help="which grid to run")
    p.add_argument("--tasks", type=_csv(str), help="comma-separated task names instead of the preset's")
    p.add_argument("--seeds", type=_csv(int), help="comma-separated seeds instead of the preset's")
    p.add_argument("--lrs", type=_csv(float), help="comma-separated learning rates instead of each task's")
    p.add_argument("--out", type=Path, help="output directory (default: traces/<preset>)")
    p.add_argument("--epochs", type=_positive, help="epochs per run instead of the preset's/task's")
    p.add_argument("--max-train", type=_positive, help="training samples per run instead of the preset's")
    p.add_argument("--snapshots", type=_positive, help="snapshots per run (sets record_every = steps // N)")
    p.add_argument("--record-every", type=_positive, help="record every N optimizer steps (overrides --snapshots)")
    p.add_argument("--k", type=_positive, default=1024, help="sampled weights per layer")
    p.add_argument("--probe-size", type=_positive, help="validation samples in the CKA probe batch")
    p.add_argument("--val-snapshot-size", type=_positive, help="validation samples evaluated at each snapshot")
    p.add_argument("--device", default="cpu", help="torch device (cuda is much faster); under torchrun cuda:LOCAL_RANK")
    p.add_argument("--data-root", help="dataset folder for the zoo (e.g. a folder of Fashion-MNIST IDX files)")
    p.add_argument("--workers", type=_positive, default=1, help="local worker processes (under torchrun: per rank)")
    p.add_argument("--threads", type=_positive, help="torch threads per worker (default: cores // workers)")
    p.add_argument("--resume", action="store_true", help="skip runs whose file exists and validates")
    p.add_argument("--overwrite", action="store_true", help="redo runs whose file exists")
    p.add_argument("--merge", action="store_true", help=f"merge the run files into <out>/{MERGED_NAME} at the end")
    p.add_argument("--keep-gram", action="store_true", help="also store the probe Gram matrices [T, L, n, n]")
    p.add_argument("--list", action="store_true", help="print the grid (run ids) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _merge_main(argv: Sequence[str]) -> int:
    """``merge SRC... --out FILE``."""
    p = argparse.ArgumentParser(
        prog="python -m smartfrz.collect merge", description="Merge trace files or run directories into one file."
    )
    p.add_argument("sources", nargs="+", type=Path, help="trace files or directories of run files")
    p.add_argument("--out", type=Path, required=True, help="merged HDF5 file to write")
    args = p.parse_args(argv)
    out = merge_traces(args.sources, args.out)
    print(f"merged into {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _plot_main(argv: Sequence[str]) -> int:
    """``plot TRACES --out PNG``."""
    from smartfrz.collection.plot import plot_cka

    p = argparse.ArgumentParser(
        prog="python -m smartfrz.collect plot",
        description="Plot CKA-vs-final curves per layer depth and when each layer converges (ok runs only).",
    )
    p.add_argument("traces", type=Path, help="a trace file or a directory of run files")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--tasks", type=_csv(str), help="only these tasks")
    p.add_argument("--tau", type=float, default=0.9, help="CKA level that counts as converged")
    args = p.parse_args(argv)
    stats = plot_cka(args.traces, args.out, tasks=args.tasks, tau=args.tau)
    for task, s in stats.items():
        print(f"{task:28s} spearman(depth, convergence time) = {s['spearman_mean']:+.2f} over {s['runs']} run(s)")
    print(f"wrote {args.out}")
    return 0


def _dist() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (1 when a run failed or is missing)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return _merge_main(argv[1:])
    if argv[:1] == ["plot"]:
        return _plot_main(argv[1:])
    args = build_parser().parse_args(argv)
    preset = PRESETS[args.preset]
    rank, world = _dist()
    device = args.device
    if world > 1 and device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    grid: list[RunSpec] = build_grid(
        preset,
        tasks=args.tasks,
        seeds=args.seeds,
        lrs=args.lrs,
        epochs=args.epochs,
        max_train=args.max_train,
        snapshots=args.snapshots,
        record_every=args.record_every,
        k=args.k,
        probe_size=args.probe_size,
        val_snapshot_size=args.val_snapshot_size,
        device=device,
        data_root=args.data_root,
        keep_gram=args.keep_gram or None,
    )
    out = args.out or Path("traces") / args.preset
    if args.list:
        for spec in grid:
            print(spec.run_id)
        return 0
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
    start = time.perf_counter()
    outcomes = run_grid(
        grid[rank::world],
        out,
        workers=args.workers,
        threads=args.threads,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    if world > 1:
        dist.barrier()
        if rank != 0:
            return int(any(o.state == "failed" for o in outcomes))
    summary = build_summary(grid, outcomes, out, time.perf_counter() - start)
    if args.merge and summary["runs"]:
        files = [out / RUNS_DIR / f"{r['run_id']}.h5" for r in summary["runs"]]  # this grid's runs only
        merged = merge_traces(files, out / MERGED_NAME)
        summary["merged"] = {"path": str(merged), "mb": merged.stat().st_size / 2**20}
    save_summary(summary, out / "summary.json")
    print(format_summary(summary))
    if "merged" in summary:
        print(f"merged file: {summary['merged']['path']} ({summary['merged']['mb']:.1f} MiB)")
    return int(bool(summary["failed"] or summary["missing"]))


if __name__ == "__main__":
    sys.exit(main())
