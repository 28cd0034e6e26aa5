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

Rows that several runs want at once (a command's windows, jobs, processes sharing the file)
have one owner: a run claims the rows it sends in the transaction that reads them
(:meth:`RunStore.claim`), and the others wait for its verdict. An owner is alive while its
heartbeat is fresh (:data:`CLAIM_EXPIRY`) and, on this machine, its process runs; a run
releases its claims when its verdicts are written.

Rows are namespaced by the API base URL, so answers from the emulator never leak into a run
against the real API. The file uses WAL journaling, so several processes (or notebooks) can
share one store. The journal never waits for a lock on the event loop's thread: a write that
fails (locked, full, read-only, damaged) keeps its records in memory for a later tick, and
what a run could not write at all comes back as a :class:`StoreFault`, never as an exception
that would lose the run's answers. Failures are described in our own words: SQLite's
messages can quote stored text. ``PRAGMA user_version`` holds the schema version: an
older store is migrated on open, a newer one is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import ConfigError, StoreError
from ._models import Outcome
from ._schema import SCHEMA_VERSION, check, migrate
from ._wire import attempt_key, encodable

__all__ = [
    "CLAIM_EXPIRY",
    "HEARTBEAT",
    "LOCK_TIMEOUT",
    "SCHEMA_VERSION",
    "Journal",
    "RunStore",
    "StoreFault",
    "Stored",
    "classify",
    "default_store_path",
    "new_owner",
]

_CHUNK = 500
_KEY_SHAPE = re.compile(r"[!-~]{1,255}")
"""An Idempotency-Key read back: visible ASCII, no space, CR or LF (it becomes a header)."""
_ID_SHAPE = re.compile(r"[!-~]{1,1024}")
"""A response, batch or item id read back (it becomes part of a request's path)."""
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


LOCK_TIMEOUT = 30.0

# What a failed SQLite call means for the user, by result code (extended codes share the
# prefix): (kind, reason). Our words only: the driver's messages can quote stored text.
_KINDS: dict[str, tuple[str, str]] = {
    "SQLITE_BUSY": ("locked", "another process holds its write lock"),
    "SQLITE_LOCKED": ("locked", "another connection holds its write lock"),
    "SQLITE_FULL": ("full", "the disk is full (or the file reached its size limit)"),
    "SQLITE_READONLY": ("readonly", "the file or its folder is read-only"),
    "SQLITE_CANTOPEN": ("readonly", "the file or its folder cannot be opened for writing"),
    "SQLITE_PERM": ("readonly", "the file or its folder may not be written"),
    "SQLITE_AUTH": ("readonly", "the file may not be written"),
    "SQLITE_CORRUPT": ("damaged", "the file is damaged"),
    "SQLITE_NOTADB": ("damaged", "the file is not an SQLite database"),
    "SQLITE_IOERR": ("io", "the disk reported an I/O error"),
}
_REMEDIES = {
    "locked": "Close the other program using it (another notebook or valar-pandas process), "
    "or {give} this call its own {store}.",
    "full": "Free disk space, or {give} a {store} on another disk.",
    "readonly": "Make the file, its -wal and -shm files and its folder writable, or {give} "
    "another {store}.",
    "damaged": "Remove it with `valar-pandas store clear --store {path}` (its rows are lost: "
    "those requests are asked again), or {give} another {store}.",
    "io": "Check the disk, or {give} a {store} on another disk.",
    "other": "Remove it with `valar-pandas store clear --store {path}`, or {give} another {store}.",
}
_SAY = {False: {"give": "pass", "store": "store= path"}, True: {"give": "give", "store": "--store"}}
"""How remedies name the store option: to Python's callers, and to the command's users."""


@dataclass(frozen=True, slots=True)
class StoreFault:
    """Why the run store could not be used, and what a run could not record in it.

    Attributes:
        kind: ``locked``, ``full``, ``readonly``, ``damaged``, ``io`` or ``other``.
        reason: What went wrong, in words that quote nothing the file holds.
        answers: Answers (server verdicts) received but not recorded.
        records: Other records not written: planned keys, response ids, batch records.
        path: The store file, once known.
    """

    kind: str
    reason: str
    answers: int = 0
    records: int = 0
    path: Path | None = None

    def remedy(self, path: Path, command: bool = False) -> str:
        """What the user can do about it; ``command`` names the command's ``--store``."""
        return _REMEDIES[self.kind].format(path=path, **_SAY[command])

    def message(self, where: str, command: bool = False) -> str:
        """The warning for a run that finished with records missing from the store.

        Args:
            where: Where the run's answers are (``"the returned frame"``, ``"out.parquet"``).
            command: Say it to the command's users (``--store``), not Python's (``store=``).
        """
        path = self.path or Path("(unknown)")
        return (
            f"the run store {path} could not be written ({self.reason}): {self.answers:,} "
            f"answers and {self.records:,} other records of this run are not in it. Every "
            f"answer received is in {where}: keep it. A re-run would ask those rows again "
            "under the same idempotency keys (the server replays a key it still holds without "
            f"a second inference). {self.remedy(path, command)}"
        )


def classify(exc: BaseException) -> StoreFault:
    """Name a failed store operation without quoting the driver's message."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    for prefix, (kind, reason) in _KINDS.items():
        if name == prefix or name.startswith(f"{prefix}_"):
            return StoreFault(kind, reason)
    if isinstance(exc, sqlite3.DatabaseError):  # e.g. text that is not UTF-8: damaged
        return StoreFault("damaged", "the file holds data that cannot be read")
    return StoreFault("other", f"an SQLite error ({name or type(exc).__name__})")


def _well_formed(keys: Iterable[object], ids: Iterable[object]) -> bool:
    """Whether keys and ids read from the file have the shapes the library writes.

    A file edited by hand or by another program could hold a key with CR/LF in it, which
    would add header lines to a request; such a row is treated as unknown.
    """
    return all(
        value is None or (isinstance(value, str) and shape.fullmatch(value) is not None)
        for values, shape in ((keys, _KEY_SHAPE), (ids, _ID_SHAPE))
        for value in values
    )


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return classify(exc).reason


def _create_private(path: Path) -> None:
    """Make the store's missing folders (0700) and the file itself (0600) if absent.

    Only what this creates gets a mode: an existing folder or file is left as it is. On
    Windows the modes mean little and the user's profile folder keeps others out.
    """
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


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
        holder: The live run that holds the row (another window, job or process), which
            alone may send it; None when no other run holds it.
        batch_label: That batch's label, as recorded before the create.
        batch_items: How many items that batch was recorded with.
    """

    state: str
    idempotency_key: str
    attempt: int
    response_id: str | None
    outcome: Outcome | None
    batch_id: str | None = None
    custom_id: str | None = None
    batch_key: str | None = None
    holder: str | None = None
    batch_label: str | None = None
    batch_items: int | None = None


CLAIM_EXPIRY = 60.0
"""Seconds without a heartbeat after which a run's claims lapse (another run takes over)."""

HEARTBEAT = 10.0
"""Seconds between a running run's heartbeats."""

_HOST = socket.gethostname()


def new_owner() -> str:
    """A fresh owner id for one run: ``<host>:<pid>:<random>``.

    The host and process id let another run on the same machine see at once that the
    owner's process is gone; the random part tells apart the runs of one process (the
    windows of a command, the jobs of a notebook).
    """
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


class _Liveness:
    """Judges owners alive, once per process in one lookup.

    An owner is alive while its heartbeat is under :data:`CLAIM_EXPIRY` seconds old and,
    for an owner on this machine, its process still runs (a killed process frees its rows
    at once).
    """

    def __init__(self, now: float) -> None:
        self._now = now
        self._pids: dict[int, bool] = {}

    def __call__(self, owner: str, beat: float | None) -> bool:
        if beat is None or beat < self._now - CLAIM_EXPIRY:
            return False
        host, _, rest = owner.rpartition(":")[0].rpartition(":")
        pid = int(rest) if rest.isdigit() else None
        if host != _HOST or pid is None or sys.platform == "win32":
            return True
        if pid not in self._pids:
            self._pids[pid] = _pid_alive(pid)
        return self._pids[pid]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


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
        try:
            _create_private(self.path)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=self.lock_timeout, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            said = f"cannot create the run store at {self.path}: {_os_reason(exc)}."
            raise ConfigError(
                f"{said} Pass another store= path, or store=False to keep none.",
                command=f"{said} Give another --store path.",
            ) from None
        try:
            check(self._db, self.path)  # before anything is written to the file
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrate(self._db, self.path)
        except sqlite3.Error as exc:
            self._db.close()
            fault = classify(exc)
            said = f"cannot use {self.path} as a run store: {fault.reason}."
            raise ConfigError(
                f"{said} {fault.remedy(self.path)}",
                command=f"{said} {fault.remedy(self.path, command=True)}",
            ) from None
        except BaseException:
            self._db.close()
            raise

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
            return self._lookup(endpoint, fingerprints, me)

    def _lookup(
        self, endpoint: str, fingerprints: Iterable[str], me: str | None
    ) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        keys = list(fingerprints)
        alive = _Liveness(time.time())
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT r.fingerprint, r.state, r.idempotency_key, r.attempt, r.response_id,"
                " r.status, r.text, r.error, r.input_tokens, r.output_tokens, r.cached_tokens,"
                " b.batch_id, r.custom_id, r.batch_key, b.label, b.items, r.owner, o.beat"
                " FROM requests r LEFT JOIN batches b"
                " ON b.endpoint = r.endpoint AND b.batch_key = r.batch_key"
                " LEFT JOIN owners o ON o.owner = r.owner"
                f" WHERE r.endpoint = ? AND r.fingerprint IN ({marks})",
                (endpoint, *chunk),
            )
            for fp, state, key, attempt, rid, status, text, error, *rest in rows:
                t_in, t_out, t_cached, batch_id, cid, batch_key, label, items, owner, beat = rest
                if not _well_formed((key, batch_key), (rid, batch_id, cid)):
                    continue  # a damaged or crafted row: asked afresh, its values unsent
                outcome = (
                    Outcome(status, text, error, rid, t_in, t_out, t_cached)
                    if state == "done"
                    else None
                )
                holder = owner if owner is not None and owner != me and alive(owner, beat) else None
                found[fp] = Stored(
                    state, key, attempt, rid, outcome, batch_id, cid, batch_key,
                    holder=holder, batch_label=label, batch_items=items,
                )  # fmt: skip
        return found

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

        def write() -> None:
            known.update(self._lookup(endpoint, fingerprints, owner))
            entries = decide(known)
            now = time.time()
            self._db.execute(
                "INSERT INTO owners (owner, beat) VALUES (?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET beat = excluded.beat",
                (owner, now),
            )
            if entries:
                self._plan(endpoint, model, entries)
                self._db.executemany(
                    "UPDATE requests SET owner = ? WHERE endpoint = ? AND fingerprint = ?",
                    [(owner, endpoint, fp) for fp in entries],
                )

        fault = self.attempt([write])
        return known if fault is None else fault

    def beat(self, owner: str) -> bool:
        """Say that ``owner`` is alive (without waiting for a lock); False if not written."""

        def write() -> None:
            self._db.execute("UPDATE owners SET beat = ? WHERE owner = ?", (time.time(), owner))

        return self.attempt([write]) is None

    def release(self, endpoint: str, owner: str, fingerprints: Iterable[str]) -> bool:
        """Give up ``owner``'s claims on these rows and its heartbeat, without waiting.

        Rows are named (by primary key) rather than found by owner, so a release costs what
        the claim cost, whatever the size of the store, and needs no index.

        Returns:
            False if it could not be written: harmless, as the owner's heartbeat stops and
            its claims lapse after :data:`CLAIM_EXPIRY` seconds.
        """
        rows = [(endpoint, fp, owner) for fp in fingerprints]

        def write() -> None:
            self._db.executemany(
                "UPDATE requests SET owner = NULL"
                " WHERE endpoint = ? AND fingerprint = ? AND owner = ?",
                rows,
            )
            self._db.execute("DELETE FROM owners WHERE owner = ?", (owner,))

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
            self._plan(endpoint, model, entries)

    def _plan(self, endpoint: str, model: str, entries: Mapping[str, tuple[str, int]]) -> None:
        now = time.time()
        rows = [
            (endpoint, fp, key, attempt, model, now, now) for fp, (key, attempt) in entries.items()
        ]
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
        with self._guard(), self._transaction():
            self._record(endpoint, submitted, finished)

    def _record(
        self,
        endpoint: str,
        submitted: Sequence[tuple[str, str | None]],
        finished: Sequence[tuple[str, Outcome]],
    ) -> None:
        now = time.time()
        if submitted:
            self._db.executemany(
                _SUBMITTED, [(_storable(rid), now, endpoint, fp) for fp, rid in submitted]
            )
        if finished:
            self._db.executemany(
                _FINISHED,
                [
                    (
                        _storable(o.response_id), o.status, _storable(o.text),
                        _storable(o.error), o.input_tokens, o.output_tokens, o.cached_tokens,
                        now, endpoint, fp,
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
        with self._guard(), self._transaction():
            self._batch_planned(endpoint, key, label, items)

    def _batch_planned(
        self, endpoint: str, key: str, label: str | None, items: Iterable[tuple[str, str]]
    ) -> None:
        now = time.time()
        rows = [(key, cid, now, endpoint, fp) for fp, cid in items]
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
        with self._guard(), self._transaction():
            self._batch_created(endpoint, key, batch_id)

    def _batch_created(self, endpoint: str, key: str, batch_id: str) -> None:
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
        with self._guard(), self._transaction():
            self._batch_lost(endpoint, key, rekey=rekey)

    def _batch_lost(self, endpoint: str, key: str, *, rekey: bool) -> None:
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
        with self._guard():
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
            size = sum(
                p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists()
            )
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
        with self._guard():
            for row in self._db.execute(query, params):
                yield dict(zip(names, row, strict=True))

    def clear(self, older_than: float | None = None) -> int:
        """Delete rows, all or those not updated for ``older_than`` seconds.

        Args:
            older_than: Age in seconds; None deletes everything.

        Returns:
            How many rows were deleted.
        """
        with self._guard(), self._transaction():
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
            self._db.execute(  # owners long silent: killed runs, whose claims have lapsed
                "DELETE FROM owners WHERE beat < ?", (time.time() - CLAIM_EXPIRY,)
            )
        with self._guard():
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)

    def note(self, fault: StoreFault) -> None:
        """Remember that a run could not write everything (summed into :attr:`fault`)."""
        if self.fault is not None:
            fault = dataclasses.replace(
                fault,
                answers=fault.answers + self.fault.answers,
                records=fault.records + self.fault.records,
            )
        self.fault = fault

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

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

    def attempt(self, writes: Sequence[Callable[[], None]]) -> StoreFault | None:
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
                    write()
        except sqlite3.Error as exc:
            return classify(exc)
        except (UnicodeError, ValueError):  # a value SQLite cannot bind: kept, tried again
            return StoreFault("other", "a record holds a value SQLite cannot store")
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
        return None


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

    def __init__(self, store: RunStore, endpoint: str, *, tick: float, limit: int) -> None:
        self._store = store
        self._endpoint = endpoint
        self._tick = tick
        self._limit = limit
        self._writes: list[Callable[[], None]] = []  # earlier writes, in order
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
            self._queue(lambda: self._store._plan(self._endpoint, model, entries), len(entries))
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
        self._queue(lambda: self._store._batch_planned(self._endpoint, key, label, listed), 1)
        self.flush()

    def batch_created(self, key: str, batch_id: str) -> None:
        """See :meth:`RunStore.batch_created`; tried before this returns."""
        self._queue(lambda: self._store._batch_created(self._endpoint, key, batch_id), 1)
        self.flush()

    def batch_lost(self, key: str, *, rekey: bool = True) -> None:
        """See :meth:`RunStore.batch_lost`; tried before this returns."""
        self._queue(lambda: self._store._batch_lost(self._endpoint, key, rekey=rekey), 1)
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

    def _queue(self, write: Callable[[], None], records: int) -> None:
        self._seal()
        self._writes.append(write)
        self._records += records

    def _seal(self) -> None:
        """Close the records gathered so far into one write, keeping their place in order."""
        if not (self._submitted or self._finished):
            return
        submitted, finished = self._submitted, self._finished
        self._writes.append(lambda: self._store._record(self._endpoint, submitted, finished))
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


def _storable(text: str | None) -> str | None:
    """Text SQLite can bind: a lone surrogate (half an emoji) is escaped, never dropped."""
    return None if text is None else encodable(text)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; on any failure (the commit's too) nothing is kept."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # a failed rollback undoes it too
                self._db.execute("ROLLBACK")
