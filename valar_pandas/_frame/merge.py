"""Outcomes → new columns on a copy of the frame, aligned by position to the original index.

Columns are built positionally and attached to a shallow copy, so string, integer, duplicate
and MultiIndex labels all come back exactly as they went in, and the input frame is never
modified. An output column replaces the one input column of its name in place, as
``DataFrame.assign`` would (so a call re-run on its own output works), and is appended
otherwise. On MultiIndex columns an output ``name`` is the full-length key ``(name, "", ...)``.

What a call would write is checked before any request (:func:`check_columns`): two outputs of
one call on the same column, or an output whose name the frame repeats (or, on MultiIndex
columns, uses as the top level of other columns), is a :class:`ConfigError` naming the clash,
never an answer written to the wrong row or over another answer.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import pandas as pd
from pandas.api.extensions import ExtensionArray

from .._core.errors import ConfigError
from .._core.models import Outcome

__all__ = ["DETAILS", "attach", "check_columns", "merge", "outcome_columns", "planned_columns"]

DETAILS = (
    "response_id",
    "status",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "partial",
)
"""Suffixes of the columns ``details=True`` adds: ``<into>_response_id`` and so on.
``<into>_partial`` holds the text of a truncated (``incomplete``) answer, which is never put
in the answer column."""


def merge(df: pd.DataFrame, outcomes: Sequence[Outcome], into: str, details: bool) -> pd.DataFrame:
    """Attach the outcomes to a new frame.

    Args:
        df: The input frame (left untouched).
        outcomes: One outcome per row, in row order.
        into: Name of the text column; the error column is ``<into>_error``.
        details: Also add response id, status, input/output token and partial-text columns.

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
        details: Add response id, status and token columns (input, output, reasoning), and
            the partial text of an answer cut short.
        values: Typed value columns replacing the text column (a scoring run).
        errors: Per-row errors replacing the outcomes' own (a scoring run adds parse errors).

    Returns:
        Column name → array.
    """
    columns: dict[str, ExtensionArray] = (
        dict(values) if values is not None else {into: _text([_answer(o) for o in outcomes])}
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
        columns[f"{into}_reasoning_tokens"] = pd.array(
            [o.reasoning_tokens for o in outcomes], dtype="Int64"
        )
        columns[f"{into}_partial"] = _text(
            [o.text if o.status == "incomplete" else None for o in outcomes]
        )
    return columns


def _answer(outcome: Outcome) -> str | None:
    """A row's answer: its text, unless the answer was cut short (that is ``_partial``)."""
    return None if outcome.status == "incomplete" else outcome.text


def planned_columns(
    into: str, details: bool, values: Sequence[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """The columns a call will write, each with what it holds (for messages), in order.

    Args:
        into: The column prefix.
        details: Whether the detail columns are added.
        values: ``(column, what)`` for a scoring run's value columns, replacing the text
            column; None for a text run.

    Returns:
        ``(column, what it holds)`` pairs, in the order :func:`outcome_columns` makes them.
    """
    planned = list(values) if values is not None else [(into, "the answers")]
    planned.append((f"{into}_error", "the row errors"))
    if details:
        planned += [(f"{into}_{d}", f"details=True's {d} column") for d in DETAILS]
    return planned


def check_columns(
    existing: pd.Index,
    planned: Sequence[tuple[str, str]],
    *,
    frame: str = "the frame",
) -> None:
    """Refuse, before any request, a call whose output columns would clash.

    Args:
        existing: The input's column labels.
        planned: ``(column, what)`` pairs from :func:`planned_columns`.
        frame: How messages name the input (``"the frame"``, a file's name).

    Raises:
        ConfigError: Two outputs of the call share a column (a schema property named like a
            detail column, with ``details=True``), or an output's name is
            repeated in the input (or, on MultiIndex columns, is the top level of other
            columns), so replacing it could not be done without guessing.
    """
    seen: dict[str, str] = {}
    for name, what in planned:
        if name in seen:
            raise ConfigError(
                f"{seen[name]} and {what} would both be written to {name!r}; rename the "
                "property, or leave details=False"
            )
        seen[name] = what
    labels: list[Any] = list(existing)
    nested = isinstance(existing, pd.MultiIndex)
    for name, what in planned:
        key = _key(existing, name)
        same = [c for c in labels if _equal(c, key)]
        under = [c for c in labels if nested and c[0] == name and c != key]
        if len(same) < 2 and not under:
            continue
        if under:
            shown = ", ".join(repr(c) for c in under[:3])
            found = f"{frame} has columns under {name!r} ({shown})"
        else:
            found = f"{frame} has {len(same)} columns named {name!r}"
        told = f"{found}, and this call writes {what} to {key!r}: which to replace is ambiguous."
        raise ConfigError(
            f"{told} Rename or drop those columns, or pass into= another name",
            command=f"{told} Rename those columns, or give --into another name",
        )


def attach(df: pd.DataFrame, columns: Mapping[str, ExtensionArray]) -> pd.DataFrame:
    """Add (or replace) columns positionally on a shallow copy of ``df``.

    A column whose name the frame holds once is replaced in place; any other is appended
    (as ``(name, "", ...)`` on MultiIndex columns). :func:`check_columns` has refused every
    other case before the call began.

    Args:
        df: The frame; left untouched.
        columns: Name → array of ``len(df)`` values, in the order they should appear.

    Returns:
        The new frame.

    Raises:
        ValueError: A name the frame holds more than once (:func:`check_columns` refuses
            such a call before it sends anything).
    """
    out = df.copy(deep=False)
    for name, values in columns.items():
        key = _key(out.columns, name)
        where = [i for i, c in enumerate(out.columns) if _equal(c, key)]
        if len(where) > 1:
            raise ValueError(f"the frame has {len(where)} columns named {key!r}")
        if where:
            out.isetitem(where[0], values)
        else:
            out[key] = values
    return out


def _key(labels: pd.Index, name: str) -> Hashable:
    """The label an output ``name`` takes among ``labels``: a full-length tuple on a MultiIndex."""
    if isinstance(labels, pd.MultiIndex):
        return (name,) + ("",) * (labels.nlevels - 1)
    return name


def _equal(label: object, key: Hashable) -> bool:
    """Label equality that never broadcasts (a label may be any hashable)."""
    if isinstance(key, tuple):
        return isinstance(label, tuple) and label == key
    return isinstance(label, str) and label == key


def _text(values: list[str | None]) -> ExtensionArray:
    return pd.array(values, dtype="str")
