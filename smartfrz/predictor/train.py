"""Seeded training of the attention predictor with class weighting and early stopping."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from smartfrz.predictor.dataset import WindowSet
from smartfrz.predictor.model import AttentionPredictorNet
from smartfrz.train_context import CONTEXT_FEATURES
from smartfrz.utils.modes import eval_mode


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 150
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 20
    seed: int = 0
    max_batches_per_epoch: int = 200
    progress_dropout: float = 0.3  # share of training windows shown without t/T, as when total_steps is unknown
    loss_dropout: float = 0.3  # share shown without the loss drop, as when the loss is not passed to the freezer
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights (per batch)

    def __post_init__(self) -> None:
        """Reject an EMA decay outside [0, 1)."""
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")

    def to_dict(self) -> dict[str, object]:
        """Plain dict for checkpoints and reports."""
        return asdict(self)


@dataclass
class TrainResult:
    """What happened during training."""

    best_epoch: int
    best_val_pr_auc: float | None
    epochs_run: int
    pos_weight: float
    history: list[dict[str, float]] = field(default_factory=list)


def _forward(net: AttentionPredictorNet, data: WindowSet, rows: np.ndarray, context: np.ndarray) -> torch.Tensor:
    """Logits of examples ``rows`` with the given context rows (all ``CONTEXT_FEATURES``; the net takes its own)."""
    emb, valid = data.gather(rows)
    cols = [CONTEXT_FEATURES.index(c) for c in net.cfg.context]
    return net.forward_embedded(emb, torch.from_numpy(np.ascontiguousarray(context[:, cols])), valid)


@torch.no_grad()
def predict_windows(
    net: AttentionPredictorNet, data: WindowSet, batch_size: int = 4096, hide: tuple[str, ...] = ()
) -> np.ndarray:
    """P(converged) for every example of ``data`` (eval mode, no grad), with the context ``hide`` names unknown."""
    context = data.context.copy()
    for name in hide:
        context[:, CONTEXT_FEATURES.index(name)] = np.nan
    out = []
    with eval_mode(net):
        for i in range(0, len(data), batch_size):
            rows = np.arange(i, min(i + batch_size, len(data)))
            out.append(torch.sigmoid(_forward(net, data, rows, context[rows])))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def _val_score(net: AttentionPredictorNet, val: WindowSet, loss_fn: nn.Module) -> tuple[float, float | None]:
    """Validation loss and PR-AUC (None when validation has one class)."""
    p = predict_windows(net, val)
    logits = torch.logit(torch.from_numpy(p).clamp(1e-6, 1 - 1e-6))
    loss = float(loss_fn(logits, torch.from_numpy(val.y).float()))
    both = bool(val.y.any() and not val.y.all())
    return loss, float(average_precision_score(val.y, p)) if both else None


def train_predictor(net: AttentionPredictorNet, train: WindowSet, val: WindowSet, cfg: TrainConfig) -> TrainResult:
    """Train ``net`` in place; keep the weights (or, with ``ema_decay``, their moving average) of the epoch with
    the lowest validation loss.

    Validation loss (class-weighted BCE) is a smoother early-stopping signal than PR-AUC on the few
    held-out runs a split leaves; PR-AUC is recorded per epoch in the history.
    """
    if len(train) == 0 or not train.y.any() or train.y.all():
        raise ValueError("training set needs examples of both classes")
    if len(val) == 0:
        raise ValueError("validation set is empty: give more runs or a larger --val-frac")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    sample = torch.randperm(len(train), generator=gen)[:20000].numpy()
    net.set_standardisation(*train.gather(sample))
    n_pos = int(train.y.sum())
    pos_weight = (len(train) - n_pos) / n_pos
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    y_train = torch.from_numpy(train.y).float()
    n_batches = min(cfg.max_batches_per_epoch, -(-len(train) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * n_batches)
    # the averaged copy (when asked for) is what validation scores and what is kept: smoother across batches,
    # and so less tied to the last few batches' families than the raw weights
    ema = (
        AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if cfg.ema_decay > 0
        else None
    )
    scored = net if ema is None else ema.module
    best_loss, best_state, best_epoch, best_ap = float("inf"), copy.deepcopy(net.state_dict()), 0, None
    history: list[dict[str, float]] = []
    bad = 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="training predictor", unit="epoch")
    for epoch in bar:
        net.train()
        order = torch.randperm(len(train), generator=gen)[: n_batches * cfg.batch_size]
        total = 0.0
        for rows in order.split(cfg.batch_size):
            context = train.context[rows.numpy()].copy()
            for name, share in (("progress", cfg.progress_dropout), ("loss_drop", cfg.loss_dropout)):
                hide = torch.rand(len(rows), generator=gen) < share
                context[hide.numpy(), CONTEXT_FEATURES.index(name)] = np.nan
            loss = loss_fn(_forward(net, train, rows.numpy(), context), y_train[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(net)
            total += loss.item() * len(rows)
        val_loss, val_ap = _val_score(scored, val, loss_fn)
        history.append({"epoch": epoch, "train_loss": total / len(order), "val_loss": val_loss, "val_pr_auc": val_ap})
        bar.set_postfix(val_loss=f"{val_loss:.3f}", val_pr_auc=f"{val_ap:.3f}" if val_ap is not None else "-")
        if val_loss < best_loss:
            best_loss, best_epoch, best_ap, bad = val_loss, epoch, val_ap, 0
            best_state = copy.deepcopy(scored.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return TrainResult(best_epoch, best_ap, len(history), pos_weight, history)
