"""Outcomes → new columns on a copy of the frame, aligned by position to the original index.

Columns are built positionally and attached to a shallow copy, so string, integer, duplicate
and MultiIndex labels all come back exactly as they went in, and the input frame is never
modified. Output columns that already exist are replaced, as ``DataFrame.assign`` would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from pandas.api.extensions import ExtensionArray

from ._models import Outcome

__all__ = ["attach", "merge", "outcome_columns"]


def merge(df: pd.DataFrame, outcomes: Sequence[Outcome], into: str, details: bool) -> pd.DataFrame:
    """Attach the outcomes to a new frame.

    Args:
        df: The input frame (left untouched).
        outcomes: One outcome per row, in row order.
        into: Name of the text column; the error column is ``<into>_error``.
        details: Also add response id, status, and input/output token columns.

    Returns:
        A new frame: every original column and row, plus the output columns.
    """
    if len(outcomes) != len(df):
        raise ValueError(f"{len(outcomes)} outcomes for {len(df)} rows")
    return attach(df, outcome_columns(outcomes, into, details))


def outcome_columns(
    outcomes: Sequence[Outcome],
    into: str,
    details: bool,
    *,
    values: Mapping[str, ExtensionArray] | None = None,
    errors: Sequence[str | None] | None = None,
) -> dict[str, ExtensionArray]:
    """The output columns of a run, in order.

    Args:
        outcomes: One outcome per row.
        into: The column prefix.
        details: Add response id, status and token columns.
        values: Typed value columns replacing the text column (a scoring run).
        errors: Per-row errors replacing the outcomes' own (a scoring run adds parse errors).

    Returns:
        Column name → array.
    """
    columns: dict[str, ExtensionArray] = (
        dict(values) if values is not None else {into: _text([o.text for o in outcomes])}
    )
    columns[f"{into}_error"] = _text(
        list(errors) if errors is not None else [o.error for o in outcomes]
    )
    if details:
        columns[f"{into}_response_id"] = _text([o.response_id for o in outcomes])
        columns[f"{into}_status"] = _text([o.status for o in outcomes])
        columns[f"{into}_input_tokens"] = pd.array(
            [o.input_tokens for o in outcomes], dtype="Int64"
        )
        columns[f"{into}_output_tokens"] = pd.array(
            [o.output_tokens for o in outcomes], dtype="Int64"
        )
    return columns


def attach(df: pd.DataFrame, columns: Mapping[str, ExtensionArray]) -> pd.DataFrame:
    """Add (or replace) columns positionally on a shallow copy of ``df``.

    Args:
        df: The frame; left untouched.
        columns: Name → array of ``len(df)`` values, in the order they should appear.

    Returns:
        The new frame.
    """
    out = df.copy(deep=False)
    for name, values in columns.items():
        out[name] = values
    return out


def _text(values: list[str | None]) -> ExtensionArray:
    return pd.array(values, dtype="str")
