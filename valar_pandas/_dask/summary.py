"""The totals of a Dask run, added up over its partitions."""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd

from .accessor import meeting_of
from .shared import collect

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
    return totals
