"""The library's own event loop on a daemon thread, and the blocking doorway into it.

Why a thread and not ``nest_asyncio``: a notebook cell already runs inside an event loop,
so a blocking ``run()`` cannot call ``asyncio.run``. Patching the loop to nest (nest_asyncio)
is unmaintained, breaks on Python 3.12+ and makes a fast call wait behind a slow nested one.
A private loop on a thread works the same in scripts, notebooks and inside other loops
(``jupyter_core.utils.run_sync`` and fsspec do the same).

The caller waits in short slices so Ctrl-C (or a kernel interrupt) is noticed at once. Given
a :class:`StopSignal`, the interrupt asks the run to stop (never to cancel anything on the
server) and the caller gets what it returns (the rows finished so far); otherwise, or on a
second interrupt, the coroutine is cancelled on the loop thread, allowed briefly to unwind,
and ``KeyboardInterrupt`` is re-raised in the caller: no traceback from the loop thread
either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._transport.shared import keep_pools_on

__all__ = ["StopSignal", "get_loop", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_WAIT_SLICE = 0.1
_UNWIND_SECONDS = 5.0


class StopSignal:
    """A request to stop a run, made from any thread and awaited on the run's loop.

    A stop ends the sending and polling only: responses the server already created are
    left to finish there (the run store keeps their ids, so the same call collects them
    without paying twice), unless the stop asks for them to be cancelled on the server too.

    Attributes:
        reason: Why the run stopped, put in the error of every row it left unanswered.
        server: Whether the responses left running are also cancelled on the server.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.reason = "cancelled"
        self.server = False

    @property
    def stopped(self) -> bool:
        """Whether a stop was asked for."""
        return self._stopped

    def stop(self, reason: str, *, server: bool = False) -> bool:
        """Ask the run to stop; only the first call counts.

        Args:
            reason: Why, for the rows left unanswered.
            server: Also cancel on the server the responses the run leaves running (a
                later identical call then asks those rows again, and pays for them again,
                where the server honoured the cancel). False leaves them to finish.

        Returns:
            True if this call made the request, False if one was made before.
        """
        with self._lock:
            if self._stopped:
                return False
            self._stopped, self.reason, self.server = True, reason, server
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(event.set)
        return True

    async def wait(self) -> None:
        """Return once a stop is asked for."""
        event = asyncio.Event()
        with self._lock:
            if self._stopped:
                return
            self._waiters.append((asyncio.get_running_loop(), event))
        await event.wait()


def get_loop() -> asyncio.AbstractEventLoop:
    """Return the library's loop, starting its thread on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="valar-pandas-loop", daemon=True
            )
            thread.start()
            keep_pools_on(loop)  # runs one after another reuse their client's connections
            _loop, _thread = loop, thread
        return _loop


def _forget_after_fork() -> None:
    """A forked child has no loop thread; start a fresh one on first use."""
    global _lock, _loop, _thread
    _lock, _loop, _thread = threading.Lock(), None, None


os.register_at_fork(after_in_child=_forget_after_fork)


def run_sync(coro: Coroutine[Any, Any, T], stop: StopSignal | None = None) -> T:
    """Run a coroutine on the library's loop and block until it returns.

    The coroutine sees the caller's context variables (a Dask partition's share of its
    computation's budget, :data:`~valar_pandas._run.compose.SHARED_BUDGET`).

    Args:
        coro: The coroutine to run.
        stop: Set on Ctrl-C (or a kernel interrupt) instead of cancelling: the coroutine
            is expected to notice it, wind down and return what it has, which is then
            returned here. A second interrupt, or no return within a few seconds, cancels.

    Returns:
        What the coroutine returned.

    Raises:
        KeyboardInterrupt: The caller was interrupted and the coroutine has been cancelled.
        RuntimeError: Called from the library's own loop thread (that would deadlock).
    """
    loop = get_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("run_sync() cannot be called from the valar-pandas loop thread")
    started, unwound = threading.Event(), threading.Event()
    context = contextvars.copy_context()  # the caller's context variables, on the loop too

    async def tracked() -> T:
        for variable, value in context.items():
            variable.set(value)
        started.set()
        try:
            return await coro
        finally:
            unwound.set()

    future = asyncio.run_coroutine_threadsafe(tracked(), loop)
    try:
        try:
            return _wait(future)
        except KeyboardInterrupt:
            if stop is None or not stop.stop("interrupted"):
                raise
        # Asked to stop: the run hands back what it has, normally within milliseconds.
        if not _ended(future, _UNWIND_SECONDS):
            raise KeyboardInterrupt from None
        return future.result()
    except BaseException:
        # Interrupted (Ctrl-C, a timeout, an exit): cancel the run and let it close its
        # connections and displays before the caller moves on. The future reports
        # "cancelled" at once, so wait for the coroutine itself to finish unwinding.
        future.cancel()
        if started.is_set():
            unwound.wait(_UNWIND_SECONDS)
        else:
            coro.close()
        raise


def _ended(future: concurrent.futures.Future[Any], timeout: float) -> bool:
    """Whether the future ended within ``timeout`` seconds.

    The wait never raises for the run: an exception the run raised (a ``TimeoutError`` of
    its own among them, which on Python 3.11+ is the very class ``result(timeout=...)``
    raises when its wait runs out) stays in the future for ``result()`` to raise.
    """
    concurrent.futures.wait([future], timeout=timeout)
    return future.done()


def _wait(future: concurrent.futures.Future[T]) -> T:
    """Wait in short slices, so a signal reaches the waiting thread at once."""
    while not _ended(future, _WAIT_SLICE):
        pass
    return future.result()
