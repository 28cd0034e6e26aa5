"""A frame's rows → each row's prompt (or why it is skipped). Reads pandas; sends nothing.

String templates read only the columns they name. Missing values (None, NaN, NA, NaT) in
those columns render as an empty string by default (``on_missing="empty"``) or skip the row
(``on_missing="skip"``, the reason names the column). ``bytes`` values are text to a string
template: decoded as UTF-8, or refused with the column and the row, never sent as a Python
repr. A callable template gets every column of the row, as stored, as a
:class:`~valar_pandas._core.prompt.Row` and may return None to skip it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from .._core.errors import ConfigError
from .._core.plan import Skip
from .._core.prompt import MISSING, CompiledTemplate, Row, check_messages

__all__ = ["render_rows"]


def render_rows(
    df: pd.DataFrame, template: CompiledTemplate, on_missing: str
) -> list[str | list[dict[str, Any]] | Skip]:
    """Render every row of ``df``, in order.

    Args:
        df: The frame.
        template: A compiled template.
        on_missing: ``"empty"`` or ``"skip"``, for missing values in named columns.

    Returns:
        One prompt, message list or :class:`Skip` per row.

    Raises:
        ConfigError: A callable template raised, or returned something that is not a
            prompt, or a named column holds bytes that are not UTF-8; the error names the row.
    """
    if template.func is not None:
        return list(_render_callable(df, template))
    names = template.columns
    if df.columns.has_duplicates:
        dupes = [c for c in names if (df.columns == c).sum() > 1]
        if dupes:
            raise ConfigError(f"the frame has more than one column named {dupes[0]!r}")
    values = {c: _text(df, c) for c in names}
    missing = {c: df[c].isna().tolist() for c in names}
    out: list[str | list[dict[str, Any]] | Skip] = []
    for i in range(len(df)):
        gaps = [c for c in names if missing[c][i]]
        if gaps and on_missing == "skip":
            shown = ", ".join(repr(c) for c in gaps)
            out.append(Skip(f"missing value in {shown}"))
            continue
        row = {c: (MISSING if missing[c][i] else values[c][i]) for c in names}
        try:
            out.append(template.render(row))
        except ConfigError as exc:
            raise ConfigError(f"row {i} (index {_label(df, i)}): {exc}") from None
    return out


def _text(df: pd.DataFrame, column: Hashable) -> list[Any]:
    """A column's values, with ``bytes`` decoded as UTF-8 (strictly)."""
    series = df[column]
    values = series.tolist()
    if series.dtype.kind != "O":  # numbers, booleans, dates: never bytes
        return values
    for i, value in enumerate(values):
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            try:
                values[i] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"column {column!r}, row {i} (index {_label(df, i)}): bytes that are not "
                    f"UTF-8 text (byte {exc.start}: {raw[exc.start : exc.end]!r}); decode the "
                    f"column from its encoding first, e.g. df[{column!r}].str.decode('cp1252')"
                ) from None
    return values


def _label(df: pd.DataFrame, i: int) -> str:
    """The index label of row ``i`` as the user wrote it (``20``, not ``np.int64(20)``)."""
    label = df.index[i]
    return repr(label.item() if isinstance(label, np.generic) else label)


def _render_callable(
    df: pd.DataFrame, template: CompiledTemplate
) -> Iterator[str | list[dict[str, Any]] | Skip]:
    func = template.func
    assert func is not None
    labels = df.index
    for i, record in enumerate(df.to_dict("records")):
        where = f"row {i} (index {labels[i]!r})"
        try:
            value = func(Row(record))
        except Exception as exc:
            raise ConfigError(f"template callable raised on {where}: {exc!r}") from exc
        if value is None:
            yield Skip("the template callable returned None")
        elif isinstance(value, str):
            yield value
        else:
            yield check_messages(value, where)
