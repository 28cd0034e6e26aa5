"""The composition root: a planned run → outcomes, wiring store, transport, engine, display.

It consults the run store (finished rows come from disk; rows an earlier run created are
re-attached by id, or by their batch; rows it only planned are re-sent under the same key;
a batch create that may have reached the server is replayed as it was) and claims the rows
it sends, awaiting those another run holds (one owner per row, whatever runs at once),
picks the path (the background engine, or the Batch API for ``mode="batch"`` and large
``mode="auto"`` runs, falling back to the engine when the Batch API is absent), records each
request before it is sent, fans events out to the store, the budget and the display, and
closes everything whatever happens. It decides nothing a pure module could decide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from . import _batchplan, _cancel
from ._batch import BatchConfig, execute_batches
from ._budget import Budget
from ._config import ValarClient
from ._engine import EngineConfig, execute
from ._errors import StoreError
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
from ._store import HEARTBEAT, Journal, RunStore, Stored, StoreFault, new_owner
from ._wire import attempt_key

__all__ = [
    "RunReport",
    "Work",
    "claim_work",
    "prepare_work",
    "run_plan",
    "served_from_store",
    "split",
]


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
        awaited: Requests another live run holds (a window, a job or a process sending
            them now): their verdicts are awaited from the store, not sent again.
        replay: Batch key → (label, ((fingerprint, custom_id), ...)) of batches an earlier
            run planned and may have created, with no id recorded: their creates are sent
            again exactly as they were, so the server replays a batch it holds.
        claimed: Whether :attr:`entries` are already recorded, under this run's claim.
    """

    cached: dict[str, Outcome]
    send: list[Request]
    attach: dict[str, str]
    entries: dict[str, tuple[str, int]]
    batches: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    awaited: dict[str, Request] = field(default_factory=dict)
    replay: dict[str, tuple[str | None, tuple[tuple[str, str], ...]]] = field(default_factory=dict)
    claimed: bool = False


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


def prepare_work(
    plan: Plan,
    options: RunOptions,
    store: RunStore | None,
    endpoint: str,
    asked: Set[str] = frozenset(),
) -> Work:
    """Split a plan into cached outcomes, re-attachments and requests to send.

    Reads the store and claims nothing (for estimates and previews; a run claims its rows
    with :func:`claim_work`).

    Args:
        plan: The planned requests.
        options: ``cache`` and ``retry_failed`` decide what the store may answer.
        store: The run store, or None.
        endpoint: The API base URL the store namespaces rows by.
        asked: Requests this call or command already asked (their failures stand).

    Returns:
        The work.
    """
    known = store.lookup(endpoint, plan.requests) if store is not None else {}
    return split(plan.requests, options, known, asked)


def split(
    requests: Mapping[str, Request],
    options: RunOptions,
    known: Mapping[str, Stored],
    asked: Set[str] = frozenset(),
) -> Work:
    """Split requests against what the store knows of them (see :func:`prepare_work`).

    Args:
        requests: The distinct requests, by fingerprint.
        options: ``retry_failed`` decides whether a stored failure stands.
        known: What the store holds, by fingerprint (rows another live run holds carry
            its id in ``holder``).
        asked: Requests this call or command already asked (their failures stand).

    Returns:
        The work.
    """
    work = Work({}, [], {}, {})
    pending: dict[str, list[tuple[str, str]]] = {}
    for fingerprint, request in requests.items():
        stored = known.get(fingerprint)
        if stored is None:
            work.send.append(request)
            work.entries[fingerprint] = (request.idempotency_key, 0)
            continue
        outcome = stored.outcome
        if outcome is not None and (
            outcome.ok
            or not options.retry_failed
            or fingerprint in asked
            or stored.holder is not None  # a live run's fresh verdict
        ):
            work.cached[fingerprint] = outcome
            continue
        if stored.holder is not None:
            work.awaited[fingerprint] = request
            continue
        attempt = stored.attempt + 1 if outcome is not None else stored.attempt
        key = attempt_key(fingerprint, attempt) if outcome is not None else stored.idempotency_key
        work.send.append(dataclasses.replace(request, idempotency_key=key))
        work.entries[fingerprint] = (key, attempt)
        if outcome is None and stored.batch_key and stored.batch_id and stored.custom_id:
            work.batches[fingerprint] = (stored.batch_key, stored.batch_id, stored.custom_id)
        elif outcome is None and stored.state == "submitted" and stored.response_id:
            work.attach[fingerprint] = stored.response_id
        elif outcome is None and stored.batch_key and stored.custom_id and not stored.batch_id:
            pending.setdefault(stored.batch_key, []).append((fingerprint, stored.custom_id))
    for key, items in pending.items():
        stored = known[items[0][0]]
        if len(items) == stored.batch_items:  # every item is here: the create can be rebuilt
            work.replay[key] = (stored.batch_label, tuple(items))
    return work


