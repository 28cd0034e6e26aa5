"""A scoring call's own steps: the request options, the reading of replies, the re-asks.

A scoring call is a run (:mod:`valar_pandas._service.call`) whose requests carry an answer hint
and a structured-output format (:func:`score_request_options`) and whose replies become
typed columns (:func:`score_columns`). With ``retries_on_invalid``, the rows whose reply
could not be read are asked again (:class:`Reasks`): each round is the same call on just
those rows under a salt of its own (``<salt>#invalid-<round>``), so it is a new inference
(billed), and its replies are stored and resumed like any other run's. Every front end runs
the rounds the same way: blocking (:func:`reask_blocking`) or awaited (:func:`reask`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pandas.api.extensions import ExtensionArray

from .._core.budget import Budget
from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._core.models import Outcome
from .._core.options import as_int
from .._display.progress import Judged, make_display
from .._frame.score_columns import row_errors, to_columns
from .._run.compose import RunReport, run_plan
from .._run.loop import StopSignal
from .._scoring import (
    ParsedReply,
    ScoreSpec,
    instructions_hint,
    make_spec,
    parse,
    reply_judge,
    text_format,
)
from .._store import RunStore
from .call import Call, Opened, run_blocking

__all__ = [
    "Reasks",
    "reask",
    "reask_blocking",
    "score_columns",
    "score_request_options",
    "scoring",
    "strict_notice",
]

_SHAPE = ("labels", "scale", "schema", "reasons")


def scoring(
    given: Mapping[str, Any], required: bool = False
) -> tuple[ScoreSpec | None, int, dict[str, Any]]:
    """Take the scoring options out of ``given``: the spec, the re-asks and the rest.

    Args:
        given: A call's options, scoring ones included (not modified).
        required: A scoring call: the spec is built (and checked) even when no shape is
            given, so its absence is refused.

    Returns:
        The spec (None when no labels, scale, schema or reasons were given), the number of
        re-asks allowed, and the run options with the answer hint and the structured format
        added when scoring.

    Raises:
        ConfigError: Bad labels, scale or schema, or a bad ``retries_on_invalid``.
    """
    rest = {k: v for k, v in given.items() if k not in (*_SHAPE, "retries_on_invalid")}
    again = as_int(given.get("retries_on_invalid", 0))
    if again is None or again < 0:
        raise ConfigError("retries_on_invalid must be a whole number, 0 or more")
    shape = {k: given[k] for k in _SHAPE if k in given}
    asked_for = any(shape.get(k) is not None for k in ("labels", "scale", "schema"))
    if not (required or asked_for or shape.get("reasons")):
        return None, again, rest
    spec = make_spec(**shape)
    return spec, again, rest | score_request_options(spec, rest.get("instructions"))


def strict_notice(spec: ScoreSpec, named: str) -> str | None:
    """What to tell the caller when the schema is sent with ``"strict": false``, if it is.

    Args:
        spec: The scoring spec.
        named: How the caller gave the schema: ``"schema="``, or the command's flag.

    Returns:
        The notice, naming where the schema breaks strict mode's rules; None when the
        request is strict.
    """
    if spec.not_strict is None:
        return None
    return (
        f"{named} has no strict form ({spec.not_strict}), so it is sent with "
        '"strict": false: the server may not hold the model to it; every answer is still '
        "checked against it, and one that does not fit is a row error"
    )


def score_request_options(
    spec: ScoreSpec, instructions: str | None, warn: bool = True
) -> dict[str, Any]:
    """The request options a scoring run adds: the answer hint and the structured format.

    Args:
        spec: The scoring spec.
        instructions: The caller's own instructions, if any (the hint is appended).
        warn: Warn when the schema is sent with ``"strict": false`` (the command says so
            in its own words instead, see :func:`strict_notice`).

    Returns:
        ``{"instructions": ..., "text": ...}`` for
        :func:`~valar_pandas._service.call.prepare_call`.

    Warns:
        UserWarning: The schema has no strict form and is sent with ``"strict": false``.
    """
    notice = strict_notice(spec, "schema=") if warn else None
    if notice is not None:
        warnings.warn(notice, UserWarning, stacklevel=4)
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


@dataclass
class Reasks:
    """The re-ask step of one scoring call: which rows to ask again, and what came back.

    Made from the first round's report; each :meth:`next` is the call for the rows still
    unreadable, and :meth:`absorb` takes its report. :meth:`report` is the call's report
    with every row's latest outcome.

    Attributes:
        spec: The scoring spec.
        call: The first round's call.
        rounds: Most re-asks of a row.
        first: The first round's report.
    """

    spec: ScoreSpec
    call: Call
    rounds: int
    first: RunReport
    outcomes: list[Outcome] = field(init=False)
    parsed: list[ParsedReply | None] = field(init=False)
    asked: int = 0
    """Rows re-asked, over every round."""
    http_requests: int = field(init=False)
    notices: tuple[str, ...] = field(init=False)
    """What every round's report asks the caller to be warned of."""
    _round: int = 0
    _pending: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcomes = list(self.first.outcomes)
        self.parsed = [parse(self.spec, o.text) if o.ok else None for o in self.outcomes]
        self.http_requests = self.first.http_requests
        self.notices = self.first.notices

    def next(self) -> Call | None:
        """The next round's call, on the rows whose reply could not be read; None when done."""
        if self._round >= self.rounds:
            return None
        self._pending = [i for i, p in enumerate(self.parsed) if p is not None and p.error]
        if not self._pending:
            return None
        self._round += 1
        self.asked += len(self._pending)
        salt = self.call.given.get("salt")
        return self.call.again(self._pending, f"{salt or ''}#invalid-{self._round}")

    def absorb(self, report: RunReport) -> None:
        """Take a round's report: its rows' outcomes replace theirs."""
        self.http_requests += report.http_requests
        self.notices += report.notices
        for i, outcome in zip(self._pending, report.outcomes, strict=True):
            self.outcomes[i] = outcome
            self.parsed[i] = parse(self.spec, outcome.text) if outcome.ok else None

    def report(self, store: RunStore | None = None) -> RunReport:
        """The call's report: every row's latest outcome, every round's HTTP requests."""
        fault = store.fault if store is not None else self.first.store_fault
        return RunReport(self.outcomes, self.first.tally, self.http_requests, fault, self.notices)

    def columns(self) -> tuple[dict[str, ExtensionArray], list[str | None]]:
        """The typed value columns and per-row errors of every row's latest outcome."""
        return score_columns(self.spec, self.outcomes, self.call.options.into)


