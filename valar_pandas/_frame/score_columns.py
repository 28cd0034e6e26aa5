"""ParsedReply scoring replies → typed pandas columns.

Owns :func:`to_columns` (one positional array per output column, in the dtype
:func:`~.dtypes.dtypes` names) and :func:`row_errors` (the one error per row, from
the request or from reading the reply). The arrays carry no index, so the caller attaches them
by position, as ``merge`` does, and every index shape survives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray
from pandas.arrays import NumpyExtensionArray

from .._scoring.dtypes import dtypes
from .._scoring.reply import ParsedReply
from .._scoring.spec import REASON, ScoreSpec, column_name

__all__ = ["row_errors", "to_columns", "value_columns"]


def value_columns(spec: ScoreSpec, into: str) -> list[tuple[str, str]]:
    """The value columns a scoring run writes, each with what it holds, in column order.

    Args:
        spec: The scoring spec.
        into: The column prefix.

    Returns:
        ``(column, what it holds)`` pairs, for :func:`valar_pandas._frame.merge.planned_columns`.
    """
    planned: list[tuple[str, str]] = []
    for suffix in dtypes(spec):
        if suffix == "":
            what = "the labels" if spec.kind == "labels" else "the scores"
        elif suffix == REASON and spec.reasons:
            what = "the reasons"
        else:
            what = f"schema property {suffix!r}"
        planned.append((column_name(into, suffix), what))
    return planned


def to_columns(
    spec: ScoreSpec, parsed: Sequence[ParsedReply | None], into: str
) -> dict[str, ExtensionArray]:
    """Build the typed value columns of a scoring run.

    Labels and scores go to ``<into>``, a schema property ``p`` to ``<into>_p``, reasons to
    ``<into>_reason``. A row that failed upstream (None) or whose reply could not be read
    (``error`` set) is missing in every column. Labels come back as a categorical whose
    categories are exactly the spec's labels, in order, so ``value_counts`` shows unused
    labels too.

    Args:
        spec: The spec the replies were parsed with.
        parsed: One entry per row, in row order.
        into: The column prefix.

    Returns:
        Column name → array of ``len(parsed)`` values, in column order. The error column is
        not among them: see :func:`row_errors`.
    """
    columns: dict[str, ExtensionArray] = {}
    for suffix, dtype in dtypes(spec).items():
        values = [
            p.values.get(suffix) if p is not None and p.error is None else None for p in parsed
        ]
        columns[column_name(into, suffix)] = _array(values, dtype, spec)
    return columns


def row_errors(
    upstream: Sequence[str | None], parsed: Sequence[ParsedReply | None]
) -> list[str | None]:
    """The error of each row: the request's own error first, else the reply's parse error.

    Args:
        upstream: Each row's error from the run (failed, incomplete, unsent …), or None.
        parsed: Each row's parsed reply (None where there was nothing to parse).

    Returns:
        One error or None per row.

    Raises:
        ValueError: The two sequences differ in length.
    """
    if len(upstream) != len(parsed):
        raise ValueError(f"{len(upstream)} errors for {len(parsed)} parsed rows")
    return [
        error if error is not None else (p.error if p is not None else None)
        for error, p in zip(upstream, parsed, strict=True)
    ]


def _array(values: list[Any], dtype: str, spec: ScoreSpec) -> ExtensionArray:
    if dtype == "category":
        return pd.Categorical(values, categories=list(spec.labels))
    try:
        if dtype == "Int64":
            return pd.array([None if v is None else _whole(v) for v in values], dtype="Int64")
        if dtype == "Float64":
            return pd.array([None if v is None else _real(v) for v in values], dtype="Float64")
        if dtype == "boolean":
            return pd.array([None if v is None else _flag(v) for v in values], dtype="boolean")
        if dtype == "str":
            return pd.array([None if v is None else _text(v) for v in values], dtype="str")
    except (TypeError, ValueError, OverflowError):
        pass  # a value the dtype cannot hold: keep every answer, as objects
    holder = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # one by one: lists must not become a 2-D array
        holder[i] = value
    return NumpyExtensionArray(holder)


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise TypeError(value)
    return int(value)


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value
