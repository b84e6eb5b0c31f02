"""What a traced run records at each snapshot: weight samples and stats, gradient norms, evals, lr, probe Grams."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from smartfrz import ops
from smartfrz.blocks import model_logits
from smartfrz.collection.cka import GramStore, LayerGramCapture, cka_matrix
from smartfrz.layers import draw_sample_indices
from smartfrz.traces.schema import STAT_NAMES, RunRecord
from smartfrz.utils.batches import Batch, batch_len, to_device
from smartfrz.utils.modes import eval_mode


def evaluate(
    model: nn.Module, loader: Iterable, loss_fn: Callable[..., torch.Tensor], device: torch.device
) -> tuple[float, float]:
    """Mean loss and accuracy over ``loader`` in eval mode (restores every submodule's previous mode)."""
    total_loss, correct, count = 0.0, 0, 0
    with eval_mode(model), torch.no_grad():
        for x, y in loader:
            x, y = to_device(x, device), to_device(y, device)
            logits = model_logits(model(x))
            total_loss += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(dim=-1) == y).sum())
            count += len(y)
    if count == 0:
        raise ValueError("the validation loader yielded no samples")
    return total_loss / count, correct / count


class SnapshotRecorder:
    """Per snapshot: weights (one fused op), gradient norms (a second), lr, validation loss/accuracy, layer Grams.

    Owns the Gram buffer (it may spill to a temporary file): call :meth:`close` when done.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, nn.Module]],
        optimizer: torch.optim.Optimizer,
        val_loader: Iterable,
        loss_fn: Callable[..., torch.Tensor],
        probe_inputs: Batch,
        *,
        k: int,
        seed: int,
        device: torch.device,
        gram_budget_bytes: int,
    ) -> None:
        self.model, self.layers, self.optimizer = model, list(layers), optimizer
        self.val_loader, self.loss_fn, self.device = val_loader, loss_fn, device
        self.weights = [m.weight for _, m in layers]
        self.sample_idx = draw_sample_indices([w.numel() for w in self.weights], k, seed)
        self._idx_dev = self.sample_idx.to(device)
        self.capture = LayerGramCapture(model, [m for _, m in layers])
        self.probe = to_device(probe_inputs, device)
        self.n_probe = batch_len(probe_inputs)
        self.grams = GramStore(gram_budget_bytes)
        self.prev: torch.Tensor | None = None
        self.steps: list[int] = []
        self.samples: list[np.ndarray] = []
        self.stats: list[np.ndarray] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.val_acc: list[float] = []
        self.lr: list[float] = []

    def record(self, step: int, train_loss: float) -> str:
        """Record one snapshot now; returns why the run diverged (non-finite weights), "" when it did not."""
        nonfinite = self._record_weights(step, train_loss)
        self.lr.append(float(self.optimizer.param_groups[0]["lr"]))
        val_loss, val_acc = evaluate(self.model, self.val_loader, self.loss_fn, self.device)
        self.val_loss.append(val_loss)
        self.val_acc.append(val_acc)
        self.grams.append(self.capture(self.probe, self.n_probe))
        bad = np.flatnonzero(nonfinite > 0)
        return f"diverged: non-finite weights in layer {self.layers[bad[0]][0]!r} at step {step}" if bad.size else ""

    def _record_weights(self, step: int, train_loss: float) -> np.ndarray:
        """Record weights and gradients now; returns the per-layer nonfinite weight counts."""
        with torch.no_grad():
            samples, stats = ops.record_weights([w.detach() for w in self.weights], self._idx_dev, self.prev)
            grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
            _, grad_stats = ops.record_weights(grads, self._idx_dev, None)
        self.prev = samples
        row = torch.cat([stats, grad_stats[:, :1]], dim=1).cpu().numpy()
        self.steps.append(step)
        with np.errstate(over="ignore"):  # |w| > 65504 becomes inf in fp16; stats keep the fp32 truth
            self.samples.append(samples.cpu().numpy().astype(np.float16))
        self.stats.append(row)
        self.train_loss.append(train_loss)
        return row[:, STAT_NAMES.index("nonfinite")]

    def cka_and_grams(self, keep_gram: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """CKA between every pair of snapshots [T, T, L], the flat Grams [T, G] when kept, and each Gram's side."""
        cka_pairs = cka_matrix(self.grams)
        gram = np.stack([self.grams.flat(t) for t in range(len(self.grams))]) if keep_gram else None
        return cka_pairs, gram, np.array(self.grams.sizes, dtype=np.int64)

    def close(self) -> None:
        """Release the Gram buffer."""
        self.grams.close()

    def to_record(
        self,
        run_id: str,
        attrs: dict[str, Any],
        block: np.ndarray,
        cka_pairs: np.ndarray,
        gram: np.ndarray | None,
        gram_sizes: np.ndarray,
        probe_idx: Sequence[int] | None,
    ) -> RunRecord:
        """The run as the trace stores it: this recorder's arrays with the run's attributes and layer blocks."""
        n_layers = len(self.layers)
        return RunRecord(
            run_id=run_id,
            attrs=attrs,
            layer_names=[n for n, _ in self.layers],
            layer_kinds=[type(m).__name__ for _, m in self.layers],
            numel=np.array([w.numel() for w in self.weights], dtype=np.int64),
            block=block,
            depth=np.linspace(0.0, 1.0, n_layers, dtype=np.float32) if n_layers > 1 else np.zeros(1, np.float32),
            sample_idx=self.sample_idx.numpy(),
            steps=np.array(self.steps, dtype=np.int64),
            samples=np.stack(self.samples),
            stats=np.stack(self.stats).astype(np.float32),
            cka=np.ascontiguousarray(cka_pairs[:, -1]),
            train_loss=np.array(self.train_loss, dtype=np.float32),
            val_loss=np.array(self.val_loss, dtype=np.float32),
            val_acc=np.array(self.val_acc, dtype=np.float32),
            probe_idx=np.asarray(probe_idx, dtype=np.int64) if probe_idx is not None else None,
            gram=gram,
            gram_sizes=gram_sizes,
            lr=np.array(self.lr, dtype=np.float32),
            cka_pairs=cka_pairs,
        )
