"""Outputs: one parquet file renamed when complete, or a directory of parts and a manifest.

An output is either one parquet file (``*.parquet``, ``*.pq``), written as row groups to a
temporary file beside it and renamed over the target only when complete, or a directory of
parts (``part-00000.parquet`` …), each written to a temporary name and renamed, plus a
``_manifest.json`` written last. A directory without the manifest is incomplete; a crash
never leaves a truncated file under the final name. A directory output is taken only when it
is empty or holds our own record, and only the parts that record lists are replaced. An
output inside a directory input is refused: it would be read as input by the next run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from .._core.errors import ConfigError
from .atomic import TEMP, WRITER, create_temp, discard, output_mode, settle, sweep
from .inputs import PARQUET
from .manifest import MANIFEST, PARTIAL, contents, missing_folders, own_parts, write_json

__all__ = ["Output", "open_output"]

_SHOWN = 10  # foreign files named in an error


class Output(Protocol):
    """Where a run's result goes: windows in input order, then a commit."""

    path: Path

    def write(self, table: pa.Table) -> None:
        """Append one window's result."""

    def commit(self) -> None:
        """Make the complete result visible under its final name."""

    def abort(self) -> None:
        """Stop without committing (written parts of a directory stay, unlisted)."""


def open_output(path: Path, source: Path) -> Output:
    """Check that the output can be written, before anything is sent; nothing is changed yet.

    ``*.parquet``/``*.pq`` gives one file (an existing file of that name is replaced when
    the run completes); any other name a directory of parts, taken only when it is missing,
    empty, or holds this project's own record of its parts.

    Args:
        path: The output file or directory.
        source: The input, which must not be overwritten nor contain the output.

    Returns:
        The output, ready for :meth:`Output.write`.

    Raises:
        ConfigError: The output is the input, inside a directory input or a directory
            holding the input, holds files this project did not write, or cannot be created
            or written.
    """
    target, origin = path.resolve(), source.resolve()
    if target == origin:
        raise ConfigError(f"output {path} is the input; choose another output path")
    if origin.is_dir() and target.is_relative_to(origin):
        raise ConfigError(
            f"output {path} is inside the input directory {source}: every later run would read "
            f"it as input. Choose an output outside {source}"
        )
    if path.suffix.lower() not in PARQUET and origin.is_relative_to(target):
        raise ConfigError(
            f"the input {source} is inside the output directory {path}, whose parts a run "
            "replaces; choose another output"
        )
    mode = output_mode(source)
    try:
        if path.suffix.lower() in PARQUET:
            if path.is_dir():
                raise ConfigError(f"output {path} is a directory; name a file or drop the suffix")
            return _FileOutput(path, mode)
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"output {path} is a file; a directory output needs a directory "
                "(or name a .parquet file)"
            )
        return _PartsOutput(path, mode)
    except OSError as exc:
        raise ConfigError(f"cannot write the output {path}: {exc}") from exc


class _FileOutput:
    """One parquet file: row groups go to a hidden temporary file, renamed at the end."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self._mode = mode
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write the output {path}: {path.parent} is not a directory")
        sweep(path.parent, path.name)
        # Made now, so a folder that is not writable fails before the run, not after it.
        self._file, self._tmp = create_temp(path)
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._file, table.schema)
        self._writer.write_table(table.cast(self._schema), row_group_size=table.num_rows or 1)

    def commit(self) -> None:
        if self._writer is None:
            raise ConfigError("nothing was written: the input holds no rows to write")
        self._writer.close()
        settle(self._file, self._tmp, self.path, self._mode)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        discard(self._file, self._tmp)


class _PartsOutput:
    """A directory of parts, each renamed into place whole, and a manifest written last.

    Which parts are ours is recorded in the directory itself: ``_manifest.json`` lists a
    complete result's parts; ``_manifest.partial.json``, written before the first change and
    extended before each part is renamed into place, lists every part a run may have left.
    Nothing else in the directory is ever touched.
    """

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self._mode = mode
        self._made = missing_folders(path)
        # The folder is searchable by whoever may read its files, and by no one else.
        path.mkdir(mode=0o700 | mode | (mode & 0o444) >> 2, parents=True, exist_ok=True)
        own = own_parts(path)
        if own is None:
            foreign = sorted(p.name for p in path.iterdir() if not TEMP.fullmatch(p.name))
            if foreign:
                shown = ", ".join(foreign[:_SHOWN]) + (" …" if len(foreign) > _SHOWN else "")
                raise ConfigError(
                    f"output directory {path} holds files not written by {WRITER} "
                    f"({len(foreign)}: {shown}); nothing was changed. Choose a new or empty "
                    "directory, or a .parquet file name"
                )
        self._old = own or set()
        discard(*create_temp(path / "probe"))  # fails now, not after the run, if not writable
        self._recorded: set[str] | None = None  # None until the first change
        self._parts: list[dict[str, object]] = []
        self._schema: pa.Schema | None = None

    def _begin(self) -> None:
        # Record every part of ours first, so a run killed from here on leaves a directory
        # the next run still knows as ours; then drop the old result, marker first.
        self._recorded = set(self._old)
        write_json(
            self.path / PARTIAL, contents(sorted(self._recorded), complete=False), self._mode
        )
        with contextlib.suppress(FileNotFoundError):
            (self.path / MANIFEST).unlink()
        for name in sorted(self._old):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        sweep(self.path, None)

    def write(self, table: pa.Table) -> None:
        if self._recorded is None:
            self._begin()
        assert self._recorded is not None
        if self._schema is None:
            self._schema = table.schema
        name = f"part-{len(self._parts):05d}.parquet"
        if name not in self._recorded:
            self._recorded.add(name)
            write_json(
                self.path / PARTIAL, contents(sorted(self._recorded), complete=False), self._mode
            )
        file, tmp = create_temp(self.path / name)
        try:
            pq.write_table(table.cast(self._schema), file)
            settle(file, tmp, self.path / name, self._mode)
        except BaseException:
            discard(file, tmp)
            raise
        self._parts.append({"file": name, "rows": table.num_rows})

    def commit(self) -> None:
        if self._recorded is None:
            self._begin()
        manifest = contents(self._parts, complete=True)
        manifest["rows"] = sum(int(str(p["rows"])) for p in self._parts)
        write_json(self.path / MANIFEST, manifest, self._mode)
        with contextlib.suppress(FileNotFoundError):
            (self.path / PARTIAL).unlink()

    def abort(self) -> None:
        if self._recorded is None:  # nothing changed: remove only folders made for it
            for folder in self._made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
