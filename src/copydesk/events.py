"""Progress events: the library announces what it did; whoever listens shows it.

The CLI subscribes a rich progress display; flows and tests may subscribe
their own. Listeners must be quick and must not raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("copydesk.events")


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    articles: int
    budget: int


@dataclass(frozen=True)
class CallFinished:
    stage: str
    total_tokens: int
    cached: bool
    budget_spent: int
    budget_limit: int


@dataclass(frozen=True)
class ArticleFinished:
    topic: str
    status: str


@dataclass(frozen=True)
class SectionsPlanned:
    count: int


@dataclass(frozen=True)
class BatchUpdate:
    """A batch of batch mode (copydesk.batch) changed: its id, stages, status and request counts."""

    batch_id: str
    stages: str
    status: str
    total: int
    completed: int
    failed: int


Event = RunStarted | CallFinished | ArticleFinished | SectionsPlanned | BatchUpdate
Listener = Callable[[Event], None]

_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(event: Event) -> None:
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a broken display must never break a run
            log.debug("progress listener failed", exc_info=True)
