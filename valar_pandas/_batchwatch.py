"""Watching batches: status polls, result fetches, and the HTTP exchange every batch call uses.

A :class:`Session` holds one batch run's shared state: its outcomes, its ``concurrency``
slots (every HTTP exchange holds one) and its event sink. One task per batch polls
``GET /batches/{id}`` on :class:`~._batchplan.BatchPoll`'s schedule; every item newly
``COMPLETED`` goes on a queue that ``concurrency`` fetchers drain with
``GET /batches/{id}/{custom_id}``, so results arrive while the batch still runs. ``FAILED``
and ``CANCELLED`` items end as row errors without a fetch; an item with a status the library
does not know is polled until the deadline.

The exchange retries what the engine retries, by the same :class:`~._policy.RetryPolicy`; a
failure that proves the endpoint unusable raises the transport's
:class:`~valar_pandas._errors.EndpointError`, and an over-cap answer is not fetched again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ._batchplan import BATCH_POLL, LIMITS, BatchLimits, BatchPoll, item_status, status_map
from ._errors import AuthenticationError, ValarError
from ._http import Http, Reply, Unreachable
from ._models import BatchLost, Event, Finished, Outcome, Retrying
from ._policy import OVERLOAD, RETRYABLE, RetryPolicy, parse_retry_after
from ._wire import decode_json, error_summary, parse_response

__all__ = ["Answer", "BatchConfig", "Session", "Watch"]

_MAX_404 = 3


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


@dataclass(frozen=True, slots=True)
class Answer:
    """A final HTTP answer: status, raw body, decoded JSON (None for an error)."""

    status: int
    body: bytes
    obj: object


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
        total: int,
    ) -> None:  # fmt: skip
        self.shares, self.http, self.config, self.emit = shares, http, config, emit
        self.now, self.rand, self.total = now, rand, total
        self.results: dict[str, Outcome] = {}
        self.slots = asyncio.Semaphore(config.concurrency)
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
            errors = [
                e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)
            ]
            for exc in errors:  # several tasks may meet the same stop: raise one
                if isinstance(exc, ValarError):
                    raise exc from None
            if len(errors) == 1:
                raise errors[0] from None
            raise
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

    async def exchange(
        self,
        method: str,
        path: str,
        payload: bytes | None = None,
        key: str | None = None,
        large: bool = False,
    ) -> Answer | str:
        """Send until an answer that is not transient; the reason for giving up otherwise.

        Raises:
            EndpointError: The endpoint is proven unusable.
            AuthenticationError: The server rejected the API key.
        """
        retry = self.config.retry
        attempt = overloads = 0
        while True:
            status: int | None
            after: float | None = None
            async with self.slots:
                try:
                    reply = await self.http.request(
                        method, path, payload=payload, idempotency_key=key,
                        realtime=bool(payload), large=large,
                    )  # fmt: skip
                except Unreachable as exc:
                    if exc.fatal is not None:
                        raise exc.fatal from None
                    if not exc.retryable:
                        return str(exc)
                    status, reason = None, str(exc)
                else:
                    status, reason, answer = self.read(reply)
                    if answer is not None:
                        return answer
                    after = parse_retry_after(reply.retry_after, time.time())
            overloaded = status in OVERLOAD
            overloads += overloaded
            attempt += not overloaded
            if not retry.should_retry(status, attempt, overloads):
                return f"gave up after {attempt + overloads} attempts: {reason}"
            delay = retry.delay(overloads if overloaded else attempt, after, self.rand())
            self.emit(Retrying(reason, delay))
            await asyncio.sleep(delay)

    @staticmethod
    def read(reply: Reply) -> tuple[int | None, str, Answer | None]:
        """Classify a reply: (status for the retry policy, reason, the answer if final)."""
        if reply.status in (401, 403):
            _, message = error_summary(reply.status, reply.body)
            raise AuthenticationError(
                f"the Valar API rejected the API key ({message}); check VALAR_API_KEY",
                status_code=reply.status,
            )
        if 200 <= reply.status < 300:
            try:
                return reply.status, "", Answer(reply.status, reply.body, decode_json(reply.body))
            except ValueError:
                return None, f"HTTP {reply.status} with an unreadable body", None
        _, reason = error_summary(reply.status, reply.body)
        if reply.status in RETRYABLE:
            return reply.status, reason, None
        return reply.status, reason, Answer(reply.status, reply.body, None)

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
            answer = await self.exchange("GET", path, large=True)
            if isinstance(answer, str):
                self.abandon(watch, f"lost track of batch {watch.batch_id}: {answer}")
                return
            statuses = status_map(answer.obj)
            if statuses is None and answer.status in (200, 404) and misses + 1 < _MAX_404:
                misses += 1  # a 404 may be replication lag right after the create
                delay = self.config.retry.delay(misses, None, self.rand())
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
            answer = await self.exchange("GET", path)
            if isinstance(answer, str):
                reason = answer
                break
            if answer.status == 200:
                parsed = parse_response(answer.obj)
                if parsed.outcome is not None:
                    self.settle(watch, cid, parsed.outcome)
                    return
                watch.fetching.discard(cid)  # not final after all: the next poll decides
                watch.changed.set()
                return
            _, reason = error_summary(answer.status, answer.body)
            if answer.status != 404 or misses == _MAX_404:
                break
            misses += 1
            await asyncio.sleep(self.config.retry.delay(misses, None, self.rand()))
        error = f"could not fetch item {cid} of batch {watch.batch_id}: {reason}"
        self.settle(watch, cid, Outcome("error", error=error))
