"""End-to-end fit: traces -> labelled windows -> split -> attention model + baselines -> report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import h5py
import numpy as np
import torch

from smartfrz.predictor.baselines import BASELINES, baseline_inputs, fit_baseline
from smartfrz.predictor.dataset import WindowSet, load_windows
from smartfrz.predictor.labels import LabelRule
from smartfrz.predictor.metrics import choose_threshold, metrics_by_family
from smartfrz.predictor.model import AttentionPredictorNet, ModelConfig
from smartfrz.predictor.simulate import (
    choose_threshold_by_frontier,
    choose_threshold_by_savings,
    load_frontiers,
    simulate,
    summarise,
)
from smartfrz.predictor.split import grouped_split, holdout_family_split
from smartfrz.predictor.train import TrainConfig, TrainResult, predict_windows, train_predictor
from smartfrz.traces import open_traces
from smartfrz.traces.schema import RUNS_GROUP


@dataclass
class FitConfig:
    """Everything a fit depends on (recorded in the checkpoint and the report)."""

    traces: list[str]
    label_rule: LabelRule = field(default_factory=LabelRule)
    model: ModelConfig = field(default_factory=ModelConfig)  # k, sample_dtype and projection_seed set at fit time
    min_precision: float = 0.95
    threshold_by: str = "savings"  # "savings" (policy simulation on val runs) or "precision" (label precision)
    max_early_share: float = 0.1  # at most this share of val blocks may freeze before their frontier
    frontier: list[str] | None = None  # JSONs of `smartfrz probes frontier`: the shipped threshold is chosen on them
    frontier_slack: float = 0.01  # the highest threshold within this net share of the best is chosen
    val_frac: float = 0.2
    test_frac: float = 0.2
    group_by: str = "run"
    lofo: bool = False
    baselines: tuple[str, ...] = BASELINES
    train: TrainConfig = field(default_factory=TrainConfig)

    def model_config(self, k: int, sample_dtype: str) -> ModelConfig:
        """The network config for samples of size ``k`` stored as ``sample_dtype``."""
        return replace(self.model, k=k, projection_seed=self.train.seed, sample_dtype=sample_dtype)


@dataclass
class Evaluation:
    """One train/val/test evaluation: the trained network, its threshold and the metrics."""

    net: AttentionPredictorNet
    threshold: float
    threshold_met: bool
    train_result: TrainResult
    metrics: dict[str, Any]
    split_sizes: dict[str, dict[str, int]]


def _trace_samples(traces: list[str]) -> tuple[int, str]:
    """The common sample size K and storage dtype of all runs; ValueError when runs disagree."""
    found = set()
    for src in traces:
        for info in open_traces(src).list_runs():
            with h5py.File(info.path, "r") as f:
                found.add((info.k, str(f[RUNS_GROUP][info.run_id]["samples"].dtype)))
    if len(found) != 1:
        raise ValueError(f"runs in {traces} differ in sample size / dtype {sorted(found)}; fit one kind at a time")
    return found.pop()


def _scored(
    name: str, val: WindowSet, p_val: np.ndarray, test: WindowSet, p_test: np.ndarray, cfg: FitConfig
) -> tuple[float, bool, dict[str, Any]]:
    """Threshold from validation, metrics and the policy simulation on test (overall and per family).

    ``threshold_by="savings"`` picks the lowest threshold whose replay on the validation runs freezes at
    most ``max_early_share`` of blocks before their frontier; ``"precision"`` the one reaching
    ``min_precision`` on validation windows.
    """
    if cfg.threshold_by == "savings":
        threshold, _ = choose_threshold_by_savings(val, p_val, cfg.max_early_share)
        met = True
    else:
        threshold, met = choose_threshold(val.y, p_val, cfg.min_precision)
    m = metrics_by_family(test.y, p_test, test.family, threshold)
    sim = summarise(simulate(test, p_test, threshold))
    sim.pop("runs")
    return (
        threshold,
        met,
        {
            "model": name,
            "threshold": threshold,
            "precision_target_met_on_val": met,
            "test": m,
            "simulation": sim,
        },
    )


def evaluate(data: WindowSet, split: np.ndarray, cfg: FitConfig, model_cfg: ModelConfig) -> Evaluation:
    """Train the attention model and the baselines on one split; score all on its test part."""
    parts = {s: data.subset(split == s) for s in ("train", "val", "test")}
    train, val, test = parts["train"], parts["val"], parts["test"]
    for name, part in parts.items():
        if len(part) == 0:
            by_task = name == "val" and cfg.group_by == "task"
            hint = " (with --group-by task, validation tasks come only from families of 3 or more tasks)"
            raise ValueError(
                f"the {name} split is empty: give more runs or change --val-frac/--test-frac{hint * by_task}"
            )
    if not val.y.any() or val.y.all():
        raise ValueError("the validation split holds one class only; the threshold cannot be chosen")
    torch.manual_seed(cfg.train.seed)
    net = AttentionPredictorNet(model_cfg)
    result = train_predictor(net, train, val, cfg.train)
    threshold, met, attention = _scored(
        "attention", val, predict_windows(net, val), test, predict_windows(net, test), cfg
    )
    metrics: dict[str, Any] = {"attention": attention}
    for hidden in ("progress", "loss_drop"):  # as a Freezer without total_steps / without the loss
        if hidden in model_cfg.context:
            p_val, p_test = (predict_windows(net, part, hide=(hidden,)) for part in (val, test))
            name = "attention_no_progress" if hidden == "progress" else "attention_no_loss"
            metrics[name] = _scored(name, val, p_val, test, p_test, cfg)[2]
    for name in cfg.baselines:
        inputs = [baseline_inputs(name, p.features, p.context, model_cfg.context) for p in (train, val, test)]
        score = fit_baseline(name, inputs[0], train.y, cfg.train.seed)
        p_val, p_test = score(inputs[1]), score(inputs[2])
        metrics[name] = _scored(name, val, p_val, test, p_test, cfg)[2]
    sizes = {
        s: {"windows": len(p), "positives": int(p.y.sum()), "runs": len(set(p.run_id.tolist()))}
        for s, p in parts.items()
    }
    return Evaluation(net, threshold, met, result, metrics, sizes)


def fit_windows(cfg: FitConfig) -> tuple[WindowSet, ModelConfig]:
    """The labelled, embedded windows of ``cfg.traces`` and the network config they were embedded for."""
    model_cfg = cfg.model_config(*_trace_samples(cfg.traces))
    data = load_windows(
        cfg.traces,
        model_cfg.window,
        cfg.label_rule,
        AttentionPredictorNet(model_cfg).embed,
        model_cfg.k,
        group_by=cfg.group_by,
        min_window=model_cfg.min_window,
    )
    return data, model_cfg


def run_fit(cfg: FitConfig) -> tuple[Evaluation, dict[str, Any]]:
    """Fit on the grouped split (the shipped model) and, if asked, leave each family out in turn."""
    data, model_cfg = fit_windows(cfg)
    split = grouped_split(data.group, data.family, cfg.val_frac, cfg.test_frac, cfg.train.seed)
    frontiers = load_frontiers(cfg.frontier) if cfg.frontier else {}
    if frontiers:  # the threshold is calibrated on the probed runs: the model must not train on them
        probed = np.isin(data.run_id, list(frontiers))
        if not probed.any():  # before training, not after it
            raise ValueError(f"none of the fitted runs has a probe-measured frontier in {cfg.frontier}")
        split[np.isin(data.group, data.group[probed])] = "val"
    main = evaluate(data, split, cfg, model_cfg)
    families = sorted(set(data.family.tolist()))
    lofo: dict[str, Any] = {}
    if cfg.lofo:
        if len(families) < 2:
            raise ValueError(f"leave-one-family-out needs >= 2 families, found {families}")
        for fam in families:
            try:
                ev = evaluate(
                    data,
                    holdout_family_split(data.group, data.family, fam, cfg.val_frac, cfg.train.seed),
                    cfg,
                    model_cfg,
                )
            except ValueError as err:  # say which fold
                raise ValueError(f"leaving out {fam}: {err}") from err
            lofo[fam] = {
                name: {**m["test"]["all"], "simulation": m["simulation"]["all"]} for name, m in ev.metrics.items()
            }
            lofo[fam]["threshold_met_on_val"] = ev.threshold_met
    runs = {fam: sorted(set(data.run_id[data.family == fam].tolist())) for fam in families}
    calibration = _calibrate_on_frontier(main, data, split, frontiers, cfg) if frontiers else None
    summary = {
        "traces": [os.fspath(t) for t in cfg.traces],
        "runs_per_family": {f: len(r) for f, r in runs.items()},
        "runs": runs,
        "windows": len(data),
        "positive_fraction": float(data.y.mean()),
        "split": main.split_sizes,
        "lofo": lofo,
        "frontier_threshold": calibration,
    }
    return main, summary


def _calibrate_on_frontier(
    main: Evaluation, data: WindowSet, split: np.ndarray, frontiers: dict[str, list[int]], cfg: FitConfig
) -> dict[str, Any]:
    """Replace the shipped threshold by the one with the most net savings on the probed runs (held out of
    training, in the validation split); what it saw."""
    mask = np.isin(data.run_id, list(frontiers))
    probed = data.subset(mask)
    threshold, sweep = choose_threshold_by_frontier(
        probed, predict_windows(main.net, probed), frontiers, cfg.frontier_slack
    )
    val_threshold, main.threshold = main.threshold, threshold
    in_split = {rid: str(split[mask][probed.run_id == rid][0]) for rid in sorted(set(probed.run_id.tolist()))}
    return {
        "frontier": cfg.frontier,
        "threshold": threshold,
        "validation_threshold": val_threshold,
        "slack": cfg.frontier_slack,
        "runs_split": in_split,
        "missing_runs": sorted(set(frontiers) - set(in_split)),
        "sweep": sweep,
    }
