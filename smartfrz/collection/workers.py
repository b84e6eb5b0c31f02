"""Run a grid of RunSpecs: resume, local worker processes, torchrun sharding, one atomic file per run."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from smartfrz.collection.grid import RunSpec, recipe_changes
from smartfrz.collection.runner import run_spec
from smartfrz.traces.reader import TraceFormatError, validate_file
from smartfrz.traces.writer import remove_stale_tmp

RUNS_DIR = "runs"
"""Run files live in ``<out>/runs/<run_id>.h5``; the merged file and summary sit next to that folder."""


@dataclass
class RunOutcome:
    """What happened to one grid entry in this process: done, skipped (resumed) or failed."""

    run_id: str
    state: str  # "done" | "skipped" | "failed"
    error: str = ""


def run_path(out_dir: Path, spec: RunSpec) -> Path:
    """Final path of a run's file."""
    return out_dir / RUNS_DIR / f"{spec.run_id}.h5"


def plan(specs: Sequence[RunSpec], out_dir: Path, resume: bool, overwrite: bool) -> tuple[list[RunSpec], list[str]]:
    """Split the grid into runs to do and finished runs to skip; refuses to clobber without a flag.

    With ``resume`` a run is skipped only when its file validates and was made with the same spec and task
    recipe (epochs, batch size, optimizer, weight decay); otherwise it is redone (a change inside the model
    code of a task cannot be detected: use ``--overwrite`` then).
    """
    todo, skipped, existing = [], [], []
    for spec in specs:
        path = run_path(out_dir, spec)
        if not path.exists() or overwrite:
            todo.append(spec)
            continue
        if not resume:
            existing.append(path.name)
            continue
        try:
            (info,) = validate_file(path)
        except (TraceFormatError, ValueError) as err:
            tqdm.write(f"resume: redoing {spec.run_id}, its file is invalid ({err})")
            path.unlink()
            todo.append(spec)
            continue
        changes = recipe_changes(spec, info)
        if changes:
            tqdm.write(f"resume: redoing {spec.run_id}, its recipe changed ({'; '.join(changes)})")
            todo.append(spec)
        else:
            skipped.append(spec.run_id)
    if existing:
        raise FileExistsError(
            f"{len(existing)} run file(s) already exist in {out_dir / RUNS_DIR} (e.g. {existing[0]}); "
            "pass --resume to skip finished runs or --overwrite to redo them"
        )
    return todo, skipped


_POSITION = 0


def _init_worker(counter: mp.Value, threads: int) -> None:  # type: ignore[valid-type]
    """Per worker process: a tqdm line of its own and a fixed intra-op thread count."""
    global _POSITION
    with counter.get_lock():
        counter.value += 1
        _POSITION = counter.value
    torch.set_num_threads(threads)


def _run_one(spec: RunSpec, out_dir: Path, progress: bool) -> RunOutcome:
    """Run one spec and write its file; an exception becomes a 'failed' outcome with its traceback."""
    try:
        run_spec(spec, run_path(out_dir, spec), progress=progress, position=_POSITION)
        return RunOutcome(spec.run_id, "done")
    except Exception:
        return RunOutcome(spec.run_id, "failed", traceback.format_exc())


def run_grid(
    specs: Sequence[RunSpec],
    out_dir: Path,
    workers: int = 1,
    threads: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    debug: bool = False,
) -> list[RunOutcome]:
    """Run every spec not yet finished, in this process (workers=1) or in ``workers`` spawned processes.

    A failed run is reported in one line as it happens (with its traceback when ``debug``).
    """
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    (out_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    stale = remove_stale_tmp(out_dir / RUNS_DIR)
    if stale:
        tqdm.write(f"removed {len(stale)} stale temporary file(s) from an interrupted collection")
    todo, skipped = plan(specs, out_dir, resume, overwrite)
    outcomes = [RunOutcome(r, "skipped") for r in skipped]
    threads = threads or 1
    bar = tqdm(total=len(specs), initial=len(skipped), desc="grid", position=0, disable=not progress)
    if workers == 1:
        torch.set_num_threads(threads)
        for spec in todo:
            outcomes.append(_run_one(spec, out_dir, progress))
            _report(bar, outcomes[-1], debug)
    elif todo:
        ctx = mp.get_context("spawn")
        counter = ctx.Value("i", 0)
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(counter, threads)
        ) as pool:
            futures = [pool.submit(_run_one, spec, out_dir, progress) for spec in todo]
            for fut in as_completed(futures):
                outcomes.append(fut.result())
                _report(bar, outcomes[-1], debug)
    bar.close()
    return outcomes


def _report(bar: tqdm, outcome: RunOutcome, debug: bool) -> None:
    """Advance the grid bar; print failures as they happen (the exception's line, or the traceback)."""
    bar.update(1)
    if outcome.state == "failed":
        detail = f"\n{outcome.error}" if debug else f" {outcome.error.strip().splitlines()[-1]}"
        tqdm.write(f"run {outcome.run_id} FAILED:{detail}")
