"""The run store: a SQLite file that remembers every request, so nothing paid for is lost.

For each (endpoint, fingerprint) it keeps the ``Idempotency-Key`` in use, the state
(``planned`` → ``submitted`` with a response id → ``done`` with the parsed result) and
timestamps. Rows sent through the Batch API also keep their batch's key and their
``custom_id``; the ``batches`` table maps each batch key to the server's batch id, written
right after the create, so a re-run polls the batch instead of creating it again.

Keys are written, all in one transaction, before the first create is sent. During a run,
response ids and results go through a :class:`Journal`, which writes what arrived in one
transaction per short tick (50 ms) instead of one per row: per-row commits cost more CPU than
the HTTP exchanges they record. A process killed at any instant loses at most the last tick,
and every state it can leave resumes without a second inference: finished rows come from
disk, submitted rows are re-attached by polling their id (or their batch), planned rows
(including those whose id was lost) are re-sent with the same key, which the server replays.
Batch keys and ids are written at once, in order with what the journal holds.

Rows are namespaced by the API base URL, so answers from the emulator never leak into a run
against the real API. The file uses WAL journaling and a busy timeout, so several processes
(or notebooks) can share one store. ``PRAGMA user_version`` holds the schema version: an
older store is migrated on open, a newer one is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import ConfigError
from ._models import Outcome
from ._schema import SCHEMA_VERSION, migrate
from ._wire import attempt_key

__all__ = ["SCHEMA_VERSION", "Journal", "RunStore", "Stored", "default_store_path"]

_CHUNK = 500
_SUBMITTED = (
    "UPDATE requests SET state = 'submitted', response_id = ?, updated_at = ?"
    " WHERE endpoint = ? AND fingerprint = ? AND state != 'done'"
)
_FINISHED = (
    "UPDATE requests SET state = 'done', response_id = COALESCE(?, response_id),"
    " status = ?, text = ?, error = ?, input_tokens = ?, output_tokens = ?,"
    " cached_tokens = ?, updated_at = ? WHERE endpoint = ? AND fingerprint = ?"
)


def default_store_path() -> Path:
    """Where the store lives unless ``store=`` says otherwise.

    ``VALAR_PANDAS_STORE`` if set; else the per-user cache directory
    (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows) under ``valar-pandas/store.sqlite3``.
    """
    env = os.environ.get("VALAR_PANDAS_STORE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "valar-pandas" / "store.sqlite3"


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store knows of one request.

    Attributes:
        state: ``planned``, ``submitted`` or ``done``.
        idempotency_key: The key the last attempt was (or will be) sent with.
        attempt: How many times the request was re-asked after failing.
        response_id: The server's id, once the create was accepted.
        outcome: The result, once ``done``.
        batch_id: The batch it was sent in, once the server accepted that batch.
        custom_id: Its wire id in that batch.
        batch_key: That batch's ``Idempotency-Key`` (recorded before the create).
    """

    state: str
    idempotency_key: str
    attempt: int
    response_id: str | None
    outcome: Outcome | None
    batch_id: str | None = None
    custom_id: str | None = None
    batch_key: str | None = None


