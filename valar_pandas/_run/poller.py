"""Polling background responses: a heap of outstanding responses, each at its next look.

One dispatcher keeps a heap ordered by when each response is next worth asking about
(:class:`~valar_pandas._policy.PollPlanner`, learning from the run's own completions through
:class:`~valar_pandas._policy.LatencyModel`). A due response takes one of the run's slots and
is asked once with ``GET /responses/{id}``; a failed look goes back on the heap after the
exchange's backoff (:meth:`~valar_pandas._transport.exchange.Exchange.backoff`), so a waiting row
holds no slot and no task: it is one heap entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .._core.models import Outcome, Request
from .._core.wire import ParsedResponse, TooDeep, decode_json, error_summary, parse_response
from .._policy import LatencyModel, PollPlanner, PollSchedule
from .._transport.exchange import Exchange, Tries
from .._transport.http import Reply, Unreachable

__all__ = ["Polled", "Poller", "read_response"]

_COALESCE = 0.05


@dataclass(slots=True)
class Polled:
    """One background response being polled."""

    fingerprint: str
    response_id: str
    created: float
    request: Request | None = None
    scout: bool = True
    tail_scout: bool = False
    probe: bool = True
    last_age: float = 0.0
    polls: int = 0
    tries: Tries = field(default_factory=Tries)
    misses: int = 0
    last_status: str = "queued"


class Poller:
    """Watches a run's background responses until each reaches a verdict or its deadline.

    Args:
        exchange: The run's exchange (slots, overload control, retries).
        schedule: The cold-start schedule, gap cap and deadline.
        timeout: Seconds one poll may take.
        results: The run's outcomes so far (read: the dispatcher ends when all are in).
        total: Outcomes the run waits for.
        finish: Records a row's outcome.
        recreate: Creates a request again (a re-attached id the server no longer knows).
    """

    def __init__(
        self,
        exchange: Exchange,
        schedule: PollSchedule,
        timeout: float,
        results: Mapping[str, Outcome],
        total: int,
        finish: Callable[[str, Outcome], None],
        recreate: Callable[[Request], Coroutine[Any, Any, None]],
    ) -> None:
        self.exchange = exchange
        self.schedule = schedule
        self.timeout = timeout
        self.results = results
        self.total = total
        self.finish = finish
        self.recreate = recreate
        self.now = exchange.now
        self.rand = exchange.rand
        self.model = LatencyModel()
        self.tail = LatencyModel()  # learnt from the tail scouts: rows late at a first poll
        self.tail_taken = 0
        self.estimated_at = total + 1  # the fewest rows probably running at a regroup so far
        self.planner = PollPlanner.from_schedule(schedule)
        self.watched = 0
        self.regrouped_at = total + 1  # the fewest rows left at an endgame regroup so far
        self.parked = 0  # heap entries that wait on the scouts (no poll due)
        self.heap: list[tuple[float, int, Polled]] = []
        self.seq = itertools.count()
        self.wake = asyncio.Event()

    def watch(self, watch: Polled, delay: float) -> None:
        """Put a response on the heap, due in ``delay`` seconds."""
        heapq.heappush(self.heap, (self.now() + delay, next(self.seq), watch))
        self.parked += not watch.probe
        if self.heap[0][2] is watch:  # the dispatcher only cares about a new earliest entry
            self.wake.set()

    def start(
        self, fingerprint: str, response_id: str, raw_status: str, request: Request | None = None
    ) -> None:
        """Watch a response just created (``request``: its body names a truncation's cap)."""
        now = self.now()
        scout = self.planner.is_scout(self.watched, self.total)
        self.watched += 1
        watch = Polled(fingerprint, response_id, now, request, scout=scout, last_status=raw_status)
        if scout:
            self.model.started(now)
        self.plan_next(watch)

    def reattach(self, requests: Sequence[Request], attach: Mapping[str, str]) -> None:
        """Poll responses created by an earlier run instead of creating them again."""
        created = self.now()
        for request in requests:
            response_id = attach.get(request.fingerprint)
            if response_id is not None:
                # Polled on the scout schedule: long-running already, and with every row
                # re-attached there would be no scout to learn from otherwise.
                self.model.started(created)
                self.watch(Polled(request.fingerprint, response_id, created, request), 0.0)

    async def dispatcher(self, group: asyncio.TaskGroup) -> None:
        """Send each response's poll when it falls due, until every outcome is in."""
        while len(self.results) < self.total:
            if not self.heap:
                self.wake.clear()
                await self.wake.wait()
                continue
            delay = self.heap[0][0] - self.now()
            if delay > _COALESCE:  # entries due within it go together: fewer loop wake-ups
                self.wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that coincides with the wake-up, and the dispatcher would outlive its group.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.wake.wait()
                continue
            _, _, watch = heapq.heappop(self.heap)
            if not watch.probe:  # a row waiting on the scouts: decide again, at no cost
                self.parked -= 1
                self.plan_next(watch)
                continue
            await self.exchange.slots.acquire()
            group.create_task(self.poll(watch))

    async def poll(self, watch: Polled) -> None:
        """GET one response (the dispatcher already took its slot)."""
        path = f"/responses/{quote(watch.response_id, safe='')}"
        try:
            reply = await self.exchange.send("GET", path, timeout=self.timeout)
        except Unreachable as exc:
            if not exc.retryable:
                self.abandon(watch, f"response {watch.response_id}: {exc}")
                return
            self.poll_failed(watch, None, str(exc), None)
            return
        finally:
            self.exchange.slots.release()
        watch.polls += 1
        if reply.status == 200:
            try:
                parsed = read_response(reply, None if watch.request is None else watch.request.body)
            except ValueError:
                self.poll_failed(watch, None, "HTTP 200 with an unreadable body", None)
                return
            if isinstance(parsed, TooDeep):  # the same reply again: a row error at once
                self.abandon(watch, f"response {watch.response_id}: HTTP 200 with an unreadable "
                             f"body: {parsed}")  # fmt: skip
                return
            watch.tries.failures = watch.tries.overloads = 0
            age = self.now() - watch.created
            if parsed.outcome is not None:
                if watch.scout:
                    self.model.finished(watch.created, watch.last_age, age)
                if watch.tail_scout:
                    self.tail.finished(watch.created, watch.last_age, age)
                self.finish(watch.fingerprint, parsed.outcome)
                if watch.scout or watch.tail_scout:
                    self.reconsider()
                if watch.tail_scout:
                    self.regroup(self.probably_running())
                self.regroup()
                return
            watch.last_status = parsed.raw_status
            watch.last_age = age
            if self.planner.is_tail_scout(
                polls=watch.polls, scout=watch.scout, taken=self.tail_taken
            ):
                watch.tail_scout = True  # among the first rows still running at a first poll
                self.tail_taken += 1
                self.tail.started(watch.created)
            self.plan_next(watch)
            return
        if reply.status == 404:
            watch.misses += 1  # may be replication lag right after a create
            delay = self.exchange.lag(watch.misses)
            if delay is not None:
                self.watch(watch, delay)
                return
            if watch.request is not None:
                # An id from an earlier run that the server no longer knows: create again
                # under the same key, which replays the reservation if the server still has it.
                self.unwatch(watch)
                await self.recreate(watch.request)
                return
        _, reason = error_summary(reply.status, reply.body)
        self.poll_failed(watch, reply.status, reason, reply.retry_after)

    def poll_failed(
        self, watch: Polled, status: int | None, reason: str, retry_after: str | None
    ) -> None:
        delay = self.exchange.backoff(watch.tries, status, reason, retry_after)
        if delay is None:
            self.abandon(
                watch, f"lost track of response {watch.response_id} while polling: {reason}"
            )
            return
        self.watch(watch, delay)

    def abandon(self, watch: Polled, error: str) -> None:
        """Stop watching a response without a verdict; the row ends as a client error."""
        self.unwatch(watch)
        self.finish(watch.fingerprint, Outcome("error", error=error, response_id=watch.response_id))

    def unwatch(self, watch: Polled) -> None:
        """A response stops being watched without a completion: its models forget it."""
        if watch.scout:
            self.model.forget(watch.created)
        if watch.tail_scout:
            self.tail.forget(watch.created)

    def probably_running(self) -> float:
        """How many outstanding rows are probably still running (:meth:`still_running`).

        Rows off the heap (a poll in flight) count as running.
        """
        now = self.now()
        running: float = self.total - len(self.results) - len(self.heap)
        running += sum(
            self.planner.still_running(
                age=now - watch.created,
                polls=watch.polls,
                scout=watch.scout,
                tail=self.tail,
                tail_scout=watch.tail_scout,
                now=now,
            )
            for _, _, watch in self.heap
        )
        return running

    def reconsider(self) -> None:
        """A scout finished: decide again at once every row that was waiting on the scouts."""
        if not self.parked:  # e.g. every row re-attached, all of them scouts: nothing to do
            return
        now = self.now()
        outstanding = self.total - len(self.results)
        entries = []
        for due, seq, watch in self.heap:
            if not watch.probe:
                age = now - watch.created
                delay, watch.probe = self._plan(watch, age, now, outstanding)
                due = now + min(delay, max(self.schedule.deadline - age, 0.0))
            entries.append((due, seq, watch))
        heapq.heapify(entries)
        self.heap = entries
        self.parked = sum(not watch.probe for _, _, watch in entries)
        self.wake.set()

    def regroup(self, running: float | None = None) -> None:
        """In the endgame, bring sooner the looks planned when more rows were left.

        ``running``: the rows probably still running (:meth:`probably_running`), when fewer
        than are outstanding, for an endgame that begins with rows finished unnoticed.
        """
        outstanding = self.total - len(self.results)
        if running is None:
            if outstanding >= self.regrouped_at or outstanding > self.planner.endgame_rows:
                return
            self.regrouped_at = outstanding
        else:
            rows = self.planner.endgame_from(
                running, outstanding=outstanding, fewest=self.estimated_at
            )
            if rows is None:
                return
            self.estimated_at = outstanding = rows
        now = self.now()
        entries = []
        for due, seq, watch in self.heap:
            sooner = self.planner.regroup(
                age=now - watch.created, due_in=due - now, outstanding=outstanding
            )
            if sooner is not None:
                watch.probe = True
                due = now + sooner
            entries.append((due, seq, watch))
        heapq.heapify(entries)
        self.heap = entries
        self.parked = sum(not watch.probe for _, _, watch in entries)
        self.wake.set()

    def _plan(self, watch: Polled, age: float, now: float, outstanding: int) -> tuple[float, bool]:
        """The planner's next look at ``watch``, from what the run has learnt so far."""
        return self.planner.plan(
            age=age,
            polls=watch.polls,
            scout=watch.scout,
            model=self.model,
            now=now,
            outstanding=outstanding,
            rand=self.rand(),
            tail=self.tail,
            tail_scout=watch.tail_scout,
        )

    def plan_next(self, watch: Polled) -> None:
        """Put a response back on the heap at the planner's next look, or give up on it."""
        now = self.now()
        age = now - watch.created
        schedule = self.schedule
        if age >= schedule.deadline:
            self.abandon(
                watch,
                f"no final status after {age:.0f} s (last status {watch.last_status!r}); "
                f"response id {watch.response_id}",
            )
            return
        delay, watch.probe = self._plan(watch, age, now, self.total - len(self.results))
        self.watch(watch, min(delay, max(schedule.deadline - age, 0.0)))


def read_response(reply: Reply, sent: Mapping[str, Any] | None = None) -> ParsedResponse | TooDeep:
    """The reply's Response object, or the :class:`TooDeep` it nests past (a row error).

    ``sent`` is the request body it answers, when at hand (a truncation names its cap).

    Raises:
        ValueError: The body is not a Response object (unreadable: worth another try).
    """
    try:
        obj = decode_json(reply.body)
    except TooDeep as exc:
        return exc
    parsed = parse_response(obj, sent)
    if parsed.status == "unknown" and parsed.response_id is None:
        raise ValueError("not a Response object")
    return parsed
