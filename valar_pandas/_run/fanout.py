"""A run's events handed to everyone who keeps or shows them, each on its own.

The listeners come first (the store's journal, the budget, the run's own record of what is
answered and running), then the display: what the listeners keep is the run's, what a
display draws is not, so a display never stands between an answer and the store. A listener
that raises is warned of once and the run goes on; a display that raises is dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from .._core.models import (
    SERVER_VERDICTS,
    BatchCreated,
    BatchLost,
    BatchPlanned,
    Event,
    Finished,
    Outcome,
    Submitted,
)
from .._display.tally import Display, drop_display, is_dropped
from .._store import Journal

__all__ = ["fan_out", "follower", "recorder"]


def recorder(journal: Journal) -> Callable[[Event], None]:
    """The listener that writes each event the store keeps into the run's journal.

    Args:
        journal: The run's journal (ids, verdicts and batch records, written per tick).

    Returns:
        The listener.
    """

    def record(event: Event) -> None:
        if isinstance(event, Submitted):
            journal.submitted(event.fingerprint, event.response_id)
        elif (
            isinstance(event, Finished)
            and not event.cached
            and event.fingerprint is not None
            and event.outcome.status in SERVER_VERDICTS
        ):
            journal.finished(event.fingerprint, event.outcome)
        elif isinstance(event, BatchPlanned):
            journal.batch_planned(event.key, event.label, event.items)
        elif isinstance(event, BatchCreated):
            journal.batch_created(event.key, event.batch_id)
        elif isinstance(event, BatchLost):
            journal.batch_lost(event.key, rekey=event.rekey)

    return record


def fan_out(listeners: list[Callable[[Event], None]], display: Display) -> Callable[[Event], None]:
    """Hand each event to every listener, then to the display, each on its own.

    A listener that raises does not keep the event from the others, nor end the run (its
    first failure is warned of once). A display that raises is dropped for the rest of the
    run with one warning; its tally goes on counting.

    Args:
        listeners: What keeps the run's events (journal, budget, follower), in order.
        display: What draws them, last.

    Returns:
        The function the engine and the Batch API emit events to.
    """
    warned: set[int] = set()

    def emit(event: Event) -> None:
        for index, listener in enumerate(listeners):
            try:
                listener(event)
            except Exception as error:
                if index not in warned:
                    warned.add(index)
                    warnings.warn(
                        f"recording a run event failed ({type(error).__name__}: {error}); "
                        "the run goes on and its frame holds every answer",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        if is_dropped(display):
            display.tally.add(event)
            return
        try:
            display(event)
        except Exception as error:
            drop_display(display, error)

    return emit


def follower(answered: dict[str, Outcome], running: dict[str, str]) -> Callable[[Event], None]:
    """The listener that keeps what is answered and which responses are running, by fingerprint.

    Args:
        answered: Filled with each finished request's outcome.
        running: Filled with each created response's id, emptied as each finishes.

    Returns:
        The listener.
    """

    def follow(event: Event) -> None:
        if isinstance(event, Submitted) and event.response_id is not None:
            running[event.fingerprint] = event.response_id
        elif isinstance(event, Finished) and event.fingerprint is not None:
            answered[event.fingerprint] = event.outcome
            running.pop(event.fingerprint, None)

    return follow
