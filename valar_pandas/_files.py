"""Tables on disk: reading an input in bounded windows, writing an output atomically.

An input is a parquet file, a directory of parquet files, a CSV file or a JSON Lines file,
chosen by extension. :func:`open_input` checks it before anything is sent: the file opens,
a CSV or JSON Lines file is text in its encoding (strict UTF-8 unless told otherwise; the
first bad byte is named by line and offset), and every record parses (a streaming pass,
which also counts the rows and settles the column types). :func:`windows` then reads it in
record batches and cuts them into tables of a fixed number of rows, so memory holds one
window at a time however large the file is.

Files are read as pandas reads them, with pyarrow's own options wherever it has one: a CSV
cell may hold quoted newlines; pandas' missing-value markers (``NA``, ``null``, an empty
cell, …) are missing in every column, text ones included; text that looks like a date stays
text; a column whose values stop fitting the type its first block suggested is widened
(integers to floats, else to text). A JSON
Lines file's columns come from every line, not its first block (a key that first appears
late is a column, missing elsewhere). A parquet directory's parts may differ as pandas'
files do: a column some parts lack is missing there, types are widened to fit every part,
and an index pandas stored as ``__index_level_N__`` in only some parts is not a column.

An output is either one parquet file (``*.parquet``, ``*.pq``), written as row groups to a
temporary file beside it and renamed over the target only when complete, or a directory of
parts (``part-00000.parquet`` …), each written to a temporary name and renamed, plus a
``_manifest.json`` written last. A directory without the manifest is incomplete; a crash
never leaves a truncated file under the final name.

Nothing is touched that this module did not write. A directory output is taken only when it
is empty or holds our own record (``_manifest.json``, or ``_manifest.partial.json`` while a
run is writing), and only the parts that record lists are replaced; temporary files carry
``valar-pandas`` and a process id in their name, and only those of dead processes are swept.
Temporary files are made by :func:`tempfile.mkstemp` (an unpredictable name, ``O_EXCL``) and
written through that descriptor, so a file or link planted in the folder is never followed.
Every file written is no more readable than the input, nor than the umask allows.
An output inside a directory input is refused: it would be read as input by the next run.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.dataset as pa_ds  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ._errors import ConfigError

__all__ = [
    "MANIFEST",
    "NA_MARKERS",
    "PARTIAL",
    "Input",
    "Output",
    "check_encoding",
    "open_input",
    "open_output",
    "windows",
]

MANIFEST = "_manifest.json"
"""Written last into a directory output: its parts, their rows and the total."""
PARTIAL = "_manifest.partial.json"
"""Kept in a directory output while a run writes it: every part name it may have written."""
WRITER = "valar-pandas"
"""Names this project in its manifests and temporary files."""

_PARQUET = (".parquet", ".pq")
_CSV = (".csv",)
_JSONL = (".jsonl", ".ndjson", ".json")
_READ_BLOCK = 1 << 22  # bytes per CSV / JSON Lines block (4 MiB)
_CHECK_BLOCK = 1 << 20  # bytes decoded at a time by the encoding check (1 MiB)
_PART = re.compile(r"part-\d{5}\.parquet")
_TEMP = re.compile(rf"\..+\.{WRITER}-(\d+)(?:\.[A-Za-z0-9_]+)?\.tmp")
_SHOWN = 10  # foreign files named in an error
NA_MARKERS = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"),
    *("1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)
"""Text a CSV cell holds for a missing value: pandas' default ``na_values``, exactly."""
_CSV_TYPE = re.compile(r"In CSV column #(\d+): CSV conversion error to [^:]+: invalid value")
_JSON_ROW = re.compile(r"^(.*?)\s*in row (\d+)$", re.DOTALL)
_NL = b"\n"
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
    block: int = _READ_BLOCK

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
                with _text_reader(self, names) as reader:
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


def check_encoding(encoding: str) -> str:
    """The canonical name of a text encoding Python knows.

    Args:
        encoding: Any codec name Python accepts, e.g. ``"cp1252"`` or ``"latin-1"``.

    Returns:
        Its canonical name, e.g. ``"cp1252"`` or ``"iso8859-1"``.

    Raises:
        ConfigError: Python knows no such codec, or it is not a text encoding.
    """
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(
            f"unknown encoding {encoding!r}; name one Python knows, e.g. utf-8, cp1252, "
            "latin-1, utf-16"
        ) from None
    if not getattr(info, "_is_text_encoding", True):
        raise ConfigError(f"{encoding!r} is not a text encoding; name one such as cp1252")
    return info.name


