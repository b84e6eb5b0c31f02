"""Freeze events: logged with ``logging``, kept in a list, optionally written to TensorBoard."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("smartfrz.runtime")


@dataclass(frozen=True)
class FreezeEvent:
    """Block ``block`` (``name``) froze after optimizer step ``step``; ``score`` is the policy's (e.g. P(converged))."""

    step: int
    block: int
    name: str
    score: float | None
    policy: str


class EventLog:
    """Collects freeze events and reports them to the logger and an optional SummaryWriter."""

    def __init__(self, writer: Any = None) -> None:
        self.events: list[FreezeEvent] = []
        self.writer = writer  # anything with add_scalar/add_text, e.g. torch.utils.tensorboard.SummaryWriter

    def add(self, event: FreezeEvent) -> None:
        """Record one event."""
        self.events.append(event)
        score = "n/a" if event.score is None else f"{event.score:.3f}"
        log.info(
            "step %d: froze block %d (%s), score %s [%s]", event.step, event.block, event.name, score, event.policy
        )
        if self.writer is not None:
            self.writer.add_text("smartfrz/freeze", f"block {event.block} ({event.name}) score {score}", event.step)
            self.writer.add_scalar("smartfrz/frozen_blocks", event.block + 1, event.step)
            if event.score is not None:
                self.writer.add_scalar(f"smartfrz/score/{event.name}", event.score, event.step)

    def state_dict(self) -> list[dict[str, Any]]:
        """Events as plain dicts."""
        return [asdict(e) for e in self.events]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        """Restore events (without logging them again)."""
        self.events = [FreezeEvent(**e) for e in state]