class RunStore:
    """A SQLite run store.

    Args:
        path: The database file; created (with its folder) if missing. Default
            :func:`default_store_path`.

    Raises:
        ConfigError: The file cannot be opened, is not a store, or was written by a newer
            valar_pandas.

    Example:
        >>> store = RunStore("/tmp/example-store.sqlite3")  # doctest: +SKIP
        >>> store.info()["rows"]  # doctest: +SKIP
        0
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate(self._db, self.path)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot use {self.path} as a run store: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot create the run store at {self.path}: {exc}") from exc

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
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- during a run ------------------------------------------------------------------------

    def lookup(self, endpoint: str, fingerprints: Iterable[str]) -> dict[str, Stored]:
        """What the store knows of these requests.

        Args:
            endpoint: The API base URL.
            fingerprints: Request fingerprints.

        Returns:
            The known ones, by fingerprint.
        """
        found: dict[str, Stored] = {}
        keys = list(fingerprints)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT r.fingerprint, r.state, r.idempotency_key, r.attempt, r.response_id,"
                " r.status, r.text, r.error, r.input_tokens, r.output_tokens, r.cached_tokens,"
                " b.batch_id, r.custom_id, r.batch_key FROM requests r LEFT JOIN batches b"
                " ON b.endpoint = r.endpoint AND b.batch_key = r.batch_key"
                f" WHERE r.endpoint = ? AND r.fingerprint IN ({marks})",
                (endpoint, *chunk),
            )
            for fp, state, key, attempt, rid, status, text, error, *rest in rows:
                t_in, t_out, t_cached, batch_id, cid, batch_key = rest
                outcome = (
                    Outcome(status, text, error, rid, t_in, t_out, t_cached)
                    if state == "done"
                    else None
                )
                found[fp] = Stored(state, key, attempt, rid, outcome, batch_id, cid, batch_key)
        return found

    def plan(self, endpoint: str, model: str, entries: Mapping[str, tuple[str, int]]) -> None:
        """Record requests about to be sent, before any of them is.

        Args:
            endpoint: The API base URL.
            model: The model id (for listings).
            entries: Fingerprint → (Idempotency-Key, attempt). An entry that exists is reset
                to ``planned`` with this key (a failed row being asked again); one already
                ``submitted`` under the same key keeps its response id and its batch.
        """
        now = time.time()
        rows = [
            (endpoint, fp, key, attempt, model, now, now) for fp, (key, attempt) in entries.items()
        ]
        with self._transaction():
            self._db.executemany(
                "INSERT INTO requests (endpoint, fingerprint, idempotency_key, attempt, state,"
                " model, created_at, updated_at) VALUES (?, ?, ?, ?, 'planned', ?, ?, ?)"
                " ON CONFLICT (endpoint, fingerprint) DO UPDATE SET"
                " state = CASE WHEN idempotency_key = excluded.idempotency_key"
                "   AND state = 'submitted' THEN 'submitted' ELSE 'planned' END,"
                " response_id = CASE WHEN idempotency_key = excluded.idempotency_key"
                "   THEN response_id END,"
                " batch_key = CASE WHEN idempotency_key = excluded.idempotency_key"
                "   THEN batch_key END,"
                " custom_id = CASE WHEN idempotency_key = excluded.idempotency_key"
                "   THEN custom_id END,"
                " idempotency_key = excluded.idempotency_key, attempt = excluded.attempt,"
                " status = NULL, text = NULL, error = NULL, input_tokens = NULL,"
                " output_tokens = NULL, cached_tokens = NULL, updated_at = excluded.updated_at",
                rows,
            )

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
        now = time.time()
        with self._transaction():
            if submitted:
                self._db.executemany(
                    _SUBMITTED, [(rid, now, endpoint, fp) for fp, rid in submitted]
                )
            if finished:
                self._db.executemany(
                    _FINISHED,
                    [
                        (
                            o.response_id, o.status, o.text, o.error, o.input_tokens,
                            o.output_tokens, o.cached_tokens, now, endpoint, fp,
                        )
                        for fp, o in finished
                    ],
                )  # fmt: skip

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
        now = time.time()
        rows = [(key, cid, now, endpoint, fp) for fp, cid in items]
        with self._transaction():
            self._db.execute(
                "INSERT INTO batches (endpoint, batch_key, label, items, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, batch_key) DO UPDATE SET"
                " updated_at = excluded.updated_at",
                (endpoint, key, label, len(rows), now, now),
            )
            self._db.executemany(
                "UPDATE requests SET batch_key = ?, custom_id = ?, updated_at = ?"
                " WHERE endpoint = ? AND fingerprint = ? AND state != 'done'",
                rows,
            )

    def batch_created(self, endpoint: str, key: str, batch_id: str) -> None:
        """Record the id the server gave the batch created under ``key``."""
        self._db.execute(
            "UPDATE batches SET batch_id = ?, updated_at = ? WHERE endpoint = ? AND batch_key = ?",
            (batch_id, time.time(), endpoint, key),
        )

    def batch_lost(self, endpoint: str, key: str, *, rekey: bool = True) -> None:
        """Forget the batch ``key``: its unfinished rows go back to ``planned``.

        Args:
            endpoint: The API base URL.
            key: The batch's ``Idempotency-Key``.
            rekey: Also move those rows to their next attempt's key, so the batch they go
                into next is a new one (the old key would replay the batch that was lost).
        """
        with self._transaction():
            if rekey:
                rows = self._db.execute(
                    "SELECT fingerprint, attempt FROM requests"
                    " WHERE endpoint = ? AND batch_key = ? AND state != 'done'",
                    (endpoint, key),
                ).fetchall()
                self._db.executemany(
                    "UPDATE requests SET idempotency_key = ?, attempt = ?"
                    " WHERE endpoint = ? AND fingerprint = ?",
                    [(attempt_key(fp, n + 1), n + 1, endpoint, fp) for fp, n in rows],
                )
            self._db.execute(
                "UPDATE requests SET batch_key = NULL, custom_id = NULL, state = 'planned',"
                " updated_at = ? WHERE endpoint = ? AND batch_key = ? AND state != 'done'",
                (time.time(), endpoint, key),
            )
            self._db.execute(
                "DELETE FROM batches WHERE endpoint = ? AND batch_key = ?", (endpoint, key)
            )

    # -- hygiene -----------------------------------------------------------------------------

    def info(self) -> dict[str, object]:
        """Summary: path, schema, size, rows by state and status, batches, tokens, dates."""
        counts = dict(self._db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"))
        statuses = dict(
            self._db.execute(
                "SELECT status, COUNT(*) FROM requests WHERE state = 'done' GROUP BY status"
            )
        )
        t_in, t_out, oldest, newest = self._db.execute(
            "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            " MIN(created_at), MAX(updated_at) FROM requests"
        ).fetchone()
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        batches = self._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        return {
            "path": str(self.path),
            "schema_version": self.schema_version,
            "bytes": size,
            "rows": sum(counts.values()),
            "by_state": counts,
            "by_status": statuses,
            "batches": batches,
            "input_tokens": t_in,
            "output_tokens": t_out,
            "oldest": oldest,
            "newest": newest,
        }

    def rows(self, limit: int | None = 20) -> Iterator[dict[str, object]]:
        """The most recently updated rows, newest first.

        Args:
            limit: How many at most; None for all.

        Yields:
            One dict per row: endpoint, fingerprint, state, status, model, response_id,
            error, text, input/output tokens and timestamps.
        """
        query = (
            "SELECT endpoint, fingerprint, state, status, model, response_id, error, text,"
            " input_tokens, output_tokens, created_at, updated_at FROM requests"
            " ORDER BY updated_at DESC"
        )
        params: tuple[int, ...] = ()
        if limit is not None:
            query += " LIMIT ?"
            params = (limit,)
        names = (
            "endpoint", "fingerprint", "state", "status", "model", "response_id", "error",
            "text", "input_tokens", "output_tokens", "created_at", "updated_at",
        )  # fmt: skip
        for row in self._db.execute(query, params):
            yield dict(zip(names, row, strict=True))

    def clear(self, older_than: float | None = None) -> int:
        """Delete rows, all or those not updated for ``older_than`` seconds.

        Args:
            older_than: Age in seconds; None deletes everything.

        Returns:
            How many rows were deleted.
        """
        with self._transaction():
            if older_than is None:
                deleted = self._db.execute("DELETE FROM requests").rowcount
            else:
                cutoff = time.time() - older_than
                deleted = self._db.execute(
                    "DELETE FROM requests WHERE updated_at < ?", (cutoff,)
                ).rowcount
            self._db.execute(
                "DELETE FROM batches WHERE NOT EXISTS (SELECT 1 FROM requests r"
                " WHERE r.endpoint = batches.endpoint AND r.batch_key = batches.batch_key)"
            )
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class Journal:
    """Writes a run's response ids and results in one transaction per tick.

    Records wait in memory for at most ``tick`` seconds (or until ``limit`` of them are
    waiting) and are then written together, so a run commits a few times a second instead
    of twice per row. Batch records are written at once, after whatever is waiting, so the
    file always holds them in the order they happened. Without a running event loop every
    record is written at once.

    Args:
        store: The run store.
        endpoint: The API base URL the run's rows are namespaced by.
        tick: Most seconds a record waits before it is written.
        limit: Records that are written at once, without waiting for the tick.
    """

    def __init__(self, store: RunStore, endpoint: str, *, tick: float, limit: int) -> None:
        self._store = store
        self._endpoint = endpoint
        self._tick = tick
        self._limit = limit
        self._submitted: list[tuple[str, str | None]] = []
        self._finished: list[tuple[str, Outcome]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._failure: Exception | None = None

    @property
    def waiting(self) -> int:
        """Records in memory, not yet written."""
        return len(self._submitted) + len(self._finished)

    def submitted(self, fingerprint: str, response_id: str | None) -> None:
        """The server accepted a request under ``response_id``."""
        self._submitted.append((fingerprint, response_id))
        self._later()

    def finished(self, fingerprint: str, outcome: Outcome) -> None:
        """The server decided a request."""
        self._finished.append((fingerprint, outcome))
        self._later()

    def batch_planned(self, key: str, label: str | None, items: Iterable[tuple[str, str]]) -> None:
        """See :meth:`RunStore.batch_planned`; written before this returns."""
        self.flush()
        self._store.batch_planned(self._endpoint, key, label, items)

    def batch_created(self, key: str, batch_id: str) -> None:
        """See :meth:`RunStore.batch_created`; written before this returns."""
        self.flush()
        self._store.batch_created(self._endpoint, key, batch_id)

    def batch_lost(self, key: str, *, rekey: bool = True) -> None:
        """See :meth:`RunStore.batch_lost`; written before this returns."""
        self.flush()
        self._store.batch_lost(self._endpoint, key, rekey=rekey)

    def flush(self) -> None:
        """Write every waiting record now, in one transaction.

        Raises:
            sqlite3.Error: The store could not be written (now, or on an earlier tick); the
                records stay waiting.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        if not (self._submitted or self._finished):
            return
        self._store.record(self._endpoint, self._submitted, self._finished)
        self._submitted, self._finished = [], []

    def close(self) -> None:
        """Write what is waiting; later records are written at once."""
        self.flush()
        self._tick = 0.0

    def _later(self) -> None:
        if self._failure is not None or self._tick <= 0 or self.waiting >= self._limit:
            self.flush()
            return
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_later(self._tick, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        try:
            self.flush()
        except sqlite3.Error as exc:  # raised to the run by the next record or the close
            self._failure = exc


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
