"""What every progress display shares: the tally of events, its status line, and dropping.

A display subscribes to events and never steers the run. :class:`Tally` is a plain fold of
those events, so every display (the tqdm bar in ``progress``, the notebook widget in
``widget``) draws the same numbers, and :func:`status_line` words them the same way for a
widget and for a job's ``repr``. A display that raises is dropped (:func:`drop_display`):
never drawn to or closed again, with one warning, while the run goes on.

This module imports neither tqdm nor ipywidgets, so reading a tally costs no display library.
"""

from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._core.models import Event, Finished, Retrying, Started, Stopped, Submitted
from .._core.prices import Price

__all__ = [
    "Display",
    "Tally",
    "close_display",
    "drop_display",
    "is_dropped",
    "si",
    "status_line",
]


@dataclass
class Tally:
    """Counts folded from events, in rows (rows sharing one request count separately).

    Attributes:
        price: Prices reported usage into ``spent``; None when the model has no price.
    """

    price: Price | None = None
    total: int = 0
    unique: int = 0
    submitted: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    cached: int = 0
    retries: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    spent: float = 0.0
    last_retry: str | None = None
    started_at: float = field(default_factory=time.monotonic)

    def add(self, event: Event) -> None:
        """Fold one event into the counts."""
        if isinstance(event, Started):
            # Adds up, so a tally shared by several runs (a file read in windows) counts all.
            self.total += event.total
            self.unique += event.unique
        elif isinstance(event, Submitted):
            self.submitted += event.rows
        elif isinstance(event, Finished):
            outcome = event.outcome
            self.done += event.rows
            if event.cached:
                self.cached += event.rows
            if outcome.status == "skipped":
                self.skipped += event.rows
            elif not outcome.ok:
                self.failed += event.rows
            if not event.cached:
                self.input_tokens += outcome.input_tokens or 0
                self.output_tokens += outcome.output_tokens or 0
                self.reasoning_tokens += outcome.reasoning_tokens or 0
                if self.price is not None:
                    self.spent += self.price.of(outcome)
        elif isinstance(event, Retrying):
            self.retries += 1
            self.last_retry = event.reason
        elif isinstance(event, Stopped):
            self.cancelled += event.rows

    @property
    def running(self) -> int:
        """Rows accepted by the server and not yet finished."""
        return max(self.submitted - (self.done - self.skipped - self.cached), 0)

    def rate(self, now: float) -> float | None:
        """Rows answered per second by requests (cached and skipped rows excluded)."""
        answered = self.done - self.cached - self.skipped
        elapsed = now - self.started_at
        return answered / elapsed if answered > 0 and elapsed > 0 else None

    def eta(self, now: float) -> float | None:
        """Seconds until every row is done at the current rate; None before any answer."""
        rate = self.rate(now)
        left = self.total - self.done - self.cancelled
        if left <= 0:
            return 0.0
        return left / rate if rate else None

    def counts(self) -> dict[str, int]:
        """The row counts by state, as plain numbers."""
        return {
            "total": self.total,
            "submitted": self.submitted,
            "running": self.running,
            "done": self.done,
            "failed": self.failed,
            "cached": self.cached,
            "skipped": self.skipped,
            "cancelled": self.cancelled,
        }

    def summary(self) -> str:
        """A one-line status: failures, retries and tokens so far."""
        parts = [f"running={self.running}"]
        if self.failed:
            parts.append(f"failed={self.failed}")
        if self.skipped:
            parts.append(f"skipped={self.skipped}")
        if self.cached:
            parts.append(f"cached={self.cached}")
        if self.cancelled:
            parts.append(f"cancelled={self.cancelled}")
        if self.retries:
            parts.append(f"retries={self.retries}")
        parts.append(f"tokens={si(self.input_tokens + self.output_tokens)}")
        if self.reasoning_tokens:
            parts.append(f"reasoning={si(self.reasoning_tokens)}")
        if self.price is not None:
            parts.append(f"spent=${self.spent:,.4f}")
        return " ".join(parts)


