"""Tables on disk: reading an input in bounded windows, writing an output atomically.

An input is a parquet file, a directory of parquet files, a CSV file or a JSON Lines file,
chosen by extension. :func:`open_input` checks it before anything is sent: the file opens,
the columns asked for exist, and every CSV or JSON Lines record parses (a first streaming
pass, which also counts the rows). :func:`windows` then reads it in record batches and cuts
them into tables of a fixed number of rows, so memory holds one window at a time however
large the file is.

An output is either one parquet file (``*.parquet``, ``*.pq``), written as row groups to a
temporary file beside it and renamed over the target only when complete, or a directory of
parts (``part-00000.parquet`` …), each written to a temporary name and renamed, plus a
``_manifest.json`` written last. A directory without the manifest is incomplete; a crash
never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ._errors import ConfigError

__all__ = [
    "MANIFEST",
    "Input",
    "Output",
    "open_input",
    "open_output",
    "windows",
]

MANIFEST = "_manifest.json"
"""Written last into a directory output: its parts, their rows and the total."""

_PARQUET = (".parquet", ".pq")
_CSV = (".csv",)
_JSONL = (".jsonl", ".ndjson", ".json")
_READ_BLOCK = 1 << 22  # bytes per CSV / JSON Lines block (4 MiB)


@dataclass(frozen=True)
class Input:
    """An input checked and ready to stream.

    Attributes:
        path: Where it is.
        kind: ``"parquet"``, ``"parquet-dir"``, ``"csv"`` or ``"jsonl"``.
        schema: Its columns and types.
        rows: How many rows it holds.
        files: The parquet files of a directory input, in the order they are read.
    """

    path: Path
    kind: str
    schema: pa.Schema
    rows: int
    files: tuple[Path, ...] = ()

    def batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """Read ``columns`` in record batches, in file order.

        Args:
            columns: The columns to read (names of :attr:`schema`).

        Yields:
            Record batches of those columns.

        Raises:
            ConfigError: The file could not be read after all.
        """
        names = list(columns)
        try:
            if self.kind in ("parquet", "parquet-dir"):
                for path in self.files or (self.path,):
                    with pq.ParquetFile(path) as reader:
                        yield from reader.iter_batches(batch_size=8192, columns=names)
            else:
                with _text_reader(self.path, self.kind, names) as reader:
                    yield from reader
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc


def _text_reader(
    path: Path, kind: str, columns: list[str] | None
) -> pa.RecordBatchReader | _Projected:
    if kind == "csv":
        convert = pa_csv.ConvertOptions(include_columns=columns) if columns is not None else None
        return pa_csv.open_csv(
            path, read_options=pa_csv.ReadOptions(block_size=_READ_BLOCK), convert_options=convert
        )
    reader = pa_json.open_json(path, read_options=pa_json.ReadOptions(block_size=_READ_BLOCK))
    if columns is None:
        return reader
    return _Projected(reader, columns)


class _Projected:
    """A record-batch reader narrowed to some columns (``open_json`` reads every field)."""

    def __init__(self, reader: pa.RecordBatchReader, columns: list[str]) -> None:
        self._reader, self._columns = reader, columns

    def __enter__(self) -> _Projected:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()

    @property
    def schema(self) -> pa.Schema:
        """The schema of the batches it yields."""
        return pa.schema([self._reader.schema.field(c) for c in self._columns])

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._reader:
            yield batch.select(self._columns)


def open_input(path: Path) -> Input:
    """Open and check an input file or directory; no request depends on it yet.

    Args:
        path: A ``.parquet``/``.pq`` file, a directory of them, a ``.csv`` file, or a
            ``.jsonl``/``.ndjson``/``.json`` (JSON Lines) file.

    Returns:
        The checked input, with its schema and row count.

    Raises:
        ConfigError: It does not exist, its kind is unknown, or it cannot be read.
    """
    if not path.exists():
        raise ConfigError(f"input {path} does not exist")
    try:
        if path.is_dir():
            return _parquet_dir(path)
        suffix = path.suffix.lower()
        if suffix in _PARQUET:
            with pq.ParquetFile(path) as reader:
                return Input(path, "parquet", reader.schema_arrow, reader.metadata.num_rows)
        if suffix in _CSV or suffix in _JSONL:
            kind = "csv" if suffix in _CSV else "jsonl"
            rows = 0
            with _text_reader(path, kind, None) as reader:
                schema = reader.schema
                for batch in reader:  # every record parses before anything is sent
                    rows += batch.num_rows
            return Input(path, kind, schema, rows)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    raise ConfigError(
        f"input {path}: unknown kind {path.suffix or '(no extension)'!r}; use a .parquet "
        "file, a directory of .parquet files, a .csv file or a .jsonl file"
    )


def _parquet_dir(path: Path) -> Input:
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in _PARQUET
        and p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise ConfigError(f"input directory {path} holds no .parquet files")
    schema: pa.Schema | None = None
    rows = 0
    for file in files:
        with pq.ParquetFile(file) as reader:
            if schema is None:
                schema = reader.schema_arrow
            elif not reader.schema_arrow.equals(schema, check_metadata=False):
                raise ConfigError(
                    f"input directory {path}: {file.name} has other columns or types than "
                    f"{files[0].name}; every part must share one schema"
                )
            rows += reader.metadata.num_rows
    assert schema is not None
    return Input(path, "parquet-dir", schema, rows, tuple(files))


def windows(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, rows: int, limit: int | None = None
) -> Iterator[pa.Table]:
    """Cut record batches into tables of exactly ``rows`` rows (the last may be shorter).

    Windows do not depend on how the reader happened to chunk the file, so the same input
    is always cut the same way.

    Args:
        batches: Record batches of ``schema``.
        schema: Their schema: an input without rows gives one empty window of it.
        rows: Rows per window.
        limit: Stop after this many rows in all; None reads everything.

    Yields:
        One table per window; at least one.
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    left = limit
    yielded = False
    for batch in batches:
        if left is not None:
            batch = batch.slice(0, left)
            left -= batch.num_rows
        if batch.num_rows:
            pending.append(batch)
            held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows).combine_chunks()
            yielded = True
            rest = table.slice(rows)
            pending = rest.to_batches()
            held = rest.num_rows
        if left == 0:
            break
    if held:
        yield pa.Table.from_batches(pending).combine_chunks()
    elif not yielded:
        yield schema.empty_table()


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
    """Check that the output can be written, before anything is sent.

    ``*.parquet``/``*.pq`` gives one file; any other name a directory of parts.

    Args:
        path: The output file or directory.
        source: The input, which must not be overwritten.

    Returns:
        The output, ready for :meth:`Output.write`.

    Raises:
        ConfigError: The output is the input, or cannot be created or written.
    """
    if path.resolve() == source.resolve():
        raise ConfigError(f"output {path} is the input; choose another output path")
    try:
        if path.suffix.lower() in _PARQUET:
            if path.is_dir():
                raise ConfigError(f"output {path} is a directory; name a file or drop the suffix")
            return _FileOutput(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"output {path} is a file; a directory output needs a directory "
                "(or name a .parquet file)"
            )
        return _PartsOutput(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the output {path}: {exc}") from exc


class _FileOutput:
    """One parquet file: row groups go to a hidden temporary file, renamed at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write the output {path}: {path.parent} is not a directory")
        _sweep(path.parent, f".{path.name}.")
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._tmp.touch()  # fails now, not after the run, when the folder is not writable
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table.cast(self._schema), row_group_size=table.num_rows or 1)

    def commit(self) -> None:
        if self._writer is None:
            raise ConfigError("nothing was written: the input holds no rows to write")
        self._writer.close()
        _fsync(self._tmp)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class _PartsOutput:
    """A directory of parts, each renamed into place whole, and a manifest written last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        # The directory no longer holds a complete result from here on: drop the marker
        # first, then any parts of an earlier run (only our own names are touched).
        with contextlib.suppress(FileNotFoundError):
            (path / MANIFEST).unlink()
        for old in path.glob("part-*.parquet"):
            old.unlink()
        _sweep(path, ".")
        probe = path / f".probe.{os.getpid()}.tmp"
        probe.touch()
        probe.unlink()
        self._parts: list[dict[str, object]] = []
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self._schema is None:
            self._schema = table.schema
        name = f"part-{len(self._parts):05d}.parquet"
        tmp = self.path / f".{name}.{os.getpid()}.tmp"
        pq.write_table(table.cast(self._schema), tmp)
        _fsync(tmp)
        os.replace(tmp, self.path / name)
        self._parts.append({"file": name, "rows": table.num_rows})

    def commit(self) -> None:
        manifest = {
            "complete": True,
            "rows": sum(int(str(p["rows"])) for p in self._parts),
            "parts": self._parts,
        }
        tmp = self.path / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _fsync(tmp)
        os.replace(tmp, self.path / MANIFEST)

    def abort(self) -> None:
        return None


def _sweep(folder: Path, prefix: str) -> None:
    """Delete temporary files ``<prefix>*.<pid>.tmp`` left by runs that were killed."""
    for stale in folder.glob(f"{prefix}*.tmp"):
        pid = stale.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                stale.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
