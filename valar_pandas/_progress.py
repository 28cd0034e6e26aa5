"""Progress: a pure tally of engine events, and the choice of display that draws it.

Displays subscribe to events; they never steer the run. The tally is a plain fold so every
display (the tqdm bar here, the notebook widget in ``_widget``) draws the same numbers.

A run's events say whether the server answered; whether the answer is usable is the
caller's to say (a scoring reply that cannot be read is a failed row). :class:`Judged` puts a
caller's verdict between the events and a display, so every display counts those rows as
failed as they arrive, while the run itself, its store and its report see the events as sent.
"""

from __future__ import annotations

import sys
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ._errors import ConfigError
from ._models import Event, Finished, Retrying, Started, Stopped, Submitted
from ._prices import Price

__all__ = [
    "Display",
    "Judged",
    "Tally",
    "close_display",
    "drop_display",
    "in_kernel",
    "is_dropped",
    "make_display",
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


class Judged:
    """A display that counts answered rows its judge finds unusable as failed.

    Each ``Finished`` event with a completed outcome is shown to ``judge`` (its text in, an
    error or None out); when the judge gives an error, the display receives the event with
    that error on the outcome, so its tally, bar and final colour count the row as failed.
    Only what the display sees changes: the run never learns of the verdict.

    Args:
        display: The display to draw with.
        judge: Text of a completed answer → why it cannot be used, or None.

    Attributes:
        tally: The wrapped display's tally.
    """

    def __init__(self, display: Display, judge: Callable[[str | None], str | None]) -> None:
        self._display = display
        self._judge = judge
        self.tally = display.tally

    def __call__(self, event: Event) -> None:
        if isinstance(event, Finished) and event.outcome.ok:
            error = self._judge(event.outcome.text)
            if error is not None:
                event = replace(event, outcome=replace(event.outcome, error=error))
        self._display(event)

    def close(self) -> None:
        self._display.close()


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
    ``Started`` event of each run does not start a new bar). Counting never fails; drawing
    may (a terminal or pipe gone away): the first failure drops the bar with one warning,
    and the tally goes on counting.
    """

    def __init__(self, desc: str, price: Price | None, total: int | None = None) -> None:
        from tqdm.std import tqdm

        self.tally = Tally(price)
        self._bar: Any = None
        self._tqdm = tqdm
        self._desc = desc
        self._total = total
        self._broken = False

    def __call__(self, event: Event) -> None:
        self.tally.add(event)
        if self._broken:
            return
        try:
            self._draw(event)
        except Exception as error:
            self._drop(error)

    def _draw(self, event: Event) -> None:
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

    def _drop(self, error: Exception) -> None:
        """Stop drawing for good: the bar is disabled, so closing it writes nothing."""
        self._broken = True
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.disable = True
        drop_display(self, error)

    def close(self) -> None:
        if self._bar is None or self._broken:
            return
        try:
            self._bar.set_postfix_str(self.tally.summary(), refresh=False)
            self._bar.close()
        except Exception as error:
            self._drop(error)


_NO_WIDGETS = (
    "progress='widget' needs ipywidgets 8: pip install 'valar-pandas[notebook]' "
    "(then restart the kernel)"
)


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (the test ``tqdm.autonotebook`` makes).

    A terminal IPython shell is not a kernel: it cannot draw widgets.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except AttributeError:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _widgets_available() -> bool:
    try:
        import ipywidgets
    except ImportError:
        return False
    return int(str(ipywidgets.__version__).split(".")[0]) >= 8


def make_display(
    progress: str | None,
    price: Price | None,
    desc: str = "valar",
    errors_hint: str = "",
    total: int | None = None,
) -> Display:
    """Choose the display for ``progress``; call it on the thread that owns the output.

    In a notebook the widget is shown in the output of the cell that makes it, so make the
    display in the caller's thread, before handing the run to the library's loop.

    Args:
        progress: ``"auto"`` (the widget in a Jupyter kernel, else tqdm), ``"tqdm"``,
            ``"widget"``, or None for silence.
        price: Prices usage into spend for the display; None shows no spend.
        desc: The bar's label.
        errors_hint: Where failed rows' reasons can be read, named when rows fail.
        total: Rows of all the runs this display will be handed to (one bar across them
            all); None draws a bar per run, sized by its ``Started`` event. The terminal bar
            only: the command line is its one user.

    Returns:
        A display: call it with events, read ``.tally``, ``close()`` it at the end.

    Raises:
        ConfigError: ``progress="widget"`` outside a Jupyter kernel, or without ipywidgets 8.
    """
    if progress is None:
        return _Silent(price)
    if progress == "widget":
        if not in_kernel():
            raise ConfigError(
                "progress='widget' draws in a Jupyter notebook, and this is not a Jupyter "
                "kernel; use progress='auto' or 'tqdm'"
            )
        if not _widgets_available():
            raise ConfigError(_NO_WIDGETS)
    elif progress == "auto" and in_kernel():
        if _widgets_available():
            progress = "widget"
        else:
            warnings.warn(
                "install ipywidgets 8 for a live progress widget in notebooks: "
                "pip install 'valar-pandas[notebook]'; showing a text bar instead",
                stacklevel=3,
            )
    if progress == "widget":
        from ._widget import WidgetDisplay

        return WidgetDisplay(desc, price, errors_hint)
    return _TqdmDisplay(desc, price, total)


def _si(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
