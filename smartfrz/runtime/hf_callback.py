"""Hugging Face Trainer callback: a Freezer driven by ``transformers.Trainer`` (imports transformers lazily).

Import this module only when transformers is installed; the rest of :mod:`smartfrz.runtime`
never imports it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as err:
    raise ImportError("smartfrz.runtime.hf_callback needs transformers: pip install transformers") from err

from smartfrz.runtime.freezer import Freezer
from smartfrz.runtime.policies import Policy
from smartfrz.runtime.protocols import PredictorProtocol

STATE_FILE = "smartfrz_freezer.pt"  # the freezer's state, next to the Trainer's files in each checkpoint folder


class SmartFRZTrainerCallback(TrainerCallback):
    """Builds a :class:`Freezer` when training begins and steps it after every optimizer step.

    Blocks of BERT, RoBERTa, DistilBERT, ViT and GPT-2 classifiers are found automatically. The
    Trainer runs the model's own forward, so this callback freezes (no backward, no optimizer state
    for the frozen prefix) but does not serve activations from the cache. The predictor reads the
    training loss the Trainer logs every ``logging_steps``. Set ``logging_steps`` at or below the
    recording cadence (about ``max_steps / 40``) for the loss context to match the traces. With fewer
    logs the predictor keeps the latest loss drop, and before the first log it judges without one.
    Each checkpoint folder gets the freezer's state (``smartfrz_freezer.pt``), and
    ``trainer.train(resume_from_checkpoint=...)`` restores it, so a resumed run takes the same
    decisions. Each freeze prints one line on the main process (``verbose=False`` silences it) and
    adds an entry to ``trainer.state.log_history``
    (``smartfrz/event``, ``smartfrz/blocks_frozen``, ``smartfrz/flops_saved``). With several
    processes pass ``ddp_find_unused_parameters=True`` to ``TrainingArguments``: the Trainer owns the
    DDP wrapper.

    Args:
        policy: as for :class:`Freezer`.
        resume_from: the checkpoint folder to restore the freezer from when the Trainer resumes;
            default: ``args.resume_from_checkpoint`` or ``output_dir/checkpoint-<step>``.
        **freezer_kwargs: any other :class:`Freezer` option.
    """

    def __init__(
        self,
        policy: Policy | PredictorProtocol | str | os.PathLike[str] | None = "default",
        resume_from: str | os.PathLike[str] | None = None,
        **freezer_kwargs: Any,
    ) -> None:
        self.policy = policy
        self.resume_from = resume_from
        self.freezer_kwargs = freezer_kwargs
        self.freezer: Freezer | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Build the freezer over the Trainer's model and optimizer; when resuming, restore its state."""
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        if model is None or optimizer is None:
            raise RuntimeError("the Trainer passed no model/optimizer to SmartFRZTrainerCallback.on_train_begin")
        kw = {"total_steps": state.max_steps or None, **self.freezer_kwargs}
        self.freezer = Freezer(model, optimizer, self.policy, **kw)
        if state.global_step > 0:
            self.freezer.load_state_dict(torch.load(self._state_path(args, state), weights_only=False))

    def _state_path(self, args: TrainingArguments, state: TrainerState) -> str:
        """The freezer state of the checkpoint the Trainer resumed from, or a RuntimeError saying where to point."""
        folders = [self.resume_from, getattr(args, "resume_from_checkpoint", None)]
        folders.append(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))
        for folder in folders:
            if isinstance(folder, str | os.PathLike) and os.path.isfile(os.path.join(folder, STATE_FILE)):
                return os.path.join(folder, STATE_FILE)
        raise RuntimeError(
            f"the Trainer resumed at step {state.global_step} but no {STATE_FILE} was found in "
            f"{[str(f) for f in folders if f]}; pass SmartFRZTrainerCallback(..., resume_from=<checkpoint folder>)"
        )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """One freezer step per optimizer step; new freeze events go into ``state.log_history``."""
        if self.freezer is None:
            return
        before = len(self.freezer.events.events)
        self.freezer.step()
        saved = self.freezer.flops.summary()["flops_saved_fraction"]
        for event in self.freezer.events.events[before:]:
            state.log_history.append(
                {
                    "smartfrz/event": self.freezer.events.line(event),
                    "smartfrz/blocks_frozen": event.block + 1,
                    "smartfrz/flops_saved": saved,
                    "step": state.global_step,
                }
            )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Hand the logged training loss (the mean since the last log) to the freezer's loss context."""
        loss = (logs or {}).get("loss")
        if self.freezer is not None and isinstance(loss, int | float) and math.isfinite(loss):
            self.freezer.add_loss(float(loss))

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Write the freezer's state into the checkpoint folder the Trainer just saved (main process)."""
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if self.freezer is not None and state.is_world_process_zero and os.path.isdir(folder):
            torch.save(self.freezer.state_dict(), os.path.join(folder, STATE_FILE))
