"""The store's file opened: made private, its schema checked and migrated, and transactions.

The file is created readable and writable by its owner only (0600; SQLite gives its ``-wal``
and ``-shm`` files the same mode), in a folder made 0700 when this creates it. The file uses
WAL journaling (``synchronous=NORMAL``), so several processes can share it. A file that is
damaged, of another program or of a newer version is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from pathlib import Path

from .._core.errors import ConfigError
from .faults import classify, os_reason
from .schema import check, migrate

__all__ = ["Transaction", "connect", "default_store_path"]


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


def connect(path: Path, lock_timeout: float) -> sqlite3.Connection:
    """Open (creating it privately if absent) the store at ``path``, checked and migrated.

    Args:
        path: The database file.
        lock_timeout: Seconds to wait for another process's write lock.

    Returns:
        The connection, in autocommit mode (transactions are :class:`Transaction`).

    Raises:
        ConfigError: The file cannot be created or opened, is damaged, belongs to another
            program, or was written by a newer valar_pandas.
    """
    try:
        _create_private(path)
        db = sqlite3.connect(
            path, isolation_level=None, timeout=lock_timeout, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        said = f"cannot create the run store at {path}: {os_reason(exc)}."
        raise ConfigError(
            f"{said} Pass another store= path, or store=False to keep none.",
            command=f"{said} Give another --store path.",
        ) from None
    try:
        check(db, path)  # before anything is written to the file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        migrate(db, path)
    except sqlite3.Error as exc:
        db.close()
        fault = classify(exc)
        said = f"cannot use {path} as a run store: {fault.reason}."
        raise ConfigError(
            f"{said} {fault.remedy(path)}",
            command=f"{said} {fault.remedy(path, command=True)}",
        ) from None
    except BaseException:
        db.close()
        raise
    return db


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


class Transaction:
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
