"""Hugging Face Trainer callback: a Freezer driven by ``transformers.Trainer`` (imports transformers lazily).

Import this module only when transformers is installed; the rest of :mod:`smartfrz.runtime`
never imports it.
"""

from __future__ import annotations

import os
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as err:
    raise ImportError("smartfrz.runtime.hf_callback needs transformers: pip install transformers") from err

from smartfrz.runtime.freezer import Freezer
from smartfrz.runtime.policies import Policy
from smartfrz.runtime.protocols import PredictorProtocol


class SmartFRZTrainerCallback(TrainerCallback):
    """Builds a :class:`Freezer` when training begins and steps it after every optimizer step.

    Blocks of BERT-style classifiers (e.g. MiniLM) are found automatically. The Trainer runs the
    model's own forward, so this callback freezes (no backward, no optimizer state for the frozen
    prefix) but does not serve activations from the cache. With several processes pass
    ``ddp_find_unused_parameters=True`` to ``TrainingArguments``: the Trainer owns the DDP wrapper.
    The freezer's state is ``callback.freezer.state_dict()``; save it next to your checkpoints.
    """

    def __init__(
        self, policy: Policy | PredictorProtocol | str | os.PathLike[str] | None = "default", **freezer_kwargs: Any
    ) -> None:
        self.policy = policy
        self.freezer_kwargs = freezer_kwargs
        self.freezer: Freezer | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Build the freezer over the Trainer's model and optimizer."""
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        if model is None or optimizer is None:
            raise RuntimeError("the Trainer passed no model/optimizer to SmartFRZTrainerCallback.on_train_begin")
        kw = {"total_steps": state.max_steps or None, **self.freezer_kwargs}
        self.freezer = Freezer(model, optimizer, self.policy, **kw)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """One freezer step per optimizer step."""
        if self.freezer is not None:
            self.freezer.step()
