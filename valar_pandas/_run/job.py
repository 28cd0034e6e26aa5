"""A run going on in the background: what ``df.valar.submit()`` returns.

The run is a coroutine on the library's loop thread, so the caller's thread (a notebook
cell) is free at once and several jobs share the one loop. The job never blocks except in
:meth:`Job.result`, which waits in short slices so an interrupt reaches it; interrupting
that wait leaves the job running (stop it with :meth:`Job.cancel`, which cancels responses
on the server only when asked to).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import html
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pandas as pd

from .._display.tally import Display, close_display, status_line
from .compose import RunReport
from .loop import StopSignal, get_loop

__all__ = ["Job"]

_SLICE = 0.1


class Job:
    """A background run: poll it, wait for its frame, or cancel it.

    Made by :meth:`ValarAccessor.submit`, not directly.

    Args:
        run: The run's coroutine (it must honour ``stop``).
        finish: Merges the run's report into the result frame.
        display: The progress display the run feeds; the job closes it at the end.
        stop: The stop signal the run watches.
        cleanup: Called on the loop thread once the run has ended (closes the store).
    """

    def __init__(
        self,
        run: Coroutine[Any, Any, RunReport],
        finish: Callable[[RunReport], pd.DataFrame],
        display: Display,
        stop: StopSignal,
        cleanup: Callable[[], None],
    ) -> None:
        self._finish = finish
        self._display = display
        self._stop = stop
        self._started = time.monotonic()
        self._ended: float | None = None
        self._frame: pd.DataFrame | None = None

        async def main() -> RunReport:
            try:
                return await run
            finally:
                self._ended = time.monotonic()
                try:
                    close_display(display)
                finally:
                    cleanup()

        # Started from an empty context rather than the caller's: in a Jupyter kernel the
        # caller's context pins every widget update to the submitting cell, while from an
        # empty one ipykernel attributes them to the cell running now, as for any thread
        # of the user's. Frontends route widget updates by comm either way; tools that
        # record a notebook's widget state (nbclient) only keep the running cell's.
        self._future = contextvars.Context().run(
            asyncio.run_coroutine_threadsafe, main(), get_loop()
        )

    def _state(self) -> str:
        if not self._future.done():
            return "cancelling" if self._stop.stopped else "running"
        if self._future.cancelled() or self._future.exception() is not None:
            return "error"
        return "cancelled" if self._stop.stopped else "done"

    def status(self) -> dict[str, Any]:
        """The job's state and row counts, as of now.

        Returns:
            ``state`` (``"running"``, ``"cancelling"``, ``"done"``, ``"cancelled"`` or
            ``"error"``), ``elapsed`` seconds, and the row counts ``total``, ``submitted``,
            ``running``, ``done``, ``failed``, ``cached``, ``skipped`` and ``cancelled``.
        """
        end = self._ended if self._ended is not None else time.monotonic()
        return {
            "state": self._state(),
            "elapsed": round(end - self._started, 3),
            **self._display.tally.counts(),
        }

    def done(self) -> bool:
        """Whether the run has ended (finished, cancelled or failed)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> pd.DataFrame:
        """Wait for the run and return its frame, the same frame ``run()`` would return.

        After :meth:`cancel`, the frame holds every row answered before the cancel; the
        others say ``cancelled`` in the error column, and what the same call again does.

        Args:
            timeout: Most seconds to wait; None waits as long as it takes.

        Returns:
            The merged frame (the same object on every call).

        Raises:
            TimeoutError: The run did not end within ``timeout`` seconds.
            RowErrors: ``errors="raise"`` and rows failed.
            ValarError: Whatever the run raised (a rejected key, a rejected first batch).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            # Waited on with wait(), never result(timeout=): a TimeoutError the run itself
            # raised is then raised here as the run's, not taken for this slice running out.
            concurrent.futures.wait([self._future], timeout=max(wait, 0.0))
            if self._future.done():
                report = self._future.result()
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the job is still running after {timeout} s "
                    f"({self._display.tally.done:,}/{self._display.tally.total:,} rows)"
                )
        if self._frame is None:
            self._frame = self._finish(report)
        return self._frame

    def cancel(self, *, server: bool = False) -> bool:
        """Stop creating and polling; keep every answer that already arrived.

        Rows not answered yet end ``cancelled``. By default the responses the server
        already created are left to finish there: their ids stay in the run store, so the
        same call again collects them without paying twice (they are billed once whether
        or not anyone collects them). ``server=True`` also asks the server to cancel them,
        to stop spending on them where the server supports that (best effort, in the
        background); a row the server cancelled is then asked again, and paid again, by
        the next identical call.

        Args:
            server: Also cancel on the server the responses left running.

        Returns:
            True if the job was running and is now stopping; False if it had already ended
            or was already cancelled (only the first cancel counts).
        """
        if self._future.done():
            return False
        return self._stop.stop("cancelled", server=server)

    def __repr__(self) -> str:
        counts = self.status()
        return (
            f"<valar Job {counts['state']}: {counts['done']:,}/{counts['total']:,} rows, "
            f"{counts['failed']:,} failed, {counts['elapsed']:.1f} s>"
        )

    def _repr_html_(self) -> str:
        state = self._state()
        final = state in ("done", "cancelled")
        line = status_line(self._display.tally, self._ended or time.monotonic(), final=final)
        return (
            f"<div class='valar-job'><b>valar job</b> · {html.escape(state)}"
            f"<br>{html.escape(line)}</div>"
        )
