"""An async limit on requests in flight whose size can change while requests wait.

``asyncio.Semaphore`` has a fixed size; adaptive concurrency (:class:`~valar_pandas._policy.Aimd`)
needs one that shrinks on overload and grows back on success. Waiters are served first come,
first served.

A waiter can be cancelled at any point: while it waits (its future is cancelled and may
already have been dropped from the queue by a release that skipped it), or just after it was
granted a place (the place is handed on). Either way the holder count stays the number of
callers whose ``acquire`` returned and who have not released.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

__all__ = ["Gate"]


class Gate:
    """Admit at most ``size()`` holders at once.

    Args:
        size: Returns the current limit (read on every acquire and release).
    """

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def busy(self) -> int:
        """Holders right now."""
        return self._busy

    async def acquire(self) -> None:
        """Wait for a place."""
        if not self._waiters and self._busy < self._size():
            self._busy += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled: hand it on
            else:
                # A release may have dropped our cancelled future from the queue already.
                # Nothing to hand on: a waiter only waits while every place is taken.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a place back."""
        self._busy -= 1
        self.poke()

    def poke(self) -> None:
        """Admit waiters while places are free (call after the limit grew)."""
        while self._waiters and self._busy < self._size():
            future = self._waiters.popleft()
            if not future.done():
                self._busy += 1
                future.set_result(None)