def reask_blocking(reasks: Reasks, opened: Opened) -> None:
    """Run every re-ask round on the library's loop, each with a display of its own.

    Ctrl-C during a round stops the rounds; what arrived is kept.
    """
    while (retry := reasks.next()) is not None:
        shown = Judged(
            make_display(retry.options.progress, retry.price, desc="valar re-ask"),
            reply_judge(reasks.spec),
        )
        redo, stop = run_blocking(Opened(retry, opened.client, opened.store, shown))
        reasks.absorb(redo)
        if stop.stopped:
            break


async def reask(
    reasks: Reasks,
    client: ValarClient,
    store: RunStore | None,
    budget: Budget | None = None,
    asked: set[str] | None = None,
    stop: StopSignal | None = None,
) -> None:
    """Run every re-ask round as a coroutine, without a display of its own.

    Args:
        reasks: The call's re-ask step, after its first round.
        client: Where to send.
        store: The run store, or None.
        budget: The budget the first round ran under, if any.
        asked: What the command asked already (see :func:`~valar_pandas._run.compose.run_plan`).
        stop: The call's stop signal: once stopped, no further round starts.
    """
    while (stop is None or not stop.stopped) and (retry := reasks.next()) is not None:
        redo = await run_plan(
            retry.plan, retry.options, client, store, retry.price, None, budget, stop, asked
        )
        reasks.absorb(redo)


def merged(reasks: Reasks, store: RunStore | None = None) -> tuple[RunReport, Mapping[str, Any]]:
    """The report and the ``finish`` arguments of a scoring call after its re-asks."""
    values, errors = reasks.columns()
    return reasks.report(store), {
        "values": values,
        "errors": errors,
        "invalid_retries": reasks.asked,
    }