def _check_decodes(path: Path, encoding: str) -> None:
    """Decode the whole file strictly, a block at a time; name the first bad byte."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with path.open("rb") as file:
        while True:
            block = file.read(_CHECK_BLOCK)
            held = len(decoder.getstate()[0])  # bytes of a character the last block began
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise ConfigError(_not_text(path, encoding, offset - held, exc)) from None
            if not block:
                return
            offset += len(block)


def _not_text(path: Path, encoding: str, start: int, exc: UnicodeDecodeError) -> str:
    at = start + exc.start
    bad = exc.object[exc.start : exc.end]
    name = "UTF-8" if encoding == "utf-8" else encoding
    hint = (
        "if the file was saved in another encoding, name it with --encoding "
        "(e.g. --encoding cp1252 for a file saved by Excel on Windows)"
        if encoding == "utf-8"
        else "name the file's encoding with --encoding"
    )
    return (
        f"{path}: line {_line_of(path, encoding, at)}, byte {at}: {bytes(bad)!r} is not "
        f"{name} text ({exc.reason}); {hint}"
    )


def _line_of(path: Path, encoding: str, at: int) -> int:
    """The 1-based line holding byte ``at`` (only the bytes before it are decoded)."""
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    lines = 1
    with path.open("rb") as file:
        left = at
        while left > 0:
            block = file.read(min(_CHECK_BLOCK, left))
            if not block:
                break
            left -= len(block)
            lines += decoder.decode(block, final=left <= 0).count("\n")
    return lines


def _csv_options(types: dict[str, pa.DataType]) -> dict[str, Any]:
    """The CSV options that read a file as ``pd.read_csv`` does."""
    return {
        "parse_options": pa_csv.ParseOptions(newlines_in_values=True),
        "convert_options": pa_csv.ConvertOptions(
            column_types=types, null_values=list(NA_MARKERS), strings_can_be_null=True
        ),
    }


def _source(path: Path, encoding: str) -> Any:
    """The file as UTF-8 bytes: itself, or transcoded from its encoding as it is read."""
    if encoding == "utf-8":
        return pa.OSFile(str(path))
    return pa.transcoding_input_stream(pa.OSFile(str(path)), encoding, "utf-8")


def _text_reader(source: Input, columns: list[str]) -> pa.RecordBatchReader | _Projected:
    """Stream a checked CSV or JSON Lines input, with the types its check settled."""
    utf8 = source.encoding == "utf-8"
    if source.kind == "csv":
        options = _csv_options({f.name: f.type for f in source.schema})
        options["convert_options"].include_columns = columns
        read = pa_csv.ReadOptions(
            block_size=_READ_BLOCK, encoding="utf8" if utf8 else source.encoding
        )
        return pa_csv.open_csv(source.path, read_options=read, **options)
    parse = pa_json.ParseOptions(explicit_schema=source.schema, unexpected_field_behavior="error")
    reader = pa_json.open_json(
        _source(source.path, source.encoding),
        read_options=pa_json.ReadOptions(block_size=source.block),
        parse_options=parse,
    )
    return _Projected(reader, columns)


def _csv_input(path: Path, encoding: str) -> Input:
    """Parse a CSV through once: count its rows and settle its column types.

    Types are inferred from the first block, as pyarrow does, then corrected as pandas
    reads the file: dates and times stay text (pandas parses none unless told), and a
    column whose value later in the file does not fit its type is widened (no values yet
    to integers, integers to floats, anything else to text), the pass starting again.
    """
    types: dict[str, pa.DataType] = {}
    read = pa_csv.ReadOptions(
        block_size=_READ_BLOCK, encoding="utf8" if encoding == "utf-8" else encoding
    )
    while True:
        with pa_csv.open_csv(path, read_options=read, **_csv_options(types)) as reader:
            schema = reader.schema
            dates = {
                f.name: pa.string()
                for f in schema
                if pa.types.is_temporal(f.type) and f.name not in types
            }
            if dates:
                types |= dates
                continue
            rows = 0
            try:
                for batch in reader:
                    rows += batch.num_rows
            except pa.ArrowInvalid as exc:
                match = _CSV_TYPE.match(str(exc))
                if match is None:
                    raise
                field = schema.field(int(match.group(1)))
                if pa.types.is_string(field.type):
                    raise
                types[field.name] = _wider(field.type)
                continue
        return Input(path, "csv", schema, rows, encoding=encoding)


def _wider(kind: pa.DataType) -> pa.DataType:
    """The next type to try for a CSV column a later value does not fit."""
    if pa.types.is_null(kind):
        return pa.int64()
    if pa.types.is_integer(kind):
        return pa.float64()
    return pa.string()


def _jsonl_input(path: Path, encoding: str) -> Input:
    """Parse JSON Lines through once, a block at a time: count rows, and type from every line.

    The columns and their types come from every line, not only the first block's.
    Each block of whole lines is parsed on its own and the schemas are unified (an integer
    column widened to float where a later line holds a fraction); dates stay text, as
    everywhere else. A line that does not parse, or a field whose values change kind (a
    number, then text), is named by its line.
    """
    options = pa_json.ReadOptions(block_size=_READ_BLOCK)
    schema: pa.Schema | None = None
    rows = 0
    line = 1  # the first line of the block being parsed
    longest = 0
    carry = b""
    with _source(path, encoding) as stream:
        while True:
            block = stream.read(_READ_BLOCK)
            data = carry + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if block and cut == 0:
                carry = data  # a line longer than a block: read on
                continue
            chunk, carry = data[:cut], data[cut:]
            longest = max(longest, len(chunk))
            if chunk.strip():
                try:
                    table = pa_json.read_json(pa.BufferReader(chunk), read_options=options)
                except pa.ArrowInvalid as exc:
                    raise ConfigError(_json_error(path, chunk, line, str(exc))) from None
                part = _as_text(table.schema)
                try:
                    schema = (
                        part
                        if schema is None
                        else pa.unify_schemas([schema, part], promote_options="permissive")
                    )
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise ConfigError(
                        f"cannot read {path}: lines {line} to {line + chunk.count(_NL) - 1}: "
                        f"a field holds values of another kind than on earlier lines ({exc}); "
                        "give each field one kind of value (all numbers, or all text)"
                    ) from None
                rows += table.num_rows
            line += chunk.count(b"\n")
            if not block:
                break
    if schema is None:
        raise ConfigError(f"{path} holds no JSON Lines records")
    return Input(
        path, "jsonl", schema, rows, encoding=encoding, block=max(_READ_BLOCK, longest + 1)
    )


def _as_text(schema: pa.Schema) -> pa.Schema:
    """The schema with dates and times as text: text is sent as written."""
    return pa.schema(
        [f.with_type(pa.string()) if pa.types.is_temporal(f.type) else f for f in schema],
        metadata=schema.metadata,
    )


def _json_error(path: Path, chunk: bytes, line: int, message: str) -> str:
    """A JSON parse error, with its row in the block turned into a line of the file."""
    match = _JSON_ROW.match(message)
    if match is None:
        return f"cannot read {path}: {message}"
    row = int(match.group(2))
    for offset, text in enumerate(chunk.split(b"\n")):
        if text.strip():
            if row == 0:
                return f"cannot read {path}: line {line + offset}: {match.group(1)}"
            row -= 1
    return f"cannot read {path}: lines {line} to {line + chunk.count(_NL) - 1}: {match.group(1)}"


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
        if suffix in _PARQUET:
            with pq.ParquetFile(path) as reader:
                return Input(path, "parquet", reader.schema_arrow, reader.metadata.num_rows)
        if text:
            _check_decodes(path, codec)  # every byte is text before any record is parsed
            if suffix in _CSV:  # every record parses before anything is sent
                return _csv_input(path, codec)
            return _jsonl_input(path, codec)
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
    if path.suffix.lower() not in _PARQUET and origin.is_relative_to(target):
        raise ConfigError(
            f"the input {source} is inside the output directory {path}, whose parts a run "
            "replaces; choose another output"
        )
    mode = _output_mode(source)
    try:
        if path.suffix.lower() in _PARQUET:
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


def _output_mode(source: Path) -> int:
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


def _create_temp(path: Path) -> tuple[IO[bytes], Path]:
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


def _settle(file: IO[bytes], tmp: Path, path: Path, mode: int) -> None:
    """Give a written temporary file its mode, flush it to disk and rename it over ``path``."""
    file.flush()
    os.fchmod(file.fileno(), mode)
    os.fsync(file.fileno())
    file.close()
    os.replace(tmp, path)


def _discard(file: IO[bytes], tmp: Path) -> None:
    """Close and remove a temporary file that will not be used."""
    with contextlib.suppress(OSError):
        file.close()
    with contextlib.suppress(OSError):
        tmp.unlink()


class _FileOutput:
    """One parquet file: row groups go to a hidden temporary file, renamed at the end."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self._mode = mode
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write the output {path}: {path.parent} is not a directory")
        _sweep(path.parent, path.name)
        # Made now, so a folder that is not writable fails before the run, not after it.
        self._file, self._tmp = _create_temp(path)
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
        _settle(self._file, self._tmp, self.path, self._mode)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        _discard(self._file, self._tmp)


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
        self._made = _missing_folders(path)
        # The folder is searchable by whoever may read its files, and by no one else.
        path.mkdir(mode=0o700 | mode | (mode & 0o444) >> 2, parents=True, exist_ok=True)
        own = _own_parts(path)
        if own is None:
            foreign = sorted(p.name for p in path.iterdir() if not _TEMP.fullmatch(p.name))
            if foreign:
                shown = ", ".join(foreign[:_SHOWN]) + (" …" if len(foreign) > _SHOWN else "")
                raise ConfigError(
                    f"output directory {path} holds files not written by {WRITER} "
                    f"({len(foreign)}: {shown}); nothing was changed. Choose a new or empty "
                    "directory, or a .parquet file name"
                )
        self._old = own or set()
        _discard(*_create_temp(path / "probe"))  # fails now, not after the run, if not writable
        self._recorded: set[str] | None = None  # None until the first change
        self._parts: list[dict[str, object]] = []
        self._schema: pa.Schema | None = None

    def _begin(self) -> None:
        # Record every part of ours first, so a run killed from here on leaves a directory
        # the next run still knows as ours; then drop the old result, marker first.
        self._recorded = set(self._old)
        _write_json(
            self.path / PARTIAL, _record(sorted(self._recorded), complete=False), self._mode
        )
        with contextlib.suppress(FileNotFoundError):
            (self.path / MANIFEST).unlink()
        for name in sorted(self._old):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        _sweep(self.path, None)

    def write(self, table: pa.Table) -> None:
        if self._recorded is None:
            self._begin()
        assert self._recorded is not None
        if self._schema is None:
            self._schema = table.schema
        name = f"part-{len(self._parts):05d}.parquet"
        if name not in self._recorded:
            self._recorded.add(name)
            _write_json(
                self.path / PARTIAL, _record(sorted(self._recorded), complete=False), self._mode
            )
        file, tmp = _create_temp(self.path / name)
        try:
            pq.write_table(table.cast(self._schema), file)
            _settle(file, tmp, self.path / name, self._mode)
        except BaseException:
            _discard(file, tmp)
            raise
        self._parts.append({"file": name, "rows": table.num_rows})

    def commit(self) -> None:
        if self._recorded is None:
            self._begin()
        manifest = _record(self._parts, complete=True)
        manifest["rows"] = sum(int(str(p["rows"])) for p in self._parts)
        _write_json(self.path / MANIFEST, manifest, self._mode)
        with contextlib.suppress(FileNotFoundError):
            (self.path / PARTIAL).unlink()

    def abort(self) -> None:
        if self._recorded is None:  # nothing changed: remove only folders made for it
            for folder in self._made:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _missing_folders(path: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` would create for ``path``, deepest first."""
    made: list[Path] = []
    while not path.exists() and path != path.parent:
        made.append(path)
        path = path.parent
    return made


def _record(parts: list[Any], *, complete: bool) -> dict[str, Any]:
    return {"writer": WRITER, "complete": complete, "parts": parts}


def _own_parts(folder: Path) -> set[str] | None:
    """The part names our records in ``folder`` list; None when it holds no record of ours.

    A record file that is not ours (another tool's ``_manifest.json``) makes the whole
    folder not ours.
    """
    own: set[str] = set()
    found = False
    for name in (MANIFEST, PARTIAL):
        try:
            record = json.loads((folder / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        parts = _listed(record)
        if parts is None:
            return None
        own |= parts
        found = True
    return own if found else None


def _listed(record: Any) -> set[str] | None:
    """The parts a manifest of ours lists, or None when it is not one of ours."""
    if not isinstance(record, dict) or not isinstance(record.get("complete"), bool):
        return None
    parts = record.get("parts")
    if not isinstance(parts, list):
        return None
    names: set[str] = set()
    for part in parts:
        name = part.get("file") if isinstance(part, dict) else part
        if not isinstance(name, str) or not _PART.fullmatch(name):
            return None
        names.add(name)
    return names


def _write_json(path: Path, value: Any, mode: int) -> None:
    file, tmp = _create_temp(path)
    try:
        file.write((json.dumps(value, indent=1) + "\n").encode("utf-8"))
        _settle(file, tmp, path, mode)
    except BaseException:
        _discard(file, tmp)
        raise


def _sweep(folder: Path, name: str | None) -> None:
    """Delete our temporary files (of ``name``, or any) left by processes that are gone."""
    for stale in folder.iterdir():
        match = _TEMP.fullmatch(stale.name)
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
