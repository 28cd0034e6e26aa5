"""The async fan-out: create every request with bounded concurrency, poll until terminal.

Submission and polling run at once: ``concurrency`` submitter tasks pull requests and POST
them, and one poll dispatcher keeps a heap of outstanding responses ordered by when each is
next worth asking about (:mod:`valar_pandas._run.poller`). Every HTTP exchange, create or poll,
goes through the run's :class:`~valar_pandas._transport.exchange.Exchange` and holds one of its
slots, so the server never sees more than ``concurrency`` in flight, fewer while it answers 429 or
503. Waiting rows hold no slot and no task: a sleeping row is one heap entry.

Every create carries the request's content-addressed ``Idempotency-Key``; a retry after a
timeout, a dropped connection or a 5xx re-sends the same key, so the server replays the
reservation instead of running (and billing) the inference again.

Until one create is accepted, only a few go out at once (:class:`~valar_pandas._policy.ColdStart`),
so a run whose every create is refused the same way (an unknown model, a bad key) stops after
five requests, not ``concurrency``. A transport failure that proves the endpoint unusable (see
:mod:`valar_pandas._transport.http`) stops the run with one
:class:`~valar_pandas._core.errors.EndpointError`, a rejected key with one
:class:`~valar_pandas._core.errors.AuthenticationError`.

Events go out through one ``emit`` callable; the engine never looks at who listens.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .._core.errors import APIError
from .._core.models import Event, Finished, Outcome, Request, Submitted
from .._core.wire import ParsedResponse, TooDeep, error_summary
from .._policy import ColdStart, PollSchedule, RetryPolicy
from .._transport.exchange import Admission, Answered, Exchange, surface
from .._transport.gate import Gate
from .._transport.http import Http
from .poller import Poller, read_response

__all__ = ["EngineConfig", "execute"]

_BUG = (
    "the server holds a different request under this row's Idempotency-Key; "
    "this is a bug in valar_pandas, please report it"
)
_SAME_ERROR_LIMIT = 5
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
    :class:`~valar_pandas._transport.http.Http`.
    """

    concurrency: int
    background: bool
    poll: PollSchedule
    retry: RetryPolicy = field(default_factory=RetryPolicy)


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
        exchange: Exchange | None = None,
    ) -> None:
        self.requests = requests
        self.attach = attach
        self.admission = Admission(gate)
        self.shares = shares
        self.config = config
        self.emit = emit
        self.now = now
        self.rand = rand
        self.results: dict[str, Outcome] = {}
        self.exchange = exchange or Exchange(
            http, config.retry, config.concurrency, emit, rand=rand, now=now
        )
        # A realtime create waits for the model; a background create and a poll do not.
        self.create_timeout = http.timeout if config.background else http.realtime_timeout
        self.total = len({r.fingerprint for r in requests})
        self.poller = Poller(
            self.exchange, config.poll, http.timeout, self.results, self.total, self.finish,
            self.create,
        )  # fmt: skip
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
        self.poller.wake.set()

    # -- creating -------------------------------------------------------------------------

    async def submitter(self) -> None:
        for request in self.queue:
            refusal = self.admission.refuse(request)
            if refusal is not None:
                self.finish(request.fingerprint, Outcome("skipped", error=refusal))
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

    def tried(self) -> None:
        """A create is about to leave: count it, and start the cold-start grace at the first."""
        if self.cold.first is None:
            self.cold.first = self.now()
            asyncio.get_running_loop().call_later(self.cold.grace, self.cold_gate.poke)
        self.creates_sent += 1

    async def create(self, request: Request) -> None:
        fingerprint = request.fingerprint
        answer = await self.exchange.call(
            "POST",
            "/responses",
            timeout=self.create_timeout,
            read=lambda reply: read_response(reply, request.body),
            payload=request.payload,
            key=request.idempotency_key,
            on_try=self.tried,
        )
        if isinstance(answer, str):
            self.finish(fingerprint, Outcome("error", error=answer))
        elif isinstance(answer.value, TooDeep):  # the same reply again: a row error at once
            error = f"HTTP {answer.status} with an unreadable body: {answer.value}"
            self.finish(fingerprint, Outcome("error", error=error))
        elif answer.value is not None:
            self.accepted += 1
            if not self.cold.warm:
                self.warm_up()
            self.created(request, answer.value)
        else:
            self.refused(request, answer)

    def refused(self, request: Request, answer: Answered[ParsedResponse | TooDeep]) -> None:
        """A create answered with a status not worth retrying."""
        status = answer.status
        code, reason = error_summary(status, answer.body)
        if status == 400 and code == "idempotency_error":
            reason = f"{reason}: {_BUG}"
        elif 400 <= status < 500:
            self.rejected(status, code, reason)
        else:
            reason = f"gave up after {answer.tries} attempts: {reason}"
        self.finish(request.fingerprint, Outcome("error", error=reason))

    def created(self, request: Request, parsed: ParsedResponse) -> None:
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
            self.poller.start(fingerprint, parsed.response_id, parsed.raw_status, request)

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
            absent = status in (404, 405) and code != "model_not_found"
            hint = "; check the base URL, which ends in /v1" if absent else ""
            raise APIError(
                f"{said}, so the run stopped before sending the rest: {reason}{hint}",
                status_code=status,
                code=code,
            )


async def execute(
    requests: Sequence[Request],
    shares: Mapping[str, int],
    http: Http,
    config: EngineConfig,
    emit: Callable[[Event], None],
    *,
    attach: Mapping[str, str] | None = None,
    gate: Callable[[Request], str | None] | None = None,
    exchange: Exchange | None = None,
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
        exchange: The run's exchange, shared with its other paths (one set of slots and
            one overload control per run); None makes one from ``config``.
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
    run = _Run(requests, shares, http, config, emit, now, rand, attach or {}, gate, exchange)
    if not requests:
        return run.results
    run.poller.reattach(requests, run.attach)
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(config.concurrency, len(run.fresh))):
                group.create_task(run.submitter())
            group.create_task(run.poller.dispatcher(group))
    except BaseExceptionGroup as group_error:
        # Surface the one meaningful error rather than a group of cancellations.
        raise surface(group_error) from None
    return run.results
