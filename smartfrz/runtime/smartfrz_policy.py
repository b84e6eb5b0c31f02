"""The SmartFRZ policy: a predictor judges each active layer's recent weight window."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from smartfrz.cadence import freezeout_prefix
from smartfrz.runtime.policies import Policy, PolicyContext, walk_prefix
from smartfrz.runtime.protocols import IncrementalPredictorProtocol, PredictorProtocol
from smartfrz.runtime.recorder import WeightRecorder
from smartfrz.train_context import LEGACY_CONTEXT, loss_drop


def _predictor_device(predictor: object) -> torch.device | None:
    """Where the predictor computes, when it says so (``device`` attribute or its first parameter)."""
    device = getattr(predictor, "device", None)
    if device is not None:
        return torch.device(device)
    params = getattr(predictor, "parameters", None)
    if callable(params):
        first = next(iter(params()), None)
        return None if first is None else first.device
    return None


class SmartFRZ(Policy):
    """Record every ``record_every`` steps; every ``stage_every`` steps ask the predictor.

    A block freezes when every judged layer in it has P(converged) >= ``threshold`` and every
    earlier block is frozen; the head never freezes. Only layers of blocks that may still freeze
    are recorded, so the cost shrinks as the prefix grows. With ``backstop`` (a FreezeOut ``t0``) and
    ``total_steps``, no block freezes later than FreezeOut's schedule would freeze it: the predictor can
    only freeze earlier. It applies under every learning-rate recipe; it matters most under a constant
    rate, where no weight signal placed the probe-measured safe freeze times better (README, Results).
    """

    name = "smartfrz"

    def __init__(
        self,
        predictor: PredictorProtocol,
        record_every: int = 10,
        stage_every: int = 100,
        window: int | None = None,
        threshold: float | None = None,
        seed: int = 0,
        total_steps: int | None = None,
        backstop: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(predictor, PredictorProtocol):
            raise TypeError(
                "predictor must have window, k, threshold and predict_proba(windows [N,W,K]) -> [N]; "
                f"got {type(predictor).__name__}"
            )
        if record_every < 1 or stage_every < 1:
            raise ValueError(f"record_every and stage_every must be >= 1, got {record_every}, {stage_every}")
        self.predictor = predictor
        self.record_every, self.stage_every = record_every, stage_every
        self.window = int(window if window is not None else predictor.window)
        self.threshold = float(threshold if threshold is not None else predictor.threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if backstop is not None and not 0.0 < backstop <= 1.0:
            raise ValueError(f"backstop is FreezeOut's t0, a fraction of training in (0, 1]; got {backstop}")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if backstop is not None and total_steps is None:
            raise ValueError("a backstop schedule is a share of training: give total_steps with it")
        self.seed = seed
        self.total_steps = total_steps
        self.backstop = backstop
        # predictors that take context and masked short windows judge a layer from min_window snapshots on
        self.contextual = hasattr(predictor, "min_window")
        self.min_window = int(getattr(predictor, "min_window", self.window))
        self.context_features: tuple[str, ...] = tuple(getattr(predictor, "context_features", LEGACY_CONTEXT))
        self._peak_lr = 0.0
        self._lr_rel = 1.0
        self._first_loss = float("nan")  # mean training loss over the first recording interval
        self._loss_drop = float("nan")
        self._recorded_step = 0  # step of the latest snapshot: the traces' progress is that of their snapshot
        self.incremental = isinstance(predictor, IncrementalPredictorProtocol)
        self.recorder: WeightRecorder | None = None
        self._judged: list[int] = []  # layer indices (into ctx.layers) that the recorder tracks
        # the latest P(converged) per layer and the snapshot count it was computed at: a stage with no new
        # snapshot since (the backstop's steps fall between recordings) has the same windows and context
        self._scored: tuple[int, dict[int, float]] = (-1, {})

    def attach(self, ctx: PolicyContext) -> None:
        """Build the recorder over the layers of the freezable blocks."""
        super().attach(ctx)
        self._judged = [i for i, b in enumerate(ctx.layer_block) if b < ctx.num_freezable]
        if not self._judged:
            return
        embed = self.predictor.embed_snapshots if self.incremental else None  # type: ignore[attr-defined]
        self.recorder = WeightRecorder(
            [ctx.layers[i][1] for i in self._judged], self.predictor.k, self.window, self.seed, embed
        )

    def observe(self, step: int, num_frozen: int) -> None:
        """Take a snapshot every ``record_every`` steps."""
        if self.recorder is not None and step % self.record_every == 0:
            self.recorder.record()
            self._recorded_step = step
            lr = float(self.ctx.optimizer.param_groups[0]["lr"]) if self.ctx is not None else 0.0
            self._peak_lr = max(self._peak_lr, lr)
            self._lr_rel = lr / self._peak_lr if self._peak_lr > 0 else 1.0
            mean_loss = self.ctx.loss.take() if self.ctx is not None else float("nan")
            if math.isnan(mean_loss):
                return  # no loss in this interval (a loop that logs it less often): keep the latest drop
            if math.isnan(self._first_loss):
                self._first_loss = mean_loss
            self._loss_drop = loss_drop(self._first_loss, mean_loss)

    def is_stage(self, step: int) -> bool:
        """Every ``stage_every`` steps, and at each step where the backstop schedule moves."""
        return step % self.stage_every == 0 or self.backstop_prefix(step) != self.backstop_prefix(step - 1)

    def _context(self, rows: list[int]) -> Tensor:
        """Context [n, C] of these recorder rows, the predictor's ``context_features`` in order (NaN = unknown)."""
        assert self.ctx is not None
        n_layers = len(self.ctx.layers)
        shared = {
            "progress": self._recorded_step / self.total_steps if self.total_steps else float("nan"),
            "lr_rel": self._lr_rel,
            "loss_drop": self._loss_drop,
        }
        nan = float("nan")  # a context the runtime cannot provide reads as unknown
        values = [
            [
                self._judged[r] / max(1, n_layers - 1) if c == "depth" else shared.get(c, nan)
                for c in self.context_features
            ]
            for r in rows
        ]
        return torch.tensor(values, dtype=torch.float32).reshape(len(rows), len(self.context_features))

    @torch.no_grad()
    def _predict(self, rows: list[int]) -> Tensor:
        """P(converged) on the CPU for these recorder rows, through the incremental path when available."""
        assert self.recorder is not None
        device = _predictor_device(self.predictor)
        if self.contextual:
            windows, valid = self.recorder.partial_windows(rows, embedded=self.incremental)
            context = self._context(rows)
            if device is not None:
                windows, valid, context = windows.to(device), valid.to(device), context.to(device)
            fn = self.predictor.predict_from_embeddings if self.incremental else self.predictor.predict_proba  # type: ignore[attr-defined]
            return fn(windows, context=context, valid=valid).float().cpu()
        if self.incremental:
            windows = self.recorder.embedded_windows(rows)
            windows = windows if device is None else windows.to(device)
            return self.predictor.predict_from_embeddings(windows).float().cpu()  # type: ignore[attr-defined]
        windows = self.recorder.windows(rows)
        windows = windows if device is None else windows.to(device)
        return self.predictor.predict_proba(windows).float().cpu()

    def backstop_prefix(self, step: int) -> int:
        """Blocks the backstop schedule has frozen by ``step`` (0 without a backstop)."""
        assert self.ctx is not None
        if self.backstop is None or self.total_steps is None:  # the constructor pairs them; mypy cannot see it
            return 0
        return freezeout_prefix(step, self.ctx.num_freezable, self.backstop, self.total_steps)

    def decide(self, step: int, num_frozen: int) -> int:
        """Extend the prefix over blocks whose layers the predictor all judges converged, or the backstop's."""
        assert self.ctx is not None
        self.block_scores = {}
        start = max(num_frozen, self.backstop_prefix(step))  # the predictor may extend the backstop's prefix
        if self.recorder is None or self.recorder.count < self.min_window or not self.recorder.active:
            return walk_prefix(self.ctx, start, {})  # layer-less blocks still follow
        layer_prob = self._layer_probs()
        for b in range(num_frozen, self.ctx.num_freezable):
            in_block = [layer_prob[i] for i in self.ctx.layers_of(b) if i in layer_prob]
            if in_block:
                self.block_scores[b] = min(in_block)
        converged = {i: p >= self.threshold for i, p in layer_prob.items()}
        return walk_prefix(self.ctx, start, converged)

    def _layer_probs(self) -> dict[int, float]:
        """P(converged) of each recorded layer (by index into ctx.layers), reused while no snapshot was added."""
        assert self.recorder is not None
        rows = self.recorder.active  # recorder rows == positions in self._judged
        count, cached = self._scored
        if count == self.recorder.count:
            return {self._judged[r]: cached[self._judged[r]] for r in rows}
        probs = self._predict(rows)
        values = probs.tolist() if probs.shape == (len(rows),) else []
        if len(values) != len(rows) or not all(map(math.isfinite, values)):
            raise RuntimeError(f"predictor returned {tuple(probs.shape)} / non-finite values for {len(rows)} windows")
        layer_prob = {self._judged[r]: p for r, p in zip(rows, values, strict=True)}
        self._scored = (self.recorder.count, layer_prob)
        return layer_prob

    def on_frozen(self, num_frozen: int) -> None:
        """Stop recording the layers of frozen blocks."""
        assert self.ctx is not None
        if self.recorder is not None:
            keep = [r for r, i in enumerate(self._judged) if self.ctx.layer_block[i] >= num_frozen]
            self.recorder.set_active(keep)

    def state_dict(self) -> dict[str, Any]:
        """The recorder's windows and position, and the context (peak lr, last snapshot step)."""
        return {
            "recorder": None if self.recorder is None else self.recorder.state_dict(),
            "context": {
                "peak_lr": self._peak_lr,
                "lr_rel": self._lr_rel,
                "recorded_step": self._recorded_step,
                "first_loss": self._first_loss,
                "loss_drop": self._loss_drop,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the recorder's windows and position and the context; k, window and seed must match."""
        if self.recorder is not None and state["recorder"] is not None:
            self.recorder.load_state_dict(state["recorder"])
        self._scored = (-1, {})  # scores of the windows before the restore do not carry over
        context = state.get("context", {})  # absent in checkpoints from before the context inputs
        self._peak_lr = float(context.get("peak_lr", 0.0))
        self._lr_rel = float(context.get("lr_rel", 1.0))
        self._recorded_step = int(context.get("recorded_step", 0))
        self._first_loss = float(context.get("first_loss", float("nan")))
        self._loss_drop = float(context.get("loss_drop", float("nan")))

    def describe(self) -> dict[str, Any]:
        """Name and schedule settings."""
        return {
            "name": self.name,
            "record_every": self.record_every,
            "stage_every": self.stage_every,
            "window": self.window,
            "threshold": self.threshold,
            "min_window": self.min_window,
            "seed": self.seed,
            # not total_steps: a resumed run may plan another length, and the schedule follows the new plan
            **({"backstop": self.backstop} if self.backstop is not None else {}),  # absent before backstops
        }
