"""Progress: the choice of display, the tqdm bar, and a caller's verdict on answers.

Displays subscribe to events; they never steer the run. What they share (the :class:`Tally`
fold, the status line, dropping a display that fails) lives in ``tally``; the notebook
widget lives in ``widget``, imported only when a widget is made, so neither ipywidgets nor
the widget's module loads with the package.

A run's events say whether the server answered; whether the answer is usable is the
caller's to say (a scoring reply that cannot be read is a failed row). :class:`Judged` puts a
caller's verdict between the events and a display, so every display counts those rows as
failed as they arrive, while the run itself, its store and its report see the events as sent.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .._core.errors import ConfigError
from .._core.models import Event, Finished, Started
from .._core.prices import Price
from .tally import Display, Tally, drop_display

__all__ = ["Judged", "in_kernel", "make_display"]


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
        from .widget import WidgetDisplay

        return WidgetDisplay(desc, price, errors_hint)
    return _TqdmDisplay(desc, price, total)
