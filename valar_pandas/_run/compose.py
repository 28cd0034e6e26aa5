"""The composition root: a planned run → outcomes, wiring store, transport, engine, display.

It splits the plan against the run store and claims the rows it sends, awaiting those
another run holds (``claims``: one owner per row, whatever runs at once), picks the path
(the background engine, or the Batch API for ``mode="batch"`` and large ``mode="auto"``
runs, falling back to the engine when the Batch API is absent), records each request before
it is sent, fans events out to the store, the budget and the display (``fanout``), and
closes everything whatever happens. It decides nothing a pure module could decide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .._core import batchplan as _batchplan
from .._core.budget import Budget
from .._core.config import ValarClient
from .._core.log import child
from .._core.models import Event, Finished, Outcome, Request, Started, Stopped, Submitted
from .._core.options import RunOptions
from .._core.plan import Plan
from .._core.prices import Price
from .._display.progress import make_display
from .._display.tally import Display, Tally, close_display
from .._policy import PollSchedule, RetryPolicy
from .._store import Journal, RunStore, StoreFault, new_owner
from .._transport.exchange import Exchange
from .._transport.http import Http
from . import cancel as _cancel
from .batch import BatchConfig, execute_batches
from .claims import Claim, Work, await_held, split
from .engine import EngineConfig, execute
from .fanout import fan_out, follower, recorder
from .loop import StopSignal

_LOG = child("run")
_STORE_LOG = child("store")

__all__ = ["RunReport", "run_plan"]


@dataclass(frozen=True)
class RunReport:
    """What a finished run produced, and what it cost in HTTP requests.

    Attributes:
        outcomes: One outcome per row, in row order.
        tally: The final counts.
        http_requests: HTTP requests sent, retries and polls included.
        store_fault: What the run store could not record (the outcomes hold it all the
            same), or None.
        notices: What the caller is to be warned of, a ``BatchFallbackWarning`` each
            (rows the Batch API did not run, sent in background mode), issued by the
            caller once the run has returned, never on the loop mid-run.
    """

    outcomes: list[Outcome]
    tally: Tally
    http_requests: int
    store_fault: StoreFault | None = None
    notices: tuple[str, ...] = ()


async def _send(
    plan: Plan,
    work: Work,
    options: RunOptions,
    http: Http,
    emit: Callable[[Event], None],
    gate: Callable[[Request], str | None] | None,
    notices: list[str],
) -> dict[str, Outcome]:
    """Send the work down the engine, the Batch API, or both (rows resumed from a batch).

    Both paths share one exchange, so the run has one set of ``concurrency`` slots and one
    overload control whichever way its rows go.
    """
    exchange = Exchange(http, RetryPolicy(), options.concurrency, emit)
    engine = EngineConfig(
        concurrency=options.concurrency,
        background=options.background,
        poll=PollSchedule.for_window(options.completion_window),
    )

    async def background(requests: Sequence[Request]) -> dict[str, Outcome]:
        return await execute(
            requests, plan.shares, http, engine, emit, attach=work.attach, gate=gate,
            exchange=exchange,
        )  # fmt: skip

    async def resend(requests: Sequence[Request]) -> dict[str, Outcome]:
        """Items a batch did not hold, in background mode: already counted as submitted."""
        moved = {r.fingerprint for r in requests}

        def counted(event: Event) -> None:
            if isinstance(event, Submitted) and event.fingerprint in moved:
                event = Submitted(event.fingerprint, event.response_id, 0)  # id kept, no rows
            emit(event)

        return await execute(
            requests, plan.shares, http, engine, counted, attach=work.attach, gate=gate,
            exchange=exchange,
        )  # fmt: skip

    replayed = {fp for _, items in work.replay.values() for fp, _ in items}
    resumed = work.attach.keys() | work.batches.keys() | replayed
    to_create = sum(1 for r in work.send if r.fingerprint not in resumed)
    chosen = _batchplan.choose_mode(options.mode, options.completion_window, to_create)
    batched = [
        r
        for r in work.send
        if r.fingerprint in work.batches
        or r.fingerprint in replayed  # a create that may have reached the server: replayed
        or (chosen == "batch" and r.fingerprint not in work.attach)
    ]
    _LOG.debug(
        "sending %d requests: %d through the Batch API, %d in the background (%d re-attached)",
        len(work.send), len(batched), len(work.send) - len(batched), len(work.attach),
    )  # fmt: skip
    if not batched:
        return await background(work.send)
    config = BatchConfig(
        concurrency=options.concurrency,
        label=options.label,
        poll=_batchplan.BATCH_POLL,
        limits=_batchplan.LIMITS,
    )
    batches = execute_batches(
        batched, plan.shares, http, config, emit,
        positions=_batchplan.first_positions(plan.rows), attach=work.batches, gate=gate,
        fallback=None if options.mode == "batch" else background, replay=work.replay,
        exchange=exchange, resend=resend, notices=notices,
    )  # fmt: skip
    chosen_set = {r.fingerprint for r in batched}
    rest = [r for r in work.send if r.fingerprint not in chosen_set]
    if not rest:
        return await batches
    return await _together(batches, background(rest))


def _sending(
    plan: Plan,
    work: Work,
    options: RunOptions,
    http: Http,
    emit: Callable[[Event], None],
    gate: Callable[[Request], str | None] | None,
    claim: Claim | None,
    notices: list[str],
) -> Coroutine[Any, Any, dict[str, Outcome]]:
    """Send what this run claimed and, alongside, await what other runs hold."""

    def send(part: Work) -> Coroutine[Any, Any, dict[str, Outcome]]:
        return _send(plan, part, options, http, emit, gate, notices)

    if not work.awaited or claim is None:
        return send(work)
    held = await_held(work, options, claim, plan.shares, emit, send)
    return _together(send(work), held) if work.send else held


async def _together(
    *coroutines: Coroutine[Any, Any, dict[str, Outcome]],
) -> dict[str, Outcome]:
    """Run both paths at once; the first failure stops both and is raised alone."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as group_error:
        errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
        if len(errors) == 1:
            raise errors[0] from None
        raise
    results: dict[str, Outcome] = {}
    for task in tasks:
        results |= task.result()
    return results


