"""The Freezer: the one object a training loop talks to (policy, mechanism, cache, DDP, accounting).

Three added lines in a plain loop::

    freezer = Freezer(model, optimizer, deterministic_inputs=True, cache=True)
    out = freezer(x, idx)        # instead of model(x); idx = the samples' dataset indices
    freezer.step(loss)           # after optimizer.step(); the loss is optional
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim import Optimizer

from smartfrz.blocks import Activation, Block, check_split, discover_blocks, layer_block_index, run_blocks
from smartfrz.cadence import FREEZEOUT_T0, record_every_for
from smartfrz.layers import find_layers
from smartfrz.runtime import distributed
from smartfrz.runtime.accounting import FlopAccount, measure_block_flops
from smartfrz.runtime.cache import ActivationCache, CacheConfig
from smartfrz.runtime.compiled import compile_advice
from smartfrz.runtime.events import Echo, EventLog, FreezeEvent
from smartfrz.runtime.gradflow import STARVED_HINT, starved
from smartfrz.runtime.indices import host_indices
from smartfrz.runtime.mechanism import base_optimizer, freeze_module
from smartfrz.runtime.policies import NoFreeze, Policy, PolicyContext
from smartfrz.runtime.precision import Autocast
from smartfrz.runtime.protocols import PredictorProtocol
from smartfrz.runtime.smartfrz_policy import SmartFRZ
from smartfrz.runtime.summary import FreezerSummary
from smartfrz.utils.batches import batch_len, first_tensor, take
from smartfrz.utils.modes import eval_mode

log = logging.getLogger("smartfrz.runtime")
GRADFLOW_CHECKS = 3  # steps after a freeze in which gradients may show a starved first trainable block

STATE_VERSION = 1
FLOP_SAMPLES = 8  # samples of the first batch used to measure per-block FLOPs


class BlockRange(nn.Module):
    """Blocks ``start..end`` as one module, so DDP can wrap the part that still trains."""

    def __init__(self, blocks: Sequence[Block], start: int) -> None:
        super().__init__()
        self.blocks = list(blocks[start:])
        self.mods = nn.ModuleList(b.module for b in self.blocks)

    def forward(self, act: Activation) -> Activation:
        """Run the blocks in order."""
        return run_blocks(self.blocks, act)


def resolve_policy(
    policy: Policy | PredictorProtocol | str | os.PathLike[str] | None,
    record_every: int | None,
    stage_every: int | None,
    window: int | None,
    threshold: float | None,
    seed: int,
    total_steps: int | None,
    backstop: float | Literal["auto"] | None = None,
) -> Policy:
    """A Policy from a policy, a predictor object, a predictor name/path, or None (never freeze).

    A SmartFRZ policy built here from a predictor gets the ``backstop`` schedule: ``"auto"`` is FreezeOut's
    ``t0`` when ``total_steps`` is known and none otherwise; a number given where it cannot apply is refused.
    """
    options = {"record_every": record_every, "stage_every": stage_every, "window": window, "threshold": threshold}
    if isinstance(policy, Policy) or policy is None:
        given = [k for k, v in options.items() if v is not None]
        if backstop not in (None, "auto"):
            given.append("backstop")
        if given:
            raise ValueError(f"{given} configure the SmartFRZ predictor policy; set them on the policy you passed")
        if isinstance(policy, SmartFRZ) and total_steps is not None:
            if policy.total_steps is None:
                policy.total_steps = total_steps  # the predictor's progress input: t / total_steps
            elif policy.total_steps != total_steps:
                raise ValueError(f"total_steps={total_steps} but the SmartFRZ policy plans {policy.total_steps}")
        return NoFreeze() if policy is None else policy
    if isinstance(policy, str | os.PathLike):
        from smartfrz.predictor import load_predictor

        predictor: Any = load_predictor(policy)
    else:
        predictor = policy
    if record_every is None:
        record_every = record_every_for(total_steps) if total_steps else 10
    stage_every = stage_every if stage_every is not None else record_every
    if backstop == "auto":
        backstop = FREEZEOUT_T0 if total_steps else None  # the schedule is a share of training
    elif backstop is not None and not total_steps:
        raise ValueError(f"backstop={backstop} is a share of training: give total_steps too (or backstop=None)")
    return SmartFRZ(predictor, record_every, stage_every, window, threshold, seed, total_steps, backstop)


def _echo(verbose: bool | Echo) -> Echo | None:
    """Where freeze lines go: ``print`` on rank 0 (True), nowhere (False), or the given callable (rank 0)."""
    if verbose is False:
        return None
    sink: Echo = print if verbose is True else verbose
    return lambda line: sink(line) if distributed.is_rank0() else None


class Freezer:
    """Freezes a growing prefix of blocks during training and serves it from an activation cache.

    Args:
        model: the model (or its DistributedDataParallel wrapper: the freezer then rebuilds the
            wrapper after each freeze; forward through the freezer, not the old wrapper).
        optimizer: the optimizer over the model's parameters (state of frozen ones is dropped).
        policy: a :class:`Policy`, a predictor object, a predictor name or path ("default"), or
            None to never freeze.
        blocks: explicit blocks (module names, modules or Blocks, head last); default: discovered.
        record_every, stage_every, window, threshold: SmartFRZ settings when ``policy`` is a
            predictor (defaults: :func:`smartfrz.cadence.record_every_for` of ``total_steps``, else 10;
            ``record_every``; the predictor's).
        total_steps: planned optimizer steps: the default recording cadence and the predictor's
            progress input (also given to a SmartFRZ policy passed without its own).
        backstop: when ``policy`` is a predictor, no block freezes later than FreezeOut with this ``t0``
            would freeze it; needs ``total_steps``. ``"auto"`` (the default): FreezeOut's ``t0`` = 0.5 when
            ``total_steps`` is known, else none. None: the predictor alone decides. A SmartFRZ policy you
            build yourself takes its own ``backstop``.
        cache: True or a :class:`CacheConfig` to serve the frozen prefix from an activation cache.
        deterministic_inputs: the user's promise that a sample's input to the prefix is the same
            every time (no random augmentation); required for the cache.
        seed: seed of the weight sample positions.
        writer: optional TensorBoard ``SummaryWriter`` for freeze events.
        measure_flops: measure per-block FLOPs on the first batch for the savings summary.
        verbose: print one line per freeze (rank 0 only); False silences it, a callable receives
            the lines instead (the callbacks pass their trainer's logger).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        policy: Policy | PredictorProtocol | str | os.PathLike[str] | None = "default",
        *,
        blocks: Sequence[str | nn.Module | Block] | None = None,
        record_every: int | None = None,
        stage_every: int | None = None,
        window: int | None = None,
        threshold: float | None = None,
        total_steps: int | None = None,
        backstop: float | Literal["auto"] | None = "auto",
        cache: CacheConfig | bool | None = None,
        deterministic_inputs: bool = False,
        seed: int = 0,
        writer: Any = None,
        measure_flops: bool = True,
        verbose: bool | Echo = True,
    ) -> None:
        self.module = model.module if isinstance(model, DDP) else model
        self._ddp_kwargs = distributed.ddp_kwargs(model) if isinstance(model, DDP) else None
        self._ddp_hooks = distributed.comm_hooks(model) if isinstance(model, DDP) else []
        self._wrapper: nn.Module = model
        self.optimizer = base_optimizer(optimizer)
        self.cache = self._build_cache(cache, deterministic_inputs)
        try:
            self.blocks = discover_blocks(self.module, blocks)
        except ValueError as err:
            raise ValueError(
                f"{err}\nWith the freezer: Freezer(model, optimizer, blocks=['stem', 'stage1', ..., 'head'])."
            ) from err
        advice = compile_advice(self.module, self.cache is not None, len(self.blocks))
        if advice is not None:
            log.warning(advice)
            warnings.warn(advice, UserWarning, stacklevel=2)
        self.layers = find_layers(self.module)
        where = layer_block_index(self.module, self.blocks)
        self.policy = resolve_policy(policy, record_every, stage_every, window, threshold, seed, total_steps, backstop)
        self.policy.attach(
            PolicyContext(
                block_names=[b.name for b in self.blocks],
                layers=self.layers,
                layer_block=[where[name] for name, _ in self.layers],
                optimizer=self.optimizer,
            )
        )
        self.total_steps = total_steps if total_steps is not None else getattr(self.policy, "total_steps", None)
        threshold_of = getattr(self.policy, "threshold", None) if isinstance(self.policy, SmartFRZ) else None
        self.events = EventLog(writer, _echo(verbose), len(self.blocks), self.total_steps, threshold_of)
        self.last_scores: dict[int, float] = {}  # the policy's latest per-block scores (see summary())
        self.last_scores_step: int | None = None
        self.flops = FlopAccount()
        self._measure_flops = measure_flops
        self.num_frozen = 0
        self.step_count = 0
        self.overhead_s = 0.0  # time spent in step(): recording, prediction, freezing
        self.policy_s = 0.0  # of which the policy's own work: recording and prediction
        self._split_checked = False
        self._pending_batch = 0
        self._pending_hits = 0
        self._warned_no_idx = False
        self._autocast: Autocast | None = None  # the setting the cached rows were computed under
        self._gradflow_checks = 0  # steps left to check that the first trainable block gets gradients (after a freeze)
        if self.cache is not None and self._ddp_kwargs is not None:
            self._rewrap()

    @staticmethod
    def _build_cache(cache: CacheConfig | bool | None, deterministic: bool) -> ActivationCache | None:
        """The activation cache asked for, refusing it without the determinism promise."""
        if cache is None or cache is False:
            return None
        if not deterministic:
            raise ValueError(
                "the activation cache serves a frozen prefix's stored outputs, which is only right when each "
                "sample's input is the same every epoch (no random augmentation before the model); pass "
                "deterministic_inputs=True to declare that, or leave cache off"
            )
        return ActivationCache(CacheConfig() if cache is True else cache, deterministic)

    @property
    def model(self) -> nn.Module:
        """The module to call for the forward pass (the current DDP wrapper under DDP)."""
        return self._wrapper

    @property
    def frozen_blocks(self) -> list[str]:
        """Names of the frozen blocks."""
        return [b.name for b in self.blocks[: self.num_frozen]]

    # ---------------------------------------------------------------- forward
    def __call__(self, x: Any, idx: Tensor | Sequence[int] | None = None, *args: Any, **kwargs: Any) -> Any:
        """Same as :meth:`forward`."""
        return self.forward(x, idx, *args, **kwargs)

    def forward(self, x: Any, idx: Tensor | Sequence[int] | None = None, *args: Any, **kwargs: Any) -> Any:
        """The model's forward on batch ``x``; with the cache, ``idx`` (dataset indices) lets the prefix be skipped.

        Without a cache this is ``model(x, *args, **kwargs)``: ``idx`` is never passed to the model,
        and a second argument that is not a batch of dataset indices is refused rather than dropped.
        With a cache it runs the blocks (so it returns the head's output, e.g. the logits of a
        Hugging Face classifier). In eval mode (``model.eval()``) the cache is neither read nor
        filled, so evaluation data never mixes with the training indices.
        """
        n = batch_len(x)
        training = self.module.training
        keys = None
        if idx is not None:
            size = self.cache.config.dataset_size if self.cache is not None and training else None
            keys = host_indices(idx, n, size)
        if self._measure_flops and not self.flops.measured:
            self._measure(x)
        if not training:  # evaluation: never touch the cache or the training accounts
            return run_blocks(self.blocks, x) if self.cache is not None else self._wrapper(x, *args, **kwargs)
        self._pending_batch += n
        if self.cache is None:
            return self._wrapper(x, *args, **kwargs)
        if args or kwargs:
            raise TypeError("with the activation cache the forward takes the batch and its indices only")
        self._check_split_once(x)
        if keys is None and not self._warned_no_idx:
            log.warning("Freezer.forward got no dataset indices: the frozen prefix is recomputed, not cached")
            self._warned_no_idx = True
        return self._forward_cached(x, keys)

    def _forward_cached(self, x: Any, keys: list[int] | None = None) -> Any:
        """Serve the frozen prefix from the cache (computing and storing misses), then run the rest."""
        f = self.num_frozen
        if f == 0:
            return self._suffix()(x)
        assert self.cache is not None
        self._track_autocast(x)
        with torch.no_grad():
            if keys is None:
                h = run_blocks(self.blocks, x, 0, f)
            else:
                hits = self.cache.hits
                h = self.cache.fetch(x, keys, lambda xs: run_blocks(self.blocks, xs, 0, f))
                self._pending_hits += self.cache.hits - hits
        return self._suffix()(h)

    def _track_autocast(self, x: Any) -> None:
        """Remember the forward's autocast setting; rows computed under another one are dropped, not served."""
        ref = first_tensor(x)
        state = Autocast.current(ref.device if ref is not None else torch.device("cpu"))
        if self._autocast is not None and state != self._autocast and self.cache is not None and self.cache.rows:
            log.info("autocast setting changed (%s -> %s): the activation cache is refilled", self._autocast, state)
            self.cache.clear()
        self._autocast = state

    def _suffix(self) -> nn.Module:
        """The module that runs the trainable blocks (a DDP wrapper over them under DDP)."""
        if self._ddp_kwargs is not None:
            return self._wrapper
        if getattr(self, "_suffix_mod", None) is None or self._suffix_mod_start != self.num_frozen:
            self._suffix_mod = BlockRange(self.blocks, self.num_frozen)
            self._suffix_mod_start = self.num_frozen
        return self._suffix_mod

    def _check_split_once(self, x: Any) -> None:
        """Before the first cached step, verify that the blocks compose to the model's forward."""
        if self._split_checked:
            return
        check_split(self.module, self.blocks, take(x, slice(4)), atol=1e-4, rtol=1e-3)
        self._split_checked = True

    def _measure(self, x: Any) -> None:
        """Measure per-block forward FLOPs on a few samples of the first batch (eval mode, no grad)."""
        n = batch_len(x)
        example = take(x, slice(FLOP_SAMPLES))
        try:
            with eval_mode(self.module):
                self.flops.block_flops = measure_block_flops(
                    lambda b, h: self.blocks[b].forward(h), example, len(self.blocks), min(n, FLOP_SAMPLES)
                )
        except Exception as err:  # a block list that does not chain: freezing still works
            log.warning("cannot measure per-block FLOPs (%s); the summary will not report FLOPs", err)
            self._measure_flops = False

    # ---------------------------------------------------------------- step
    def step(self, loss: Tensor | float | None = None) -> None:
        """Call once after each optimizer step: record, and at stage steps let the policy extend the prefix.

        ``loss`` (optional, the step's training loss) lets the predictor see how far the loss has fallen,
        which tells a plateau from a run still learning; without it the predictor judges without the loss.
        """
        start = time.perf_counter()
        if loss is not None:
            self.add_loss(loss)
        self.step_count += 1
        step, f = self.step_count, self.num_frozen
        self.flops.on_step(self._pending_batch, f, self._pending_hits)
        self._pending_batch = self._pending_hits = 0
        if self._gradflow_checks:
            self._check_first_trainable()
        rank0 = distributed.is_rank0()
        policy_start = time.perf_counter()
        if rank0:
            self.policy.observe(step, f)
        stage = self.policy.is_stage(step)
        if stage:
            target, scores = (self.policy.decide(step, f), dict(self.policy.block_scores)) if rank0 else (f, {})
        self.policy_s += time.perf_counter() - policy_start  # recording and prediction, not communication or freezing
        if stage:
            if distributed.is_distributed():
                target, scores = distributed.broadcast_decision(target, scores, len(self.blocks))
            target = min(max(target, f), len(self.blocks) - 1)
            self.last_scores, self.last_scores_step = scores, step
            if target > f:
                self._freeze_to(target, step, scores)
        self.overhead_s += time.perf_counter() - start

    def add_loss(self, loss: Tensor | float) -> None:
        """Record a training loss without stepping, for loops that report it apart from the step.

        The HF Trainer callback passes the loss it logs every ``logging_steps``. Snapshots with no loss since the
        last one keep the latest loss drop.
        """
        if self.policy.ctx is not None:
            self.policy.ctx.loss.add(loss)

    def _check_first_trainable(self) -> None:
        """Warn once per freeze when the first trainable block got no gradient (reentrant checkpointing)."""
        first, *rest = (b.module for b in self.blocks[self.num_frozen :])
        verdict = starved(first, rest)
        self._gradflow_checks = 0 if verdict is not None else self._gradflow_checks - 1
        if verdict is None:
            return  # the gradients cannot tell (cleared before step(), or no later block): look again, a few times
        if verdict:
            message = STARVED_HINT.format(name=self.blocks[self.num_frozen].name)
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _freeze_to(self, target: int, step: int | None, scores: dict[int, float]) -> None:
        """Freeze blocks ``num_frozen..target-1`` (``step`` None: restoring a checkpoint, no events)."""
        old = self.num_frozen
        trainable = {id(p) for b in self.blocks[target:] for p in b.module.parameters()}
        backstop = self.policy.backstop_prefix(step) if step is not None and isinstance(self.policy, SmartFRZ) else 0
        for b in range(old, target):
            freeze_module(self.blocks[b].module, [self.optimizer], trainable)
            if step is not None:
                score = scores.get(b)
                # SmartFRZ only (backstop is 0 otherwise): the schedule froze what the predictor did not pass
                by_backstop = b < backstop and not (score is not None and score >= self.policy.threshold)  # type: ignore[attr-defined]
                self.events.add(FreezeEvent(step, b, self.blocks[b].name, score, self.policy.name, by_backstop))
        self.num_frozen = target
        self._gradflow_checks = GRADFLOW_CHECKS
        self.policy.on_frozen(target)
        if self.cache is not None:
            with self._autocast.replay() if self._autocast is not None else contextlib.nullcontext():
                self.cache.advance(lambda h: run_blocks(self.blocks, h, old, target))
        if self._ddp_kwargs is not None:
            self._rewrap()

    def _rewrap(self) -> None:
        """Rebuild the DDP wrapper over what still trains (collective: every rank is here at the same step)."""
        assert self._ddp_kwargs is not None
        target = BlockRange(self.blocks, self.num_frozen) if self.cache is not None else self.module
        self._wrapper = distributed.wrap(target, self._ddp_kwargs, self._ddp_hooks)

    def close(self) -> None:
        """Remove the hooks the policy installed (e.g. AutoFreeze's optimizer hook); frozen blocks stay frozen."""
        self.policy.detach()

    # ---------------------------------------------------------------- reporting and checkpoints
    def summary(self) -> FreezerSummary:
        """Blocks frozen and when, FLOPs saved, cache statistics, overhead and the latest block scores.

        Prints as a short table; ``dict(...)`` / ``.to_dict()`` give the machine form.
        """
        names = [b.name for b in self.blocks]
        recorder = getattr(self.policy, "recorder", None)
        filling = recorder is not None and not recorder.full and self.num_frozen < len(self.blocks) - 1
        return FreezerSummary(
            policy=self.policy.describe(),
            steps=self.step_count,
            total_steps=self.total_steps,
            block_names=names,
            blocks_frozen=self.num_frozen,
            events=self.events.state_dict(),
            flops=self.flops.summary(),
            cache=None if self.cache is None else self.cache.stats(),
            overhead_s=self.overhead_s,
            policy_s=self.policy_s,
            scores={names[b]: v for b, v in self.last_scores.items() if b >= self.num_frozen},
            scores_step=self.last_scores_step if self.last_scores else None,
            threshold=self.events.threshold,
            window=(recorder.count, recorder.window) if filling else None,
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: frozen prefix, policy state (recorder windows), cache settings, events."""
        return {
            "version": STATE_VERSION,
            "blocks": [b.name for b in self.blocks],
            "step": self.step_count,
            "num_frozen": self.num_frozen,
            "policy": {"describe": self.policy.describe(), "state": self.policy.state_dict()},
            "cache": None if self.cache is None else self.cache.state_dict(),
            "events": self.events.state_dict(),
            "flops": self.flops.state_dict(),
            "overhead_s": self.overhead_s,
            "policy_s": self.policy_s,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: re-freeze the saved prefix and restore the policy, cache settings and counters."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"freezer state version {state.get('version')} != {STATE_VERSION}")
        names = [b.name for b in self.blocks]
        if state["blocks"] != names:
            raise ValueError(f"checkpoint blocks {state['blocks']} differ from this model's {names}")
        saved_policy = state["policy"]["describe"]
        if saved_policy != self.policy.describe():
            hint = ""
            if "backstop" in self.policy.describe() and "backstop" not in saved_policy:
                hint = " (the checkpoint ran without a backstop: resume with Freezer(..., backstop=None))"
            raise ValueError(
                f"checkpoint policy {saved_policy} differs from this freezer's {self.policy.describe()}{hint}"
            )
        if state["num_frozen"] < self.num_frozen:
            raise ValueError("this freezer has already frozen more blocks than the checkpoint; load into a fresh one")
        if state["cache"] is not None:
            if self.cache is None:
                self.cache = ActivationCache(CacheConfig(), deterministic_inputs=False)
            self.cache.load_state_dict(state["cache"])
        self.policy.load_state_dict(state["policy"]["state"])
        if state["num_frozen"] > self.num_frozen:
            self._freeze_to(state["num_frozen"], None, {})
        self.events.load_state_dict(state["events"])
        self.flops.load_state_dict(state["flops"])
        self.step_count = int(state["step"])
        self.overhead_s = float(state["overhead_s"])
        self.policy_s = float(state.get("policy_s", 0.0))  # absent in states saved before the split
