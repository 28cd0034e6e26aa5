"""The composition root: a planned run → outcomes, wiring store, transport, engine, display.

It consults the run store (finished rows come from disk; rows an earlier run created are
re-attached by id, or by their batch; rows it only planned are re-sent under the same key),
picks the path (the background engine, or the Batch API for ``mode="batch"`` and large
``mode="auto"`` runs, falling back to the engine when the Batch API is absent), records each
request before it is sent, fans events out to the store, the budget and the display, and
closes everything whatever happens. It decides nothing a pure module could decide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _batchplan, _cancel
from ._batch import BatchConfig, execute_batches
from ._budget import Budget
from ._config import ValarClient
from ._engine import EngineConfig, execute
from ._http import Http
from ._loop import StopSignal
from ._models import (
    SERVER_VERDICTS,
    BatchCreated,
    BatchLost,
    BatchPlanned,
    Event,
    Finished,
    Outcome,
    Request,
    Started,
    Stopped,
    Submitted,
)
from ._options import RunOptions
from ._plan import Plan
from ._policy import PollSchedule
from ._prices import Price
from ._progress import Display, Tally, close_display, drop_display, is_dropped, make_display
from ._store import Journal, RunStore, Stored, StoreFault
from ._wire import attempt_key

__all__ = ["RunReport", "Work", "prepare_work", "run_plan", "served_from_store"]


@dataclass(frozen=True)
class RunReport:
    """What a finished run produced, and what it cost in HTTP requests.

    Attributes:
        outcomes: One outcome per row, in row order.
        tally: The final counts.
        http_requests: HTTP requests sent, retries and polls included.
        store_fault: What the run store could not record (the outcomes hold it all the
            same), or None.
    """

    outcomes: list[Outcome]
    tally: Tally
    http_requests: int
    store_fault: StoreFault | None = None


@dataclass
class Work:
    """A plan split against the store: what is already known and what must be sent.

    Attributes:
        cached: Outcomes served from the store, by fingerprint.
        send: Requests to send (with the key each must carry).
        attach: Fingerprint → response id of requests an earlier run created.
        entries: Fingerprint → (key, attempt), to record before anything is sent.
        batches: Fingerprint → (batch key, batch id, custom_id) of requests an earlier run
            put in a batch the server accepted.
    """

    cached: dict[str, Outcome]
    send: list[Request]
    attach: dict[str, str]
    entries: dict[str, tuple[str, int]]
    batches: dict[str, tuple[str, str, str]] = field(default_factory=dict)


def served_from_store(stored: Stored, options: RunOptions) -> bool:
    """Whether the store's answer to a request stands (else the request is sent).

    Args:
        stored: What the store holds of the request.
        options: ``retry_failed`` decides whether a failure stands.

    Returns:
        True for a stored success, and for a stored failure unless it is to be re-asked.
    """
    outcome = stored.outcome
    return outcome is not None and (outcome.ok or not options.retry_failed)


def prepare_work(plan: Plan, options: RunOptions, store: RunStore | None, endpoint: str) -> Work:
    """Split a plan into cached outcomes, re-attachments and requests to send.

    Args:
        plan: The planned requests.
        options: ``cache`` and ``retry_failed`` decide what the store may answer.
        store: The run store, or None.
        endpoint: The API base URL the store namespaces rows by.

    Returns:
        The work.
    """
    work = Work({}, [], {}, {})
    known = store.lookup(endpoint, plan.requests) if store is not None else {}
    for fingerprint, request in plan.requests.items():
        stored = known.get(fingerprint)
        if stored is None:
            work.send.append(request)
            work.entries[fingerprint] = (request.idempotency_key, 0)
            continue
        outcome = stored.outcome
        if served_from_store(stored, options):
            assert outcome is not None
            work.cached[fingerprint] = outcome
            continue
        attempt = stored.attempt + 1 if outcome is not None else stored.attempt
        key = attempt_key(fingerprint, attempt) if outcome is not None else stored.idempotency_key
        work.send.append(dataclasses.replace(request, idempotency_key=key))
        work.entries[fingerprint] = (key, attempt)
        if outcome is None and stored.batch_key and stored.batch_id and stored.custom_id:
            work.batches[fingerprint] = (stored.batch_key, stored.batch_id, stored.custom_id)
        elif outcome is None and stored.state == "submitted" and stored.response_id:
            work.attach[fingerprint] = stored.response_id
    return work


def _recorder(journal: Journal) -> Callable[[Event], None]:
    def record(event: Event) -> None:
        if isinstance(event, Submitted):
            journal.submitted(event.fingerprint, event.response_id)
        elif (
            isinstance(event, Finished)
            and not event.cached
            and event.fingerprint is not None
            and event.outcome.status in SERVER_VERDICTS
        ):
            journal.finished(event.fingerprint, event.outcome)
        elif isinstance(event, BatchPlanned):
            journal.batch_planned(event.key, event.label, event.items)
        elif isinstance(event, BatchCreated):
            journal.batch_created(event.key, event.batch_id)
        elif isinstance(event, BatchLost):
            journal.batch_lost(event.key, rekey=event.rekey)

    return record


async def _send(
    plan: Plan,
    work: Work,
    options: RunOptions,
    http: Http,
    emit: Callable[[Event], None],
    gate: Callable[[Request], str | None] | None,
) -> dict[str, Outcome]:
    """Send the work down the engine, the Batch API, or both (rows resumed from a batch)."""
    engine = EngineConfig(
        concurrency=options.concurrency,
        background=options.background,
        poll=PollSchedule.for_window(options.completion_window),
    )

    async def background(requests: Sequence[Request]) -> dict[str, Outcome]:
        return await execute(
            requests, plan.shares, http, engine, emit, attach=work.attach, gate=gate
        )

    resumed = work.attach.keys() | work.batches.keys()
    to_create = sum(1 for r in work.send if r.fingerprint not in resumed)
    chosen = _batchplan.choose_mode(options.mode, options.completion_window, to_create)
    batched = [
        r
        for r in work.send
        if r.fingerprint in work.batches or (chosen == "batch" and r.fingerprint not in work.attach)
    ]
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
        fallback=None if options.mode == "batch" else background,
    )  # fmt: skip
    chosen_set = {r.fingerprint for r in batched}
    rest = [r for r in work.send if r.fingerprint not in chosen_set]
    if not rest:
        return await batches
    return await _together(batches, background(rest))


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


def _fan_out(listeners: list[Callable[[Event], None]], display: Display) -> Callable[[Event], None]:
    """Hand each event to every listener, then to the display, each on its own.

    A listener that raises does not keep the event from the others, nor end the run (its
    first failure is warned of once). A display that raises is dropped for the rest of the
    run with one warning; its tally goes on counting.
    """
    warned: set[int] = set()

    def emit(event: Event) -> None:
        for index, listener in enumerate(listeners):
            try:
                listener(event)
            except Exception as error:
                if index not in warned:
                    warned.add(index)
                    warnings.warn(
                        f"recording a run event failed ({type(error).__name__}: {error}); "
                        "the run goes on and its frame holds every answer",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        if is_dropped(display):
            display.tally.add(event)
            return
        try:
            display(event)
        except Exception as error:
            drop_display(display, error)

    return emit


def _follower(answered: dict[str, Outcome], running: dict[str, str]) -> Callable[[Event], None]:
    def follow(event: Event) -> None:
        if isinstance(event, Submitted) and event.response_id is not None:
            running[event.fingerprint] = event.response_id
        elif isinstance(event, Finished) and event.fingerprint is not None:
            answered[event.fingerprint] = event.outcome
            running.pop(event.fingerprint, None)

    return follow


async def _unless_stopped(
    sending: Coroutine[Any, Any, dict[str, Outcome]], stop: StopSignal
) -> dict[str, Outcome] | None:
    """Await the sending, or cancel it (and wait for it to unwind) once a stop is asked."""
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


async def run_plan(
    plan: Plan,
    options: RunOptions,
    client: ValarClient,
    store: RunStore | None,
    price: Price | None,
    display: Display | None = None,
    budget: Budget | None = None,
    stop: StopSignal | None = None,
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

    Returns:
        The report; rows the run could not finish carry an ``error`` outcome.

    Raises:
        AuthenticationError: The server rejected the API key.
        APIError: The first requests, or the first batch, were rejected.
        BatchUnavailable: ``mode="batch"`` and the server has no Batch API.
    """
    endpoint = client.base_url
    work = prepare_work(plan, options, store, endpoint)
    owned = display is None
    # The recorder and the budget come first: what they keep is the run's, what a display
    # draws is not, so a display never stands between an answer and the store.
    listeners: list[Callable[[Event], None]] = []
    journal: Journal | None = None
    if store is not None:
        journal = store.journal(endpoint)
        journal.plan(options.model, work.entries)  # a store that fails keeps them in memory
        listeners.append(_recorder(journal))
    if budget is None and options.budget is not None and price is not None:
        budget = Budget(options.budget, price)
    if budget is not None:
        listeners.append(budget)

    # With a stop possible, follow what is answered and what is running, to keep the one and
    # name the other (cancelling it on the server only if the stop asks) when cut short.
    answered: dict[str, Outcome] = {}
    running: dict[str, str] = dict(work.attach)
    if stop is not None:
        listeners.append(_follower(answered, running))
    if display is None:  # the run's own display: its tally is the run's
        shown = make_display(options.progress, price)
        tally = shown.tally
    else:  # a caller's display may span several runs: keep this run's counts apart
        shown, tally = display, Tally(price)
        listeners.append(tally.add)
    emit = _fan_out(listeners, shown)

    emit(Started(total=len(plan.rows), unique=len(plan.requests)))
    for row in plan.rows:
        if isinstance(row, Outcome):
            emit(Finished(None, row, 1))
    for fingerprint, outcome in work.cached.items():
        emit(Finished(fingerprint, outcome, plan.shares[fingerprint], cached=True))
    results = dict(work.cached)
    http: Http | None = None
    fault: StoreFault | None = None
    try:
        if work.send:
            http = Http(client, options.concurrency, options.max_rps)
            gate = budget.admit if budget is not None else None
            sending = _send(plan, work, options, http, emit, gate)
            if stop is None:
                results |= await sending
            else:
                sent = await _unless_stopped(sending, stop)
                results |= sent if sent is not None else answered
                if sent is None:
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
    finally:
        try:
            if journal is not None:
                journal.close()  # one try, when the run is cancelled or failed
        finally:
            if http is not None:
                await http.close()
            if owned:
                close_display(shown)
    return RunReport(plan.outcomes(results), tally, http.sent if http else 0, fault)
