"""Freeze events: one printed line each (unless silenced), kept in a list, logged, optionally sent to TensorBoard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from smartfrz.runtime.summary import freeze_text, percent_of

log = logging.getLogger("smartfrz.runtime")

Echo = Callable[[str], None]


@dataclass(frozen=True)
class FreezeEvent:
    """Block ``block`` (``name``) froze after optimizer step ``step``; ``score`` is the policy's (e.g. P(converged))."""

    step: int
    block: int
    name: str
    score: float | None
    policy: str
    backstop: bool = False  # SmartFRZ's backstop schedule froze it, not the predictor


def event_line(event: FreezeEvent, num_blocks: int, total_steps: int | None, threshold: float | None) -> str:
    """The line a user sees for a freeze.

    For example ``smartfrz: froze block 3/8 'layer2' at step 120 (30% of training), P=0.970 >= 0.924``.
    """
    if event.score is not None or event.backstop:
        why = f", {freeze_text(event.score, threshold, event.backstop)}"
    else:
        why = f" ({event.policy} schedule)"
    return (
        f"smartfrz: froze block {event.block + 1}/{num_blocks} {event.name!r} at step {event.step}"
        f"{percent_of(event.step, total_steps)}{why}"
    )


class EventLog:
    """Collects freeze events and reports each one: ``echo`` (e.g. ``print``), the logger, an optional SummaryWriter."""

    def __init__(
        self,
        writer: Any = None,
        echo: Echo | None = None,
        num_blocks: int = 0,
        total_steps: int | None = None,
        threshold: float | None = None,
    ) -> None:
        self.events: list[FreezeEvent] = []
        self.writer = writer  # anything with add_scalar/add_text, e.g. torch.utils.tensorboard.SummaryWriter
        self.echo = echo
        self.num_blocks, self.total_steps, self.threshold = num_blocks, total_steps, threshold

    def line(self, event: FreezeEvent) -> str:
        """The human line for ``event``."""
        return event_line(event, self.num_blocks, self.total_steps, self.threshold)

    def add(self, event: FreezeEvent) -> None:
        """Record one event and report it."""
        self.events.append(event)
        line = self.line(event)
        log.info("%s", line)
        if self.echo is not None:
            self.echo(line)
        if self.writer is not None:
            self.writer.add_text("smartfrz/freeze", line, event.step)
            self.writer.add_scalar("smartfrz/frozen_blocks", event.block + 1, event.step)
            if event.score is not None:
                self.writer.add_scalar(f"smartfrz/score/{event.name}", event.score, event.step)

    def state_dict(self) -> list[dict[str, Any]]:
        """Events as plain dicts."""
        return [asdict(e) for e in self.events]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        """Restore events (without reporting them again)."""
        self.events = [FreezeEvent(**e) for e in state]
