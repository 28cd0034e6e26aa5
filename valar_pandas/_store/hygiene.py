"""Looking after the file: its summary, its latest rows, and clearing old rows.

What ``valar-pandas store info``, ``store list`` and ``store clear`` read and delete. Each
function runs SQL on an open connection; the run store decides the transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

from .claims import CLAIM_EXPIRY

__all__ = ["clear", "counts", "rows"]

_ROW = (
    "endpoint", "fingerprint", "state", "status", "model", "response_id", "error",
    "text", "input_tokens", "output_tokens", "reasoning_tokens", "created_at", "updated_at",
)  # fmt: skip


def counts(db: sqlite3.Connection) -> dict[str, object]:
    """Rows by state and status, batches, tokens and dates, as :meth:`RunStore.info` gives.

    ``reasoning_unreported`` counts answered rows whose reasoning tokens are unknown (the
    server did not report them, or the row predates the column), so a total of 0 is not
    read as "no reasoning".
    """
    by_state = dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"))
    by_status = dict(
        db.execute("SELECT status, COUNT(*) FROM requests WHERE state = 'done' GROUP BY status")
    )
    t_in, t_out, t_reasoning, unreported, oldest, newest = db.execute(
        "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
        " COALESCE(SUM(reasoning_tokens), 0),"
        " COALESCE(SUM(output_tokens IS NOT NULL AND reasoning_tokens IS NULL), 0),"
        " MIN(created_at), MAX(updated_at) FROM requests"
    ).fetchone()
    batches = db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    return {
        "rows": sum(by_state.values()),
        "by_state": by_state,
        "by_status": by_status,
        "batches": batches,
        "input_tokens": t_in,
        "output_tokens": t_out,
        "reasoning_tokens": t_reasoning,
        "reasoning_unreported": unreported,
        "oldest": oldest,
        "newest": newest,
    }


def rows(db: sqlite3.Connection, limit: int | None) -> Iterator[dict[str, object]]:
    """The most recently updated rows, newest first, ``limit`` at most (None for all)."""
    query = f"SELECT {', '.join(_ROW)} FROM requests ORDER BY updated_at DESC"
    params: tuple[int, ...] = ()
    if limit is not None:
        query += " LIMIT ?"
        params = (limit,)
    for row in db.execute(query, params):
        yield dict(zip(_ROW, row, strict=True))


def clear(db: sqlite3.Connection, older_than: float | None) -> int:
    """Delete rows, all or those not updated for ``older_than`` seconds; how many went.

    Batches left without rows go too, and so do owners long silent (killed runs, whose
    claims have lapsed).
    """
    if older_than is None:
        deleted = db.execute("DELETE FROM requests").rowcount
    else:
        cutoff = time.time() - older_than
        deleted = db.execute("DELETE FROM requests WHERE updated_at < ?", (cutoff,)).rowcount
    db.execute(
        "DELETE FROM batches WHERE NOT EXISTS (SELECT 1 FROM requests r"
        " WHERE r.endpoint = batches.endpoint AND r.batch_key = batches.batch_key)"
    )
    db.execute("DELETE FROM owners WHERE beat < ?", (time.time() - CLAIM_EXPIRY,))
    return int(deleted)
