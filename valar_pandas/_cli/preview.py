"""The command's previews: ``--dry-run`` (the first requests) and ``--estimate`` (the cost).

Both plan every window exactly as the run would, and send nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from .._core.endpoint import resolve_base_url
from .._core.estimate import Estimate
from .._run.claims import prepare_work
from .._service.call import open_store
from .._store import RunStore
from .stream import Window, prepare_window

if TYPE_CHECKING:
    from .run import Setup

__all__ = ["dry_run", "estimate_run"]

_SHOWN_REQUESTS = 3


def _planned(setup: Setup) -> Iterator[Window]:
    for index, table in enumerate(setup.tables()):
        yield prepare_window(setup.job, index, table)


def dry_run(setup: Setup, out: TextIO) -> int:
    """Print the first requests and the counts of ``--dry-run``; sends nothing.

    Returns:
        The exit code, 0.
    """
    args = setup.args
    shown: list[dict[str, Any]] = []
    rows = requests = skipped = 0
    for window in _planned(setup):
        plan = window.call.plan
        rows += len(plan.rows)
        requests += len(plan.requests)
        skipped += plan.skipped
        for position, row in enumerate(plan.rows):
            if len(shown) >= _SHOWN_REQUESTS:
                break
            if isinstance(row, str):
                shown.append({"row": position, "body": dict(plan.requests[row].body)})
    if args.json:
        result = {"rows": rows, "requests": requests, "skipped": skipped, "first": shown}
        print(json.dumps(result), file=out)
        return 0
    print(f"Dry run: nothing is sent. {args.input} ({setup.source.kind}) → {args.output}", file=out)
    for item in shown:
        print(
            f"\nrow {item['row']}:\n{json.dumps(item['body'], indent=2, ensure_ascii=False)}",
            file=out,
        )
    print(
        f"\nrows {rows:,}   requests {requests:,} (identical rows in a window are sent once)"
        f"   skipped {skipped:,}   windows {setup.windows:,} of up to {args.window_rows:,} rows",
        file=out,
    )
    return 0


def estimate_run(setup: Setup, out: TextIO) -> int:
    """Print the estimate of ``--estimate``, window by window summed; sends nothing.

    Returns:
        The exit code, 0.
    """
    args = setup.args
    endpoint = resolve_base_url()
    total: Estimate | None = None
    store: RunStore | None = None
    try:
        for window in _planned(setup):
            call = window.call
            if store is None:
                store = open_store(args.store, setup.options)
            work = prepare_work(call.plan, call.options, store, endpoint)
            part = call.estimate(work)
            total = part if total is None else _add(total, part)
    finally:
        if store is not None:
            store.close()
    assert total is not None  # windows() yields at least one window
    if args.json:
        print(json.dumps(total.to_dict()), file=out)
    else:
        print(total.render(price_hint="give --price INPUT,OUTPUT"), file=out)
    return 0


def _add(a: Estimate, b: Estimate) -> Estimate:
    cost = None if a.cost_usd is None or b.cost_usd is None else a.cost_usd + b.cost_usd
    return dataclasses.replace(
        a,
        rows=a.rows + b.rows,
        requests=a.requests + b.requests,
        cache_hits=a.cache_hits + b.cache_hits,
        skipped=a.skipped + b.skipped,
        to_send=a.to_send + b.to_send,
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cost_usd=cost,
        images=a.images + b.images,
    )
