"""Inputs: a parquet file, a directory of parquet files, a CSV or a JSON Lines file.

The kind is chosen by extension. :func:`open_input` checks an input before anything is sent:
the file opens, a text file is text in its encoding, and every record parses (a streaming
pass, which also counts the rows and settles the column types). :func:`windows` then cuts its
record batches into tables of a fixed number of rows, so memory holds one window at a time
however large the file is. A parquet directory's parts may differ as pandas' files do: a
column some parts lack is missing there, types are widened to fit every part, and an index
pandas stored as ``__index_level_N__`` in only some parts is not a column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.dataset as pa_ds  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from .._core.errors import ConfigError
from .encoding import check_decodes, check_encoding
from .text import READ_BLOCK, csv_types, jsonl_types, text_reader

__all__ = ["PARQUET", "Input", "open_input", "windows"]

PARQUET = (".parquet", ".pq")
"""The suffixes of a parquet file."""
_CSV = (".csv",)
_JSONL = (".jsonl", ".ndjson", ".json")
_INDEX = re.compile(r"__index_level_\d+__")


@dataclass(frozen=True)
class Input:
    """An input checked and ready to stream.

    Attributes:
        path: Where it is.
        kind: ``"parquet"``, ``"parquet-dir"``, ``"csv"`` or ``"jsonl"``.
        schema: Its columns and types.
        rows: How many rows it holds.
        files: The parquet files of a directory input, in the order they are read.
        encoding: The text encoding of a CSV or JSON Lines input.
        block: Bytes per block when a JSON Lines input is streamed: enough for its longest
            line.
    """

    path: Path
    kind: str
    schema: pa.Schema
    rows: int
    files: tuple[Path, ...] = ()
    encoding: str = "utf-8"
    block: int = READ_BLOCK

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
            if self.kind == "parquet":
                with pq.ParquetFile(self.path) as reader:
                    yield from reader.iter_batches(batch_size=8192, columns=names)
            elif self.kind == "parquet-dir":
                # One schema for every part: a column a part lacks reads as missing there,
                # and a part's values are cast to the type that fits every part.
                dataset = pa_ds.dataset(list(self.files), schema=self.schema, format="parquet")
                yield from dataset.to_batches(columns=names, batch_size=8192, use_threads=False)
            else:
                read = text_reader(
                    self.path, self.kind, self.schema, self.encoding, self.block, names
                )
                with read as reader:
                    yield from reader
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc

    def check_text(self, columns: Sequence[str]) -> None:
        """Check that every value of the binary ones among ``columns`` is UTF-8 text.

        A parquet file may hold text as a binary column; it is sent decoded, so a value
        that is not UTF-8 is refused here, before any request, rather than window by window.

        Args:
            columns: The columns the template reads.

        Raises:
            ConfigError: A value is not UTF-8; the error names the column and the row.
        """
        binary = [c for c in columns if _is_binary(self.schema.field(c).type)]
        if not binary:
            return
        first = 0
        for batch in self.batches(binary):
            for name in binary:
                column = batch.column(name)
                try:
                    column.cast(pa.large_string())
                except pa.ArrowInvalid:
                    _name_bad_value(self.path, name, column, first)
            first += batch.num_rows


def _is_binary(kind: pa.DataType) -> bool:
    types = pa.types
    return bool(types.is_binary(kind) or types.is_large_binary(kind) or types.is_binary_view(kind))


def _name_bad_value(path: Path, name: str, column: pa.Array, first: int) -> None:
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            continue
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: column {name!r}, row {first + i}: bytes that are not UTF-8 text "
                f"(byte {exc.start}: {value[exc.start : exc.end]!r}); write the column as "
                "text, decoded from its encoding"
            ) from None


def open_input(path: Path, encoding: str | None = None) -> Input:
    """Open and check an input file or directory; no request depends on it yet.

    Args:
        path: A ``.parquet``/``.pq`` file, a directory of them, a ``.csv`` file, or a
            ``.jsonl``/``.ndjson``/``.json`` (JSON Lines) file.
        encoding: The text encoding of a CSV or JSON Lines file (any codec name Python
            knows); None is UTF-8. Decoding is strict: a byte that is not text in it is an
            error. Not for parquet, whose text is always UTF-8.

    Returns:
        The checked input, with its schema and row count.

    Raises:
        ConfigError: It does not exist, its kind is unknown, it is not text in its encoding
            (the error names the line and the byte offset), or it cannot be read.
    """
    codec = check_encoding("utf-8" if encoding is None else encoding)
    if not path.exists():
        raise ConfigError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    text = path.is_file() and (suffix in _CSV or suffix in _JSONL)
    if encoding is not None and not text:
        raise ConfigError(
            f"--encoding applies to CSV and JSON Lines inputs; {path} is parquet, whose text "
            "is always UTF-8"
        )
    try:
        if path.is_dir():
            return _parquet_dir(path)
        if suffix in PARQUET:
            with pq.ParquetFile(path) as reader:
                return Input(path, "parquet", reader.schema_arrow, reader.metadata.num_rows)
        if text:
            check_decodes(path, codec)  # every byte is text before any record is parsed
            if suffix in _CSV:  # every record parses before anything is sent
                schema, rows = csv_types(path, codec)
                return Input(path, "csv", schema, rows, encoding=codec)
            schema, rows, block = jsonl_types(path, codec)
            return Input(path, "jsonl", schema, rows, encoding=codec, block=block)
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
        if p.suffix.lower() in PARQUET
        and p.is_file()
        and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise ConfigError(f"input directory {path} holds no .parquet files")
    schemas: list[pa.Schema] = []
    rows = 0
    for file in files:
        with pq.ParquetFile(file) as reader:
            schemas.append(reader.schema_arrow)
            rows += reader.metadata.num_rows
    # pandas stores a frame's index as __index_level_N__ only when it is not a plain range,
    # so parts of one frame may differ in it; pandas reads it as the index, not a column.
    partial = {
        f.name
        for s in schemas
        for f in s
        if _INDEX.fullmatch(f.name) and not all(f.name in other.names for other in schemas)
    }
    schema = schemas[0]
    for file, part in zip(files[1:], schemas[1:], strict=True):
        try:
            schema = pa.unify_schemas([schema, part], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ConfigError(
                f"input directory {path}: {file.relative_to(path)} cannot be read with the "
                f"parts before it ({exc}); a column must hold one kind of value in every part"
            ) from None
    if partial:
        schema = pa.schema([f for f in schema if f.name not in partial])  # and pandas' metadata
    for file, part in zip(files, schemas, strict=True):
        _check_cast(path, file, part, schema)
    return Input(path, "parquet-dir", schema, rows, tuple(files))


def _check_cast(root: Path, file: Path, part: pa.Schema, schema: pa.Schema) -> None:
    """Cast every value of a part's columns whose type ``schema`` widens, before any request.

    A widening that can refuse a value (a ``uint64`` above 2**63 read as ``int64``) fails
    here, naming the part and the column, rather than after the windows before it were paid.
    """
    changed = [
        f.name
        for f in part
        if f.name in schema.names and not f.type.equals(schema.field(f.name).type)
    ]
    if not changed:
        return
    with pq.ParquetFile(file) as reader:
        for batch in reader.iter_batches(batch_size=65536, columns=changed):
            for name in changed:
                try:
                    batch.column(name).cast(schema.field(name).type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ConfigError(
                        f"input directory {root}: column {name!r} of "
                        f"{file.relative_to(root)} cannot be read as "
                        f"{schema.field(name).type}, its type in the other parts ({exc})"
                    ) from None


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
