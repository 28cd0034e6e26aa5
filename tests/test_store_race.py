"""Two processes opening a new run store at the same moment both get a store."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from valar_pandas._store.connection import _create_private
from valar_pandas._store.schema import check, migrate


class _Interleaved:
    """A connection on which another process creates the schema just before the tables are read."""

    def __init__(self, db: sqlite3.Connection, other: sqlite3.Connection, path: Path) -> None:
        self.db, self.other, self.path = db, other, path

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if "sqlite_master" in sql:
            # The other process, at the worst moment; held off by this read, it creates the
            # schema once this one is done.
            with contextlib.suppress(sqlite3.OperationalError):
                migrate(self.other, self.path)
        return self.db.execute(sql, *args)


def test_a_store_being_created_by_another_process_is_not_taken_for_a_foreign_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    _create_private(path)
    mine = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        assert check(_Interleaved(mine, other, path), path) == 0  # type: ignore[arg-type]
        migrate(mine, path)
        migrate(other, path)
        assert check(mine, path) == check(other, path) > 0
    finally:
        mine.close()
        other.close()
