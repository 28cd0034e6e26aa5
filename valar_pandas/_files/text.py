"""CSV and JSON Lines decoded as pandas reads them, with pyarrow's own options.

A CSV cell may hold quoted newlines; pandas' missing-value markers (``NA``, ``null``, an empty
cell, …) are missing in every column, text ones included; text that looks like a date stays
text; a column whose values stop fitting the type its first block suggested is widened
(integers to floats, else to text). A JSON Lines file's columns come from every line, not its
first block (a key that first appears late is a column, missing elsewhere). Each file is
parsed through once before anything is sent, which counts its rows and settles its types;
it is then streamed with those types.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]

from .._core.errors import ConfigError

__all__ = ["NA_MARKERS", "READ_BLOCK", "csv_types", "jsonl_types", "text_reader"]

READ_BLOCK = 1 << 22
"""Bytes per CSV / JSON Lines block (4 MiB)."""
NA_MARKERS = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"),
    *("1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)
"""Text a CSV cell holds for a missing value: pandas' default ``na_values``, exactly."""
_CSV_TYPE = re.compile(r"In CSV column #(\d+): CSV conversion error to [^:]+: invalid value")
_JSON_ROW = re.compile(r"^(.*?)\s*in row (\d+)$", re.DOTALL)
_NL = b"\n"


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


def text_reader(
    path: Path, kind: str, schema: pa.Schema, encoding: str, block: int, columns: list[str]
) -> pa.RecordBatchReader | _Projected:
    """Stream a checked CSV or JSON Lines input, with the types its check settled.

    Args:
        path: The file.
        kind: ``"csv"`` or ``"jsonl"``.
        schema: The types its check settled (:func:`csv_types`, :func:`jsonl_types`).
        encoding: Its text encoding.
        block: Bytes per JSON Lines block: enough for its longest line.
        columns: The columns to read.

    Returns:
        A reader of record batches of ``columns``; close it when done.
    """
    utf8 = encoding == "utf-8"
    if kind == "csv":
        options = _csv_options({f.name: f.type for f in schema})
        options["convert_options"].include_columns = columns
        read = pa_csv.ReadOptions(block_size=READ_BLOCK, encoding="utf8" if utf8 else encoding)
        return pa_csv.open_csv(path, read_options=read, **options)
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    reader = pa_json.open_json(
        _source(path, encoding),
        read_options=pa_json.ReadOptions(block_size=block),
        parse_options=parse,
    )
    return _Projected(reader, columns)


def csv_types(path: Path, encoding: str) -> tuple[pa.Schema, int]:
    """Parse a CSV through once: count its rows and settle its column types.

    Types are inferred from the first block, as pyarrow does, then corrected as pandas
    reads the file: dates and times stay text (pandas parses none unless told), and a
    column whose value later in the file does not fit its type is widened (no values yet
    to integers, integers to floats, anything else to text), the pass starting again.

    Returns:
        Its schema and how many rows it holds.
    """
    types: dict[str, pa.DataType] = {}
    read = pa_csv.ReadOptions(
        block_size=READ_BLOCK, encoding="utf8" if encoding == "utf-8" else encoding
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
        return schema, rows


def _wider(kind: pa.DataType) -> pa.DataType:
    """The next type to try for a CSV column a later value does not fit."""
    if pa.types.is_null(kind):
        return pa.int64()
    if pa.types.is_integer(kind):
        return pa.float64()
    return pa.string()


def jsonl_types(path: Path, encoding: str) -> tuple[pa.Schema, int, int]:
    """Parse JSON Lines through once, a block at a time: count rows, and type from every line.

    The columns and their types come from every line, not only the first block's.
    Each block of whole lines is parsed on its own and the schemas are unified (an integer
    column widened to float where a later line holds a fraction); dates stay text, as
    everywhere else. A line that does not parse, or a field whose values change kind (a
    number, then text), is named by its line.

    Returns:
        Its schema, how many rows it holds, and the bytes per block that hold its longest
        line.
    """
    options = pa_json.ReadOptions(block_size=READ_BLOCK)
    schema: pa.Schema | None = None
    rows = 0
    line = 1  # the first line of the block being parsed
    longest = 0
    carry = b""
    with _source(path, encoding) as stream:
        while True:
            block = stream.read(READ_BLOCK)
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
    return schema, rows, max(READ_BLOCK, longest + 1)


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
