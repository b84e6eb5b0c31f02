"""The run grid: RunSpec and Preset, expanding a preset into RunSpecs, and comparing a spec with a finished run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

from smartfrz.traces.reader import RunInfo
from smartfrz.zoo import Task, get_task, list_tasks
from smartfrz.zoo.schedules import lr_factor


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run; two equal specs give bitwise-equal traces on one machine."""

    task: str
    optimizer: str
    lr: float
    seed: int
    max_train: int | None
    max_val: int | None
    epochs: int | None = None
    snapshots: int = 40
    record_every: int | None = None
    k: int = 1024
    probe_size: int = 128
    val_snapshot_size: int = 256
    device: str = "cpu"
    data_root: str | None = None
    keep_gram: bool = False
    schedule: str = "constant"
    warmup: float = 0.0

    def __post_init__(self) -> None:
        """Reject schedules and warm-ups the run could only fail on later."""
        lr_factor(self.schedule, 0, 1, self.warmup)

    @property
    def run_id(self) -> str:
        """Stable id and file stem, e.g. ``fmnist_resnet-sgd-lr0.05-s0`` or ``...-lr0.05-cosine-wu0.05-s0``."""
        recipe = "" if self.schedule == "constant" else f"-{self.schedule}"
        recipe += f"-wu{self.warmup:g}" if self.warmup else ""
        return f"{self.task}-{self.optimizer}-lr{self.lr:g}{recipe}-s{self.seed}"

    def to_json(self) -> dict:
        """The spec as a JSON-able dict (stored in the run's ``config_json``)."""
        return asdict(self)


@dataclass(frozen=True)
class Preset:
    """A named grid: which tasks, how many runs per task, how large each run is."""

    name: str
    description: str
    tasks: tuple[str, ...]
    data_size: str  # "smoke" or "default": which of the task's max_train sizes to use
    seeds: tuple[int, ...]
    lr_indices: tuple[int, ...]  # which of each task's learning rates to run (indices into task.lrs)
    max_val: int
    epochs: int | None  # None: the task's own epoch count
    snapshots: int
    probe_size: int
    val_snapshot_size: int
    overrides: dict[str, dict[str, object]] = field(default_factory=dict)  # task -> RunSpec fields
    recipes: tuple[tuple[str, float], ...] = (("constant", 0.0),)  # (schedule, warm-up fraction) per run
    cycle_lrs: bool = False  # True: recipe j runs only lr_indices[j % len]; False: every lr with every recipe


def _task_runs(
    preset: Preset,
    task: Task,
    max_train: int | None,
    lrs: Sequence[float],
    seeds: Sequence[int] | None,
    schedule: str,
    warmup: float,
    overrides: dict[str, object],
) -> list[RunSpec]:
    """The runs of one task under one recipe: every learning rate x seed, with the preset's overrides."""
    runs = []
    for lr in lrs:
        for seed in seeds if seeds is not None else preset.seeds:
            spec = RunSpec(
                task=task.name,
                optimizer=task.optimizer,
                lr=float(lr),
                seed=int(seed),
                max_train=max_train,
                max_val=preset.max_val,
                epochs=preset.epochs,
                snapshots=preset.snapshots,
                probe_size=preset.probe_size,
                val_snapshot_size=preset.val_snapshot_size,
                schedule=schedule,
                warmup=warmup,
            )
            spec = replace(spec, **preset.overrides.get(task.name, {}))
            runs.append(replace(spec, **{k: v for k, v in overrides.items() if v is not None}))
    return runs


def build_grid(
    preset: Preset,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    lrs: Sequence[float] | None = None,
    **overrides: object,
) -> list[RunSpec]:
    """Expand a preset (optionally with other tasks, seeds, learning rates or spec fields) into RunSpecs."""
    names = list(tasks) if tasks is not None else list(preset.tasks)
    unknown = sorted(set(names) - set(list_tasks()))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {sorted(list_tasks())}")
    grid: list[RunSpec] = []
    for name in names:
        task = get_task(name)
        max_train = task.smoke_max_train if preset.data_size == "smoke" else task.default_max_train
        task_lrs = [task.lrs[i] for i in preset.lr_indices if i < len(task.lrs)]
        for j, (schedule, warmup) in enumerate(preset.recipes):
            run_lrs = lrs if lrs is not None else task_lrs
            if preset.cycle_lrs and lrs is None:
                run_lrs = [task_lrs[j % len(task_lrs)]]
            grid += _task_runs(preset, task, max_train, run_lrs, seeds, schedule, warmup, overrides)
    ids = [s.run_id for s in grid]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"the grid has duplicate runs {dupes}")
    return grid


def recipe_of_spec(spec: RunSpec) -> dict[str, object]:
    """What a run of ``spec`` would be trained with now: the spec plus the task's current recipe."""
    task = get_task(spec.task)
    return {
        "spec": spec.to_json(),
        "epochs": spec.epochs or task.epochs,
        "batch_size": task.batch_size,
        "optimizer": spec.optimizer,
        "weight_decay": task.weight_decay,
    }


def recipe_of_run(info: RunInfo) -> dict[str, object]:
    """The same fields as :func:`recipe_of_spec`, read back from a finished run's file."""
    config = info.config
    return {
        "spec": config.get("spec"),
        "epochs": config.get("epochs"),
        "batch_size": info.attrs["batch_size"],
        "optimizer": info.attrs["optimizer"],
        "weight_decay": info.attrs["weight_decay"],
    }


def recipe_changes(spec: RunSpec, info: RunInfo) -> list[str]:
    """Fields in which a finished run differs from what ``spec`` would run now (empty: same recipe)."""
    now, then = recipe_of_spec(spec), recipe_of_run(info)
    changes = [f"{k}: {then[k]!r} -> {now[k]!r}" for k in now if k != "spec" and now[k] != then[k]]
    old_spec = then["spec"] if isinstance(then["spec"], dict) else {}
    changes += [f"{k}: {old_spec.get(k)!r} -> {v!r}" for k, v in now["spec"].items() if old_spec.get(k) != v]
    return changes
