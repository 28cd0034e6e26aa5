"""Watching batches: status polls, result fetches, and the HTTP exchange every batch call uses.

A :class:`Session` holds one batch run's shared state: its outcomes, its ``concurrency``
slots (every HTTP exchange holds one) and its event sink. One task per batch polls
``GET /batches/{id}`` on :class:`~._batchplan.BatchPoll`'s schedule; every item newly
``COMPLETED`` goes on a queue that ``concurrency`` fetchers drain with
``GET /batches/{id}/{custom_id}``, so results arrive while the batch still runs. ``FAILED``
and ``CANCELLED`` items end as row errors without a fetch; an item with a status the library
does not know is polled until the deadline.

Every call goes through the run's :class:`~valar_pandas._transport.exchange.Exchange`, as the
engine's do: the same retries, the same stops, and the same overload control, so a batch run under
429 or 503 answers has fewer requests in flight until the server recovers. An over-cap answer is
not fetched again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .._core.batchplan import BATCH_POLL, LIMITS, BatchLimits, BatchPoll, item_status, status_map
from .._core.models import BatchLost, Event, Finished, Outcome
from .._core.wire import decode_json, error_summary, parse_response
from .._policy import RetryPolicy
from .._transport.exchange import Answered, Exchange, surface
from .._transport.http import Http, Reply

__all__ = ["BatchConfig", "Session", "Watch"]


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


class Session:
    """One batch run's shared state: outcomes, slots, the fetch queue and the event sink."""

    def __init__(
        self, shares: Mapping[str, int], http: Http, config: BatchConfig,
        emit: Callable[[Event], None], now: Callable[[], float], rand: Callable[[], float],
        total: int, exchange: Exchange | None = None,
    ) -> None:  # fmt: skip
        self.shares, self.http, self.config, self.emit = shares, http, config, emit
        self.now, self.rand, self.total = now, rand, total
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

    def settle(self, watch: Watch, cid: str, outcome: Outcome) -> None:
        fingerprint = watch.items.pop(cid, None)
        watch.fetching.discard(cid)
        watch.changed.set()
        if fingerprint is not None:
            self.finish(fingerprint, outcome)

    async def send(
        self, method: str, path: str, payload: bytes | None = None, key: str | None = None,
        *, large: bool = False, timeout: float | None = None,
    ) -> Answered[object] | str:  # fmt: skip
        """One batch call, retried until an answer that is not transient (see ``Exchange.call``).

        ``timeout`` defaults to the client's ``timeout``: a poll or a fetch does not wait for
        a model.

        Raises:
            EndpointError: The endpoint is proven unusable.
            AuthenticationError: The server rejected the API key.
        """
        when = self.http.timeout if timeout is None else timeout
        return await self.exchange.call(
            method, path, timeout=when, read=_json, payload=payload, key=key, large=large
        )

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
            self.absorb(watch, statuses)
            age = self.now() - watch.created
            if age >= poll.deadline and watch.items:
                pending = [c for c in watch.items if c not in watch.fetching]
                for cid in pending:
                    self.settle(watch, cid, self.overdue(watch, cid, age))
                continue
            delay = poll.next_delay(polls, len(watch.items), self.rand())

    def absorb(self, watch: Watch, statuses: Mapping[str, object]) -> None:
        """Queue fetches for finished items, end failed ones, note the rest."""
        for cid in [c for c in watch.items if c not in watch.fetching]:
            raw = statuses.get(cid)
            status = item_status(raw)
            if status in ("completed", "incomplete"):
                watch.fetching.add(cid)
                self.queue.put_nowait((watch, cid))
            elif status in ("failed", "cancelled"):
                error = f"{status}: the batch reported {raw} for item {cid} of {watch.batch_id}"
                self.settle(watch, cid, Outcome(status, error=error))
            else:
                watch.last = raw

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
        while True:
            answer = await self.send("GET", path)
            if isinstance(answer, str):
                reason = answer
                break
            if answer.status == 200:
                parsed = parse_response(answer.value)
                if parsed.outcome is not None:
                    self.settle(watch, cid, parsed.outcome)
                    return
                watch.fetching.discard(cid)  # not final after all: the next poll decides
                watch.changed.set()
                return
            _, reason = error_summary(answer.status, answer.body)
            misses += 1
            lag = self.exchange.lag(misses) if answer.status == 404 else None
            if lag is None:
                break
            await asyncio.sleep(lag)
        error = f"could not fetch item {cid} of batch {watch.batch_id}: {reason}"
        self.settle(watch, cid, Outcome("error", error=error))


def _json(reply: Reply) -> object:
    """A batch answer's JSON.

    Raises:
        ValueError: The body is not JSON (unreadable: worth another try).
    """
    return decode_json(reply.body)
