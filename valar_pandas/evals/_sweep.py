"""Prompt × model sweeps: every template with every model over the same rows, one call.

Owns :func:`sweep`. Each prompt × model pair is an ordinary scoring call (the same requests
``df.valar.score`` sends, so the run store, idempotency keys and the re-ask of unreadable
replies all apply): pairs already answered are served from the store for free, and adding a
model to a sweep pays for that model's rows only. The whole sweep is estimated before
anything is sent; a ``budget=`` the estimate does not fit is refused then, and one budget
spans every pair while they run (a shared :class:`~.._core.budget.SpendPool`). The pairs run
at once on the library's loop, in :func:`lanes` that split the sweep's ``concurrency`` and
``max_rps`` among them, under one progress display. The figures are :mod:`._board`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._core.budget import Budget, SpendPool
from .._core.config import ValarClient
from .._core.errors import BudgetWarning, ConfigError, StoreWarning
from .._core.models import Event, Outcome
from .._core.options import MIN_MAX_RPS, RunOptions
from .._display.progress import Judged, make_display
from .._display.tally import Display, Tally, close_display, drop_display, is_dropped
from .._run.compose import run_plan
from .._run.loop import StopSignal, run_sync
from .._scoring import ScoreSpec, column_name, reply_judge
from .._service.call import (
    Call,
    PriceArg,
    StoreArg,
    Template,
    budget_passed,
    budget_uncapped,
    open_store,
    prepare_call,
)
from .._service.preview import estimate_call
from .._service.score import Reasks, scoring
from .._store import RunStore
from .._transport.exchange import surface
from .._transport.shared import default_client
from ._board import SweepResult, build_result

__all__ = ["Lane", "Ran", "check_figures", "lanes", "run_pairs", "sample_rows", "sweep"]

_OWN = ("model", "into", "errors", "details", "progress", "budget", "store", "client", "price")
_INTO = "prediction"


@dataclass
class _Pair:
    """One prompt × model pair: its call, and what its run produced."""

    prompt: str
    model: str
    call: Call
    reasks: Reasks | None = None
    tally: Tally | None = None
    seconds: float = 0.0


class _Counted:
    """A display that keeps one pair's own tally and forwards every event to the sweep's.

    The pair's tally is what its spend is read from, so a shared display that fails is
    dropped here (one warning, as any failed display) and the counting goes on.
    """

    def __init__(self, shared: Display | None, tally: Tally) -> None:
        self._shared = shared
        self.tally = tally

    def __call__(self, event: Event) -> None:
        self.tally.add(event)
        if self._shared is not None and not is_dropped(self._shared):
            try:
                self._shared(event)
            except Exception as exc:  # a display never stops the count, nor the run
                drop_display(self._shared, exc)

    def close(self) -> None:
        return None


def sweep(
    df: pd.DataFrame,
    templates: Mapping[str, Template] | Template,
    models: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    scale: tuple[float, float] | None = None,
    schema: Any = None,
    field: str | None = None,
    truth: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    budget: float | None = None,
    store: StoreArg = None,
    client: ValarClient | None = None,
    prices: Mapping[str, PriceArg] | None = None,
    progress: str | None = "auto",
    resamples: int = 1000,
    level: float = 0.95,
    **options: Any,
) -> SweepResult:
    """Run every prompt with every model over the same rows and compare them.

    Each prompt × model pair is scored as ``df.valar.score(template, model=model, ...)``
    would score it: the same requests, the same run store (pairs or rows answered before
    are free, so a sweep re-run with one more model pays only for that model's rows), the
    same re-asks of unreadable replies (``retries_on_invalid``). Everything is checked and
    the whole sweep estimated before any request is sent. The pairs run at once;
    ``concurrency`` and ``max_rps`` are the whole sweep's, split among the pairs running
    (see :func:`lanes`). Ctrl-C stops every pair and returns the rows answered so far.

    Args:
        df: The rows.
        templates: Name → template (a format string or a callable, as for ``run``); a
            single template is named ``"prompt"``.
        models: The model ids.
        labels: The classes to choose from (give one of ``labels``, ``scale``, ``schema``).
        scale: ``(lo, hi)`` bounds of a score; predictions are compared as classes.
        schema: A JSON schema (or pydantic model) of the answer; ``field`` names the
            property compared.
        field: With ``schema``: the property whose value is the prediction.
        truth: A column of true values. Without it, each pair is compared with the
            majority answer of the other pairs on the row (*agreement*).
        sample: Score a random sample of this many rows (the same rows for every pair,
            drawn with ``seed``); None for every row.
        seed: Seeds the sample and the bootstrap.
        budget: The most the whole sweep may spend, in USD. Refused before anything is
            sent when the estimate exceeds it; while the pairs run, one budget spans them
            all: spend plus in-flight reservations of every pair never pass it (with
            ``max_output_tokens``), and rows past it end ``not sent``, as in ``run``.
        store: The run store, as in ``run`` (default location; False for none).
        client: The client to send with (default: from the environment).
        prices: Model id → price override (``{"input": ..., "output": ...}`` USD per
            million tokens) for models not in the price table.
        progress: ``"auto"``, ``"tqdm"``, ``"widget"`` or None: one display for the
            whole sweep.
        resamples: Bootstrap resamples for the intervals.
        level: The intervals' coverage.
        **options: Any other option of ``df.valar.score`` (``instructions``,
            ``max_output_tokens``, ``completion_window``, ``reasoning``,
            ``retries_on_invalid``, ``salt``, ``concurrency`` and ``max_rps`` for the
            whole sweep, ...).

    Returns:
        The sweep's :class:`SweepResult`: ``.results`` (one row per row × prompt × model),
        ``.leaderboard``, ``.significance``, ``.agreement``, ``.estimate``.

    Raises:
        ConfigError: A bad argument, template, column or option; a budget the estimate
            does not fit, or a budget for a model without a price. Raised before any
            request.

    Warns:
        BudgetWarning: A budget without ``max_output_tokens`` (not a hard cap), or spend
            past it.
        StoreWarning: The run store could not record every answer (the result holds them).

    Example:
        >>> result = sweep(  # doctest: +SKIP
        ...     df,
        ...     templates={"terse": "Sentiment of: {review}", "careful": "Review: {review}"},
        ...     models=["zai-org/GLM-5.1-FP8", "google/gemma-4-31B-it"],
        ...     labels=["positive", "negative", "neutral"],
        ...     truth="label",
        ...     max_output_tokens=32,
        ... )
        >>> result.leaderboard  # doctest: +SKIP
    """
    named = _templates(templates)
    chosen = _models(models)
    if truth is not None and truth not in df.columns:
        raise ConfigError(f"no column {truth!r} in the frame; columns: {list(df.columns)}")
    check_figures(resamples, level)
    shape = {"labels": labels, "scale": scale, "schema": schema}
    if truth is not None:
        df = _with_truth(df, truth, labels)
    rows = sample_rows(df, sample, seed)
    ran = run_pairs(
        rows, named, chosen, shape, field, truth, budget=budget, store=store, client=client,
        prices=prices, progress=progress, options=options, caller="sweep",
    )  # fmt: skip
    return build_result(
        ran.long,
        ran.estimate,
        classes=ran.classes,
        truth=truth,
        seconds=ran.seconds,
        paid=ran.paid,
        priced=ran.priced,
        resamples=resamples,
        level=level,
        seed=seed,
    )


def _with_truth(df: pd.DataFrame, truth: str, labels: Sequence[str] | None) -> pd.DataFrame:
    """The rows that have a truth value, checked against ``labels``, before anything is sent.

    A row without truth could not be scored, so it is not paid for; a truth value that is
    not one of the labels could never be matched, so every pair would score 0 on it (truth
    read from a file as numbers, or in another case, against string labels).
    """
    known = df[df[truth].notna()]
    if known.empty:
        raise ConfigError(f"the truth column {truth!r} has no values: nothing could be scored")
    if isinstance(labels, list | tuple) and all(isinstance(label, str) for label in labels):
        allowed = set(labels)
        strange = [v for v in dict.fromkeys(known[truth].tolist()) if not _is_label(v, allowed)]
        if strange:
            shown = ", ".join(repr(v) for v in strange[:5]) + (", ..." if len(strange) > 5 else "")
            raise ConfigError(
                f"the truth column {truth!r} holds values that are not among the labels "
                f"({shown}); labels are {sorted(allowed)}. Map or cast the column first, "
                f"e.g. df[{truth!r}].astype(str) or .str.lower(); nothing was sent"
            )
    return known


def _is_label(value: object, allowed: set[str]) -> bool:
    return isinstance(value, str) and value in allowed


def check_figures(resamples: int, level: float) -> None:
    """Refuse a bad number of bootstrap resamples or a bad interval level."""
    if not (isinstance(resamples, int) and resamples >= 1) or isinstance(resamples, bool):
        raise ConfigError("resamples must be a whole number, 1 or more")
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ConfigError("level must be a number between 0 and 1, e.g. 0.95")


@dataclass(frozen=True)
class Ran:
    """What running every pair produced, before any figure.

    Attributes:
        long: One row per frame row × prompt × model (see ``SweepResult.results``).
        estimate: Each pair's estimate, made before anything was sent.
        classes: The classes seen or asked for, in order.
        seconds: Pair → seconds it took.
        paid: Pair → USD this call paid for it.
        priced: Pair → whether its model has a price.
    """

    long: pd.DataFrame
    estimate: pd.DataFrame
    classes: list[Hashable]
    seconds: dict[tuple[str, str], float]
    paid: dict[tuple[str, str], float]
    priced: dict[tuple[str, str], bool]


def run_pairs(
    rows: pd.DataFrame,
    named: Mapping[str, Template],
    chosen: Sequence[str],
    shape: Mapping[str, Any],
    field: str | None,
    truth: str | None,
    *,
    budget: float | None,
    store: StoreArg,
    client: ValarClient | None,
    prices: Mapping[str, PriceArg] | None,
    progress: str | None,
    options: Mapping[str, Any],
    caller: str,
) -> Ran:
    """Check, estimate and run every template × model pair over ``rows`` (see :func:`sweep`).

    Raises:
        ConfigError: Anything wrong, before any request.
    """
    for key in options:
        if key in _OWN or key in ("labels", "scale", "schema", "reasons"):
            raise ConfigError(f"{caller}() sets {key!r} itself; it cannot be passed as an option")
    if client is not None and not isinstance(client, ValarClient):
        raise ConfigError("client must be a valar_pandas.ValarClient")
    reasks = {k: v for k, v in options.items() if k == "retries_on_invalid"}
    spec, again, _ = scoring({**shape, **reasks}, required=True)
    assert spec is not None
    value_column = _value_column(spec, field)
    price_of = dict(prices or {})
    given = {**options, "into": _INTO, "progress": progress, "retries_on_invalid": again}
    pairs: list[_Pair] = []
    for prompt, template in named.items():
        for model in chosen:
            _, _, asked = scoring({**shape, **given, "model": model})
            asked["progress"] = None  # the one display is handed to every run
            if budget is not None:
                asked["budget"] = budget
            call = prepare_call(rows, template, price_of.get(model), **asked)
            pairs.append(_Pair(prompt, model, call))
    estimate = _estimate(rows, named, chosen, shape, options, store, client, price_of)
    _check_budget(budget, estimate, pairs, caller)
    client = client or default_client()
    opened = open_store(store, pairs[0].call.options)
    try:
        display = _display(progress, pairs, spec, caller)
        try:
            stop = StopSignal()
            run_sync(_run_all(pairs, spec, again, client, opened, display, budget, stop), stop)
        finally:
            close_display(display)
        fault = opened.fault if opened is not None else None
    finally:
        if opened is not None:
            opened.close()
    paid = [p.tally.spent if p.tally is not None else 0.0 for p in pairs]
    if budget is not None and sum(paid) > budget:
        capped = pairs[0].call.options.max_output_tokens is not None
        warnings.warn(
            budget_passed(sum(paid), sum(paid) - budget, capped), BudgetWarning, stacklevel=3
        )
    if fault is not None:
        warnings.warn(fault.message(f"the {caller}'s result"), StoreWarning, stacklevel=3)
    if stop.stopped:
        warnings.warn(
            f"interrupted: the {caller}'s rows answered so far are in the result, the rest "
            f"are marked cancelled; run the same {caller} again to finish it, paying for no "
            "row twice",
            stacklevel=3,
        )
    long = _long_frame(pairs, rows, value_column, spec, truth)
    return Ran(
        long,
        estimate,
        _classes(spec, long, truth),
        seconds={(p.prompt, p.model): p.seconds for p in pairs},
        paid={(p.prompt, p.model): s for p, s in zip(pairs, paid, strict=True)},
        priced={(p.prompt, p.model): p.call.price is not None for p in pairs},
    )


def _templates(templates: Mapping[str, Template] | Template) -> dict[str, Template]:
    if isinstance(templates, str) or callable(templates):
        return {"prompt": templates}
    if not isinstance(templates, Mapping) or not templates:
        raise ConfigError("templates must be a non-empty dict of name → template")
    for name in templates:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a template's name must be a non-empty string, got {name!r}")
    return dict(templates)


def _models(models: Sequence[str]) -> list[str]:
    if isinstance(models, str):
        return [models]
    chosen = list(models)
    if not chosen or not all(isinstance(m, str) and m for m in chosen):
        raise ConfigError("models must be a non-empty list of model ids")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"models repeats a model: {chosen!r}")
    return chosen


def _value_column(spec: ScoreSpec, field: str | None) -> str:
    if spec.kind != "schema":
        if field is not None:
            raise ConfigError("field= names a property of schema=; labels and scale have none")
        return _INTO
    properties = spec.schema.get("properties")
    names = list(properties) if isinstance(properties, dict) else []
    if field is None or field not in names:
        raise ConfigError(
            f"with schema=, field= must name the property compared; properties: {names}"
        )
    return column_name(_INTO, field)


def sample_rows(df: pd.DataFrame, sample: int | None, seed: int) -> pd.DataFrame:
    """The frame, or ``sample`` of its rows drawn with ``seed`` (in frame order).

    Raises:
        ConfigError: A bad ``sample``, or an index that repeats a label (rows are named by
            their label in the results, so a repeated one could not be told apart).
    """
    if not df.index.is_unique:
        raise ConfigError(
            "the frame's index repeats labels, and results name each row by its label; "
            "give it a unique index first, e.g. df.reset_index(drop=True)"
        )
    if sample is None:
        return df
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ConfigError("sample must be a whole number of rows, 1 or more, or None")
    if sample >= len(df):
        return df
    # The first rows of one seeded order: a larger sample holds the smaller one, so raising
    # sample= on a re-run pays only for the rows it adds.
    picked = np.sort(np.random.default_rng(seed).permutation(len(df))[:sample])
    return df.iloc[picked]


def _estimate(
    rows: pd.DataFrame,
    named: Mapping[str, Template],
    models: Sequence[str],
    shape: Mapping[str, Any],
    options: Mapping[str, Any],
    store: StoreArg,
    client: ValarClient | None,
    prices: Mapping[str, PriceArg],
) -> pd.DataFrame:
    """Every pair's estimate, read against the run store; nothing sent."""
    records = []
    for prompt, template in named.items():
        for model in models:
            found = estimate_call(
                rows, template, store=store, price=prices.get(model), client=client,
                model=model, **shape, **options,
            )  # fmt: skip
            records.append(
                {
                    "prompt": prompt,
                    "model": model,
                    "rows": found.rows,
                    "cache_hits": found.cache_hits,
                    "to_send": found.to_send,
                    "cost_usd": found.cost_usd,
                    "lower_bound": found.lower_bound,
                }
            )
    return pd.DataFrame.from_records(records)


def _check_budget(
    budget: float | None, estimate: pd.DataFrame, pairs: list[_Pair], caller: str
) -> None:
    if budget is None:
        return
    cost = float(estimate["cost_usd"].sum())
    if cost > budget:
        sends = int(estimate["to_send"].sum())
        raise ConfigError(
            f"the {caller} is estimated at ${cost:,.4f} for {sends:,} requests, more than its "
            f"budget of ${budget:,.4f}; nothing was sent. Sample fewer rows (sample=), "
            "drop a prompt or a model, cap the answers (max_output_tokens) or raise the budget"
        )
    if pairs[0].call.options.max_output_tokens is None:
        warnings.warn(budget_uncapped(), BudgetWarning, stacklevel=3)


def _display(progress: str | None, pairs: list[_Pair], spec: ScoreSpec, caller: str) -> Display:
    """One display for every pair: spend shown only when every pair shares one price."""
    prices = {p.call.price for p in pairs}
    price = next(iter(prices)) if len(prices) == 1 else None
    total = sum(len(p.call.plan.rows) for p in pairs)
    shown = make_display(
        progress,
        price,
        desc=f"valar {caller}",
        errors_hint=f"the {caller}'s error column",
        total=total,
    )
    return Judged(shown, reply_judge(spec))


@dataclass(frozen=True)
class Lane:
    """One lane of a sweep: pairs run in it one after another, with its share of the limits.

    Attributes:
        concurrency: The most HTTP requests in flight of the lane's run.
        max_rps: The most requests a second of the lane's run (None: no limit).
    """

    concurrency: int
    max_rps: float | None


def lanes(concurrency: int, max_rps: float | None, pairs: int) -> list[Lane]:
    """Split a sweep's ``concurrency`` and ``max_rps`` among the lanes its pairs run in.

    A run's limits are its own (each run makes its own exchange, whose slots and overload
    control hold ``concurrency``, and its own request budget of ``max_rps``), so pairs that
    run at once each get a share, and the shares add up to the totals asked for: one lane per
    pair, but never more lanes than ``concurrency`` (each needs one request in flight) nor
    than ``max_rps`` allows at its least (0.1 a second each). Slots are split as evenly as
    they go (the first lanes take the remainder), the rate evenly.

    Args:
        concurrency: The sweep's ``concurrency``.
        max_rps: The sweep's ``max_rps``, or None.
        pairs: How many pairs the sweep runs (1 or more).

    Returns:
        The lanes, 1 to ``pairs`` of them.
    """
    count = max(1, min(pairs, concurrency))
    if max_rps is not None:
        count = max(1, min(count, math.floor(max_rps / MIN_MAX_RPS + 1e-9)))
    base, extra = divmod(concurrency, count)
    rate = None if max_rps is None else max_rps / count
    return [Lane(base + (1 if i < extra else 0), rate) for i in range(count)]


async def _run_all(
    pairs: list[_Pair],
    spec: ScoreSpec,
    again: int,
    client: ValarClient,
    store: RunStore | None,
    display: Display,
    limit: float | None,
    stop: StopSignal,
) -> None:
    """Run the pairs at once, in :func:`lanes`; one budget spans them all.

    Every pair's budget keeps its own price and reserves from one :class:`SpendPool`, so the
    spend and in-flight of all the pairs together never pass ``limit``. A failure of one pair
    stops the others and is raised alone.
    """
    options = pairs[0].call.options
    shares = lanes(options.concurrency, options.max_rps, len(pairs))
    pool = SpendPool(limit) if limit is not None else None
    waiting = iter(pairs)

    async def lane(share: Lane) -> None:
        for pair in waiting:  # each lane takes the next pair as it becomes free
            await _run_pair(pair, share, spec, again, client, store, display, pool, stop)

    try:
        async with asyncio.TaskGroup() as group:
            for share in shares:
                group.create_task(lane(share))
    except BaseExceptionGroup as group_error:
        raise surface(group_error) from None


async def _run_pair(
    pair: _Pair,
    share: Lane,
    spec: ScoreSpec,
    again: int,
    client: ValarClient,
    store: RunStore | None,
    display: Display,
    pool: SpendPool | None,
    stop: StopSignal,
) -> None:
    """Run one pair and its re-asks within its lane's share of the limits."""
    call = pair.call
    tally = Tally(call.price)
    counted = _Counted(display, tally)
    budget = None
    if pool is not None and call.price is not None:
        budget = Budget(pool.limit, call.price, pool)
    started = time.monotonic()
    first = await run_plan(
        call.plan, _shared(call.options, share), client, store, call.price, counted, budget,
        stop,
    )  # fmt: skip
    reasks = Reasks(spec, call, 0 if stop.stopped else again, first)
    # Re-asks are counted in the pair's spend, not drawn: the bar is sized by rows.
    quiet = _Counted(None, tally)
    while not stop.stopped and (retry := reasks.next()) is not None:
        redo = await run_plan(
            retry.plan, _shared(retry.options, share), client, store, retry.price, quiet,
            budget, stop,
        )  # fmt: skip
        reasks.absorb(redo)
    pair.seconds = time.monotonic() - started
    pair.reasks, pair.tally = reasks, tally


def _shared(options: RunOptions, share: Lane) -> RunOptions:
    """A run's options within its lane's share of the sweep's limits."""
    return dataclasses.replace(options, concurrency=share.concurrency, max_rps=share.max_rps)


def _long_frame(
    pairs: list[_Pair],
    rows: pd.DataFrame,
    value_column: str,
    spec: ScoreSpec,
    truth: str | None,
) -> pd.DataFrame:
    """One row per frame row × prompt × model: the prediction, its error, tokens, cost."""
    parts = []
    for pair in pairs:
        assert pair.reasks is not None
        values, errors = pair.reasks.columns()
        outcomes = pair.reasks.outcomes
        price = pair.call.price
        part = pd.DataFrame(
            {
                "row": rows.index,
                "prompt": pair.prompt,
                "model": pair.model,
                "prediction": pd.Series(values[value_column], dtype=object).to_numpy(),
                "error": pd.array(errors, dtype="str"),
                "input_tokens": pd.array([o.input_tokens for o in outcomes], dtype="Int64"),
                "output_tokens": pd.array([o.output_tokens for o in outcomes], dtype="Int64"),
                # Empty where no tokens were billed (not sent, interrupted, failed before
                # any): such a row is not an answer that cost nothing, and counted as one it
                # would make a pair cut short look cheap.
                "cost_usd": pd.array(
                    [price.of(o) if price is not None and _used(o) else None for o in outcomes],
                    dtype="Float64",
                ),
            }
        )
        if truth is not None:
            part.insert(4, "truth", rows[truth].astype(object).to_numpy())
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    long["prediction"] = long["prediction"].astype(object).where(long["prediction"].notna(), None)
    if spec.kind == "labels":
        long["prediction"] = long["prediction"].astype(pd.CategoricalDtype(list(spec.labels)))
    for name in ("prompt", "model"):
        long[name] = long[name].astype(pd.CategoricalDtype(list(dict.fromkeys(long[name]))))
    return long


def _used(outcome: Outcome) -> bool:
    """Whether the server reported billed tokens for the outcome (a failure may report 0)."""
    return (outcome.input_tokens or 0) + (outcome.output_tokens or 0) > 0


def _classes(spec: ScoreSpec, long: pd.DataFrame, truth: str | None) -> list[Hashable]:
    seen = set(long["prediction"].dropna().astype(object))
    if truth is not None:
        seen |= set(long["truth"].dropna().astype(object))
    ordered: list[Hashable] = list(spec.labels) if spec.kind == "labels" else []
    extra = sorted((v for v in seen if v not in ordered), key=lambda v: (str(type(v)), str(v)))
    return ordered + extra
