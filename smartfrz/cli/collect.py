"""`smartfrz collect`: train a grid of runs and write their weight trajectories to HDF5; `merge` and `plot` them.

Each run (task x learning rate x seed) is written atomically to ``<out>/runs/<run_id>.h5``; a summary
goes to ``<out>/summary.json`` and, with ``--merge``, all runs are merged into ``<out>/traces.h5``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smartfrz.cli._common import HELP_FORMAT, Hint, Lazy, add_debug, positive

NAME = "collect"
HELP = "train a grid of runs and write their weight trajectories (HDF5); merge or plot trace files"
MERGED_NAME = "traces.h5"
PRESETS = Lazy("smartfrz.collection.presets:PRESETS", sorted)
HINTS: list[Hint] = [
    (FileExistsError, "already exist", "add --resume to keep finished runs or --overwrite to redo them"),
]


def configure(p: argparse.ArgumentParser) -> None:
    """The collection options, and the `merge` and `plot` subcommands."""
    p.add_argument("--preset", choices=PRESETS, metavar="NAME", default="smoke", help="grid: %(choices)s")
    p.add_argument("--tasks", nargs="+", help="task names instead of the preset's")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds instead of the preset's")
    p.add_argument("--lrs", nargs="+", type=float, help="learning rates instead of each task's")
    p.add_argument("--out", type=Path, help="output directory (default: traces/<preset>)")
    p.add_argument("--epochs", type=positive, help="epochs per run instead of the preset's/task's")
    p.add_argument("--max-train", type=positive, help="training samples per run instead of the preset's")
    p.add_argument("--snapshots", type=positive, help="snapshots per run (sets record_every = steps // N)")
    p.add_argument("--record-every", type=positive, help="record every N optimizer steps (overrides --snapshots)")
    p.add_argument("--k", type=positive, default=1024, help="sampled weights per layer")
    p.add_argument("--probe-size", type=positive, help="validation samples in the CKA probe batch")
    p.add_argument("--val-snapshot-size", type=positive, help="validation samples evaluated at each snapshot")
    p.add_argument("--device", default="cpu", help="torch device (cuda is much faster); under torchrun cuda:LOCAL_RANK")
    p.add_argument(
        "--data-root",
        help="dataset folder for the zoo (e.g. a folder of Fashion-MNIST IDX files); the zoo's fine-tuning tasks "
        "pretrain their source model from it too",
    )
    p.add_argument("--workers", type=positive, default=1, help="local worker processes (under torchrun: per rank)")
    p.add_argument("--threads", type=positive, help="torch threads per worker (default: 1)")
    p.add_argument("--resume", action="store_true", help="skip runs whose file exists and validates")
    p.add_argument("--overwrite", action="store_true", help="redo runs whose file exists")
    p.add_argument("--merge", action="store_true", help=f"merge the run files into <out>/{MERGED_NAME} at the end")
    p.add_argument("--keep-gram", action="store_true", help="also store the probe Gram matrices [T, L, n, n]")
    p.add_argument("--list", action="store_true", help="print the preset and its grid (run ids) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug(p)
    p.set_defaults(func=run, hints=HINTS)
    sub = p.add_subparsers(dest="action", title="subcommands", metavar="{merge,plot}")
    merge = sub.add_parser(
        "merge", help="merge trace files or run directories into one file", formatter_class=HELP_FORMAT
    )
    merge.add_argument("sources", nargs="+", type=Path, help="trace files or directories of run files")
    merge.add_argument("--out", type=Path, required=True, help="merged HDF5 file to write")
    add_debug(merge)
    merge.set_defaults(func=run_merge)
    plot = sub.add_parser(
        "plot",
        help="plot CKA curves per layer depth",
        description="Plot CKA-vs-final curves per layer depth and when each layer converges (ok runs only).",
        formatter_class=HELP_FORMAT,
    )
    plot.add_argument("traces", type=Path, help="a trace file or a directory of run files")
    plot.add_argument("--out", type=Path, required=True, help="PNG to write")
    plot.add_argument("--tasks", nargs="+", help="only these tasks (default: all)")
    plot.add_argument("--tau", type=float, default=0.9, help="CKA level that counts as converged")
    add_debug(plot)
    plot.set_defaults(func=run_plot)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `collect` on the `smartfrz` command."""
    configure(subparsers.add_parser(NAME, help=HELP, description=__doc__, formatter_class=HELP_FORMAT))


def _dist() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def collect_grid(
    grid: Sequence[Any],
    out: Path,
    *,
    workers: int = 1,
    threads: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    merge: bool = False,
    progress: bool = True,
    debug: bool = False,
) -> dict[str, Any]:
    """Run a grid of RunSpecs into `out` (this rank's share under torchrun) and return rank 0's summary."""
    from smartfrz.collection.summary import build_summary, save_summary
    from smartfrz.collection.workers import RUNS_DIR, run_grid
    from smartfrz.traces.merge import merge_traces

    rank, world = _dist()
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
    start = time.perf_counter()
    outcomes = run_grid(
        grid[rank::world],
        out,
        workers=workers,
        threads=threads,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        debug=debug,
    )
    if world > 1:
        dist.barrier()
        if rank != 0:
            return {"rank": rank, "failed": [o.run_id for o in outcomes if o.state == "failed"], "missing": []}
    summary = build_summary(grid, outcomes, out, time.perf_counter() - start)
    if merge and summary["runs"]:
        files = [out / RUNS_DIR / f"{r['run_id']}.h5" for r in summary["runs"]]  # this grid's runs only
        merged = merge_traces(files, out / MERGED_NAME)
        summary["merged"] = {"path": str(merged), "mb": merged.stat().st_size / 2**20}
    save_summary(summary, out / "summary.json")
    return summary


def run(args: argparse.Namespace) -> int:
    """Collect the grid; the exit status is 1 when a run failed or is missing."""
    from smartfrz.collection.grid import build_grid
    from smartfrz.collection.presets import PRESETS as presets
    from smartfrz.collection.summary import format_summary

    preset = presets[args.preset]
    device = args.device
    if _dist()[1] > 1 and device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    grid = build_grid(
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
    if args.list:
        print(f"preset {preset.name}: {preset.description}")
        for spec in grid:
            print(spec.run_id)
        return 0
    out = args.out or Path("traces") / args.preset
    summary = collect_grid(
        grid,
        out,
        workers=args.workers,
        threads=args.threads,
        resume=args.resume,
        overwrite=args.overwrite,
        merge=args.merge,
        progress=not args.no_progress,
        debug=args.debug,
    )
    if "rank" in summary:
        return int(bool(summary["failed"]))
    print(format_summary(summary))
    if "merged" in summary:
        print(f"merged file: {summary['merged']['path']} ({summary['merged']['mb']:.1f} MiB)")
    return int(bool(summary["failed"] or summary["missing"]))


def run_merge(args: argparse.Namespace) -> int:
    """`collect merge SRC... --out FILE`."""
    from smartfrz.traces.merge import merge_traces

    out = merge_traces(args.sources, args.out)
    print(f"merged into {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    """`collect plot TRACES --out PNG`."""
    from smartfrz.collection.plot import plot_cka

    stats = plot_cka(args.traces, args.out, tasks=args.tasks, tau=args.tau)
    for task, s in stats.items():
        print(f"{task:28s} spearman(depth, convergence time) = {s['spearman_mean']:+.2f} over {s['runs']} run(s)")
    print(f"wrote {args.out}")
    return 0
