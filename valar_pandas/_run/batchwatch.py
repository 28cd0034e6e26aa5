"""Watching batches: status polls, result fetches, and the HTTP exchange every batch call uses.

A :class:`Session` holds one batch run's shared state: its outcomes, its ``concurrency``
slots (every HTTP exchange holds one) and its event sink. One task per batch polls
``GET /batches/{id}`` on :class:`~._batchplan.BatchPoll`'s schedule; every item newly
``COMPLETED`` goes on a queue that ``concurrency`` fetchers drain with
``GET /batches/{id}/{custom_id}``, so results arrive while the batch still runs. ``FAILED``
items end as row errors with their reason: from their status entry when it carries one, else
from their fetched result; ``CANCELLED`` items end without a fetch; an item with a status the
library does not know is polled until the deadline. Items a batch shows it does not hold (its
``request_counts`` below the items sent, or, with no count, a non-empty map of final items
that leaves them out) are looked up by id, and those the server does not have are sent in
background mode, under their own keys; an item a map merely leaves out is waited for.

Every call goes through the run's :class:`~valar_pandas._transport.exchange.Exchange`, as the
engine's do: the same retries, the same stops, and the same overload control, so a batch run under
429 or 503 answers has fewer requests in flight until the server recovers. An over-cap answer is
not fetched again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .._core.batchplan import (
    BATCH_POLL,
    LIMITS,
    BatchLimits,
    BatchPoll,
    item_reason,
    item_status,
    status_map,
)
from .._core.log import child
from .._core.models import BatchLost, Event, Finished, Outcome, Request
from .._core.wire import TERMINAL, decode_json, error_summary, parse_response
from .._policy import RetryPolicy
from .._transport.exchange import Answered, Exchange, surface
from .._transport.http import Http, Reply

__all__ = ["BatchConfig", "Resend", "Session", "Watch"]

Resend = Callable[[Sequence[Request]], Awaitable[dict[str, Outcome]]]
"""Sends requests in background mode and returns their outcomes (emitting their events)."""

log = child("batch")


@dataclass(frozen=True)
class BatchConfig:
    """How to run batches.

    Attributes:
        concurrency: Most HTTP requests in flight (creates, polls and fetches together).
        label: The label every batch carries, if any.
        poll: When to poll each batch's status map, and the deadline.
        limits: Most items and bytes per batch.
        retry: Retry policy for each HTTP exchange.
    """

    concurrency: int
    label: str | None = None
    poll: BatchPoll = BATCH_POLL
    limits: BatchLimits = LIMITS
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(slots=True)
class Watch:
    """One batch being watched: its unfinished items, and those being fetched."""

    batch_id: str
    key: str
    items: dict[str, str]  # custom_id → fingerprint, unfinished only
    created: float
    fetching: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last: object = None
    failed: set[str] = field(default_factory=set)  # FAILED, their reason being fetched
    short: int = 0  # polls in a row where the batch shows it lacks some of our items
    sent: int = 0  # items sent in the create, or (re-attached) this run's items in it
    whole: bool = False  # ``sent`` is the batch's full size (this run created it)
    counts: int | None = None  # the batch's latest ``request_counts``, when an integer


class Session:
    """One batch run's shared state: outcomes, slots, the fetch queue and the event sink."""

    def __init__(
        self, shares: Mapping[str, int], http: Http, config: BatchConfig,
        emit: Callable[[Event], None], now: Callable[[], float], rand: Callable[[], float],
        total: int, exchange: Exchange | None = None,
        requests: Mapping[str, Request] | None = None, resend: Resend | None = None,
        notices: list[str] | None = None,
    ) -> None:  # fmt: skip
        self.shares, self.http, self.config, self.emit = shares, http, config, emit
        self.now, self.rand, self.total = now, rand, total
        self.requests: Mapping[str, Request] = requests or {}
        self.resend = resend
        self.notices: list[str] = [] if notices is None else notices
        """Messages for the caller, as :class:`BatchFallbackWarning` once the run has ended."""
        self.results: dict[str, Outcome] = {}
        self.exchange = exchange or Exchange(
            http, config.retry, config.concurrency, emit, rand=rand, now=now
        )
        self.queue: asyncio.Queue[tuple[Watch, str]] = asyncio.Queue()
        self.done = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def drive(
        self, watches: list[tuple[Watch, float]], creating: Coroutine[Any, Any, None]
    ) -> None:
        """Watch batches, and those ``creating`` adds, until every outcome is in.

        Args:
            watches: Batches to watch, each with the delay before its first poll.
            creating: Creates the run's further batches, spawning a watch for each.

        Raises:
            AuthenticationError: The server rejected the API key.
            APIError: A later create failed in a way that stops the run.
        """
        if self.done.is_set() or not self.total:
            creating.close()
            return
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for _ in range(self.config.concurrency):
                    self.spawn(self.fetcher())
                for watch, delay in watches:
                    self.spawn(self.watch(watch, delay))
                self.spawn(creating)
                await self.done.wait()
                for task in self._tasks:
                    task.cancel()
        except BaseExceptionGroup as group_error:
            raise surface(group_error) from None  # several tasks may meet the same stop
        finally:
            self._group = None

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a task in the session's group; it is cancelled once every outcome is in."""
        assert self._group is not None
        self._tasks.append(self._group.create_task(coroutine))

    def first_delay(self, watch: Watch) -> float:
        """Seconds from a create to the first status poll."""
        return self.config.poll.next_delay(0, len(watch.items), self.rand())

    def finish(self, fingerprint: str, outcome: Outcome) -> None:
        if fingerprint in self.results:
            return
        self.results[fingerprint] = outcome
        self.emit(Finished(fingerprint, outcome, self.shares.get(fingerprint, 1)))
        if len(self.results) >= self.total:
            self.done.set()

    def adopt(self, outcomes: Mapping[str, Outcome]) -> None:
        """Take outcomes another path found and announced (their events are out already)."""
        for fingerprint, outcome in outcomes.items():
            self.results.setdefault(fingerprint, outcome)
        if len(self.results) >= self.total:
            self.done.set()

    def settle(self, watch: Watch, cid: str, outcome: Outcome) -> None:
        fingerprint = watch.items.pop(cid, None)
        watch.fetching.discard(cid)
        watch.changed.set()
        if fingerprint is not None:
            self.finish(fingerprint, outcome)

    async def send(
        self, method: str, path: str, payload: bytes | None = None, key: str | None = None,
        *, large: bool = False, timeout: float | None = None,
        keep: frozenset[int] = frozenset(), seen: list[int | None] | None = None,
    ) -> Answered[object] | str:  # fmt: skip
        """One batch call, retried until an answer that is not transient (see ``Exchange.call``).

        ``timeout`` defaults to the client's ``timeout``: a poll or a fetch does not wait for
        a model. ``keep`` and ``seen`` are ``Exchange.call``'s.

        Raises:
            EndpointError: The endpoint is proven unusable.
            AuthenticationError: The server rejected the API key.
        """
        when = self.http.timeout if timeout is None else timeout
        return await self.exchange.call(
            method, path, timeout=when, read=_json, payload=payload, key=key, large=large,
            keep=keep, seen=seen,
        )  # fmt: skip

    # -- watching ----------------------------------------------------------------------------

    async def watch(self, watch: Watch, delay: float) -> None:
        """Poll a batch's status map until every item it holds for this run has ended."""
        poll, path = self.config.poll, f"/batches/{quote(watch.batch_id, safe='')}"
        polls = misses = 0
        while watch.items:
            if watch.fetching.issuperset(watch.items):
                watch.changed.clear()
                await watch.changed.wait()
                continue
            age = self.now() - watch.created
            await asyncio.sleep(max(0.0, min(delay, poll.deadline - age)))
            answer = await self.send("GET", path, large=True)
            if isinstance(answer, str):
                self.abandon(watch, f"lost track of batch {watch.batch_id}: {answer}")
                return
            statuses = status_map(answer.value)
            lag = None
            if statuses is None and answer.status in (200, 404):
                lag = self.exchange.lag(misses + 1)  # a 404 may be lag right after the create
            if lag is not None:
                misses, delay = misses + 1, lag
                continue
            if statuses is None:
                _, reason = error_summary(answer.status, answer.body)
                if answer.status == 404:
                    self.emit(BatchLost(watch.key))
                    reason += "; a re-run sends these rows again"
                self.abandon(watch, f"lost track of batch {watch.batch_id}: {reason}")
                return
            polls, misses = polls + 1, 0
            watch.counts = request_counts(answer.value, watch.counts)
            self.absorb(watch, statuses, answer.value)
            if self.missing(watch, statuses):
                delay = poll.next_delay(0, len(watch.items), self.rand())
                continue
            age = self.now() - watch.created
            if age >= poll.deadline and watch.items:
                pending = [c for c in watch.items if c not in watch.fetching]
                for cid in pending:
                    self.settle(watch, cid, self.overdue(watch, cid, age))
                continue
            delay = poll.next_delay(polls, len(watch.items), self.rand())

    def absorb(self, watch: Watch, statuses: Mapping[str, object], body: object) -> None:
        """Queue fetches for finished items, end failed ones with their reason, note the rest.

        A ``FAILED`` item's reason is read from its status entry when the entry carries one;
        otherwise its result is fetched, as a finished item's is, for the Response object's
        ``error`` (a 404 there, or no reason, says the server gave none).
        """
        for cid in [c for c in watch.items if c not in watch.fetching]:
            raw = statuses.get(cid)
            status = item_status(raw)
            if status in ("completed", "incomplete"):
                watch.fetching.add(cid)
                self.queue.put_nowait((watch, cid))
            elif status == "failed" and (reason := item_reason(body, cid)) is None:
                watch.failed.add(cid)
                watch.fetching.add(cid)
                self.queue.put_nowait((watch, cid))
            elif status in ("failed", "cancelled"):
                said = f"the batch reported {raw} for item {cid} of {watch.batch_id}"
                error = f"{status}: {reason}; {said}" if status == "failed" else f"{status}: {said}"
                self.settle(watch, cid, Outcome(status, error=error))
            else:
                watch.last = raw

    def missing(self, watch: Watch, statuses: Mapping[str, object]) -> bool:
        """Deal with items the batch does not hold; True to poll again soon.

        Items are taken as lost only when the batch itself shows it lacks them, on two polls
        in a row (see :func:`short_of`); an item a status map merely leaves out (an empty
        map, or one without items not yet started) is still waited for. Lost items are each
        looked up once by their ``custom_id`` (a result there is taken, so nothing is paid
        twice), and the rest are sent in background mode under their own keys (or, with
        nowhere to send them, end as errors a re-run sends again).
        """
        absent = [c for c in watch.items if c not in statuses and c not in watch.fetching]
        if not absent or not short_of(watch, statuses):
            watch.short = 0
            return False
        watch.short += 1
        if watch.short < 2:
            return True
        watch.short = 0
        for cid in absent:
            watch.fetching.add(cid)
        self.spawn(self.recover(watch, absent))
        return False

    async def recover(self, watch: Watch, cids: Sequence[str]) -> None:
        """Items the batch lost: take a result the server has, send the rest in background."""
        found = await asyncio.gather(*(self.lookup(watch, cid) for cid in cids))
        lost = [cid for cid, absent in zip(cids, found, strict=True) if absent]
        watch.changed.set()
        if not lost:
            return
        said = (
            f"batch {watch.batch_id} does not hold {len(lost):,} of the items sent to it "
            f"({why(watch)})"
        )
        if self.resend is None or not all(watch.items[c] in self.requests for c in lost):
            for cid in lost:
                error = f"{said}: item {cid} never ran; a re-run sends it again"
                self.settle(watch, cid, Outcome("error", error=error))
            return
        said += "; they are sent in background mode under their own keys instead"
        log.warning("%s", said)
        fingerprints = [watch.items.pop(cid) for cid in lost]
        watch.fetching.difference_update(lost)
        watch.changed.set()
        # Warned on the caller's thread after the run: raised here (a filter turning
        # warnings into errors), it would end the run and lose the answers it paid for.
        self.notices.append(said)
        self.adopt(await self.resend([self.requests[f] for f in fingerprints]))

    async def lookup(self, watch: Watch, cid: str) -> bool:
        """Ask for an item the status map leaves out; True when the server does not have it.

        A final result is taken; an item the server has but not yet finished is watched
        again; only 404s (after the usual allowance for lag) mean it is not there. When no
        answer comes, the item is watched again rather than sent twice.
        """
        path = f"/batches/{quote(watch.batch_id, safe='')}/{quote(cid, safe='')}"
        misses = 0
        while True:
            answer = await self.send("GET", path)
            if isinstance(answer, str) or answer.status not in (200, 404):
                break
            if answer.status == 200:
                parsed = parse_response(answer.value, self.sent(watch, cid))
                if parsed.outcome is not None:
                    self.settle(watch, cid, parsed.outcome)
                    return False
                break
            misses += 1
            lag = self.exchange.lag(misses)
            if lag is None:
                return True
            await asyncio.sleep(lag)
        watch.fetching.discard(cid)
        return False

    def sent(self, watch: Watch, cid: str) -> Mapping[str, Any] | None:
        """The body an item was sent with, when this run has it: its cap names a truncation."""
        request = self.requests.get(watch.items.get(cid, ""))
        return request.body if request is not None else None

    def overdue(self, watch: Watch, cid: str, age: float) -> Outcome:
        return Outcome(
            "error",
            error=f"no final status after {age:.0f} s (last status {watch.last!r}); "
            f"batch {watch.batch_id}, item {cid}",
        )

    def abandon(self, watch: Watch, reason: str) -> None:
        for cid in list(watch.items):
            self.settle(watch, cid, Outcome("error", error=reason))

    # -- fetching ----------------------------------------------------------------------------

    async def fetcher(self) -> None:
        while True:
            watch, cid = await self.queue.get()
            await self.fetch(watch, cid)

    async def fetch(self, watch: Watch, cid: str) -> None:
        """GET one finished item's Response object."""
        path = f"/batches/{quote(watch.batch_id, safe='')}/{quote(cid, safe='')}"
        misses = 0
        failed = cid in watch.failed
        while True:
            answer = await self.send("GET", path)
            if isinstance(answer, str):
                reason = answer
                break
            if answer.status == 200:
                parsed = parse_response(answer.value, self.sent(watch, cid))
                if parsed.outcome is not None and (not failed or parsed.status == "failed"):
                    self.settle(watch, cid, parsed.outcome)
                    return
                if failed:  # its result says nothing of the failure
                    break
                watch.fetching.discard(cid)  # not final after all: the next poll decides
                watch.changed.set()
                return
            _, reason = error_summary(answer.status, answer.body)
            misses += 1
            lag = self.exchange.lag(misses) if answer.status == 404 and not failed else None
            if lag is None:
                break
            await asyncio.sleep(lag)
        if failed:
            said = f"the batch reported FAILED for item {cid} of {watch.batch_id}"
            error = f"failed: no reason given; {said}"
            self.settle(watch, cid, Outcome("failed", error=error))
            return
        error = f"could not fetch item {cid} of batch {watch.batch_id}: {reason}"
        self.settle(watch, cid, Outcome("error", error=error))


