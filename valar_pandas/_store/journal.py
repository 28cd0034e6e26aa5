"""The journal: a run's records written one transaction per tick, and never lost.

During a run, response ids and results wait in memory for one short tick (50 ms) and are
written together: per-row commits cost more CPU than the HTTP exchanges they record. Planned
keys and batch records are tried at once, in order with what waits. A write never waits for
a lock on the event loop's thread; what the store refuses stays in memory for a later tick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from .._core.models import Outcome
from . import records
from .faults import StoreFault

__all__ = ["Journal", "Writable", "Write"]

Write = Callable[[sqlite3.Connection], None]
"""One write on the store's connection, inside the transaction its caller opened."""


class Writable(Protocol):
    """What a journal writes through: the run store (:class:`~.runstore.RunStore`)."""

    path: Path

    def attempt(self, writes: Sequence[Write]) -> StoreFault | None:
        """Run ``writes`` in one transaction without waiting; what went wrong, or None."""
        ...

    def note(self, fault: StoreFault) -> None:
        """Remember that a run could not write everything."""
        ...


class Journal:
    """Writes a run's records in one transaction per tick, and never loses one.

    Records wait in memory for at most ``tick`` seconds (or until ``limit`` of them are
    waiting) and are then written together, so a run commits a few times a second instead
    of twice per row. The run's planned keys and its batch records are tried at once, in
    order with what waits, so the file always holds them in the order they happened.
    Without a running event loop every record is written at once.

    A write never waits for a lock and never raises: it runs on the event loop's thread,
    where SQLite's busy wait would freeze every request of the run. When the store cannot be
    written (another process holds its write lock, the disk is full, the file is read-only
    or damaged) the records stay in memory, in order, and are tried again on later ticks
    (backing off to once a second); :meth:`aclose` waits for a lock, without blocking, and
    reports what could not be written as a :class:`StoreFault`.

    Args:
        store: The run store.
        endpoint: The API base URL the run's rows are namespaced by.
        tick: Most seconds a record waits before it is written.
        limit: Records that are written at once, without waiting for the tick.
    """

    _MAX_RETRY = 1.0

    def __init__(self, store: Writable, endpoint: str, *, tick: float, limit: int) -> None:
        self._store = store
        self._endpoint = endpoint
        self._tick = tick
        self._limit = limit
        self._writes: list[Write] = []  # earlier writes, in order
        self._answers = 0  # answers among them
        self._records = 0  # other records among them
        self._submitted: list[tuple[str, str | None]] = []
        self._finished: list[tuple[str, Outcome]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._fault: StoreFault | None = None
        self._retry = tick

    @property
    def waiting(self) -> int:
        """Records in memory, not yet written."""
        return self._answers + self._records + len(self._submitted) + len(self._finished)

    @property
    def fault(self) -> StoreFault | None:
        """Why the last write failed, while records wait because of it; else None."""
        return self._fault

    def plan(self, model: str, entries: Mapping[str, tuple[str, int]]) -> None:
        """See :meth:`RunStore.plan`; tried before this returns."""
        if entries:
            self._queue(lambda db: records.plan(db, self._endpoint, model, entries), len(entries))
            self.flush()

    def submitted(self, fingerprint: str, response_id: str | None) -> None:
        """The server accepted a request under ``response_id``."""
        self._submitted.append((fingerprint, response_id))
        self._later()

    def finished(self, fingerprint: str, outcome: Outcome) -> None:
        """The server decided a request."""
        self._finished.append((fingerprint, outcome))
        self._later()

    def batch_planned(self, key: str, label: str | None, items: Iterable[tuple[str, str]]) -> None:
        """See :meth:`RunStore.batch_planned`; tried before this returns."""
        listed = list(items)
        self._queue(lambda db: records.batch_planned(db, self._endpoint, key, label, listed), 1)
        self.flush()

    def batch_created(self, key: str, batch_id: str) -> None:
        """See :meth:`RunStore.batch_created`; tried before this returns."""
        self._queue(lambda db: records.batch_created(db, self._endpoint, key, batch_id), 1)
        self.flush()

    def batch_lost(self, key: str, *, rekey: bool = True) -> None:
        """See :meth:`RunStore.batch_lost`; tried before this returns."""
        self._queue(lambda db: records.batch_lost(db, self._endpoint, key, rekey=rekey), 1)
        self.flush()

    def flush(self) -> bool:
        """Try to write every waiting record now, in one transaction, without waiting.

        Returns:
            True when nothing waits any more; False when the store could not be written
            (the records stay waiting, :attr:`fault` says why, and a later tick tries again).
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._seal()
        if not self._writes:
            return True
        fault = self._store.attempt(self._writes)
        if fault is None:
            self._writes, self._answers, self._records = [], 0, 0
            self._fault, self._retry = None, self._tick
            return True
        self._fault = fault
        self._retry = min(max(self._retry * 2, self._tick, 0.01), self._MAX_RETRY)
        self._schedule(self._retry)
        return False

    def close(self) -> StoreFault | None:
        """Try once to write what is waiting; later records are written at once.

        Returns:
            What could not be written, or None.
        """
        self.flush()
        return self._closed()

    async def aclose(self, wait: float) -> StoreFault | None:
        """Write what is waiting, waiting up to ``wait`` seconds for another writer's lock.

        The wait is a sleep on the event loop between tries, so other runs on the loop go
        on. Other faults (a full disk, a read-only or damaged file) are not waited for.

        Args:
            wait: Most seconds to wait for the lock.

        Returns:
            What could not be written (also recorded on the store), or None.
        """
        deadline = time.monotonic() + wait
        while not self.flush():
            left = deadline - time.monotonic()
            if self._fault is None or self._fault.kind != "locked" or left <= 0:
                break
            await asyncio.sleep(min(self._retry, left))
        return self._closed()

    def _closed(self) -> StoreFault | None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._tick = 0.0
        if self._fault is None or not self.waiting:
            return None
        lost = dataclasses.replace(
            self._fault, answers=self._answers, records=self._records, path=self._store.path
        )
        self._store.note(lost)
        return lost

    def _queue(self, write: Write, count: int) -> None:
        self._seal()
        self._writes.append(write)
        self._records += count

    def _seal(self) -> None:
        """Close the records gathered so far into one write, keeping their place in order."""
        if not (self._submitted or self._finished):
            return
        submitted, finished = self._submitted, self._finished
        self._writes.append(lambda db: records.record(db, self._endpoint, submitted, finished))
        self._answers += len(finished)
        self._records += len(submitted)
        self._submitted, self._finished = [], []

    def _later(self) -> None:
        if self._fault is not None and self._timer is not None:
            return  # the store is failing: its retry timer writes these too
        if self._tick <= 0 or self.waiting >= self._limit or not _loop_running():
            self.flush()
            return
        self._schedule(self._tick)

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next record or the close tries again
        self._timer = loop.call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        self.flush()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
