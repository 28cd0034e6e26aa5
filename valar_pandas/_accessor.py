"""``df.valar``: the pandas accessor. A stateless façade: validate → plan → run → merge.

Every method returns a new object and leaves ``df`` untouched. Everything that can be wrong
with the call (options, template, columns, key, store, price) raises :class:`ConfigError`
before any request is sent. ``run`` blocks (it works in scripts and inside Jupyter's running
loop); ``arun`` is the same thing as a coroutine for code already in an event loop;
``requests`` and ``estimate`` send nothing.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pandas.api.extensions import ExtensionArray

from ._config import ValarClient, resolve_base_url
from ._errors import ConfigError, RowErrors, StoreError, StoreWarning
from ._estimate import Estimate, Sizer, estimate
from ._job import Job
from ._loop import StopSignal, run_sync
from ._merge import attach, check_columns, outcome_columns, planned_columns
from ._models import Outcome
from ._options import DEFAULT_MAX_RPS, RunOptions, as_int, checked_arguments, validate_options
from ._plan import Plan, plan_requests
from ._prices import Price, resolve_price
from ._progress import Display, Judged, close_display, make_display
from ._prompt import Row, compile_template
from ._prompt import Template as CompiledTemplate
from ._rows import render_rows
from ._run import RunReport, Work, run_plan, served_from_store
from ._score import ScoreSpec, instructions_hint, make_spec, parse, reply_judge, text_format
from ._score.columns import row_errors, to_columns, value_columns
from ._store import RunStore

__all__ = [
    "ValarAccessor",
    "open_store",
    "prepare_call",
    "score_columns",
    "score_request_options",
]

Template = str | Callable[[Row], Any]
StoreArg = str | os.PathLike[str] | bool | None
PriceArg = Price | Mapping[str, float] | None
Mode = Literal["background", "realtime", "batch", "auto"]
_ESTIMATE_SLICE = 65_536  # rows rendered at once by estimate()
PREVIEW_ROWS = 1000
"""Rows :meth:`ValarAccessor.requests` previews unless told otherwise."""
Progress = Literal["auto", "tqdm", "widget"] | None


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
class _Call:
    """One prepared call: everything checked, every request built, nothing sent."""

    frame: pd.DataFrame
    options: RunOptions
    plan: Plan
    price: Price | None

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
            "spent_usd": round(tally.spent, 9) if self.price is not None else None,
            **totals,
        }
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


def prepare_call(frame: pd.DataFrame, template: Template, price: PriceArg, **kwargs: Any) -> _Call:
    """Check a call and build every request: the shared first step of every entry point.

    Args:
        frame: The rows (copied shallowly; never modified).
        template: A format string naming columns, or a callable.
        price: A price override, or None for the shipped table.
        **kwargs: The run options (see :func:`~valar_pandas._options.validate_options`).

    Returns:
        The prepared call; nothing has been sent.

    Raises:
        ConfigError: A bad option, template, column, row value or price.
    """
    frame, options, compiled, resolved = _checked(frame, template, price, **kwargs)
    rendered = render_rows(frame, compiled, options.on_missing)
    return _Call(frame, options, plan_requests(rendered, options), resolved)


def _checked(
    frame: pd.DataFrame, template: Template, price: PriceArg, **kwargs: Any
) -> tuple[pd.DataFrame, RunOptions, CompiledTemplate, Price | None]:
    """The checks of :func:`prepare_call`, before any row is rendered."""
    options = validate_options(**kwargs)
    if not options.cache:
        # Fresh answers: a nonce no earlier call can have used.
        nonce = uuid.uuid4().hex
        salt = nonce if options.salt is None else f"{options.salt}:{nonce}"
        options = validate_options(**{**kwargs, "salt": salt})
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


def score_request_options(spec: ScoreSpec, instructions: str | None) -> dict[str, Any]:
    """The request options a scoring run adds: the answer hint and the structured format.

    Args:
        spec: The scoring spec.
        instructions: The caller's own instructions, if any (the hint is appended).

    Returns:
        ``{"instructions": ..., "text": ...}`` for :func:`prepare_call`.
    """
    hint = instructions_hint(spec)
    return {
        "instructions": f"{instructions}\n\n{hint}" if instructions else hint,
        "text": text_format(spec),
    }


def score_columns(
    spec: ScoreSpec, outcomes: Sequence[Outcome], into: str
) -> tuple[dict[str, ExtensionArray], list[str | None]]:
    """Read every reply of a scoring run into typed columns and per-row errors.

    Args:
        spec: The scoring spec.
        outcomes: One outcome per row.
        into: The column prefix.

    Returns:
        The typed value columns, and each row's error (the request's, else the reply's).
    """
    parsed = [parse(spec, o.text) if o.ok else None for o in outcomes]
    upstream = [None if o.ok else o.error for o in outcomes]
    return to_columns(spec, parsed, into), row_errors(upstream, parsed)


@pd.api.extensions.register_dataframe_accessor("valar")
class ValarAccessor:
    """Run a language model over every row: ``df.valar.run(template, model=...)``."""

    def __init__(self, pandas_obj: pd.DataFrame) -> None:
        self._obj = pandas_obj

    def _prepare(
        self, template: Template, price: PriceArg, frame: pd.DataFrame | None = None, **kwargs: Any
    ) -> _Call:
        return prepare_call(self._obj if frame is None else frame, template, price, **kwargs)

    def _start(
        self, template: Template, client: ValarClient | None, store: StoreArg, price: PriceArg,
        frame: pd.DataFrame | None = None, spec: ScoreSpec | None = None, **kwargs: Any,
    ) -> tuple[_Call, ValarClient, RunStore | None, Display]:  # fmt: skip
        """Check everything, plan every request, open the store and show the display.

        The columns the call will write are checked against each other and the frame's
        (:func:`~valar_pandas._merge.check_columns`): a clash is refused here, before any
        request, never found after the answers are paid for.
        """
        if client is not None and not isinstance(client, ValarClient):
            raise ConfigError("client must be a valar_pandas.ValarClient")
        call = self._prepare(template, price, frame, **kwargs)
        into = call.options.into
        values = None if spec is None else value_columns(spec, into)
        check_columns(call.frame.columns, planned_columns(into, call.options.details, values))
        client = client or ValarClient()
        opened = open_store(store, call.options)
        try:
            # Made here, on the caller's thread: a notebook widget shows in the caller's cell.
            display = make_display(
                call.options.progress,
                call.price,
                errors_hint=f"the {call.options.into}_error column",
            )
            if spec is not None:  # an unreadable reply is a failed row on the display too
                display = Judged(display, reply_judge(spec))
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        return call, client, opened, display

    @staticmethod
    def _blocking(
        call: _Call, client: ValarClient, opened: RunStore | None, display: Display
    ) -> tuple[RunReport, StopSignal]:
        """Run on the library's loop until done; Ctrl-C stops it and keeps what arrived."""
        stop = StopSignal()
        try:
            report = run_sync(
                run_plan(call.plan, call.options, client, opened, call.price, display, stop=stop),
                stop,
            )
        finally:
            close_display(display)
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
                stacklevel=3,
            )
        return report, stop

    @checked_arguments
    def run(
        self,
        template: Template,
        *,
        model: str,
        into: str = "output",
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        completion_window: Literal["standard", "asap"] | None = None,
        mode: Mode = "background",
        concurrency: int = 200,
        max_rps: float | None = DEFAULT_MAX_RPS,
        errors: Literal["column", "raise"] = "column",
        progress: Progress = "auto",
        details: bool = False,
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
        cache: bool = True,
        retry_failed: bool = True,
        store: StoreArg = None,
        budget: float | None = None,
        price: PriceArg = None,
        label: str | None = None,
        client: ValarClient | None = None,
    ) -> pd.DataFrame:
        """Ask the model once per row and return the answers as new columns.

        Args:
            template: A ``str.format`` template naming columns (``"Review: {review}"``;
                literal braces as ``{{ }}``), or a callable ``row -> str | list[message] |
                None`` (None skips the row). ``row`` is a dict that also allows
                ``row.column``.
            model: The model id, e.g. ``"zai-org/GLM-5.1-FP8"``.
            into: Name of the output text column. The error column is ``<into>_error``.
            instructions: System instructions sent ahead of every row's prompt.
            max_output_tokens: Cap on each answer's length, in tokens.
            temperature: Sampling temperature, 0 to 2.
            completion_window: ``"standard"`` (cheaper, minutes; the default except in
                realtime mode) or ``"asap"`` (the default in realtime mode; not for batch).
            mode: ``"background"`` (create, then poll; the default), ``"realtime"`` (one
                request that waits for the answer), ``"batch"`` (the Batch API; raises
                :class:`BatchUnavailable` where it is absent) or ``"auto"`` (the Batch API
                for 1,000 or more requests to send on the standard window, else background;
                background also where the Batch API is absent). See ``docs/batch.md``.
            concurrency: Most HTTP requests in flight at once.
            max_rps: Most HTTP requests a second, creates, polls and retries together
                (bursts of up to 50, never more than one second's worth); None for no limit.
                The default, 2,000, is what 200 connections make at 100 ms round trips: it
                holds back only a client whose server answers faster than that.
            errors: ``"column"`` puts failures in ``<into>_error``; ``"raise"`` raises
                :class:`RowErrors` (carrying the full frame) when any row failed.
            progress: ``"auto"`` or ``"tqdm"`` for a progress bar, None for none.
            details: Also add ``<into>_response_id``, ``_status``, ``_input_tokens`` and
                ``_output_tokens`` columns.
            on_missing: For missing values in columns the template names: ``"empty"``
                renders them as ``""``; ``"skip"`` leaves the row unsent, with a reason.
            salt: Any string; a new salt asks for fresh answers instead of replays.
            cache: Answer from the run store what it already holds (and resume what an
                interrupted run started). False asks afresh for every row and keeps nothing.
            retry_failed: Ask again, on a re-run, rows the server failed last time.
            store: The run store file; None or True for the default location
                (``VALAR_PANDAS_STORE`` or the user cache directory); False for none.
            budget: Most USD this call may spend: once spend plus the estimate of what is in
                flight would pass it, no new row is sent and the rest say so in the error
                column.
            price: USD per million tokens (``Price`` or ``{"input", "output",
                "cached_input"}``) replacing the shipped table for this call.
            label: A name for the batches a batch run creates (letters, digits, ``-``,
                ``_``; at most 128); only with ``mode="batch"`` or ``"auto"``.
            client: Connection settings; default reads ``VALAR_API_KEY`` and
                ``VALAR_BASE_URL``.

        Returns:
            A new frame: every row and column of ``df``, in order and with its index, plus
            ``<into>`` (text, missing where the row failed) and ``<into>_error`` (missing
            where it succeeded). ``out.attrs["valar"]`` holds the run's totals.

        Raises:
            ConfigError: Bad option, template, column, key, store or price; raised before
                any request.
            AuthenticationError: The server rejected the key.
            APIError: The first requests (or the first batch) were all rejected with the
                same error.
            BatchUnavailable: ``mode="batch"`` and the server has no Batch API.
            RowErrors: ``errors="raise"`` and at least one row failed.
            StoreError: The run store's rows cannot be read (before any request); or
                ``errors="raise"`` and the store missed some of the run's answers (the
                complete frame is on ``.frame``).

        Warns:
            StoreWarning: The run store could not record all of the run's answers; the
                returned frame holds every one of them.

        Example:
            >>> out = df.valar.run(  # doctest: +SKIP
            ...     "Classify the sentiment of this review as positive, negative or "
            ...     "neutral. Reply with one word. Review: {review}",
            ...     model="zai-org/GLM-5.1-FP8",
            ...     into="sentiment",
            ... )
        """
        call, client, opened, display = self._start(
            template, client, store, price, model=model, into=into, instructions=instructions,
            max_output_tokens=max_output_tokens, temperature=temperature,
            completion_window=completion_window, mode=mode, concurrency=concurrency,
            max_rps=max_rps,
            errors=errors, progress=progress, details=details, on_missing=on_missing,
            salt=salt, cache=cache, retry_failed=retry_failed, budget=budget, label=label,
        )  # fmt: skip
        try:
            report, _ = self._blocking(call, client, opened, display)
        finally:
            if opened is not None:
                opened.close()
        return call.finish(report)

    @checked_arguments
    async def arun(
        self,
        template: Template,
        *,
        model: str,
        into: str = "output",
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        completion_window: Literal["standard", "asap"] | None = None,
        mode: Mode = "background",
        concurrency: int = 200,
        max_rps: float | None = DEFAULT_MAX_RPS,
        errors: Literal["column", "raise"] = "column",
        progress: Progress = "auto",
        details: bool = False,
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
        cache: bool = True,
        retry_failed: bool = True,
        store: StoreArg = None,
        budget: float | None = None,
        price: PriceArg = None,
        label: str | None = None,
        client: ValarClient | None = None,
    ) -> pd.DataFrame:
        """The coroutine form of :meth:`run`, for code already inside an event loop.

        Takes the same arguments and returns the same frame as :meth:`run`; the requests
        run on the caller's loop.

        Example:
            >>> out = await df.valar.arun(  # doctest: +SKIP
            ...     "Review: {review}", model="zai-org/GLM-5.1-FP8"
            ... )
        """
        call, client, opened, display = self._start(
            template, client, store, price, model=model, into=into, instructions=instructions,
            max_output_tokens=max_output_tokens, temperature=temperature,
            completion_window=completion_window, mode=mode, concurrency=concurrency,
            max_rps=max_rps,
            errors=errors, progress=progress, details=details, on_missing=on_missing,
            salt=salt, cache=cache, retry_failed=retry_failed, budget=budget, label=label,
        )  # fmt: skip
        try:
            report = await run_plan(call.plan, call.options, client, opened, call.price, display)
        finally:
            close_display(display)
            if opened is not None:
                opened.close()
        return call.finish(report)

    @checked_arguments
    def submit(
        self,
        template: Template,
        *,
        model: str,
        into: str = "output",
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        completion_window: Literal["standard", "asap"] | None = None,
        mode: Mode = "background",
        concurrency: int = 200,
        max_rps: float | None = DEFAULT_MAX_RPS,
        errors: Literal["column", "raise"] = "column",
        progress: Progress = "auto",
        details: bool = False,
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
        cache: bool = True,
        retry_failed: bool = True,
        store: StoreArg = None,
        budget: float | None = None,
        price: PriceArg = None,
        label: str | None = None,
        client: ValarClient | None = None,
    ) -> Job:
        """Start :meth:`run` in the background and return at once with a :class:`Job`.

        Takes the same arguments as :meth:`run` and checks them the same way, before any
        request. The frame is taken as it is now: later edits to ``df`` do not reach the
        job. In a notebook the progress widget appears in this cell and keeps moving while
        the kernel does other work; several jobs can run at once.

        Returns:
            The job: ``job.status()``, ``job.done()``, ``job.result(timeout=None)`` (the
            frame :meth:`run` would return) and ``job.cancel()``.

        Raises:
            ConfigError: Bad option, template, column, key, store or price.

        Example:
            >>> job = df.valar.submit(  # doctest: +SKIP
            ...     "Review: {review}", model="zai-org/GLM-5.1-FP8"
            ... )
            >>> out = job.result()  # doctest: +SKIP
        """
        # pandas 3 copies on write: a shallow copy is a snapshot that later edits to df
        # do not change, at no cost until someone writes.
        call, client, opened, display = self._start(
            template, client, store, price, self._obj.copy(deep=False), model=model,
            into=into, instructions=instructions, max_output_tokens=max_output_tokens,
            temperature=temperature, completion_window=completion_window, mode=mode,
            concurrency=concurrency, max_rps=max_rps, errors=errors, progress=progress,
            details=details, on_missing=on_missing, salt=salt, cache=cache,
            retry_failed=retry_failed, budget=budget, label=label,
        )  # fmt: skip
        stop = StopSignal()

        def cleanup() -> None:
            if opened is not None:
                opened.close()

        run = run_plan(call.plan, call.options, client, opened, call.price, display, stop=stop)
        return Job(run, call.finish, display, stop, cleanup)

    @checked_arguments
    def score(
        self,
        template: Template,
        *,
        model: str,
        labels: Sequence[str] | None = None,
        scale: Sequence[float] | None = None,
        schema: Mapping[str, Any] | type | None = None,
        reasons: bool = False,
        retries_on_invalid: int = 0,
        into: str = "score",
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        completion_window: Literal["standard", "asap"] | None = None,
        mode: Mode = "background",
        concurrency: int = 200,
        max_rps: float | None = DEFAULT_MAX_RPS,
        errors: Literal["column", "raise"] = "column",
        progress: Progress = "auto",
        details: bool = False,
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
        cache: bool = True,
        retry_failed: bool = True,
        store: StoreArg = None,
        budget: float | None = None,
        price: PriceArg = None,
        label: str | None = None,
        client: ValarClient | None = None,
    ) -> pd.DataFrame:
        """Ask for a label, a score or a JSON object per row, and return typed columns.

        Give exactly one of ``labels``, ``scale`` or ``schema``. Requests ask for structured
        output (``text.format`` of type ``json_schema``) and carry a one-line answer hint in
        the instructions; replies are read as JSON or, for labels and scores, as plain text
        (see ``docs/scoring.md``). A reply that cannot be read leaves the value missing and
        quotes the reply in ``<into>_error``. Every other argument is as in :meth:`run`.

        Args:
            template: As in :meth:`run`.
            model: The model id.
            labels: The allowed labels: ``<into>`` is a ``category`` column with exactly
                these categories.
            scale: ``(lo, hi)``: ``<into>`` is ``Int64`` for integer bounds, else
                ``Float64``; values outside the range are errors, not clipped.
            schema: A JSON schema (top level an object with ``properties``) or a pydantic
                model class: one typed ``<into>_<property>`` column per top-level property.
            reasons: Also ask for a short justification, in ``<into>_reason``.
            retries_on_invalid: Re-ask a row whose reply could not be read up to this many
                times, each under a fresh salt (a new inference, billed).
            into: The column (or column prefix) for the values.
            instructions: As in :meth:`run`; the answer hint is appended.
            max_output_tokens: As in :meth:`run`.
            temperature: As in :meth:`run`.
            completion_window: As in :meth:`run`.
            mode: As in :meth:`run`.
            concurrency: As in :meth:`run`.
            max_rps: As in :meth:`run`.
            errors: As in :meth:`run`; unreadable replies count as failures.
            progress: As in :meth:`run`.
            details: As in :meth:`run`.
            on_missing: As in :meth:`run`.
            salt: As in :meth:`run`.
            cache: As in :meth:`run`; a re-run re-reads stored replies, no request.
            retry_failed: As in :meth:`run`.
            store: As in :meth:`run`.
            budget: As in :meth:`run`.
            price: As in :meth:`run`.
            label: As in :meth:`run`.
            client: As in :meth:`run`.

        Returns:
            A new frame: ``df`` plus the typed value columns, ``<into>_reason`` (with
            ``reasons=True``) and ``<into>_error``. ``out.attrs["valar"]["invalid_retries"]``
            counts the re-asked rows.

        Raises:
            ConfigError: Bad labels, scale, schema or any :meth:`run` option; raised before
                any request.

        Example:
            >>> out = df.valar.score(  # doctest: +SKIP
            ...     "Classify the sentiment of this review. Review: {review}",
            ...     labels=["positive", "negative", "neutral"],
            ...     model="zai-org/GLM-5.1-FP8",
            ...     into="sentiment",
            ... )
        """
        spec = make_spec(labels=labels, scale=scale, schema=schema, reasons=reasons)
        again = as_int(retries_on_invalid)
        if again is None or again < 0:
            raise ConfigError("retries_on_invalid must be a whole number, 0 or more")
        options: dict[str, Any] = dict(
            model=model, into=into, max_output_tokens=max_output_tokens,
            temperature=temperature, completion_window=completion_window, mode=mode,
            concurrency=concurrency, max_rps=max_rps, errors=errors, progress=progress,
            details=details, on_missing=on_missing, salt=salt, cache=cache,
            retry_failed=retry_failed, budget=budget, label=label,
            **score_request_options(spec, instructions),
        )  # fmt: skip
        call, client, opened, display = self._start(
            template, client, store, price, spec=spec, **options
        )
        try:
            report, stop = self._blocking(call, client, opened, display)
            outcomes = list(report.outcomes)
            parsed = [parse(spec, o.text) if o.ok else None for o in outcomes]
            asked_again, http_requests = 0, report.http_requests
            for attempt in range(1, 0 if stop.stopped else again + 1):
                invalid = [i for i, p in enumerate(parsed) if p is not None and p.error]
                if not invalid:
                    break
                asked_again += len(invalid)
                again_salt = f"{salt or ''}#invalid-{attempt}"
                retry = self._prepare(
                    template, price, call.frame.iloc[invalid], **{**options, "salt": again_salt}
                )
                shown = Judged(
                    make_display(retry.options.progress, retry.price, desc="valar re-ask"),
                    reply_judge(spec),
                )
                redo, stop = self._blocking(retry, client, opened, shown)
                http_requests += redo.http_requests
                for i, outcome in zip(invalid, redo.outcomes, strict=True):
                    outcomes[i] = outcome
                    parsed[i] = parse(spec, outcome.text) if outcome.ok else None
                if stop.stopped:
                    break
        finally:
            if opened is not None:
                opened.close()
        fault = opened.fault if opened is not None else None
        report = RunReport(outcomes, report.tally, http_requests, fault)
        values, row_errs = score_columns(spec, outcomes, call.options.into)
        return call.finish(report, values=values, errors=row_errs, invalid_retries=asked_again)

    @checked_arguments
    def requests(
        self,
        template: Template,
        *,
        model: str,
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        completion_window: Literal["standard", "asap"] | None = None,
        mode: Mode = "background",
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
        n: int | None = PREVIEW_ROWS,
    ) -> pd.DataFrame:
        """The requests :meth:`run` would send for the first ``n`` rows, without any I/O.

        Takes the arguments of :meth:`run` that shape a request body. Only the first ``n``
        rows are rendered and built, so a preview of a large frame costs what ``n`` rows
        cost; the keys and fingerprints are the ones a run of the whole frame sends.

        Args:
            template: As in :meth:`run`.
            model: As in :meth:`run`.
            instructions: As in :meth:`run`.
            max_output_tokens: As in :meth:`run`.
            temperature: As in :meth:`run`.
            completion_window: As in :meth:`run`.
            mode: As in :meth:`run`.
            on_missing: As in :meth:`run`.
            salt: As in :meth:`run`.
            n: How many leading rows to preview (1,000 by default); None for every row.

        Returns:
            A frame on the first ``n`` labels of ``df``'s index with ``body`` (the JSON body
            as a dict, None for a skipped row), ``idempotency_key``, ``fingerprint`` (shared
            by identical rows) and ``skipped`` (the reason, or missing).

        Raises:
            ConfigError: A bad option, template or column, or ``n`` not a whole number
                0 or more.

        Example:
            >>> df.valar.requests("Review: {review}", model="zai-org/GLM-5.1-FP8")  # doctest: +SKIP
        """
        rows = as_int(n) if n is not None else None
        if n is not None and (rows is None or rows < 0):
            raise ConfigError("n must be a whole number, 0 or more, or None for every row")
        frame = self._obj if rows is None else self._obj.iloc[:rows]
        call = self._prepare(
            template, None, frame, model=model, instructions=instructions,
            max_output_tokens=max_output_tokens, temperature=temperature,
            completion_window=completion_window, mode=mode, on_missing=on_missing, salt=salt,
        )  # fmt: skip
        plan = call.plan
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
            index=frame.index,
        )

    @checked_arguments
    def estimate(
        self,
        template: Template,
        *,
        model: str,
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        completion_window: Literal["standard", "asap"] | None = None,
        mode: Mode = "background",
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
        cache: bool = True,
        retry_failed: bool = True,
        store: StoreArg = None,
        price: PriceArg = None,
        base_url: str | None = None,
    ) -> Estimate:
        """How many requests :meth:`run` would send and what they would cost; sends nothing.

        Takes the arguments of :meth:`run` that shape requests and the cache. Cache hits
        are read from the run store for ``base_url`` (default ``VALAR_BASE_URL`` or the
        Valar API); no key is needed.

        Returns:
            An :class:`Estimate`: rows, distinct requests, cache hits, skipped rows, requests
            to send, estimated input tokens (image parts by OpenAI's tile rule, counted in
            ``images``), assumed output tokens (``max_output_tokens``, or 256 per request
            when unset) and estimated cost for the completion window. No request body is
            kept: a million rows take seconds and a few hundred MB.

        Example:
            >>> df.valar.estimate("Review: {review}", model="zai-org/GLM-5.1-FP8")  # doctest: +SKIP
        """
        endpoint = resolve_base_url(base_url)
        frame, options, compiled, resolved = _checked(
            self._obj, template, price, model=model, instructions=instructions,
            max_output_tokens=max_output_tokens, temperature=temperature,
            completion_window=completion_window, mode=mode, on_missing=on_missing, salt=salt,
            cache=cache, retry_failed=retry_failed,
        )  # fmt: skip
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
        )
