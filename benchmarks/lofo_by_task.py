"""Leave one family out, scored per task of the held-out family: where does the attention model lose?

Trains the attention predictor (and ``gboost_ctx``, the strongest baseline) without ``--family`` exactly as
``smartfrz fit --lofo`` does for that family, then reports ROC-AUC on the held-out windows of each of its
tasks apart (the task is the run id's first ``-``-separated field, as the collector names runs). With the
MobileNet family held out, its ImageNet fine-tuning runs and its from-scratch runs behave differently:

    python benchmarks/lofo_by_task.py traces/corpus/runs traces/default/traces.h5 --family mobilenet
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from smartfrz.predictor.baselines import baseline_inputs, fit_baseline
from smartfrz.predictor.dataset import load_windows
from smartfrz.predictor.fit import FitConfig, _trace_samples, evaluate
from smartfrz.predictor.labels import LabelRule
from smartfrz.predictor.model import AttentionPredictorNet, ModelConfig
from smartfrz.predictor.split import holdout_family_split
from smartfrz.predictor.train import TrainConfig, predict_windows


def main() -> None:
    """Parse arguments, train without the family, print one line per held-out task."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("traces", nargs="+", help="trace files or run folders, as for smartfrz fit")
    p.add_argument("--family", required=True, help="the family to hold out")
    p.add_argument("--epochs", type=int, default=40, help="at most this many epochs (the shipped fit: 40)")
    p.add_argument("--context", nargs="+", default=["progress", "lr_rel", "depth"], help="context inputs")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = FitConfig(
        traces=list(args.traces),
        label_rule=LabelRule("monotone", 0.999, 0.25, 0.25),  # the shipped label
        model=ModelConfig(context=tuple(args.context)),
        baselines=(),
        train=TrainConfig(epochs=args.epochs, patience=8, max_batches_per_epoch=100),
    )
    model_cfg = cfg.model_config(*_trace_samples(cfg.traces))
    embed = AttentionPredictorNet(model_cfg).embed
    data = load_windows(
        cfg.traces, model_cfg.window, cfg.label_rule, embed, model_cfg.k, min_window=model_cfg.min_window
    )
    split = holdout_family_split(data.group, data.family, args.family, cfg.val_frac, cfg.train.seed)
    net = evaluate(data, split, cfg, model_cfg).net
    train, test = data.subset(split == "train"), data.subset(split == "test")
    p_att = predict_windows(net, test)
    gboost = fit_baseline("gboost_ctx", baseline_inputs("gboost_ctx", train.features, train.context), train.y, 0)
    p_gb = gboost(baseline_inputs("gboost_ctx", test.features, test.context))
    tasks = np.array([r.split("-")[0] for r in test.run_id.tolist()])
    print("| held-out task | runs | windows | positive share | attention ROC-AUC | gboost_ctx ROC-AUC |")
    print("|---|---|---|---|---|---|")
    for task in [*sorted(set(tasks.tolist())), "all"]:
        m = np.ones(len(tasks), bool) if task == "all" else tasks == task
        if test.y[m].all() or not test.y[m].any():
            continue  # one class: no ROC-AUC
        runs = len(set(test.run_id[m].tolist()))
        print(
            f"| {task} | {runs} | {int(m.sum())} | {test.y[m].mean():.2f} | {roc_auc_score(test.y[m], p_att[m]):.3f} "
            f"| {roc_auc_score(test.y[m], p_gb[m]):.3f} |"
        )


if __name__ == "__main__":
    main()
