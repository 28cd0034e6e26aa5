"""What a call would send and cost, without sending anything: ``requests()`` and ``estimate()``.

Both take a run's options or a scoring call's (labels, scale, schema, reasons): a scoring
call's requests are previewed and sized with the answer hint and the structured-output
format that :meth:`ValarAccessor.score` adds, so what is shown is what is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from .._core.config import ValarClient
from .._core.endpoint import resolve_base_url
from .._core.errors import ConfigError
from .._core.estimate import Estimate, Sizer, estimate
from .._core.models import Outcome
from .._core.options import as_int
from .._frame.rows import render_rows
from .._run.claims import served_from_store
from .call import PriceArg, StoreArg, Template, check_call, open_store, prepare_call
from .score import scoring

__all__ = ["estimate_call", "preview_requests"]

_ESTIMATE_SLICE = 65_536  # rows rendered at once by estimate()


def preview_requests(
    frame: pd.DataFrame, template: Template, n: object, given: Mapping[str, Any]
) -> pd.DataFrame:
    """The requests a call would send for the first ``n`` rows of ``frame``, without any I/O.

    Args:
        frame: The rows.
        template: The template.
        n: How many leading rows (None for every row).
        given: The call's options (a scoring call's too).

    Returns:
        See :meth:`ValarAccessor.requests`.

    Raises:
        ConfigError: A bad option, template or column, or a bad ``n``.
    """
    rows = as_int(n) if n is not None else None
    if n is not None and (rows is None or rows < 0):
        raise ConfigError("n must be a whole number, 0 or more, or None for every row")
    _, _, options = scoring(given)
    part = frame if rows is None else frame.iloc[:rows]
    plan = prepare_call(part, template, None, **options).plan
    bodies: list[dict[str, Any] | None] = []
    keys: list[str | None] = []
    prints: list[str | None] = []
    skipped: list[str | None] = []
    for row in plan.rows:
        if isinstance(row, Outcome):
            bodies.append(None)
            keys.append(None)
            prints.append(None)
            skipped.append(row.error)
        else:
            request = plan.requests[row]
            bodies.append(dict(request.body))
            keys.append(request.idempotency_key)
            prints.append(row)
            skipped.append(None)
    return pd.DataFrame(
        {
            "body": pd.Series(bodies, dtype=object).array,
            "idempotency_key": pd.array(keys, dtype="str"),
            "fingerprint": pd.array(prints, dtype="str"),
            "skipped": pd.array(skipped, dtype="str"),
        },
        index=part.index,
    )


def estimate_call(
    frame: pd.DataFrame,
    template: Template,
    *,
    store: StoreArg = None,
    price: PriceArg = None,
    client: ValarClient | None = None,
    base_url: str | None = None,
    **given: Any,
) -> Estimate:
    """How many requests a call would send and what they would cost; sends nothing.

    Args:
        frame: The rows.
        template: The template.
        store: The run store the cache hits are read from.
        price: A price override.
        client: Whose endpoint the cache hits are read for (its key is not used).
        base_url: The endpoint, when no ``client`` is given.
        **given: The call's options (a scoring call's too).

    Returns:
        See :meth:`ValarAccessor.estimate`.

    Raises:
        ConfigError: A bad option, template, column or price; both ``client`` and
            ``base_url``.
    """
    if client is not None and not isinstance(client, ValarClient):
        raise ConfigError("client must be a valar_pandas.ValarClient")
    if client is not None and base_url is not None:
        raise ConfigError("give client= or base_url=, not both: the client names its endpoint")
    endpoint = client.base_url if client is not None else resolve_base_url(base_url)
    _, _, run_options = scoring(given)
    frame, options, compiled, resolved = check_call(frame, template, price, **run_options)
    # Rendered a slice at a time and sized row by row: no prompt outlives its slice and
    # no request body its row, so a million rows fit in a few hundred MB.
    sizer = Sizer(options)
    for start in range(0, len(frame), _ESTIMATE_SLICE):
        part = frame.iloc[start : start + _ESTIMATE_SLICE]
        try:
            rendered = render_rows(part, compiled, options.on_missing)
        except ConfigError:
            # Say it as for the whole frame: the same first error, at its true position.
            render_rows(frame, compiled, options.on_missing)
            raise
        sizer.add(rendered, start)
    counted = sizer.counted
    opened = open_store(store, options)
    try:
        known = opened.lookup(endpoint, counted.fingerprints()) if opened is not None else {}
    finally:
        if opened is not None:
            opened.close()
    hits = {fp for fp, stored in known.items() if served_from_store(stored, options)}
    return estimate(
        rows=counted.rows,
        requests=len(counted.sizes),
        cache_hits=len(hits),
        skipped=counted.skipped,
        to_send=counted.to_send(hits),
        max_output_tokens=options.max_output_tokens,
        model=options.model,
        completion_window=options.completion_window,
        price=resolved,
        reasoning=(options.reasoning or {}).get("effort"),
    )
