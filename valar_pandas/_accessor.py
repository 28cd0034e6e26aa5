"""``df.valar``: the pandas accessor. A stateless façade: validate → plan → run → merge.

Every method returns a new frame and leaves ``df`` untouched. Everything that can be wrong
with the call (options, template, columns, key) raises :class:`ConfigError` before any
request is sent. ``run`` blocks (it works in scripts and inside Jupyter's running loop);
``arun`` is the same thing as a coroutine for code already in an event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from ._config import ValarClient
from ._errors import ConfigError, RowErrors
from ._loop import run_sync
from ._merge import merge
from ._options import RunOptions, validate_options
from ._plan import Plan, plan_requests
from ._prompt import Row, compile_template
from ._rows import render_rows
from ._run import RunReport, run_plan

__all__ = ["ValarAccessor"]

Template = str | Callable[[Row], Any]


@dataclass(frozen=True)
class _Call:
    """One prepared call: everything checked, every request built, nothing sent."""

    frame: pd.DataFrame
    options: RunOptions
    plan: Plan
    client: ValarClient

    def finish(self, report: RunReport) -> pd.DataFrame:
        out = merge(self.frame, report.outcomes, self.options.into, self.options.details)
        out.attrs["valar"] = {
            "rows": len(self.plan.rows),
            "requests": len(self.plan.requests),
            "http_requests": report.http_requests,
            "failed": report.tally.failed,
            "input_tokens": report.tally.input_tokens,
            "output_tokens": report.tally.output_tokens,
        }
        failed = sum(1 for o in report.outcomes if not o.ok)
        if failed and self.options.errors == "raise":
            first = next(o.error for o in report.outcomes if not o.ok)
            raise RowErrors(
                f"{failed} of {len(report.outcomes)} rows failed (first: {first}); "
                "the complete result is on this exception's .frame",
                frame=out,
                failed=failed,
            )
        return out


@pd.api.extensions.register_dataframe_accessor("valar")
class ValarAccessor:
    """Run a language model over every row: ``df.valar.run(template, model=...)``."""

    def __init__(self, pandas_obj: pd.DataFrame) -> None:
        self._obj = pandas_obj

    def _prepare(self, template: Template, client: ValarClient | None, **kwargs: Any) -> _Call:
        options = validate_options(**kwargs)
        if client is not None and not isinstance(client, ValarClient):
            raise ConfigError("client must be a valar_pandas.ValarClient")
        client = client or ValarClient()
        frame = self._obj.copy(deep=False)
        compiled = compile_template(template, list(frame.columns))
        plan = plan_requests(render_rows(frame, compiled, options.on_missing), options)
        return _Call(frame, options, plan, client)

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
        mode: Literal["background", "realtime"] = "background",
        concurrency: int = 200,
        errors: Literal["column", "raise"] = "column",
        progress: Literal["auto", "tqdm"] | None = "auto",
        details: bool = False,
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
        client: ValarClient | None = None,
    ) -> pd.DataFrame:
        r"""Ask the model once per row and return the answers as new columns.

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
            completion_window: ``"standard"`` (cheaper, minutes; the default in background
                mode) or ``"asap"`` (the default in realtime mode).
            mode: ``"background"`` (create, then poll; the default) or ``"realtime"`` (one
                request that waits for the answer).
            concurrency: Most HTTP requests in flight at once.
            errors: ``"column"`` puts failures in ``<into>_error``; ``"raise"`` raises
                :class:`RowErrors` (carrying the full frame) when any row failed.
            progress: ``"auto"`` or ``"tqdm"`` for a progress bar, None for none.
            details: Also add ``<into>_response_id``, ``_status``, ``_input_tokens`` and
                ``_output_tokens`` columns.
            on_missing: For missing values in columns the template names: ``"empty"``
                renders them as ``""``; ``"skip"`` leaves the row unsent, with a reason.
            salt: Any string; a new salt asks for fresh answers instead of replays.
            client: Connection settings; default reads ``VALAR_API_KEY`` and
                ``VALAR_BASE_URL``.

        Returns:
            A new frame: every row and column of ``df``, in order and with its index, plus
            ``<into>`` (text, missing where the row failed) and ``<into>_error`` (missing
            where it succeeded).

        Raises:
            ConfigError: Bad option, template, column or key; raised before any request.
            AuthenticationError: The server rejected the key.
            APIError: The first requests were all rejected with the same error.
            RowErrors: ``errors="raise"`` and at least one row failed.

        Example:
            >>> out = df.valar.run(  # doctest: +SKIP
            ...     "Classify the sentiment of this review as positive, negative or "
            ...     "neutral. Reply with one word.\\n\\nReview: {review}",
            ...     model="zai-org/GLM-5.1-FP8",
            ...     into="sentiment",
            ... )
        """
        call = self._prepare(
            template,
            client,
            model=model,
            into=into,
            instructions=instructions,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            completion_window=completion_window,
            mode=mode,
            concurrency=concurrency,
            errors=errors,
            progress=progress,
            details=details,
            on_missing=on_missing,
            salt=salt,
        )
        return call.finish(run_sync(run_plan(call.plan, call.options, call.client)))

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
        mode: Literal["background", "realtime"] = "background",
        concurrency: int = 200,
        errors: Literal["column", "raise"] = "column",
        progress: Literal["auto", "tqdm"] | None = "auto",
        details: bool = False,
        on_missing: Literal["empty", "skip"] = "empty",
        salt: str | None = None,
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
        call = self._prepare(
            template,
            client,
            model=model,
            into=into,
            instructions=instructions,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            completion_window=completion_window,
            mode=mode,
            concurrency=concurrency,
            errors=errors,
            progress=progress,
            details=details,
            on_missing=on_missing,
            salt=salt,
        )
        return call.finish(await run_plan(call.plan, call.options, call.client))
