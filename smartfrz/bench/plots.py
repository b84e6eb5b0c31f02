"""Matplotlib figures: freeze timelines per policy, and accuracy difference against compute saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the plots need matplotlib: `pip install matplotlib` (or pass --no-plots)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _frozen_curve(events: list[dict[str, Any]], total_steps: int) -> tuple[list[float], list[int]]:
    """Step function (fraction of training, blocks frozen) from freeze events."""
    xs, ys, frozen = [0.0], [0], 0
    for e in sorted(events, key=lambda e: e["step"]):
        frozen = max(frozen, e["block"] + 1)
        xs += [e["step"] / total_steps, e["step"] / total_steps]
        ys += [ys[-1], frozen]
    xs.append(1.0)
    ys.append(ys[-1])
    return xs, ys


def _timeline_runs(raw: dict[str, Any], task: str) -> dict[str, list[dict[str, Any]]]:
    """Runs per policy name for one task, the oracle's chosen probes included."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in raw["runs"]:
        if r["task"] == task:
            by.setdefault(r["policy"], []).append(r)
    for entry in raw.get("oracle", []):
        if entry["task"] == task and entry["chosen"] is not None:
            by.setdefault("oracle", []).append(entry["probes"][entry["chosen"]]["run"])
    return by


def timeline_plot(raw: dict[str, Any], task: str, path: Path) -> Path:
    """Blocks frozen over training, one panel per policy, one line per seed."""
    plt = _pyplot()
    by = _timeline_runs(raw, task)
    fig, axes = plt.subplots(len(by), 1, figsize=(7, 1.6 * len(by) + 0.6), sharex=True, squeeze=False)
    freezable = len(next(iter(by.values()))[0]["blocks"]) - 1
    for ax, (policy, runs) in zip(axes[:, 0], by.items(), strict=True):
        for r in runs:
            xs, ys = _frozen_curve(r["events"], r["total_steps"])
            ax.plot(xs, ys, drawstyle="default", label=f"seed {r['seed']}")
        ax.set_ylim(-0.3, freezable + 0.3)
        ax.set_ylabel("frozen")
        ax.set_title(policy, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("fraction of training steps")
    fig.suptitle(f"{task}: frozen prefix (blocks, of {freezable}) over training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tradeoff_plot(summary: dict[str, Any], path: Path) -> Path:
    """Accuracy difference (points) against FLOPs saved and against wall-clock saved, per task and policy."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    tasks = sorted({r["task"] for r in summary["rows"]})
    markers = "osD^v<>p"
    panels = ((axes[0], "flops_saved", "training FLOPs saved %"), (axes[1], "wall_saved", "wall-clock saved %"))
    for ax, key, label in panels:
        for ti, task in enumerate(tasks):
            for pi, r in enumerate(x for x in summary["rows"] if x["task"] == task):
                ax.errorbar(
                    100 * r[key + "_mean"],
                    r["delta_points_mean"],
                    xerr=100 * r[key + "_sd"],
                    yerr=r["delta_points_sd"],
                    fmt=markers[ti % len(markers)],
                    color=f"C{pi}",
                    capsize=3,
                    label=f"{r['policy']}" if ti == 0 else None,
                )
        ax.axhline(-0.3, color="grey", ls="--", lw=0.8)
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Δ accuracy vs no freezing (points)")
    axes[0].legend(fontsize=8)
    names = ", ".join(f"{markers[i % len(markers)]} = {t}" for i, t in enumerate(tasks))
    fig.suptitle(f"accuracy vs compute saved (mean ± sd over seeds; markers: {names})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
