"""Outcomes → new columns on a copy of the frame, aligned by position to the original index.

Columns are built positionally and attached to a shallow copy, so string, integer, duplicate
and MultiIndex labels all come back exactly as they went in, and the input frame is never
modified. Output columns that already exist are replaced, as ``DataFrame.assign`` would.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ._models import Outcome

__all__ = ["merge", "output_columns"]


def output_columns(into: str, details: bool) -> list[str]:
    """The names of the columns a run adds, in order."""
    names = [into, f"{into}_error"]
    if details:
        names += [f"{into}_{s}" for s in ("response_id", "status", "input_tokens", "output_tokens")]
    return names


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
    out = df.copy(deep=False)
    names = output_columns(into, details)
    columns: list[pd.Series] = [
        _text([o.text for o in outcomes]),
        _text([o.error for o in outcomes]),
    ]
    if details:
        columns += [
            _text([o.response_id for o in outcomes]),
            _text([o.status for o in outcomes]),
            pd.Series(pd.array([o.input_tokens for o in outcomes], dtype="Int64")),
            pd.Series(pd.array([o.output_tokens for o in outcomes], dtype="Int64")),
        ]
    for name, column in zip(names, columns, strict=True):
        out[name] = column.array
    return out


def _text(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.array(values, dtype="str"))
