"""Leave one family out, scored per task of the held-out family: where does the attention model lose?

Trains the attention predictor (and ``gboost_ctx``, the strongest baseline) without ``--family`` as
``smartfrz fit --lofo`` does for that family, with the shipped predictor's label rule and context inputs
(read from ``--predictor``), then reports ROC-AUC on the held-out windows of each of its
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
from smartfrz.predictor.fit import FitConfig, evaluate, fit_windows
from smartfrz.predictor.inference import load_predictor
from smartfrz.predictor.model import ModelConfig
from smartfrz.predictor.split import holdout_family_split
from smartfrz.predictor.train import TrainConfig, predict_windows


def main() -> None:
    """Parse arguments, train without the family, print one line per held-out task."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("traces", nargs="+", help="trace files or run folders, as for smartfrz fit")
    p.add_argument("--family", required=True, help="the family to hold out")
    p.add_argument("--predictor", default="default", help="whose label rule and context to use")
    p.add_argument("--epochs", type=int, default=40, help="at most this many epochs (README's fit: 40)")
    p.add_argument("--patience", type=int, default=8, help="early stopping (README's fit: 8)")
    p.add_argument("--max-batches", type=int, default=100, help="batches per epoch at most (README's fit: 100)")
    args = p.parse_args()
    torch.set_num_threads(1)
    shipped = load_predictor(args.predictor)
    cfg = FitConfig(
        traces=list(args.traces),
        label_rule=shipped.label_rule,
        model=ModelConfig(context=shipped.context_features),
        baselines=(),
        train=TrainConfig(epochs=args.epochs, patience=args.patience, max_batches_per_epoch=args.max_batches),
    )
    data, model_cfg = fit_windows(cfg)
    split = holdout_family_split(data.group, data.family, args.family, cfg.val_frac, cfg.train.seed)
    net = evaluate(data, split, cfg, model_cfg).net
    train, test = data.subset(split == "train"), data.subset(split == "test")
    p_att = predict_windows(net, test)
    gboost_inputs = baseline_inputs("gboost_ctx", train.features, train.context, model_cfg.context)
    gboost = fit_baseline("gboost_ctx", gboost_inputs, train.y, cfg.train.seed)
    p_gb = gboost(baseline_inputs("gboost_ctx", test.features, test.context, model_cfg.context))
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
