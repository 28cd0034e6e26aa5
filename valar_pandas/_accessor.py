"""``df.valar``: the pandas accessor, a thin façade over the call service.

Every method returns a new object and leaves ``df`` untouched. Everything that can be wrong
with the call (options, template, columns, key, store, price) raises :class:`ConfigError`
before any request is sent. ``run`` blocks (it works in scripts and inside Jupyter's running
loop); ``arun`` is the same thing as a coroutine for code already in an event loop; ``submit``
and ``submit_score`` start a run in the background and return a :class:`Job`; ``requests``
and ``estimate`` send nothing.

The options are defined once (:mod:`valar_pandas._core.spec`): each method takes them as
``**options`` typed by a ``TypedDict``, and :func:`~valar_pandas._core.signatures.takes` gives it
the full signature and the ``Args:`` lines of its docstring. The work itself (prepare, open, run,
re-ask, finish) is :mod:`valar_pandas._service.call`'s and :mod:`valar_pandas._service.score`'s.
"""

from __future__ import annotations

import asyncio
from typing import Any, Unpack

import pandas as pd

from ._core.estimate import Estimate
from ._core.options import checked_arguments
from ._core.signatures import takes
from ._core.spec import PREVIEW_ROWS, EstimateArgs, RequestsArgs, RunArgs, ScoreArgs
from ._display.tally import close_display
from ._run.compose import run_plan
from ._run.job import Job
from ._run.loop import StopSignal
from ._scoring import ScoreSpec
from ._service.call import Opened, Template, open_call, plan_call, resources, run_blocking
from ._service.preview import estimate_call, preview_requests
from ._service.score import Reasks, merged, reask, reask_blocking, scoring

__all__ = ["ValarAccessor"]

_INTO_SCORE = ("score", "The column (or column prefix) for the values.")


