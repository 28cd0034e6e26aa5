"""The run store: every call a run or a user makes on the file, each in its transaction.

:class:`RunStore` holds the SQLite connection (opened by :func:`.connection.connect`) and
turns every SQLite failure into a :class:`StoreError` naming the file and what to do, or, on
the event loop's thread, into a :class:`StoreFault` returned instead of raised. What each call
writes is in :mod:`.records`, :mod:`.claims` and :mod:`.hygiene`; :class:`Journal` batches a
run's writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from .._core.errors import StoreError
from .._core.models import Outcome
from . import claims, hygiene, records
from .connection import Transaction, connect, default_store_path
from .faults import StoreFault, classify
from .journal import Journal, Write
from .records import Stored

__all__ = ["LOCK_TIMEOUT", "RunStore"]


LOCK_TIMEOUT = 30.0
"""Seconds a store waits for another process's write lock, unless told otherwise."""


class RunStore:
    """A SQLite run store.

    The file is created readable and writable by its owner only (0600; SQLite gives its
    ``-wal`` and ``-shm`` files the same mode), in a folder made 0700 when this creates it; a
    folder that already exists is left as it is.

    Args:
        path: The database file; created (with its folder) if missing. Default
            :func:`default_store_path`.
        lock_timeout: Seconds to wait for another process's write lock: on open, and for
            the last writes of a run. Default :data:`LOCK_TIMEOUT` (30 s). During a run a
            locked store never blocks: records wait in memory and are written on a later
            tick.

    Attributes:
        fault: Set when a run could not write everything it received (see
            :class:`StoreFault`); the run's answers are in its result all the same.

    Raises:
        ConfigError: The file cannot be created or opened, is damaged, belongs to another
            program, or was written by a newer valar_pandas. The message names the file and
            what to do, and never quotes what the file holds.

    Example:
        >>> store = RunStore("/tmp/example-store.sqlite3")  # doctest: +SKIP
        >>> store.info()["rows"]  # doctest: +SKIP
        0
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None
    ) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.lock_timeout = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        self.fault: StoreFault | None = None
        self._db = connect(self.path, self.lock_timeout)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        with self._guard():
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- during a run ------------------------------------------------------------------------

    def lookup(
        self, endpoint: str, fingerprints: Iterable[str], *, me: str | None = None
    ) -> dict[str, Stored]:
        """What the store knows of these requests.

        Args:
            endpoint: The API base URL.
            fingerprints: Request fingerprints.
            me: The asking run's owner id: rows it holds are not said to be held.

        Returns:
            The known ones, by fingerprint.
        """
        with self._guard():
            return records.lookup(self._db, endpoint, fingerprints, me)

    # -- claims ------------------------------------------------------------------------------

    def claim(
        self,
        endpoint: str,
        owner: str,
        model: str,
        fingerprints: Iterable[str],
        decide: Callable[[dict[str, Stored]], Mapping[str, tuple[str, int]]],
    ) -> dict[str, Stored] | StoreFault:
        """Read rows and claim those ``decide`` takes, in one transaction, without waiting.

        Between the read and the write no other run (window, job or process) can claim a
        row, so each row has one owner: the others see it held and wait for its verdict.

        Args:
            endpoint: The API base URL.
            owner: The claiming run's id (:func:`new_owner`).
            model: The model id (for listings).
            fingerprints: The rows to read.
            decide: Given what the store knows (rows held by another live owner carry
                its id in :attr:`Stored.holder`), the rows to claim: fingerprint →
                (Idempotency-Key, attempt), recorded as by :meth:`plan`.

        Returns:
            What the store knew, by fingerprint; or why the store could not be written at
            once (locked, full, read-only, damaged): nothing was claimed then.
        """
        known: dict[str, Stored] = {}

        def write(db: sqlite3.Connection) -> None:
            known.update(records.lookup(db, endpoint, fingerprints, owner))
            entries = decide(known)
            if entries:
                records.plan(db, endpoint, model, entries)
            claims.take(db, endpoint, owner, entries)

        fault = self.attempt([write])
        return known if fault is None else fault

    def beat(self, owner: str) -> bool:
        """Say that ``owner`` is alive (without waiting for a lock); False if not written."""

        def write(db: sqlite3.Connection) -> None:
            claims.beat(db, owner)

        return self.attempt([write]) is None

    def release(self, endpoint: str, owner: str, fingerprints: Iterable[str]) -> bool:
        """Give up ``owner``'s claims on these rows and its heartbeat, without waiting.

        Rows are named (by primary key) rather than found by owner, so a release costs what
        the claim cost, whatever the size of the store, and needs no index.

        Returns:
            False if it could not be written: harmless, as the owner's heartbeat stops and
            its claims lapse after :data:`CLAIM_EXPIRY` seconds.
        """
        listed = list(fingerprints)

        def write(db: sqlite3.Connection) -> None:
            claims.release(db, endpoint, owner, listed)

        return self.attempt([write]) is None

    def plan(self, endpoint: str, model: str, entries: Mapping[str, tuple[str, int]]) -> None:
        """Record requests about to be sent, before any of them is.

        Args:
            endpoint: The API base URL.
            model: The model id (for listings).
            entries: Fingerprint → (Idempotency-Key, attempt). An entry that exists is reset
                to ``planned`` with this key (a failed row being asked again); one already
                ``submitted`` under the same key keeps its response id and its batch.
        """
        with self._guard(), self._transaction():
            records.plan(self._db, endpoint, model, entries)

    def submitted(self, endpoint: str, fingerprint: str, response_id: str | None) -> None:
        """Record that the server accepted a request under ``response_id``."""
        self.record(endpoint, [(fingerprint, response_id)], [])

    def finished(self, endpoint: str, fingerprint: str, outcome: Outcome) -> None:
        """Record a request's result."""
        self.record(endpoint, [], [(fingerprint, outcome)])

    def record(
        self,
        endpoint: str,
        submitted: Sequence[tuple[str, str | None]],
        finished: Sequence[tuple[str, Outcome]],
    ) -> None:
        """Record accepted requests and results, all in one transaction.

        Accepted requests are written first; a request already ``done`` stays done, so the
        result is the same as writing the records in the order they happened.

        Args:
            endpoint: The API base URL.
            submitted: (fingerprint, response id) of requests the server accepted.
            finished: (fingerprint, outcome) of requests the server decided.
        """
        with self._guard(), self._transaction():
            records.record(self._db, endpoint, submitted, finished)

    def journal(self, endpoint: str, *, tick: float = 0.05, limit: int = 1000) -> Journal:
        """A buffered writer for one run's records (see :class:`Journal`).

        Args:
            endpoint: The API base URL the run's rows are namespaced by.
            tick: Most seconds a record waits in memory before it is written.
            limit: Records that are written at once, without waiting for the tick.

        Returns:
            The journal; close it when the run ends.
        """
        return Journal(self, endpoint, tick=tick, limit=limit)

    def batch_planned(
        self, endpoint: str, key: str, label: str | None, items: Iterable[tuple[str, str]]
    ) -> None:
        """Record, before its create is sent, which requests go into the batch ``key``.

        Args:
            endpoint: The API base URL.
            key: The batch create's ``Idempotency-Key``.
            label: The batch label, if any.
            items: (fingerprint, custom_id) of each item.
        """
        with self._guard(), self._transaction():
            records.batch_planned(self._db, endpoint, key, label, items)

    def batch_created(self, endpoint: str, key: str, batch_id: str) -> None:
        """Record the id the server gave the batch created under ``key``."""
        with self._guard(), self._transaction():
            records.batch_created(self._db, endpoint, key, batch_id)

    def batch_lost(self, endpoint: str, key: str, *, rekey: bool = True) -> None:
        """Forget the batch ``key``: its unfinished rows go back to ``planned``.

        Args:
            endpoint: The API base URL.
            key: The batch's ``Idempotency-Key``.
            rekey: Also move those rows to their next attempt's key, so the batch they go
                into next is a new one (the old key would replay the batch that was lost).
        """
        with self._guard(), self._transaction():
            records.batch_lost(self._db, endpoint, key, rekey=rekey)

    # -- hygiene -----------------------------------------------------------------------------

    def info(self) -> dict[str, object]:
        """Summary: path, schema, size, rows by state and status, batches, tokens, dates."""
        with self._guard():
            counts = hygiene.counts(self._db)
            size = sum(
                p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists()
            )
        return {
            "path": str(self.path),
            "schema_version": self.schema_version,
            "bytes": size,
            **counts,
        }

    def rows(self, limit: int | None = 20) -> Iterator[dict[str, object]]:
        """The most recently updated rows, newest first.

        Args:
            limit: How many at most; None for all.

        Yields:
            One dict per row: endpoint, fingerprint, state, status, model, response_id,
            error, text, input/output tokens and timestamps.
        """
        with self._guard():
            yield from hygiene.rows(self._db, limit)

    def clear(self, older_than: float | None = None) -> int:
        """Delete rows, all or those not updated for ``older_than`` seconds.

        Args:
            older_than: Age in seconds; None deletes everything.

        Returns:
            How many rows were deleted.
        """
        with self._guard(), self._transaction():
            deleted = hygiene.clear(self._db, older_than)
        with self._guard():
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def note(self, fault: StoreFault) -> None:
        """Remember that a run could not write everything (summed into :attr:`fault`)."""
        if self.fault is not None:
            fault = dataclasses.replace(
                fault,
                answers=fault.answers + self.fault.answers,
                records=fault.records + self.fault.records,
            )
        self.fault = fault

    def _transaction(self) -> Transaction:
        return Transaction(self._db)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite failures → :class:`StoreError` naming the file and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            fault = classify(exc)
            said = f"the run store {self.path} could not be read or written: {fault.reason}."
            raise StoreError(
                f"{said} {fault.remedy(self.path)}",
                path=self.path,
                command=f"{said} {fault.remedy(self.path, command=True)}",
            ) from None

    def attempt(self, writes: Sequence[Write]) -> StoreFault | None:
        """Run ``writes`` in one transaction without waiting for a lock.

        Used on the event loop's thread, which must never sleep in SQLite's busy handler:
        if another process holds the write lock, this fails at once and the caller keeps
        its records for a later try.

        Args:
            writes: Calls that write (no transaction of their own), in order.

        Returns:
            None when everything was written, else what went wrong (nothing was written).
        """
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            with self._transaction():
                for write in writes:
                    write(self._db)
        except sqlite3.Error as exc:
            return classify(exc)
        except (UnicodeError, ValueError):  # a value SQLite cannot bind: kept, tried again
            return StoreFault("other", "a record holds a value SQLite cannot store")
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
        return None
