"""Store faults in our own words: what a failed SQLite call means, and what to do about it.

SQLite's messages can quote stored text, so none is ever shown: a failure is named by its
result code (:func:`classify`) and described, with a remedy, by :class:`StoreFault`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StoreFault", "classify", "os_reason"]

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


def os_reason(exc: BaseException) -> str:
    """Why a file operation failed, in words that quote nothing the file holds."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return classify(exc).reason