async def claim_work(
    requests: Mapping[str, Request],
    options: RunOptions,
    store: RunStore,
    endpoint: str,
    owner: str,
    asked: Set[str] = frozenset(),
) -> Work:
    """Split requests against the store and claim the rows to send, in one transaction.

    Rows another live run holds are left to it (:attr:`Work.awaited`). The claim never
    sleeps in SQLite: while another process holds the write lock it is tried again
    between short sleeps on the loop, up to the store's ``lock_timeout``; past that, or at
    once when the store cannot be written at all (full, read-only, damaged), the plan is
    split unclaimed and its keys go through the journal, as before claims existed.

    Args:
        requests: The distinct requests, by fingerprint.
        options: ``retry_failed`` decides whether a stored failure stands.
        store: The run store.
        endpoint: The API base URL the store namespaces rows by.
        owner: This run's owner id.
        asked: Requests this call or command already asked (their failures stand).

    Returns:
        The work; :attr:`Work.claimed` says whether its entries are recorded.
    """
    made: list[Work] = []

    def decide(known: dict[str, Stored]) -> dict[str, tuple[str, int]]:
        made[:] = [split(requests, options, known, asked)]
        return made[0].entries

    deadline = asyncio.get_running_loop().time() + store.lock_timeout
    delay = 0.005
    while True:
        claimed = store.claim(endpoint, owner, options.model, requests, decide)
        if not isinstance(claimed, StoreFault):
            made[0].claimed = True
            return made[0]
        if claimed.kind != "locked" or asyncio.get_running_loop().time() + delay > deadline:
            return split(requests, options, store.lookup(endpoint, requests), asked)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


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
    claim: _Claim | None,
) -> Coroutine[Any, Any, dict[str, Outcome]]:
    """Send what this run claimed and, alongside, await what other runs hold."""

    def send(part: Work) -> Coroutine[Any, Any, dict[str, Outcome]]:
        return _send(plan, part, options, http, emit, gate)

    if not work.awaited or claim is None:
        return send(work)
    held = _await_held(work, options, claim, plan.shares, emit, send)
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


_AWAIT_FIRST = 0.05
_AWAIT_MAX = 1.0


@dataclass
class _Claim:
    """This run's claim on its rows: who it is, and what the call or command already asked."""

    store: RunStore
    endpoint: str
    owner: str
    asked: set[str]
    journal: Journal
    held: set[str] = field(default_factory=set)

    async def take(self, requests: Mapping[str, Request], options: RunOptions) -> Work:
        """Claim ``requests`` (recording their keys), as :func:`claim_work` does."""
        work = await claim_work(
            requests, options, self.store, self.endpoint, self.owner, self.asked
        )
        if work.claimed:
            self.held.update(work.entries)
        else:
            self.journal.plan(options.model, work.entries)
        self.asked.update(work.entries)
        self.asked.update(work.awaited)
        return work

    def release(self) -> None:
        """Give up this run's claims once its verdicts are written (they lapse if not)."""
        self.store.release(self.endpoint, self.owner, self.held)

    async def beat(self) -> None:
        """Say this run is alive every :data:`HEARTBEAT` seconds, until cancelled."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            self.store.beat(self.owner)


async def _await_held(
    work: Work,
    options: RunOptions,
    claim: _Claim,
    shares: Mapping[str, int],
    emit: Callable[[Event], None],
    send: Callable[[Work], Coroutine[Any, Any, dict[str, Outcome]]],
) -> dict[str, Outcome]:
    """Wait for the verdicts of rows other runs hold; take over those whose owner is gone.

    The store is read every 50 ms at first, then less often (up to once a second). A row
    the owner answered is this run's answer too (shown as from the store); a row whose
    owner released it or died unanswered is claimed and sent by this run, resuming
    whatever the owner left (its key, its response id, its batch).
    """
    waiting = dict(work.awaited)
    results: dict[str, Outcome] = {}
    delay = _AWAIT_FIRST
    try:
        async with asyncio.TaskGroup() as group:
            tasks: list[asyncio.Task[dict[str, Outcome]]] = []
            while waiting:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, _AWAIT_MAX)
                try:
                    known = claim.store.lookup(claim.endpoint, waiting, me=claim.owner)
                except StoreError:
                    continue  # the store is busy or failing: read it again later
                free: dict[str, Request] = {}
                for fingerprint in list(waiting):
                    stored = known.get(fingerprint)
                    if stored is not None and stored.outcome is not None:
                        results[fingerprint] = stored.outcome
                        del waiting[fingerprint]
                        emit(
                            Finished(fingerprint, stored.outcome, shares[fingerprint], cached=True)
                        )
                    elif stored is None or stored.holder is None:
                        free[fingerprint] = waiting.pop(fingerprint)
                if not free:
                    continue
                taken = await claim.take(free, options)
                waiting |= taken.awaited  # claimed again by another run meanwhile
                for fingerprint, outcome in taken.cached.items():
                    results[fingerprint] = outcome
                    emit(Finished(fingerprint, outcome, shares[fingerprint], cached=True))
                if taken.send:
                    tasks.append(group.create_task(send(taken)))
    except BaseExceptionGroup as group_error:
        errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
        if len(errors) == 1:
            raise errors[0] from None
        raise
    for task in tasks:
        results |= task.result()
    return results


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
        BatchUnavailable: ``mode="batch"`` and the server has no Batch API.
    """
    endpoint = client.base_url
    asked = set() if asked is None else asked
    journal: Journal | None = None
    claim: _Claim | None = None
    if store is not None:
        journal = store.journal(endpoint)
        claim = _Claim(store, endpoint, new_owner(), asked, journal)
        work = await claim.take(plan.requests, options)  # a failing store: keys in memory
    else:
        work = split(plan.requests, options, {}, asked)
        asked.update(work.entries)
    owned = display is None
    # The recorder and the budget come first: what they keep is the run's, what a display
    # draws is not, so a display never stands between an answer and the store.
    listeners: list[Callable[[Event], None]] = []
    if journal is not None:
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
    beating: asyncio.Task[None] | None = None
    try:
        if work.send or work.awaited:
            http = Http(client, options.concurrency, options.max_rps)
            gate = budget.admit if budget is not None else None
            if claim is not None and work.claimed:
                beating = asyncio.ensure_future(claim.beat())
            sending = _sending(plan, work, options, http, emit, gate, claim)
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
            if fault is None and claim is not None:
                claim.release()
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
    return RunReport(plan.outcomes(results), tally, http.sent if http else 0, fault)
