"""A plan split against the run store, and this run's claim on the rows it sends.

Finished rows come from disk; rows an earlier run created are re-attached by id, or by their
batch; rows it only planned are re-sent under the same key; a batch create that may have
reached the server is replayed as it was. The rows a run sends are claimed in the store, in
the transaction that reads them, so each is sent by one run however many want it: the
others await its verdict from the store (:func:`await_held`) and take the row over if its
owner ends or dies without one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from .._core.errors import StoreError
from .._core.log import child
from .._core.models import REASKED, Event, Finished, Outcome, Request
from .._core.options import RunOptions
from .._core.plan import Plan
from .._core.wire import attempt_key
from .._store import HEARTBEAT, Journal, RunStore, Stored, StoreFault

_LOG = child("store")

__all__ = [
    "Claim",
    "Work",
    "await_held",
    "claim_work",
    "prepare_work",
    "served_from_store",
    "split",
    "stands",
]


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
        True for a stored success, and for a stored failure unless it is to be re-asked
        (:func:`stands`).
    """
    outcome = stored.outcome
    return outcome is not None and stands(outcome, options)


def stands(outcome: Outcome, options: RunOptions) -> bool:
    """Whether a stored verdict is the answer (else ``retry_failed`` asks again).

    A success stands; so does every failure without ``retry_failed``, and with it every
    failure a re-ask of the same body cannot fix (:data:`REASKED` names the others).
    """
    return outcome.ok or not options.retry_failed or outcome.status not in REASKED


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
            stands(outcome, options)
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
            _LOG.warning(
                "the run store %s could not claim %d requests (%s); they are sent unclaimed, "
                "their keys kept in memory until the store can be written",
                store.path, len(requests), claimed.reason,
            )  # fmt: skip
            return split(requests, options, store.lookup(endpoint, requests), asked)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


_AWAIT_FIRST = 0.05
_AWAIT_MAX = 1.0


@dataclass
class Claim:
    """This run's claim on its rows: who it is, and what the call or command already asked.

    Attributes:
        store: The run store the claims are written in.
        endpoint: The API base URL the store namespaces rows by.
        owner: This run's owner id.
        asked: Requests the call or command already asked, shared by its runs.
        journal: Where keys go when the store cannot take the claim at once.
        held: Fingerprints this run claimed, released when its verdicts are written.
    """

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


async def await_held(
    work: Work,
    options: RunOptions,
    claim: Claim,
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
                except StoreError as error:  # busy or failing: read it again later
                    _LOG.debug("the run store could not be read (%s); reading it again", error)
                    continue
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