async def _unless_stopped(
    sending: Coroutine[Any, Any, dict[str, Outcome]], stop: StopSignal
) -> dict[str, Outcome] | None:
    """Await the sending, or cancel it (and wait for it to unwind) once a stop is asked.

    A stop asked before the run began sends nothing: a task, once made, runs its first step
    (a create, perhaps) before a waiter could see the stop.
    """
    if stop.stopped:
        sending.close()
        return None
    task = asyncio.ensure_future(sending)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


def _wind_down(
    left: list[str],
    shares: Mapping[str, int],
    running: Mapping[str, str],
    stop: StopSignal,
    emit: Callable[[Event], None],
) -> dict[str, Outcome]:
    """The outcomes of the requests a stopped run left unanswered, and the event saying so."""
    emit(Stopped(sum(shares[f] for f in left), stop.reason))
    return {
        f: Outcome("cancelled", error=_left_error(stop, running.get(f)), response_id=running.get(f))
        for f in left
    }


def _left_error(stop: StopSignal, response_id: str | None) -> str:
    """What a row a stopped run left unanswered says, and what the same call will do."""
    said = f"{stop.reason} before an answer arrived"
    if response_id is None:  # not created, or its create unanswered: re-sent under its key
        return f"{said}; run the same call again to resume without paying twice"
    if stop.server:
        return (
            f"{said}, and response {response_id} was asked to stop on the server: the same "
            "call again asks this row afresh (and pays again) if the server stopped it"
        )
    return (
        f"{said}; response {response_id} is left to finish on the server: run the same "
        "call again to collect it without paying twice"
    )


SHARED_BUDGET: ContextVar[tuple[Callable[[float], float], float] | None] = ContextVar(
    "valar_pandas_shared_budget", default=None
)
"""Set where a run's ``budget`` is a share of a larger budget (a Dask partition's grant):
the top-up that draws more of it and the larger budget, which refusals name (see
:class:`~valar_pandas._core.budget.Budget`). The library's loop runs each coroutine with its
caller's context variables, so a caller sets it around a blocking call."""