def request_counts(body: object, last: int | None = None) -> int | None:
    """A batch body's ``request_counts`` (an integer: the items it holds), else ``last``."""
    counts = body.get("request_counts") if isinstance(body, Mapping) else None
    if isinstance(counts, int) and not isinstance(counts, bool) and counts >= 0:
        return counts
    return last


def short_of(watch: Watch, statuses: Mapping[str, object]) -> bool:
    """Whether the batch shows that it does not hold the items its status map leaves out.

    With ``request_counts`` below the items sent, it does once the map lists as many items
    as the batch holds (an item it holds but does not list yet may still run). With
    ``request_counts`` at least the items this run created the batch with, it never does:
    the batch holds them all. Without a usable count (none, or a re-attached batch whose
    full size this run does not know), it does when the map is not empty and every item it
    lists is final.
    """
    counts = watch.counts
    if counts is not None and counts < watch.sent:
        return len(statuses) >= counts
    if counts is not None and watch.whole:
        return False
    return bool(statuses) and all(item_status(raw) in TERMINAL for raw in statuses.values())


def why(watch: Watch) -> str:
    """What showed that a batch lacks items: its count, or its status map."""
    if watch.counts is not None and watch.counts < watch.sent:
        return f"its request_counts is {watch.counts:,} of {watch.sent:,} sent"
    return "its status map lists only finished items and not these"


def _json(reply: Reply) -> object:
    """A batch answer's JSON.

    Raises:
        ValueError: The body is not JSON (unreadable: worth another try).
    """
    return decode_json(reply.body)
