"""The async fan-out: create every request with bounded concurrency, poll until terminal.

Submission and polling run at once: ``concurrency`` submitter tasks pull requests and POST
them, and one poll dispatcher keeps a heap of outstanding responses ordered by when each is
next worth asking about (:class:`~valar_pandas._policy.PollSchedule`). Every HTTP exchange,
create or poll, holds one of ``concurrency`` slots, so the server never sees more than that
in flight. Waiting rows hold no slot and no task: a sleeping row is one heap entry.

Every create carries the request's content-addressed ``Idempotency-Key``; a retry after a
timeout, a dropped connection or a 5xx re-sends the same key, so the server replays the
reservation instead of running (and billing) the inference again.

Until one create is accepted, only a few go out at once (:class:`~valar_pandas._policy.ColdStart`),
so a run whose every create is refused the same way (an unknown model, a bad key) stops after
five requests, not ``concurrency``. A transport failure that proves the endpoint unusable (see
:mod:`valar_pandas._http`) stops the run with one :class:`~valar_pandas._errors.EndpointError`.

Events go out through one ``emit`` callable; the engine never looks at who listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from ._errors import APIError, AuthenticationError, ValarError
from ._gate import Gate
from ._http import Http, Reply, Unreachable
from ._models import Event, Finished, Outcome, Request, Retrying, Submitted
from ._policy import (
    OVERLOAD,
    RETRYABLE,
    Aimd,
    ColdStart,
    LatencyModel,
    PollPlanner,
    PollSchedule,
    RetryPolicy,
    parse_retry_after,
)
from ._wire import Parsed, TooDeep, decode_json, error_summary, parse_response

__all__ = ["EngineConfig", "execute"]

_BUG = (
    "the server holds a different request under this row's Idempotency-Key; "
    "this is a bug in valar_pandas, please report it"
)
_SAME_ERROR_LIMIT = 5
_MAX_404 = 3
_COALESCE = 0.05
_UNLIMITED = 1 << 30


@dataclass(frozen=True)
class EngineConfig:
    """How to run.

    Attributes:
        concurrency: The most HTTP requests in flight; overload answers lower the live
            limit (AIMD) and successes raise it back, never above this.
        background: Create in background mode and poll, or wait for each answer.
        poll: The cold-start schedule, gap cap and deadline of the poll planner.
        retry: Retry policy for each HTTP exchange.

    The request budget (requests a second) is the transport's: see
    :class:`~valar_pandas._http.Http`.
    """

    concurrency: int
    background: bool
    poll: PollSchedule
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(slots=True)
class _Watch:
    """One background response being polled."""

    fingerprint: str
    response_id: str
    created: float
    request: Request | None = None
    scout: bool = True
    probe: bool = True
    last_age: float = 0.0
    polls: int = 0
    failures: int = 0
    overloads: int = 0
    misses: int = 0
    last_status: str = "queued"


class _Run:
    def __init__(
        self,
        requests: Sequence[Request],
        shares: Mapping[str, int],
        http: Http,
        config: EngineConfig,
        emit: Callable[[Event], None],
        now: Callable[[], float],
        rand: Callable[[], float],
        attach: Mapping[str, str],
        gate: Callable[[Request], str | None] | None,
    ) -> None:
        self.requests = requests
        self.attach = attach
        self.gate = gate
        self.refusal: str | None = None
        self.shares = shares
        self.http = http
        self.config = config
        self.emit = emit
        self.now = now
        self.rand = rand
        self.results: dict[str, Outcome] = {}
        self.aimd = Aimd(config.concurrency)
        self.slots = Gate(lambda: self.aimd.slots)
        self.model = LatencyModel()
        self.planner = PollPlanner.from_schedule(config.poll)
        self.total = len({r.fingerprint for r in requests})
        self.watched = 0
        self.heap: list[tuple[float, int, _Watch]] = []
        self.seq = itertools.count()
        self.wake = asyncio.Event()
        self.fresh = [r for r in requests if r.fingerprint not in attach]
        self.queue = iter(self.fresh)
        self.accepted = 0
        self.same_error: tuple[int, str | None] | None = None
        self.same_error_count = 0
        self.creates_sent = 0
        self.cold = ColdStart(limit=_SAME_ERROR_LIMIT)
        self.cold_gate = Gate(self.cold_slots)

    # -- shared -------------------------------------------------------------------------

    def finish(self, fingerprint: str, outcome: Outcome) -> None:
        self.results[fingerprint] = outcome
        self.emit(Finished(fingerprint, outcome, self.shares.get(fingerprint, 1)))
        self.wake.set()

    def watch(self, watch: _Watch, delay: float) -> None:
        heapq.heappush(self.heap, (self.now() + delay, next(self.seq), watch))
        if self.heap[0][2] is watch:  # the dispatcher only cares about a new earliest entry
            self.wake.set()

    async def exchange(self, method: str, path: str, request: Request | None = None) -> Reply:
        """One HTTP exchange within the concurrency limit."""
        await self.slots.acquire()
        try:
            return await self.send(method, path, request)
        finally:
            self.slots.release()

    async def send(self, method: str, path: str, request: Request | None) -> Reply:
        """Send holding a slot, then feed the answer to AIMD."""
        reply = await self.http.request(
            method,
            path,
            payload=request.payload if request else None,
            idempotency_key=request.idempotency_key if request else None,
            realtime=request is not None and not self.config.background,
        )
        if reply.status in (429, 503):
            self.aimd.overloaded(self.now())
        elif reply.status < 400:
            self.aimd.success()
            self.slots.poke()
        return reply

    @staticmethod
    def fatal_auth(reply: Reply) -> AuthenticationError:
        _, message = error_summary(reply.status, reply.body)
        return AuthenticationError(
            f"the Valar API rejected the API key ({message}); check VALAR_API_KEY",
            status_code=reply.status,
        )

    # -- creating -------------------------------------------------------------------------

    async def submitter(self) -> None:
        for request in self.queue:
            if self.gate is not None and self.refusal is None:
                self.refusal = self.gate(request)
            if self.refusal is not None:
                self.finish(request.fingerprint, Outcome("skipped", error=self.refusal))
                continue
            if self.cold.warm:
                await self.create(request)
                continue
            await self.cold_gate.acquire()
            # Not released when the create raises: the run is ending, and handing the place
            # on would send one more create before the stop reaches the other submitters.
            await self.create(request)
            self.cold_gate.release()

    def cold_slots(self) -> int:
        """Creates allowed in flight while none has been accepted."""
        allowed = self.cold.allowed(self.same_error_count, self.now())
        return _UNLIMITED if allowed is None else allowed

    def warm_up(self) -> None:
        """Lift the cold-start limit (a create was accepted, or its grace ran out)."""
        self.cold.warm = True
        self.cold_gate.poke()

    def reattach(self) -> None:
        """Poll responses created by an earlier run instead of creating them again."""
        created = self.now()
        for request in self.requests:
            response_id = self.attach.get(request.fingerprint)
            if response_id is not None:
                # Polled on the scout schedule: long-running already, and with every row
                # re-attached there would be no scout to learn from otherwise.
                self.model.started(created)
                self.watch(_Watch(request.fingerprint, response_id, created, request), 0.0)

    async def create(self, request: Request) -> None:
        retry = self.config.retry
        attempt = overloads = 0
        while True:
            status: int | None
            if self.cold.first is None:
                self.cold.first = self.now()
                asyncio.get_running_loop().call_later(self.cold.grace, self.cold_gate.poke)
            self.creates_sent += 1
            try:
                reply = await self.exchange("POST", "/responses", request)
            except Unreachable as exc:
                if exc.fatal is not None:
                    raise exc.fatal from None
                if not exc.retryable:
                    self.finish(request.fingerprint, Outcome("error", error=str(exc)))
                    return
                status, reason, after = None, str(exc), None
            else:
                status = reply.status
                if status in (200, 201, 202):
                    try:
                        parsed = _decode(reply)
                    except TooDeep as exc:  # the same reply again: a row error at once
                        error = f"HTTP {status} with an unreadable body: {exc}"
                        self.finish(request.fingerprint, Outcome("error", error=error))
                        return
                    if parsed is not None:
                        self.accepted += 1
                        if not self.cold.warm:
                            self.warm_up()
                        self.created(request, parsed)
                        return
                    reason, after = f"HTTP {status} with an unreadable body", None
                    status = None
                elif status in (401, 403):
                    raise self.fatal_auth(reply)
                else:
                    code, reason = error_summary(status, reply.body)
                    after = parse_retry_after(reply.retry_after, time.time())
                    if status == 400 and code == "idempotency_error":
                        self.finish(
                            request.fingerprint, Outcome("error", error=f"{reason}: {_BUG}")
                        )
                        return
                    if 400 <= status < 500 and status not in RETRYABLE:
                        self.rejected(status, code, reason)
                        self.finish(request.fingerprint, Outcome("error", error=reason))
                        return
            overloaded = status in OVERLOAD
            overloads += overloaded
            attempt += not overloaded
            if not retry.should_retry(status, attempt, overloads):
                tries = attempt + overloads
                self.finish(
                    request.fingerprint,
                    Outcome("error", error=f"gave up after {tries} attempts: {reason}"),
                )
                return
            delay = retry.delay(overloads if overloaded else attempt, after, self.rand())
            self.emit(Retrying(reason, delay))
            await asyncio.sleep(delay)

    def created(self, request: Request, parsed: Parsed) -> None:
        fingerprint = request.fingerprint
        self.emit(Submitted(fingerprint, parsed.response_id, self.shares.get(fingerprint, 1)))
        if parsed.outcome is not None:
            self.finish(fingerprint, parsed.outcome)
        elif parsed.response_id is None:
            self.finish(
                fingerprint,
                Outcome(
                    "error",
                    error=f"the server accepted the request but sent no id "
                    f"(status {parsed.raw_status!r})",
                ),
            )
        else:
            now = self.now()
            scout = self.planner.is_scout(self.watched, self.total)
            self.watched += 1
            watch = _Watch(
                fingerprint, parsed.response_id, now, scout=scout, last_status=parsed.raw_status
            )
            if scout:
                self.model.started(now)
            self.plan_next(watch)

    def rejected(self, status: int, code: str | None, reason: str) -> None:
        """Stop the run when every create so far failed with the same client error."""
        key = (status, code)
        if self.accepted:
            return
        self.same_error_count = self.same_error_count + 1 if key == self.same_error else 1
        self.same_error = key
        count, sent = self.same_error_count, self.creates_sent
        if count >= _SAME_ERROR_LIMIT < len(self.requests):
            if sent == count:
                said = f"the first {count} requests were all rejected the same way"
            else:
                said = (
                    f"{count} requests in a row were rejected the same way and none of the "
                    f"{sent} sent so far was accepted"
                )
            hint = "; check the base URL, which ends in /v1" if status in (404, 405) else ""
            raise APIError(
                f"{said}, so the run stopped before sending the rest: {reason}{hint}",
                status_code=status,
                code=code,
            )

    # -- polling --------------------------------------------------------------------------

    async def dispatcher(self, group: asyncio.TaskGroup) -> None:
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
            if not watch.probe:  # a cold-start non-scout: decide again, at no cost
                self.plan_next(watch)
                continue
            await self.slots.acquire()
            group.create_task(self.poll(watch))

    async def poll(self, watch: _Watch) -> None:
        """GET one response (the dispatcher already took its slot)."""
        try:
            reply = await self.send("GET", f"/responses/{quote(watch.response_id, safe='')}", None)
        except Unreachable as exc:
            if exc.fatal is not None:
                raise exc.fatal from None
            if not exc.retryable:
                self.abandon(watch, f"response {watch.response_id}: {exc}")
                return
            self.poll_failed(watch, None, str(exc), None)
            return
        finally:
            self.slots.release()
        watch.polls += 1
        if reply.status == 200:
            try:
                parsed = _decode(reply)
            except TooDeep as exc:  # the same reply again: a row error at once
                self.abandon(watch, f"response {watch.response_id}: HTTP 200 with an unreadable "
                             f"body: {exc}")  # fmt: skip
                return
            if parsed is None:
                self.poll_failed(watch, None, "HTTP 200 with an unreadable body", None)
                return
            watch.failures = watch.overloads = 0
            age = self.now() - watch.created
            if parsed.outcome is not None:
                if watch.scout:
                    self.model.finished(watch.created, watch.last_age, age)
                self.finish(watch.fingerprint, parsed.outcome)
                return
            watch.last_status = parsed.raw_status
            watch.last_age = age
            self.plan_next(watch)
        elif reply.status in (401, 403):
            raise self.fatal_auth(reply)
        elif reply.status == 404 and watch.misses < _MAX_404:
            watch.misses += 1  # may be replication lag right after a create
            self.watch(watch, self.config.retry.delay(watch.misses, None, self.rand()))
        elif reply.status == 404 and watch.request is not None:
            # An id from an earlier run that the server no longer knows: create again under
            # the same key, which replays the reservation if the server still holds it.
            if watch.scout:
                self.model.forget(watch.created)
            await self.create(watch.request)
        else:
            _, reason = error_summary(reply.status, reply.body)
            after = parse_retry_after(reply.retry_after, time.time())
            self.poll_failed(watch, reply.status, reason, after)

    def poll_failed(
        self, watch: _Watch, status: int | None, reason: str, after: float | None
    ) -> None:
        overloaded = status in OVERLOAD
        watch.overloads += overloaded
        watch.failures += not overloaded
        retry = self.config.retry
        if not retry.should_retry(status, watch.failures, watch.overloads):
            self.abandon(
                watch, f"lost track of response {watch.response_id} while polling: {reason}"
            )
            return
        delay = retry.delay(watch.overloads if overloaded else watch.failures, after, self.rand())
        self.emit(Retrying(reason, delay))
        self.watch(watch, delay)

    def abandon(self, watch: _Watch, error: str) -> None:
        """Stop watching a response without a verdict; the row ends as a client error."""
        if watch.scout:
            self.model.forget(watch.created)
        self.finish(watch.fingerprint, Outcome("error", error=error, response_id=watch.response_id))

    def plan_next(self, watch: _Watch) -> None:
        """Put a response back on the heap at the planner's next look, or give up on it."""
        now = self.now()
        age = now - watch.created
        schedule = self.config.poll
        if age >= schedule.deadline:
            self.abandon(
                watch,
                f"no final status after {age:.0f} s (last status {watch.last_status!r}); "
                f"response id {watch.response_id}",
            )
            return
        delay, watch.probe = self.planner.plan(
            age=age,
            polls=watch.polls,
            scout=watch.scout,
            model=self.model,
            now=now,
            outstanding=self.total - len(self.results),
            rand=self.rand(),
        )
        self.watch(watch, min(delay, max(schedule.deadline - age, 0.0)))


