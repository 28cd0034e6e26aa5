"""The totals of a Dask run, added up over its partitions."""

from __future__ import annotations

import warnings
from typing import Any

import dask.dataframe as dd

from .._core.errors import BudgetWarning
from .._service.call import budget_passed
from .accessor import meeting_of
from .notices import CARRIED
from .shared import collect

_KINDS = {kind.__name__: kind for kind in CARRIED}

__all__ = ["summary"]

_SUMMED = (
    "rows", "requests", "cached", "http_requests", "failed", "cancelled", "input_tokens",
    "output_tokens", "reasoning_tokens", "invalid_retries", "store_unsaved",
)  # fmt: skip


def summary(frame: dd.DataFrame) -> dict[str, Any]:
    """The totals of the last computation of ``frame``, added up over its partitions.

    What ``out.attrs["valar"]`` holds for a pandas run, for a frame ``ddf.valar.run`` or
    ``ddf.valar.score`` returned: ``rows``, ``requests`` (distinct requests, per partition),
    ``cached``, ``http_requests``, ``failed``, ``cancelled``, the token counts, ``spent_usd``
    (None without a price), ``invalid_retries`` and ``store_unsaved`` when any partition had
    them, and ``partitions``: how many partitions reported. A partition run again (its
    worker was lost, or the frame computed again) counts once, with its latest totals.

    What the workers warned of (``StoreWarning``, ``BudgetWarning``,
    ``BatchFallbackWarning``) is in ``notices`` and is issued again here, on the caller's
    side, once per distinct message; ``budget_overspent_usd`` is how far the computation's
    spend passed its ``budget`` (present, with a ``BudgetWarning``, only when it did).

    Args:
        frame: The lazy frame ``run`` or ``score`` returned, after ``compute()``,
            ``persist()`` or a write.

    Returns:
        The totals.

    Raises:
        ConfigError: ``frame`` did not come from ``ddf.valar.run`` or ``.score``.
    """
    parts = collect(meeting_of(frame)).values()
    totals: dict[str, Any] = {"partitions": len(parts)}
    for name in _SUMMED:
        seen = [p[name] for p in parts if name in p]
        if seen or name in ("rows", "requests", "cached", "http_requests", "failed"):
            totals[name] = sum(seen)
    spent = [p.get("spent_usd") for p in parts]
    priced = [s for s in spent if s is not None]
    totals["spent_usd"] = round(sum(priced), 9) if priced or not parts else None
    meeting = meeting_of(frame)
    said: dict[tuple[str, str], None] = {}
    for part in parts:
        said |= dict.fromkeys((str(kind), str(text)) for kind, text in part.get("notices", ()))
    spent = totals["spent_usd"]
    if meeting.budget is not None and spent is not None and spent > meeting.budget:
        totals["budget_overspent_usd"] = round(spent - meeting.budget, 9)
        passed = budget_passed(spent, spent - meeting.budget, meeting.capped)
        said[(BudgetWarning.__name__, passed)] = None
    if said:
        totals["notices"] = [text for _, text in said]
    for kind, text in said:
        warnings.warn(_KINDS.get(kind, UserWarning)(text), stacklevel=2)
    return totals
