"""The rows of a run: what the store knows of each request, and the writes a run makes.

Each function runs SQL on an open connection, inside the caller's transaction; the run store
(:class:`~valar_pandas._store.runstore.RunStore`) and the journal choose when to commit. Keys
and ids read back are checked against the shapes the library writes, so a file edited by
hand never puts a header line or a path into a request.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .._core.models import Outcome
from .._core.wire import attempt_key, encodable
from .claims import Liveness

__all__ = [
    "Stored",
    "batch_created",
    "batch_lost",
    "batch_planned",
    "lookup",
    "plan",
    "record",
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
    " cached_tokens = ?, reasoning_tokens = ?, updated_at = ?"
    " WHERE endpoint = ? AND fingerprint = ?"
)


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


def lookup(
    db: sqlite3.Connection, endpoint: str, fingerprints: Iterable[str], me: str | None
) -> dict[str, Stored]:
    """What the store knows of these requests, by fingerprint (the known ones only).

    Args:
        db: The open store.
        endpoint: The API base URL.
        fingerprints: Request fingerprints.
        me: The asking run's owner id: rows it holds are not said to be held.
    """
    found: dict[str, Stored] = {}
    keys = list(fingerprints)
    alive = Liveness(time.time())
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(
            "SELECT r.fingerprint, r.state, r.idempotency_key, r.attempt, r.response_id,"
            " r.status, r.text, r.error, r.input_tokens, r.output_tokens, r.cached_tokens,"
            " b.batch_id, r.custom_id, r.batch_key, b.label, b.items, r.owner, o.beat,"
            " r.reasoning_tokens"
            " FROM requests r LEFT JOIN batches b"
            " ON b.endpoint = r.endpoint AND b.batch_key = r.batch_key"
            " LEFT JOIN owners o ON o.owner = r.owner"
            f" WHERE r.endpoint = ? AND r.fingerprint IN ({marks})",
            (endpoint, *chunk),
        )
        for fp, state, key, attempt, rid, status, text, error, *rest in rows:
            t_in, t_out, t_cached, batch_id, cid, batch_key, label, items, owner, beat, t_r = rest
            if not _well_formed((key, batch_key), (rid, batch_id, cid)):
                continue  # a damaged or crafted row: asked afresh, its values unsent
            outcome = (
                Outcome(status, text, error, rid, t_in, t_out, t_cached, t_r)
                if state == "done"
                else None
            )
            holder = owner if owner is not None and owner != me and alive(owner, beat) else None
            found[fp] = Stored(
                state, key, attempt, rid, outcome, batch_id, cid, batch_key,
                holder=holder, batch_label=label, batch_items=items,
            )  # fmt: skip
    return found


def plan(
    db: sqlite3.Connection, endpoint: str, model: str, entries: Mapping[str, tuple[str, int]]
) -> None:
    """Record requests about to be sent, before any of them is.

    Args:
        db: The open store.
        endpoint: The API base URL.
        model: The model id (for listings).
        entries: Fingerprint → (Idempotency-Key, attempt). An entry that exists is reset
            to ``planned`` with this key (a failed row being asked again); one already
            ``submitted`` under the same key keeps its response id and its batch.
    """
    now = time.time()
    rows = [(endpoint, fp, key, attempt, model, now, now) for fp, (key, attempt) in entries.items()]
    db.executemany(
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
        " output_tokens = NULL, cached_tokens = NULL, reasoning_tokens = NULL,"
        " updated_at = excluded.updated_at",
        rows,
    )


def record(
    db: sqlite3.Connection,
    endpoint: str,
    submitted: Sequence[tuple[str, str | None]],
    finished: Sequence[tuple[str, Outcome]],
) -> None:
    """Record accepted requests and results.

    Accepted requests are written first; a request already ``done`` stays done, so the
    result is the same as writing the records in the order they happened.

    Args:
        db: The open store.
        endpoint: The API base URL.
        submitted: (fingerprint, response id) of requests the server accepted.
        finished: (fingerprint, outcome) of requests the server decided.
    """
    now = time.time()
    if submitted:
        db.executemany(_SUBMITTED, [(_storable(rid), now, endpoint, fp) for fp, rid in submitted])
    if finished:
        db.executemany(
            _FINISHED,
            [
                (
                    _storable(o.response_id), o.status, _storable(o.text),
                    _storable(o.error), o.input_tokens, o.output_tokens, o.cached_tokens,
                    o.reasoning_tokens, now, endpoint, fp,
                )
                for fp, o in finished
            ],
        )  # fmt: skip


def batch_planned(
    db: sqlite3.Connection,
    endpoint: str,
    key: str,
    label: str | None,
    items: Iterable[tuple[str, str]],
) -> None:
    """Record, before its create is sent, which requests go into the batch ``key``.

    Args:
        db: The open store.
        endpoint: The API base URL.
        key: The batch create's ``Idempotency-Key``.
        label: The batch label, if any.
        items: (fingerprint, custom_id) of each item.
    """
    now = time.time()
    rows = [(key, cid, now, endpoint, fp) for fp, cid in items]
    db.execute(
        "INSERT INTO batches (endpoint, batch_key, label, items, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, batch_key) DO UPDATE SET"
        " updated_at = excluded.updated_at",
        (endpoint, key, label, len(rows), now, now),
    )
    db.executemany(
        "UPDATE requests SET batch_key = ?, custom_id = ?, updated_at = ?"
        " WHERE endpoint = ? AND fingerprint = ? AND state != 'done'",
        rows,
    )


def batch_created(db: sqlite3.Connection, endpoint: str, key: str, batch_id: str) -> None:
    """Record the id the server gave the batch created under ``key``."""
    db.execute(
        "UPDATE batches SET batch_id = ?, updated_at = ? WHERE endpoint = ? AND batch_key = ?",
        (batch_id, time.time(), endpoint, key),
    )


def batch_lost(db: sqlite3.Connection, endpoint: str, key: str, *, rekey: bool) -> None:
    """Forget the batch ``key``: its unfinished rows go back to ``planned``.

    Args:
        db: The open store.
        endpoint: The API base URL.
        key: The batch's ``Idempotency-Key``.
        rekey: Also move those rows to their next attempt's key, so the batch they go into
            next is a new one (the old key would replay the batch that was lost).
    """
    if rekey:
        rows = db.execute(
            "SELECT fingerprint, attempt FROM requests"
            " WHERE endpoint = ? AND batch_key = ? AND state != 'done'",
            (endpoint, key),
        ).fetchall()
        db.executemany(
            "UPDATE requests SET idempotency_key = ?, attempt = ?"
            " WHERE endpoint = ? AND fingerprint = ?",
            [(attempt_key(fp, n + 1), n + 1, endpoint, fp) for fp, n in rows],
        )
    db.execute(
        "UPDATE requests SET batch_key = NULL, custom_id = NULL, state = 'planned',"
        " updated_at = ? WHERE endpoint = ? AND batch_key = ? AND state != 'done'",
        (time.time(), endpoint, key),
    )
    db.execute("DELETE FROM batches WHERE endpoint = ? AND batch_key = ?", (endpoint, key))


def _storable(text: str | None) -> str | None:
    """Text SQLite can bind: a lone surrogate (half an emoji) is escaped, never dropped."""
    return None if text is None else encodable(text)
