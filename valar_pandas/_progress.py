"""Progress: a pure tally of engine events, and the terminal bar that draws it.

Displays subscribe to events; they never steer the run. The tally is a plain fold so any
display (tqdm now, a notebook widget later) draws the same numbers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._models import Event, Finished, Retrying, Started, Submitted
from ._prices import Price

__all__ = ["Display", "Tally", "make_display"]


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
    input_tokens: int = 0
    output_tokens: int = 0
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
                if self.price is not None:
                    self.spent += self.price.of(outcome)
        elif isinstance(event, Retrying):
            self.retries += 1
            self.last_retry = event.reason

    @property
    def running(self) -> int:
        """Rows accepted by the server and not yet finished."""
        return max(self.submitted - (self.done - self.skipped - self.cached), 0)

    def summary(self) -> str:
        """A one-line status: failures, retries and tokens so far."""
        parts = [f"running={self.running}"]
        if self.failed:
            parts.append(f"failed={self.failed}")
        if self.skipped:
            parts.append(f"skipped={self.skipped}")
        if self.cached:
            parts.append(f"cached={self.cached}")
        if self.retries:
            parts.append(f"retries={self.retries}")
        parts.append(f"tokens={_si(self.input_tokens + self.output_tokens)}")
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


class _Silent:
    def __init__(self, price: Price | None) -> None:
        self.tally = Tally(price)

    def __call__(self, event: Event) -> None:
        self.tally.add(event)

    def close(self) -> None:
        return None


class _TqdmDisplay:
    """A tqdm bar in rows; the postfix shows running, failed, retries and tokens.

    With a ``total``, one bar is drawn across every run that reports to this display (the
    ``Started`` event of each run does not start a new bar).
    """

    def __init__(self, desc: str, price: Price | None, total: int | None = None) -> None:
        from tqdm.std import tqdm

        self.tally = Tally(price)
        self._bar: Any = None
        self._tqdm = tqdm
        self._desc = desc
        self._total = total

    def __call__(self, event: Event) -> None:
        self.tally.add(event)
        if isinstance(event, Started):
            if self._bar is not None and self._total is not None:
                return
            self._bar = self._tqdm(
                total=event.total if self._total is None else self._total,
                desc=self._desc,
                unit="row",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.1,
            )
            return
        if self._bar is None:
            return
        if isinstance(event, Finished):
            self._bar.set_postfix_str(self.tally.summary(), refresh=False)
            self._bar.update(event.rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.tally.summary(), refresh=False)
            self._bar.close()


def make_display(
    progress: str | None, price: Price | None, desc: str = "valar", total: int | None = None
) -> Display:
    """Choose the display for ``progress``.

    Args:
        progress: ``"auto"`` or ``"tqdm"`` for a tqdm bar, None for silence.
        price: Prices usage into spend for the display; None shows no spend.
        desc: The bar's label.
        total: Rows of all the runs this display will be handed to (one bar across them
            all); None draws a bar per run, sized by its ``Started`` event.

    Returns:
        A display: call it with events, read ``.tally``, ``close()`` it at the end.
    """
    if progress is None:
        return _Silent(price)
    return _TqdmDisplay(desc, price, total)


def _si(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
