"""Claims: one owner per row, and whether an owner is still alive.

A run claims the rows it sends in the transaction that reads them; the others see them held
and wait for its verdict. An owner is alive while its heartbeat is under
:data:`CLAIM_EXPIRY` seconds old and, on this machine, while its process runs, so a killed run
never holds rows for long.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable

__all__ = ["CLAIM_EXPIRY", "HEARTBEAT", "Liveness", "beat", "new_owner", "release", "take"]

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


class Liveness:
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


def take(db: sqlite3.Connection, endpoint: str, owner: str, fingerprints: Iterable[str]) -> None:
    """Refresh ``owner``'s heartbeat and make it hold these rows (in the caller's transaction)."""
    db.execute(
        "INSERT INTO owners (owner, beat) VALUES (?, ?)"
        " ON CONFLICT (owner) DO UPDATE SET beat = excluded.beat",
        (owner, time.time()),
    )
    db.executemany(
        "UPDATE requests SET owner = ? WHERE endpoint = ? AND fingerprint = ?",
        [(owner, endpoint, fp) for fp in fingerprints],
    )


def beat(db: sqlite3.Connection, owner: str) -> None:
    """Say that ``owner`` is alive (in the caller's transaction)."""
    db.execute("UPDATE owners SET beat = ? WHERE owner = ?", (time.time(), owner))


def release(db: sqlite3.Connection, endpoint: str, owner: str, fingerprints: Iterable[str]) -> None:
    """Give up ``owner``'s claims on these rows and its heartbeat (in the caller's transaction).

    Rows are named (by primary key) rather than found by owner, so a release costs what the
    claim cost, whatever the size of the store, and needs no index.
    """
    db.executemany(
        "UPDATE requests SET owner = NULL WHERE endpoint = ? AND fingerprint = ? AND owner = ?",
        [(endpoint, fp, owner) for fp in fingerprints],
    )
    db.execute("DELETE FROM owners WHERE owner = ?", (owner,))
