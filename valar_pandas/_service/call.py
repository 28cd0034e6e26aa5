"""A call from start to end, for every front end: prepare → open → run → finish.

The pandas accessor, the ``valar-pandas run`` command (window by window) and any other
front end go through the same steps, so a row is asked the same way, keyed the same way in
the run store and merged into the same columns whichever way it came in:

1. :func:`prepare_call` checks the options, template, columns and price and plans every
   request (pure: nothing is opened or sent; it may run on any thread).
2. :func:`open_call` opens what the run needs on the caller's thread: the client, the run
   store and the progress display (a notebook widget shows in the caller's cell).
3. The plan runs: :func:`run_blocking` on the library's loop, or
   :func:`~valar_pandas._run.compose.run_plan` awaited where the caller wants a coroutine.
4. :meth:`Call.finish` merges the report into a new frame (a scoring call first reads the
   replies and re-asks the unreadable ones: :mod:`valar_pandas._service.score`).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pandas.api.extensions import ExtensionArray

from .._core.config import CLOSED, ValarClient
from .._core.errors import (
    BatchFallbackWarning,
    BudgetWarning,
    ConfigError,
    RowErrors,
    StoreError,
    StoreWarning,
)
from .._core.estimate import Estimate, estimate
from .._core.options import RunOptions, validate_options
from .._core.plan import Plan, plan_requests
from .._core.prices import DEFAULT_OUTPUT_TOKENS, Price, resolve_price
from .._core.prompt import CompiledTemplate, Row, compile_template
from .._core.spec import PriceArg, StoreArg
from .._display.progress import Judged, make_display
from .._display.tally import Display, close_display
from .._frame.merge import attach, check_columns, outcome_columns, planned_columns
from .._frame.rows import render_rows
from .._frame.score_columns import value_columns
from .._run.claims import Work
from .._run.compose import RunReport, run_plan
from .._run.loop import StopSignal, run_sync
from .._scoring import ScoreSpec, reply_judge
from .._store import RunStore
from .._transport.shared import default_client

__all__ = [
    "Call",
    "Opened",
    "PriceArg",
    "StoreArg",
    "Template",
    "check_call",
    "open_call",
    "open_store",
    "plan_call",
    "prepare_call",
    "resources",
    "run_blocking",
]

Template = str | Callable[[Row], Any]


def open_store(store: StoreArg, options: RunOptions) -> RunStore | None:
    """Open the run store a call asked for: None for ``store=False`` or ``cache=False``."""
    if store is False or not options.cache:
        return None
    if store is None or store is True:
        return RunStore()
    if isinstance(store, str | os.PathLike):
        return RunStore(store)
    raise ConfigError("store must be a path, True (the default location) or False")


@dataclass(frozen=True)
class Call:
    """One prepared call: everything checked, every request built, nothing sent.

    Attributes:
        frame: The rows (a shallow copy).
        options: The validated options.
        plan: Every row's request, identical rows sharing one.
        price: The price the call is costed at, or None when unknown.
        template: The template as given.
        price_arg: The price override as given.
        given: The options as given, for a call on some of the rows (:meth:`again`).
    """

    frame: pd.DataFrame
    options: RunOptions
    plan: Plan
    price: Price | None
    template: Template
    price_arg: PriceArg
    given: Mapping[str, Any]

    def again(self, rows: list[int], salt: str) -> Call:
        """The same call on the rows at positions ``rows``, under another ``salt``."""
        subset = self.frame.iloc[rows]
        return prepare_call(subset, self.template, self.price_arg, **{**self.given, "salt": salt})

    def estimate(self, work: Work) -> Estimate:
        """What sending ``work`` (this call's plan split against the store) would cost."""
        return estimate(
            rows=len(self.plan.rows),
            requests=len(self.plan.requests),
            cache_hits=len(work.cached),
            skipped=self.plan.skipped,
            to_send=work.send,
            max_output_tokens=self.options.max_output_tokens,
            model=self.options.model,
            completion_window=self.options.completion_window,
            price=self.price,
            reasoning=(self.options.reasoning or {}).get("effort"),
        )

    def columns(
        self,
        report: RunReport,
        values: Mapping[str, ExtensionArray] | None = None,
        errors: list[str | None] | None = None,
    ) -> tuple[dict[str, ExtensionArray], list[str]]:
        """The new columns of a report, and the errors of the rows that failed.

        Args:
            report: The run's report.
            values: Typed value columns replacing the text column (a scoring run).
            errors: Per-row errors replacing the outcomes' own (a scoring run).

        Returns:
            Column name → array, in order; and each failed row's error (skipped rows are
            not failures).
        """
        columns = outcome_columns(
            report.outcomes, self.options.into, self.options.details, values=values, errors=errors
        )
        failed = [
            e
            for e, o in zip(columns[f"{self.options.into}_error"], report.outcomes, strict=True)
            if isinstance(e, str) and o.status != "skipped"
        ]
        return columns, failed

    def finish(
        self,
        report: RunReport,
        values: Mapping[str, ExtensionArray] | None = None,
        errors: list[str | None] | None = None,
        **totals: int,
    ) -> pd.DataFrame:
        """Merge a report into a new frame; ``values``/``errors`` replace text and errors."""
        columns, failed = self.columns(report, values, errors)
        out = attach(self.frame, columns)
        tally = report.tally
        out.attrs["valar"] = {
            "rows": len(self.plan.rows),
            "requests": len(self.plan.requests),
            "cached": tally.cached,
            "http_requests": report.http_requests,
            "failed": len(failed),
            "cancelled": tally.cancelled,
            "input_tokens": tally.input_tokens,
            "output_tokens": tally.output_tokens,
            "reasoning_tokens": tally.reasoning_tokens,
            "spent_usd": round(tally.spent, 9) if self.price is not None else None,
            **totals,
        }
        for notice in report.notices:  # here, on the caller's thread, the frame complete
            warnings.warn(BatchFallbackWarning(notice, frame=out), stacklevel=3)
        overspent = _overspent(tally.spent, self.options.budget, self.price)
        if overspent:
            out.attrs["valar"]["budget_overspent_usd"] = round(overspent, 9)
            capped = self.options.max_output_tokens is not None
            said = budget_passed(tally.spent, overspent, capped)
            warnings.warn(said, BudgetWarning, stacklevel=3)
        fault = report.store_fault
        if fault is not None:
            out.attrs["valar"]["store_unsaved"] = fault.answers
            if self.options.errors == "raise" and not failed:
                raise StoreError(
                    fault.message("this exception's .frame"), path=fault.path, frame=out
                )
            warnings.warn(fault.message("the returned frame"), StoreWarning, stacklevel=3)
        if failed and self.options.errors == "raise":
            raise RowErrors(
                f"{len(failed)} of {len(report.outcomes)} rows failed (first: {failed[0]}); "
                "the complete result is on this exception's .frame",
                frame=out,
                failed=len(failed),
            )
        return out


def _overspent(spent: float, budget: float | None, price: Price | None) -> float:
    """USD spent past ``budget`` (0.0 within it, or without a budget or price)."""
    if budget is None or price is None:
        return 0.0
    return max(spent - budget, 0.0)


def budget_uncapped(flags: bool = False) -> str:
    """What a call with a budget and no cap on its answers is told before it starts."""
    budget, cap = ("--budget", "--max-output-tokens") if flags else ("budget=", "max_output_tokens")
    return (
        f"{budget} without {cap} is not a hard cap: each answer is reserved at "
        f"{DEFAULT_OUTPUT_TOKENS} output tokens (or the longest answer seen so far) and a "
        "longer one, a reasoning model's above all, is paid for in full; set "
        f"{cap} to make the budget a hard cap"
    )


def budget_passed(spent: float, overspent: float, capped: bool = False) -> str:
    """What a call that spent past its budget says, and how to prevent it.

    Args:
        spent: What the call spent, USD.
        overspent: How far past the budget, USD.
        capped: Whether ``max_output_tokens`` capped the answers: then only the input side
            (estimated at characters / 4) or a server billing beyond the cap can explain it.
    """
    if capped:
        return (
            f"this call spent ${spent:,.4f}, ${overspent:,.4f} past its budget: answers cost "
            "more than reserved for them (input tokens are estimated at characters / 4 before "
            "sending, and the server's usage is what is billed)"
        )
    return (
        f"this call spent ${spent:,.4f}, ${overspent:,.4f} past its budget: answers cost more "
        "than reserved for them, as no max_output_tokens capped them (a reasoning model's "
        "reasoning is billed as output); set max_output_tokens to make the budget a hard cap"
    )


def prepare_call(frame: pd.DataFrame, template: Template, price: PriceArg, **given: Any) -> Call:
    """Check a call and build every request: the shared first step of every entry point.

    Args:
        frame: The rows (copied shallowly; never modified).
        template: A format string naming columns, or a callable.
        price: A price override, or None for the shipped table.
        **given: The run options (see :func:`~valar_pandas._core.options.validate_options`).

    Returns:
        The prepared call; nothing has been sent.

    Raises:
        ConfigError: A bad option, template, column, row value or price.
    """
    frame, options, compiled, resolved = check_call(frame, template, price, **given)
    rendered = render_rows(frame, compiled, options.on_missing)
    plan = plan_requests(rendered, options)
    return Call(frame, options, plan, resolved, template, price, dict(given))


def check_call(
    frame: pd.DataFrame, template: Template, price: PriceArg, **given: Any
) -> tuple[pd.DataFrame, RunOptions, CompiledTemplate, Price | None]:
    """The checks of :func:`prepare_call`, before any row is rendered."""
    options = validate_options(**given)
    if not options.cache:
        # Fresh answers: a nonce no earlier call can have used.
        nonce = uuid.uuid4().hex
        salt = nonce if options.salt is None else f"{options.salt}:{nonce}"
        options = validate_options(**{**given, "salt": salt})
    frame = frame.copy(deep=False)
    compiled = compile_template(template, list(frame.columns))
    resolved = resolve_price(options.model, options.completion_window, price)
    if options.budget is not None and resolved is None:
        raise ConfigError(
            f"budget= needs a price for {options.model!r}, which is not in the price "
            "table; pass price={'input': ..., 'output': ...} in USD per million tokens",
            command=f"--budget needs a price for {options.model!r}, which is not in the price "
            "table; give --price INPUT,OUTPUT in USD per million tokens",
        )
    return frame, options, compiled, resolved


def resources(
    options: Mapping[str, Any],
) -> tuple[ValarClient | None, StoreArg, PriceArg, dict[str, Any]]:
    """``client``, ``store`` and ``price`` taken out of a call's options, and the rest.

    Raises:
        ConfigError: ``client`` is not a :class:`ValarClient`.
    """
    rest = dict(options)
    client = rest.pop("client", None)
    if client is not None and not isinstance(client, ValarClient):
        raise ConfigError("client must be a valar_pandas.ValarClient")
    return client, rest.pop("store", None), rest.pop("price", None), rest


def plan_call(
    frame: pd.DataFrame,
    template: Template,
    price: PriceArg,
    spec: ScoreSpec | None,
    given: Mapping[str, Any],
) -> Call:
    """Plan a call and check its new columns; pure, so it may run on a worker thread."""
    return check_planned(prepare_call(frame, template, price, **given), spec)


def check_planned(call: Call, spec: ScoreSpec | None) -> Call:
    """Refuse a call whose new columns clash with each other or the frame's; returns it.

    Checked before any request (:func:`~valar_pandas._frame.merge.check_columns`), never found
    after the answers are paid for.
    """
    into = call.options.into
    values = None if spec is None else value_columns(spec, into)
    check_columns(call.frame.columns, planned_columns(into, call.options.details, values))
    return call


@dataclass(frozen=True)
class Opened:
    """A prepared call with what running it needs, opened on the caller's thread."""

    call: Call
    client: ValarClient
    store: RunStore | None
    display: Display

    def close_store(self) -> None:
        """Close the run store, if one was opened."""
        if self.store is not None:
            self.store.close()


def open_call(
    call: Call, client: ValarClient | None, store: StoreArg, spec: ScoreSpec | None = None
) -> Opened:
    """Open the client, the run store and the display for ``call``, on the caller's thread.

    A notebook widget shows in the cell that makes it, so this runs where the caller runs.

    Raises:
        ConfigError: ``client`` is not a :class:`ValarClient`, a bad ``store`` or display.
    """
    if client is not None and not isinstance(client, ValarClient):
        raise ConfigError("client must be a valar_pandas.ValarClient")
    if call.options.budget is not None and call.options.max_output_tokens is None:
        warnings.warn(budget_uncapped(), BudgetWarning, stacklevel=3)
    client = client or default_client()
    if client.closed:
        raise ConfigError(CLOSED)
    opened = open_store(store, call.options)
    try:
        display = make_display(
            call.options.progress, call.price, errors_hint=f"the {call.options.into}_error column"
        )
        if spec is not None:  # an unreadable reply is a failed row on the display too
            display = Judged(display, reply_judge(spec))
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    return Opened(call, client, opened, display)


def run_blocking(opened: Opened, call: Call | None = None) -> tuple[RunReport, StopSignal]:
    """Run a call on the library's loop until done; Ctrl-C stops it and keeps what arrived.

    Args:
        opened: The opened call (its client, store and display are used).
        call: Another call to run with them (a re-ask), instead of ``opened.call``.

    Returns:
        The report, and the stop signal (``stopped`` after Ctrl-C).
    """
    call = opened.call if call is None else call
    stop = StopSignal()
    try:
        report = run_sync(
            run_plan(call.plan, call.options, opened.client, opened.store, call.price,
                     opened.display, stop=stop),
            stop,
        )  # fmt: skip
    finally:
        close_display(opened.display)
    if stop.stopped:
        tally = report.tally
        running = sum(
            o.status == "cancelled" and o.response_id is not None and o.error is not None
            and o.error.startswith(stop.reason)
            for o in report.outcomes
        )  # fmt: skip
        warnings.warn(
            f"interrupted: {tally.done - tally.skipped - tally.cached:,} rows were answered "
            f"and are in the frame; {tally.cancelled:,} rows are marked cancelled in "
            f"{call.options.into}_error, {running:,} of them with a response left to "
            "finish on the server. Run the same call again to resume them: it collects "
            "those responses and pays for no row twice.",
            stacklevel=4,
        )
    return report, stop