class Display(Protocol):
    """What a progress display does: keep a tally, receive events, then close."""

    tally: Tally

    def __call__(self, event: Event) -> None:
        """Receive one event (on the library's loop thread)."""

    def close(self) -> None:
        """Finish drawing."""


_dropped: weakref.WeakSet[Any] = weakref.WeakSet()
"""Displays that failed: never drawn to or closed again (closing one may block on its lock)."""


def drop_display(display: object, error: BaseException) -> None:
    """Stop using a display that failed, warning once (the run goes on).

    Args:
        display: The display that raised.
        error: What it raised (e.g. ``BrokenPipeError`` once a terminal went away).
    """
    if display in _dropped:
        return
    _dropped.add(display)
    warnings.warn(
        f"the progress display failed ({type(error).__name__}: {error}) and is no longer "
        "drawn; the run goes on, and every answer is kept",
        RuntimeWarning,
        stacklevel=3,
    )


def is_dropped(display: object) -> bool:
    """Whether a display failed and was dropped."""
    return display in _dropped


def close_display(display: Display) -> None:
    """Close a display, unless it was dropped; a failure to close is warned of, never raised.

    Args:
        display: The display to close.
    """
    if display in _dropped:
        return
    try:
        display.close()
    except Exception as error:  # the display is not the run: nothing of the run is lost
        drop_display(display, error)


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def status_line(tally: Tally, now: float, *, final: bool = False, errors_hint: str = "") -> str:
    """One line of counts for people: what is done, running and failed, how fast, what cost.

    Args:
        tally: The counts so far.
        now: The monotonic clock, in seconds.
        final: The run has ended: report the outcome rather than an ETA.
        errors_hint: Where failed rows' reasons can be read (e.g. a column name).

    Returns:
        Plain text, parts separated by `` · ``.
    """
    elapsed = now - tally.started_at
    parts = [f"{tally.done:,}/{tally.total:,} rows"]
    if final:
        if tally.done + tally.cancelled < tally.total:
            parts[0] = f"ended early: {tally.done:,} of {tally.total:,} rows done"
        elif tally.cancelled:
            parts[0] = (
                f"stopped: {tally.done:,} of {tally.total:,} rows done, "
                f"{tally.cancelled:,} cancelled (run the same call again to resume)"
            )
        elif tally.failed:
            where = f"; see {errors_hint}" if errors_hint else ""
            parts[0] = f"{tally.failed:,} of {tally.total:,} rows failed{where}"
        else:
            parts[0] = f"done: {tally.total:,} rows"
    else:
        parts.append(f"submitted {tally.submitted:,}")
        parts.append(f"running {tally.running:,}")
        if tally.failed:
            parts.append(f"failed {tally.failed:,}")
    if tally.cached:
        parts.append(f"cached {tally.cached:,}")
    if tally.retries and not final:
        parts.append(f"retries {tally.retries:,}")
    rate = tally.rate(now)
    if rate is not None:
        digits = 0 if rate >= 10 else 1 if rate >= 1 else 2
        parts.append(f"{rate:,.{digits}f} rows/s")
    parts.append(f"elapsed {_clock(elapsed)}")
    if not final:
        eta = tally.eta(now)
        parts.append(f"ETA {_clock(eta)}" if eta is not None else "ETA –")
    parts.append(f"{si(tally.input_tokens + tally.output_tokens)} tokens")
    if tally.reasoning_tokens:
        parts[-1] += f" ({si(tally.reasoning_tokens)} reasoning)"
    if tally.price is not None:
        parts.append(f"${tally.spent:,.4f}")
    return " · ".join(parts)


def si(n: int) -> str:
    """A count in a few characters: ``1234567`` → ``1.2M``, ``1500`` → ``1.5k``.

    Args:
        n: The count.

    Returns:
        The count with one decimal and ``k`` or ``M`` past a thousand, else as it is.
    """
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
