"""Plot CKA-vs-final curves per layer depth, and when each layer converges, from trace files."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from smartfrz.traces import RunRecord, open_traces


def convergence_fraction(cka: np.ndarray, tau: float) -> np.ndarray:
    """Per layer, the first snapshot (as a fraction of training) from which CKA stays >= tau; 1 if never."""
    suffix_min = np.minimum.accumulate(cka[::-1], axis=0)[::-1]
    n_t = cka.shape[0]
    first = np.array([np.argmax(col >= tau) if np.any(col >= tau) else n_t - 1 for col in suffix_min.T])
    return first / max(1, n_t - 1)


def depth_order_stats(runs: Sequence[RunRecord], tau: float) -> dict[str, dict[str, float]]:
    """Per task: mean Spearman correlation of layer depth with convergence time over its runs."""
    per_task: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        conv = convergence_fraction(run.cka, tau)
        if np.ptp(conv) > 0:
            per_task[run.info.task].append(float(spearmanr(run.depth, conv).statistic))
    return {task: {"spearman_mean": float(np.mean(v)), "runs": len(v)} for task, v in sorted(per_task.items())}


def plot_cka(
    traces: str | os.PathLike[str],
    out: str | os.PathLike[str],
    tasks: Sequence[str] | None = None,
    tau: float = 0.9,
) -> dict[str, dict[str, float]]:
    """Save a figure: one panel per task (its middle-lr run, a line per layer coloured by depth) and a panel of
    convergence time vs depth over all ok runs; returns the per-task depth/convergence rank correlation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = open_traces(traces)
    infos = [i for i in ts.list_runs(include_flagged=False) if tasks is None or i.task in tasks]
    if not infos:
        raise ValueError(f"no ok runs to plot in {traces} (tasks={tasks})")
    runs = [ts.load_run(i.run_id) for i in infos]
    by_task: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_task[run.info.task].append(run)
    names = sorted(by_task)
    cols = min(3, len(names) + 1)
    rows = -(-(len(names) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False, layout="constrained")
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes.flat, names, strict=False):
        group = sorted(by_task[name], key=lambda r: r.info.lr)
        run = group[len(group) // 2]
        x = np.linspace(0, 1, run.cka.shape[0])
        for li in range(run.cka.shape[1]):
            ax.plot(x, run.cka[:, li], color=cmap(float(run.depth[li])), lw=1.2)
        ax.set_title(f"{run.run_id}\n(val acc {run.info.final_val_acc:.3f}, {run.cka.shape[1]} layers)", fontsize=8)
        ax.set_xlabel("training progress")
        ax.set_ylabel("CKA vs final model")
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(tau, color="grey", ls=":", lw=0.8)
    stats = depth_order_stats(runs, tau)
    ax = axes.flat[len(names)]
    for k, name in enumerate(names):
        depth = np.concatenate([r.depth for r in by_task[name]])
        conv = np.concatenate([convergence_fraction(r.cka, tau) for r in by_task[name]])
        rho = stats.get(name, {}).get("spearman_mean", float("nan"))
        ax.scatter(depth, conv, s=10, alpha=0.7, color=plt.get_cmap("tab10")(k), label=f"{name} (rho {rho:.2f})")
    ax.set_xlabel("layer depth (0 = first layer, 1 = head)")
    ax.set_ylabel(f"converged from (CKA stays >= {tau})")
    ax.set_title("when each layer converges, all ok runs", fontsize=9)
    ax.legend(fontsize=6)
    for extra in list(axes.flat)[len(names) + 1 :]:
        extra.axis("off")
    sm = plt.cm.ScalarMappable(cmap=cmap)
    fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.6, label="layer depth")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return stats