@pd.api.extensions.register_dataframe_accessor("valar")
class ValarAccessor:
    """Run a language model over every row: ``df.valar.run(template, model=...)``."""

    def __init__(self, pandas_obj: pd.DataFrame) -> None:
        self._obj = pandas_obj

    def _open(
        self, template: Template, options: dict[str, Any], frame: pd.DataFrame | None = None,
        score: bool = False,
    ) -> tuple[Opened, ScoreSpec | None, int]:  # fmt: skip
        """Check everything, plan every request, open the store and show the display."""
        client, store, price, rest = resources(options)
        spec, again, given = scoring(rest, required=True) if score else (None, 0, rest)
        call = plan_call(self._obj if frame is None else frame, template, price, spec, given)
        return open_call(call, client, store, spec), spec, again

    @checked_arguments
    @takes(RunArgs)
    def run(self, template: Template, **options: Unpack[RunArgs]) -> pd.DataFrame:
        """Ask the model once per row and return the answers as new columns.

        Args:
            template: A ``str.format`` template naming columns (``"Review: {review}"``;
                literal braces as ``{{ }}``), or a callable ``row -> str | list[message] |
                None`` (None skips the row). ``row`` is a dict that also allows
                ``row.column``.
            {options}

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
            BatchUnavailable: ``mode="batch"`` and the server's Batch API cannot be used.
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
        opened, _, _ = self._open(template, dict(options))
        try:
            report, _ = run_blocking(opened)
        finally:
            opened.close_store()
        return opened.call.finish(report)

    @checked_arguments
    @takes(RunArgs)
    async def arun(self, template: Template, **options: Unpack[RunArgs]) -> pd.DataFrame:
        """The coroutine form of :meth:`run`, for code already inside an event loop.

        Takes the same arguments and returns the same frame as :meth:`run`; the requests
        run on the caller's loop. The rows are rendered and planned on a worker thread, so
        the caller's loop keeps serving its other tasks while a large frame is planned.

        Args:
            template: As in :meth:`run`.
            {options}

        Example:
            >>> out = await df.valar.arun(  # doctest: +SKIP
            ...     "Review: {review}", model="zai-org/GLM-5.1-FP8"
            ... )
        """
        client, store, price, given = resources(dict(options))
        # The snapshot is taken here, on the caller's loop, before any other task of it can
        # change df; only the rendering and hashing of that snapshot move to the worker.
        frame = self._obj.copy(deep=False)
        call = await asyncio.to_thread(plan_call, frame, template, price, None, given)
        opened = open_call(call, client, store)
        try:
            report = await run_plan(
                call.plan, call.options, opened.client, opened.store, call.price, opened.display
            )
        finally:
            close_display(opened.display)
            opened.close_store()
        return call.finish(report)

    @checked_arguments
    @takes(RunArgs)
    def submit(self, template: Template, **options: Unpack[RunArgs]) -> Job:
        """Start :meth:`run` in the background and return at once with a :class:`Job`.

        Takes the same arguments as :meth:`run` and checks them the same way, before any
        request. The frame is taken as it is now: later edits to ``df`` do not reach the
        job. In a notebook the progress widget appears in this cell and keeps moving while
        the kernel does other work; several jobs can run at once.

        Args:
            template: As in :meth:`run`.
            {options}

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
        opened, _, _ = self._open(template, dict(options), self._obj.copy(deep=False))
        call, stop = opened.call, StopSignal()
        run = run_plan(
            call.plan, call.options, opened.client, opened.store, call.price, opened.display,
            stop=stop,
        )  # fmt: skip
        return Job(run, call.finish, opened.display, stop, opened.close_store)

    @checked_arguments
    @takes(ScoreArgs, into=_INTO_SCORE)
    def score(self, template: Template, **options: Unpack[ScoreArgs]) -> pd.DataFrame:
        """Ask for a label, a score or a JSON object per row, and return typed columns.

        Give exactly one of ``labels``, ``scale`` or ``schema``. Requests ask for structured
        output (``text.format`` of type ``json_schema``) and carry a one-line answer hint in
        the instructions; replies are read as JSON or, for labels and scores, as plain text
        (see ``docs/scoring.md``). A reply that cannot be read leaves the value missing and
        quotes the reply in ``<into>_error``. Every other argument is as in :meth:`run`.

        Args:
            template: As in :meth:`run`.
            {options}

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
        opened, spec, again = self._open(template, {"into": "score", **options}, score=True)
        assert spec is not None  # a scoring call always has one
        try:
            first, stop = run_blocking(opened)
            reasks = Reasks(spec, opened.call, 0 if stop.stopped else again, first)
            reask_blocking(reasks, opened)
        finally:
            opened.close_store()
        report, merge = merged(reasks, opened.store)
        return opened.call.finish(report, **merge)

    @checked_arguments
    @takes(ScoreArgs, into=_INTO_SCORE)
    def submit_score(self, template: Template, **options: Unpack[ScoreArgs]) -> Job:
        """Start :meth:`score` in the background and return at once with a :class:`Job`.

        :meth:`score` as :meth:`submit` is :meth:`run`: everything is checked first, the
        frame is taken as it is now, and ``job.result()`` is the typed frame :meth:`score`
        would return. Re-asks of unreadable replies (``retries_on_invalid``) run in the job
        too, after the first round, without a display of their own.

        Args:
            template: As in :meth:`run`.
            {options}

        Returns:
            The job (see :meth:`submit`).

        Raises:
            ConfigError: Bad labels, scale, schema or any :meth:`run` option.

        Example:
            >>> job = df.valar.submit_score(  # doctest: +SKIP
            ...     "Review: {review}", labels=["good", "bad"], model="zai-org/GLM-5.1-FP8"
            ... )
            >>> out = job.result()  # doctest: +SKIP
        """
        snapshot = self._obj.copy(deep=False)
        opened, spec, again = self._open(
            template, {"into": "score", **options}, snapshot, score=True
        )
        assert spec is not None  # a scoring call always has one
        call, stop = opened.call, StopSignal()
        steps: list[Reasks] = []

        async def scored() -> Any:
            first = await run_plan(
                call.plan, call.options, opened.client, opened.store, call.price,
                opened.display, stop=stop,
            )  # fmt: skip
            steps.append(Reasks(spec, call, 0 if stop.stopped else again, first))
            await reask(steps[0], opened.client, opened.store, stop=stop)
            return steps[0].report(opened.store)

        def finish(report: Any) -> pd.DataFrame:
            _, merge = merged(steps[0], opened.store)
            return call.finish(report, **merge)

        return Job(scored(), finish, opened.display, stop, opened.close_store)

    @checked_arguments
    @takes(RequestsArgs)
    def requests(self, template: Template, **options: Unpack[RequestsArgs]) -> pd.DataFrame:
        """The requests :meth:`run` (or :meth:`score`) would send for the first ``n`` rows.

        Takes the arguments of :meth:`run` that shape a request body, and those of
        :meth:`score` that shape its answer (with ``labels``, ``scale`` or ``schema`` the
        bodies carry the answer hint and the structured format :meth:`score` sends). No
        I/O: only the first ``n`` rows are rendered and built, so a preview of a large frame
        costs what ``n`` rows cost; the keys and fingerprints are the ones a run of the
        whole frame sends.

        Args:
            template: As in :meth:`run`.
            {options}

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
        given: dict[str, Any] = dict(options)
        n = given.pop("n", PREVIEW_ROWS)
        return preview_requests(self._obj, template, n, given)

    @checked_arguments
    @takes(EstimateArgs)
    def estimate(self, template: Template, **options: Unpack[EstimateArgs]) -> Estimate:
        """How many requests :meth:`run` (or :meth:`score`) would send and what they would cost.

        Sends nothing. Takes the arguments of :meth:`run` that shape requests and the
        cache, and those of :meth:`score` that shape its answer. Cache hits are read from the
        run store for the endpoint of ``client`` (or ``base_url``; default
        ``VALAR_BASE_URL`` or the Valar API); no key is needed.

        Args:
            template: As in :meth:`run`.
            {options}

        Returns:
            An :class:`Estimate`: rows, distinct requests, cache hits, skipped rows, requests
            to send, estimated input tokens (image parts by OpenAI's tile rule, counted in
            ``images``), output tokens (``max_output_tokens`` per request, the worst case
            with reasoning included; or 256 per request when unset, and the estimate is then
            a lower bound: ``lower_bound`` is True and the table says so) and estimated
            cost for the completion window. No request body is kept: a million rows take
            seconds and a few hundred MB.

        Example:
            >>> df.valar.estimate("Review: {review}", model="zai-org/GLM-5.1-FP8")  # doctest: +SKIP
        """
        return estimate_call(self._obj, template, **options)
