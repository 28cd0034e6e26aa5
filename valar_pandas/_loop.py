"""The library's own event loop on a daemon thread, and the blocking doorway into it.

Why a thread and not ``nest_asyncio``: a notebook cell already runs inside an event loop,
so a blocking ``run()`` cannot call ``asyncio.run``. Patching the loop to nest (nest_asyncio)
is unmaintained, breaks on Python 3.12+ and makes a fast call wait behind a slow nested one.
A private loop on a thread works the same in scripts, notebooks and inside other loops
(``jupyter_core.utils.run_sync`` and fsspec do the same).

The caller waits in short slices so Ctrl-C (or a kernel interrupt) is noticed at once; it then
cancels the coroutine on the loop thread, waits briefly for it to unwind, and re-raises
``KeyboardInterrupt`` in the caller: no traceback from the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["get_loop", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_WAIT_SLICE = 0.1
_UNWIND_SECONDS = 5.0


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
            _loop, _thread = loop, thread
        return _loop


def _forget_after_fork() -> None:
    """A forked child has no loop thread; start a fresh one on first use."""
    global _lock, _loop, _thread
    _lock, _loop, _thread = threading.Lock(), None, None


os.register_at_fork(after_in_child=_forget_after_fork)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the library's loop and block until it returns.

    Args:
        coro: The coroutine to run.

    Returns:
        What the coroutine returned.

    Raises:
        KeyboardInterrupt: The caller was interrupted; the coroutine has been cancelled.
        RuntimeError: Called from the library's own loop thread (that would deadlock).
    """
    loop = get_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("run_sync() cannot be called from the valar-pandas loop thread")
    started, unwound = threading.Event(), threading.Event()

    async def tracked() -> T:
        started.set()
        try:
            return await coro
        finally:
            unwound.set()

    future = asyncio.run_coroutine_threadsafe(tracked(), loop)
    try:
        while True:
            try:
                return future.result(timeout=_WAIT_SLICE)
            except concurrent.futures.TimeoutError:
                continue
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
