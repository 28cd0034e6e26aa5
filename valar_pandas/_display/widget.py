"""The notebook display: an ipywidgets progress bar with a line of live counts.

It is a subscriber like the tqdm bar: it folds events into a :class:`Tally` and draws it,
never steering the run. Events arrive on the loop thread at any rate; a timer on that loop
redraws at most ten times a second (and once a second while nothing happens, so elapsed time
and ETA keep moving). Widget traits may be set from any thread: the kernel sends the updates
over its own comm channel, so the bar moves while the kernel is idle after ``submit()``.

``ipywidgets`` is imported only when a widget is made, and this module only when a widget is
chosen (``_progress.make_display``): the rest of the package loads and runs without either.
The status line drawn here is ``_display.status_line``, which a job's ``repr`` shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import threading
import time
from typing import Any

from .._core.models import Event
from .._core.prices import Price
from .tally import Tally, drop_display, status_line

__all__ = ["WidgetDisplay"]

_INTERVAL = 0.1
"""Seconds between redraws at most: no more than ten updates a second."""
_IDLE_REDRAW = 1.0
"""Seconds after which the line is redrawn even when no event came (elapsed, ETA)."""


class WidgetDisplay:
    """A progress bar and a status line, shown in the output of the cell that made them.

    Args:
        desc: The bar's label.
        price: Prices usage into spend; None shows no spend.
        errors_hint: Where failed rows' reasons can be read, named when rows fail.

    Attributes:
        tally: The counts drawn.
        box: The widget (an ``HBox`` with DOM class ``valar-progress``; ``valar-done`` is
            added when the run ends).
    """

    def __init__(self, desc: str, price: Price | None, errors_hint: str = "") -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.tally = Tally(price)
        self._hint = errors_hint
        self._bar: Any = widgets.IntProgress(
            value=0, min=0, max=1, description=desc, bar_style="info"
        )
        self._text: Any = widgets.HTML(value="starting")
        self.box: Any = widgets.HBox([self._bar, self._text])
        self.box.add_class("valar-progress")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Handle | None = None
        self._dirty = False
        self._drawn_at = float("-inf")
        self._closed = False
        # Ticks draw on the library's loop thread while close() runs on the caller's: a
        # tick caught mid-draw would otherwise overwrite the final line with a stale one.
        self._lock = threading.Lock()
        display(self.box)  # type: ignore[no-untyped-call]

    def __call__(self, event: Event) -> None:
        """Fold one event in; the next timer tick draws it."""
        self.tally.add(event)
        self._dirty = True
        if self._loop is None and not self._closed:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside a loop: draw now
                with self._lock:
                    self._draw(time.monotonic())
                return
            self._timer = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        with self._lock:
            if self._closed or self._loop is None:
                return
            now = time.monotonic()
            if self._dirty or now - self._drawn_at >= _IDLE_REDRAW:
                try:
                    self._draw(now)
                except Exception as error:  # a widget gone wrong: stop drawing, keep running
                    self._closed = True
                    drop_display(self, error)
                    return
            self._timer = self._loop.call_later(_INTERVAL, self._tick)

    def _draw(self, now: float) -> None:
        self._dirty = False
        self._drawn_at = now
        self._bar.max = max(self.tally.total, 1)
        self._bar.value = min(self.tally.done, self._bar.max)
        if self.tally.failed:
            self._bar.bar_style = "warning"
        self._text.value = html.escape(status_line(self.tally, now))

    def close(self) -> None:
        """Draw the final state: green when every row succeeded, red on failures."""
        with self._lock:  # after any tick already drawing, and no tick after it
            if self._closed:
                return
            self._closed = True
            self._close()

    def _close(self) -> None:
        if self._timer is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._timer.cancel)
        tally = self.tally
        now = time.monotonic()
        self._bar.max = max(tally.total, 1)
        self._bar.value = min(tally.done, self._bar.max)
        if tally.done + tally.cancelled < tally.total or tally.failed:
            self._bar.bar_style = "danger"  # the run raised, or rows failed
        elif tally.cancelled:
            self._bar.bar_style = "warning"
        else:
            self._bar.bar_style = "success"
        line = status_line(tally, now, final=True, errors_hint=self._hint)
        self._text.value = html.escape(line)
        self.box.add_class("valar-done")
        # Send the whole final state once more, not only what changed: a recorder that
        # missed earlier updates (nbclient keeps only the running cell's) still ends right.
        for widget in (self._bar, self._text, self.box):
            widget.send_state()