async def run_plan(
    plan: Plan,
    options: RunOptions,
    client: ValarClient,
    store: RunStore | None,
    price: Price | None,
    display: Display | None = None,
    budget: Budget | None = None,
    stop: StopSignal | None = None,
    asked: set[str] | None = None,
) -> RunReport:
    """Send a plan's requests, resuming from the store, and gather every row's outcome.

    Args:
        plan: The rows and their distinct requests.
        options: The validated options.
        client: Where to send, with which key.
        store: The run store, or None to keep nothing.
        price: The price of the call's model and window, for spend and the budget.
        display: A display the caller made (and closes), e.g. one drawn across several
            runs; None makes one for ``options.progress`` and closes it at the end.
        budget: A budget the caller shares across several runs (it must see their events
            and admits their creates); None makes one for ``options.budget``, if set.
        stop: When it is set, nothing more is sent or polled: the rows answered so far keep
            their outcomes and the rest end ``cancelled`` with the stop's reason. The
            responses left running are left to finish on the server, their ids in the
            store for the next identical call to collect; only a stop that asks for it
            (``server=True``) cancels them on the server, best effort, detached.
        asked: Requests the call or command this run belongs to already asked, shared by
            its runs (a command's windows) and updated with this run's: their failures
            stand, so ``retry_failed`` re-asks a failure once per call or command. None
            for a run of its own.

    Each row this run sends is first claimed in the store (see :func:`claim_work`): rows
    another live run holds (another window, job or process) are awaited from the store,
    never sent twice, and taken over if that run ends or dies without a verdict.

    Returns:
        The report; rows the run could not finish carry an ``error`` outcome.

    Raises:
        AuthenticationError: The server rejected the API key.
        APIError: The first requests, or the first batch, were rejected.
        BatchUnavailable: ``mode="batch"`` and the server's Batch API cannot be used.
    """
    started = time.monotonic()
    endpoint = client.base_url
    asked = set() if asked is None else asked
    journal: Journal | None = None
    claim: Claim | None = None
    if store is not None:
        journal = store.journal(endpoint)
        claim = Claim(store, endpoint, new_owner(), asked, journal)
        work = await claim.take(plan.requests, options)  # a failing store: keys in memory
    else:
        work = split(plan.requests, options, {}, asked)
        asked.update(work.entries)
    owned = display is None
    # The recorder and the budget come first: what they keep is the run's, what a display
    # draws is not, so a display never stands between an answer and the store.
    listeners: list[Callable[[Event], None]] = []
    if journal is not None:
        listeners.append(recorder(journal))
    if budget is None and options.budget is not None and price is not None:
        shared = SHARED_BUDGET.get()
        top_up, named = shared if shared is not None else (None, None)
        budget = Budget(options.budget, price, top_up=top_up, named=named)
    if budget is not None:
        listeners.append(budget)

    # With a stop possible, follow what is answered and what is running, to keep the one and
    # name the other (cancelling it on the server only if the stop asks) when cut short.
    answered: dict[str, Outcome] = {}
    running: dict[str, str] = dict(work.attach)
    if stop is not None:
        listeners.append(follower(answered, running))
    if display is None:  # the run's own display: its tally is the run's
        shown = make_display(options.progress, price)
        tally = shown.tally
    else:  # a caller's display may span several runs: keep this run's counts apart
        shown, tally = display, Tally(price)
        listeners.append(tally.add)
    emit = fan_out(listeners, shown)

    emit(Started(total=len(plan.rows), unique=len(plan.requests)))
    for row in plan.rows:
        if isinstance(row, Outcome):
            emit(Finished(None, row, 1))
    for fingerprint, outcome in work.cached.items():
        emit(Finished(fingerprint, outcome, plan.shares[fingerprint], cached=True))
    results = dict(work.cached)
    http: Http | None = None
    fault: StoreFault | None = None
    notices: list[str] = []
    beating: asyncio.Task[None] | None = None
    ended = "done"
    try:
        if work.send or work.awaited:
            # The client's pool, budget and limit; the run's own concurrency is its exchange's.
            http = Http(client, None, options.max_rps)
            gate = budget.admit if budget is not None else None
            if claim is not None and work.claimed:
                beating = asyncio.ensure_future(claim.beat())
            sending = _sending(plan, work, options, http, emit, gate, claim, notices)
            if stop is None:
                results |= await sending
            else:
                sent = await _unless_stopped(sending, stop)
                results |= sent if sent is not None else answered
                if sent is None:
                    ended = f"stopped: {stop.reason}"
                    left = [f for f in plan.requests if f not in results]
                    results |= _wind_down(left, plan.shares, running, stop, emit)
                    if journal is not None:
                        journal.flush()  # the ids, and before any verdict a cancel writes
                    if stop.server:  # only when asked: a cancelled row is paid again
                        _cancel.spawn(
                            client,
                            {f: running[f] for f in left if f in running},
                            store=store.path if store is not None else None,
                            endpoint=endpoint,
                        )
        if journal is not None and store is not None:
            # What the last ticks hold, waiting for a lock without blocking the loop (a
            # stopped run returns at once: its answers are in the frame either way).
            stopped = stop is not None and stop.stopped
            fault = await journal.aclose(0.0 if stopped else store.lock_timeout)
            journal = None
            if fault is None and claim is not None:
                claim.release()
            elif fault is not None:
                _STORE_LOG.warning(
                    "the run store %s could not record %d answers and %d other records "
                    "of this run (%s); the run's outcomes hold every answer",
                    fault.path or store.path, fault.answers, fault.records, fault.reason,
                )  # fmt: skip
    except BaseException as error:
        ended = f"raised {type(error).__name__}"
        raise
    finally:
        try:
            if journal is not None and journal.close() is None and claim is not None:
                claim.release()  # one try, when the run is cancelled or failed
        finally:
            if beating is not None:
                beating.cancel()
            if http is not None:
                await http.close()
            if owned:
                close_display(shown)
            _log_run(plan, work, options, endpoint, tally, http, time.monotonic() - started, ended)
    return RunReport(plan.outcomes(results), tally, http.sent if http else 0, fault, tuple(notices))


def _log_run(
    plan: Plan,
    work: Work,
    options: RunOptions,
    endpoint: str,
    tally: Tally,
    http: Http | None,
    elapsed: float,
    ended: str,
) -> None:
    """One INFO line per run: what it asked, what the store answered, what it cost."""
    _LOG.info(
        "run %s: %d rows, %d distinct requests (%d from the store, %d sent, %d awaited "
        "from another run); mode=%s model=%s endpoint=%s; %.3f s, %d HTTP requests; "
        "%d rows failed, %d cancelled",
        ended, len(plan.rows), len(plan.requests), len(work.cached), len(work.send),
        len(work.awaited), options.mode, options.model, endpoint, elapsed,
        http.sent if http is not None else 0, tally.failed, tally.cancelled,
    )  # fmt: skip