def _decode(reply: Reply) -> Parsed | None:
    """The reply's Response object; None when it is not one.

    Raises:
        TooDeep: The body nests deeper than any Response object.
    """
    try:
        obj = decode_json(reply.body)
    except TooDeep:
        raise
    except ValueError:
        return None
    parsed = parse_response(obj)
    return None if parsed.status == "unknown" and parsed.response_id is None else parsed


async def execute(
    requests: Sequence[Request],
    shares: Mapping[str, int],
    http: Http,
    config: EngineConfig,
    emit: Callable[[Event], None],
    *,
    attach: Mapping[str, str] | None = None,
    gate: Callable[[Request], str | None] | None = None,
    now: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> dict[str, Outcome]:
    """Send every request and wait for every outcome.

    Args:
        requests: The distinct requests to send.
        shares: How many rows each fingerprint fills (for progress counts).
        http: The transport.
        config: Concurrency, mode and policies.
        emit: Receives every event, on the event loop's thread.
        attach: Fingerprint → response id, for requests an earlier run already created:
            they are polled, not created again.
        gate: Asked before each create; a returned reason stops all further creates, and
            every request not yet created ends ``skipped`` with that reason (a budget).
        now: Monotonic clock, in seconds.
        rand: Uniform random numbers for jitter.

    Returns:
        The outcome of every request, by fingerprint.

    Raises:
        AuthenticationError: The server rejected the API key.
        APIError: The first requests were all rejected with the same client error.
        EndpointError: The endpoint cannot be used (certificate, DNS, refused, redirect,
            answers that are not the API's, no answers at all).
    """
    run = _Run(requests, shares, http, config, emit, now, rand, attach or {}, gate)
    if not requests:
        return run.results
    run.reattach()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(config.concurrency, len(run.fresh))):
                group.create_task(run.submitter())
            group.create_task(run.dispatcher(group))
    except BaseExceptionGroup as group_error:
        # Surface the one meaningful error rather than a group of cancellations.
        errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
        for exc in errors:
            if isinstance(exc, ValarError):
                raise exc from None
        if len(errors) == 1:
            raise errors[0] from None
        raise
    return run.results
