"""The run store's schema: one migration per version, applied in order on open.

``PRAGMA user_version`` holds the version. Version 1 is the ``requests`` table; version 2
adds what the Batch API path needs: each row's batch key and ``custom_id``, and a
``batches`` table mapping a batch's ``Idempotency-Key`` to the server's batch id. Version 3
drops the index on ``updated_at``: every state change moved the row's entry in it, which
cost about a third of each write during a run, and only ``store list`` and ``store clear
--older-than`` read it, which scan the table just as well. Version 4 adds claims: each
row's ``owner`` (the run that holds it, so no other run sends it meanwhile) and an
``owners`` table of each owner's last heartbeat, by which the others judge whether it is
still alive. Version 5 adds each answer's ``reasoning_tokens`` (of its output tokens, those
a reasoning model spent reasoning; NULL for rows stored before). An older file is migrated in one
transaction; a newer one is refused, and so is an SQLite file of another program (one
with tables but no version, or a version without the ``requests`` table): a store only ever
migrates a file that is empty or its own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .._core.errors import ConfigError

__all__ = ["SCHEMA_VERSION", "check", "migrate"]

SCHEMA_VERSION = 5
_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE requests (
        endpoint        TEXT    NOT NULL,
        fingerprint     TEXT    NOT NULL,
        idempotency_key TEXT    NOT NULL,
        attempt         INTEGER NOT NULL DEFAULT 0,
        state           TEXT    NOT NULL CHECK (state IN ('planned', 'submitted', 'done')),
        model           TEXT,
        response_id     TEXT,
        status          TEXT,
        text            TEXT,
        error           TEXT,
        input_tokens    INTEGER,
        output_tokens   INTEGER,
        cached_tokens   INTEGER,
        created_at      REAL    NOT NULL,
        updated_at      REAL    NOT NULL,
        PRIMARY KEY (endpoint, fingerprint)
    ) WITHOUT ROWID;
    CREATE INDEX requests_updated ON requests (updated_at);
    """,
    2: """
    ALTER TABLE requests ADD COLUMN batch_key TEXT;
    ALTER TABLE requests ADD COLUMN custom_id TEXT;
    CREATE TABLE batches (
        endpoint    TEXT    NOT NULL,
        batch_key   TEXT    NOT NULL,
        batch_id    TEXT,
        label       TEXT,
        items       INTEGER NOT NULL,
        created_at  REAL    NOT NULL,
        updated_at  REAL    NOT NULL,
        PRIMARY KEY (endpoint, batch_key)
    ) WITHOUT ROWID;
    CREATE INDEX requests_batch ON requests (endpoint, batch_key);
    """,
    3: """
    DROP INDEX IF EXISTS requests_updated;
    """,
    4: """
    ALTER TABLE requests ADD COLUMN owner TEXT;
    CREATE TABLE owners (
        owner   TEXT    NOT NULL PRIMARY KEY,
        beat    REAL    NOT NULL
    ) WITHOUT ROWID;
    """,
    5: """
    ALTER TABLE requests ADD COLUMN reasoning_tokens INTEGER;
    """,
}


def check(db: sqlite3.Connection, path: Path) -> int:
    """The schema version of a file this valar_pandas may use; reads, writes nothing.

    Args:
        db: The connection.
        path: The file, for error messages.

    Returns:
        The file's schema version (0 for an empty file).

    Raises:
        ConfigError: The file was written by a newer valar_pandas, or by another program.
        sqlite3.Error: The file cannot be read (damaged, not a database, locked).
    """
    # One read transaction: the version and the tables from the same moment, even while
    # another process creates the schema (two workers opening a new store at once).
    began = not db.in_transaction
    if began:
        db.execute("BEGIN")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = {name for (name,) in db.execute(query)}
    finally:
        if began:
            db.execute("COMMIT")
    if version > SCHEMA_VERSION:
        said = (
            f"the run store {path} has schema version {version}, written by a newer "
            f"valar_pandas (this one reads up to {SCHEMA_VERSION}); upgrade valar_pandas "
        )
        raise ConfigError(f"{said}or pass another store=", command=f"{said}or give another --store")
    if (version == 0 and tables) or (0 < version <= SCHEMA_VERSION and "requests" not in tables):
        head = (
            f"{path} is not a valar_pandas run store: it is an SQLite database of another "
            "program, left as it is."
        )
        tail = f"if the file is not needed, `valar-pandas store clear --store {path}` removes it."
        raise ConfigError(
            f"{head} Pass another store= path; {tail}",
            command=f"{head} Give another --store path; {tail}",
        )
    return version


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring an open store up to :data:`SCHEMA_VERSION`.

    Args:
        db: The connection (autocommit mode).
        path: The file, for error messages.

    Raises:
        ConfigError: The file was written by a newer valar_pandas, or by another program.
        sqlite3.Error: The file cannot be read (damaged, not a database, locked).
    """
    version = check(db, path)
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
