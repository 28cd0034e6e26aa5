"""Files written whole and private: temporary files beside the target, renamed when complete.

Temporary files are made by :func:`tempfile.mkstemp` (an unpredictable name, ``O_EXCL``) and
written through that descriptor, so a file or link planted in the folder is never followed.
They carry ``valar-pandas`` and a process id in their name, and only those of dead processes
are swept. Every file written is no more readable than the input, nor than the umask allows.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["TEMP", "WRITER", "create_temp", "discard", "output_mode", "settle", "sweep"]

WRITER = "valar-pandas"
"""Names this project in its manifests and temporary files."""
TEMP = re.compile(rf"\..+\.{WRITER}-(\d+)(?:\.[A-Za-z0-9_]+)?\.tmp")
"""The name of a temporary file of ours, with the process id that made it."""


def output_mode(source: Path) -> int:
    """The permission bits of every file an output writes: the input's, within the umask.

    An output is never more readable than its input (a 0600 input gives 0600 files), nor
    than the umask allows; never executable.
    """
    try:
        bits = stat.S_IMODE(os.stat(source).st_mode) & 0o666
    except OSError:  # no input to compare (a check, or an input gone): the umask alone
        bits = 0o666
    return bits & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def create_temp(path: Path) -> tuple[IO[bytes], Path]:
    """A new temporary file for ``path``: hidden, beside it, ours by its name, open.

    Made by :func:`tempfile.mkstemp` (``O_CREAT | O_EXCL``, an unpredictable name, mode
    0600), so a file or symbolic link planted in the folder is never opened, followed or
    overwritten; every byte is then written through the descriptor it returned, never by
    opening the name again.

    Returns:
        The open file (binary, for writing) and its path.
    """
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.{WRITER}-{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    return os.fdopen(fd, "wb"), Path(name)


def settle(file: IO[bytes], tmp: Path, path: Path, mode: int) -> None:
    """Give a written temporary file its mode, flush it to disk and rename it over ``path``."""
    file.flush()
    os.fchmod(file.fileno(), mode)
    os.fsync(file.fileno())
    file.close()
    os.replace(tmp, path)


def discard(file: IO[bytes], tmp: Path) -> None:
    """Close and remove a temporary file that will not be used."""
    with contextlib.suppress(OSError):
        file.close()
    with contextlib.suppress(OSError):
        tmp.unlink()


def sweep(folder: Path, name: str | None) -> None:
    """Delete our temporary files (of ``name``, or any) left by processes that are gone."""
    for stale in folder.iterdir():
        match = TEMP.fullmatch(stale.name)
        if match is None or (name is not None and not stale.name.startswith(f".{name}.")):
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                stale.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
