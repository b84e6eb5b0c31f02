"""PyTorch Lightning callback: a Freezer driven by the Lightning training loop (imports Lightning lazily).

Import this module only when Lightning is installed (``pip install lightning``); the rest of
:mod:`smartfrz.runtime` never imports it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

try:
    import lightning.pytorch as pl
except ImportError:  # the standalone package name
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as err:
        raise ImportError("smartfrz.runtime.lightning_callback needs Lightning: pip install lightning") from err

from smartfrz.runtime.freezer import Freezer
from smartfrz.utils.batches import batch_len

try:
    from lightning.pytorch.utilities import rank_zero_info
except ImportError:
    from pytorch_lightning.utilities import rank_zero_info  # type: ignore[no-redef]
from smartfrz.runtime.policies import Policy
from smartfrz.runtime.protocols import PredictorProtocol


def _loss(outputs: Any) -> Tensor | None:
    """The training loss in what ``training_step`` returned (a tensor or a dict with "loss"), else None."""
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    return loss if isinstance(loss, Tensor) and loss.numel() == 1 else None


def _inputs(batch: Any) -> Any:
    """The model inputs of a batch: the first item of a tuple/list batch, else the batch."""
    return batch[0] if isinstance(batch, tuple | list) else batch


class SmartFRZCallback(pl.Callback):
    """Builds a :class:`Freezer` at fit start and steps it once per optimizer step.

    Args:
        policy: as for :class:`Freezer` ("default", a path, a predictor, a Policy or None).
        module_attr: attribute of the LightningModule holding the network to freeze (e.g. "net");
            None freezes the LightningModule itself (then give ``blocks`` unless it is discoverable).
        **freezer_kwargs: any other :class:`Freezer` option (blocks, cache, deterministic_inputs, ...).

    The planned length is ``trainer.estimated_stepping_batches`` (unless ``total_steps`` is given).
    Each freeze prints one line through Lightning's logger (``verbose=False`` silences it), and
    ``smartfrz/blocks_frozen`` and ``smartfrz/flops_saved`` (fraction) go to the trainer's loggers
    and progress bar every step; with a TensorBoard logger the events are also written there.

    Freezing needs nothing else. To serve the frozen prefix from the activation cache, keep a
    reference to the callback and call ``callback.freezer(x, idx)`` in ``training_step``.
    Under Lightning's DDP strategy use ``strategy="ddp_find_unused_parameters_true"``: Lightning owns
    the DDP wrapper, so the freezer cannot rebuild it after a freeze.
    """

    def __init__(
        self,
        policy: Policy | PredictorProtocol | str | os.PathLike[str] | None = "default",
        module_attr: str | None = None,
        **freezer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.module_attr = module_attr
        self.freezer_kwargs = freezer_kwargs
        self.freezer: Freezer | None = None
        self._pending: dict[str, Any] | None = None
        self._seen_step = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Build the freezer over the module and the trainer's (first) optimizer."""
        if not trainer.optimizers:
            raise RuntimeError("SmartFRZCallback needs an optimizer (configure_optimizers returned none)")
        model = getattr(pl_module, self.module_attr) if self.module_attr else pl_module
        kwargs = {"verbose": rank_zero_info, **self.freezer_kwargs}
        if "total_steps" not in kwargs:
            planned = trainer.estimated_stepping_batches
            kwargs["total_steps"] = int(planned) if math.isfinite(planned) else None
        experiment = getattr(trainer.logger, "experiment", None) if trainer.logger is not None else None
        if "writer" not in kwargs and hasattr(experiment, "add_text") and hasattr(experiment, "add_scalar"):
            kwargs["writer"] = experiment  # a TensorBoard SummaryWriter
        if kwargs["verbose"] is True:
            kwargs["verbose"] = rank_zero_info
        self.freezer = Freezer(model, trainer.optimizers[0], self.policy, **kwargs)
        if self._pending is not None:
            self.freezer.load_state_dict(self._pending)
            self._pending = None
        # A checkpoint's global_step may be restored only after fit start: count from the freezer's step then,
        # or the first batch of a resumed run (mid-accumulation) would step the freezer once too often.
        self._seen_step = max(trainer.global_step, self.freezer.step_count)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """On the first batch, measure per-block FLOPs on its inputs (the first item of a tuple batch)."""
        freezer = self.freezer
        if freezer is not None and freezer._measure_flops and not freezer.flops.measured:
            freezer._measure(_inputs(batch))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Step the freezer when an optimizer step happened (gradient accumulation aware)."""
        if self.freezer is not None and trainer.global_step > self._seen_step:
            self._seen_step = trainer.global_step
            if self.freezer._pending_batch == 0:  # the module ran its own forward: count the batch for the FLOPs
                self.freezer._pending_batch = batch_len(_inputs(batch))
            self.freezer.step(_loss(outputs))
            saved = self.freezer.flops.summary()["flops_saved_fraction"]
            metrics = {"smartfrz/blocks_frozen": float(self.freezer.num_frozen)}
            if saved is not None:
                metrics["smartfrz/flops_saved"] = float(saved)
            pl_module.log_dict(metrics, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)

    def state_dict(self) -> dict[str, Any]:
        """The freezer's state, saved in Lightning checkpoints."""
        if self.freezer is not None:
            return self.freezer.state_dict()
        return self._pending or {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from a Lightning checkpoint (applied when the freezer is built, at fit start)."""
        if not state_dict:
            return
        if self.freezer is not None:
            self.freezer.load_state_dict(state_dict)
        else:
            self._pending = state_dict
