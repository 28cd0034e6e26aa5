"""The one retrying HTTP exchange: creates, polls, batch calls and cancels all go through it.

An :class:`Exchange` is a run's view of the transport (:class:`~valar_pandas._transport.http.Http`).
It owns what every call shares:

- **the slots**: at most ``concurrency`` requests in flight, a limit that overload answers
  (429, 503) cut and successes raise back (:class:`~valar_pandas._policy.Aimd` through a
  :class:`~valar_pandas._transport.gate.Gate`), whichever path (engine, batch, cancel) sent them;
- **the retry decisions**: one :class:`~valar_pandas._policy.RetryPolicy`, ``Retry-After``
  honoured, overloads counted apart from other failures, a
  :class:`~valar_pandas._core.models.Retrying` event and a DEBUG log line for every retry;
- **the stops**: 401 and 403 become one :class:`~valar_pandas._core.errors.AuthenticationError`, and
  a failure that proves the endpoint unusable raises its
  :class:`~valar_pandas._core.errors.EndpointError` instead of being retried;
- **the timeout**: every call says how long it may take (a realtime create waits for the
  model; a poll does not), nothing is inferred from the payload.

:meth:`Exchange.call` retries by sleeping; the engine's polls, which wait on its heap instead,
send one try with :meth:`Exchange.send` and ask :meth:`Exchange.backoff` and
:meth:`Exchange.lag` when to look again. :class:`Admission` and :func:`surface` are the two
other things every path did alike: a budget that refuses once and for all, and the one error
worth raising out of a task group.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._core.errors import AuthenticationError, ValarError
from .._core.log import child
from .._core.models import Event, Request, Retrying
from .._core.wire import error_summary
from .._policy import OVERLOAD, RETRYABLE, Aimd, RetryPolicy, parse_retry_after
from .gate import Gate
from .http import Http, Reply, Unreachable

__all__ = ["MAX_404", "Admission", "Answered", "Exchange", "Tries", "surface"]

T = TypeVar("T")

MAX_404 = 3
"""404s in a row taken for replication lag right after a create, and asked again."""

log = child("exchange")


@dataclass(slots=True)
class Tries:
    """Failed tries of one exchange so far, overloads counted apart.

    Attributes:
        failures: Tries that failed for other reasons than overload.
        overloads: Tries answered 429 or 503.
    """

    failures: int = 0
    overloads: int = 0

    @property
    def total(self) -> int:
        """Every failed try."""
        return self.failures + self.overloads


@dataclass(frozen=True, slots=True)
class Answered(Generic[T]):
    """A final HTTP answer.

    Attributes:
        status: The HTTP status.
        body: The raw body.
        value: What the caller's ``read`` made of a 2xx body; None for any other status.
        tries: Tries made, this one included.
    """

    status: int
    body: bytes
    value: T | None
    tries: int


class Exchange:
    """A run's requests: its slots, its overload control and its retries.

    Args:
        http: The transport.
        retry: When to retry and how long to wait.
        concurrency: The most requests in flight; overload answers lower the live limit.
        emit: Receives a :class:`~valar_pandas._core.models.Retrying` event for every retry.
        rand: Uniform random numbers for jitter.
        now: Monotonic clock, in seconds (for the overload control's cooldown).

    Attributes:
        aimd: The live concurrency limit.
        slots: The requests in flight, within ``aimd``'s limit.
    """

    def __init__(
        self,
        http: Http,
        retry: RetryPolicy,
        concurrency: int,
        emit: Callable[[Event], None],
        *,
        rand: Callable[[], float] = random.random,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.retry = retry
        self.emit = emit
        self.rand = rand
        self.now = now
        self.aimd = Aimd(concurrency)
        self.slots = Gate(lambda: self.aimd.slots)
        self._warned = False

    async def send(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        payload: bytes | None = None,
        key: str | None = None,
        large: bool = False,
        keep: frozenset[int] = frozenset(),
    ) -> Reply:
        """Send one try while the caller holds a slot, and feed its answer to the overload control.

        Args:
            method: ``"GET"`` or ``"POST"``.
            path: Path below the base URL, already URL-quoted.
            timeout: Seconds the whole exchange may take.
            payload: JSON bytes to send, if any.
            key: The ``Idempotency-Key``, if any.
            large: The answer may be a batch's status map.
            keep: Statuses among 401 and 403 the caller judges itself (a 403 from a route
                the key may not use, while it works elsewhere): returned, not raised.

        Returns:
            The reply, whatever its status but 401 and 403 (unless kept).

        Raises:
            Unreachable: No usable answer (the endpoint is not proven unusable).
            EndpointError: The endpoint is proven unusable.
            AuthenticationError: The server rejected the API key.
        """
        try:
            reply = await self.http.request(
                method, path, payload=payload, idempotency_key=key, timeout=timeout, large=large
            )
        except Unreachable as exc:
            if exc.fatal is not None:
                raise exc.fatal from None
            raise
        if reply.status in OVERLOAD:
            self._overloaded(reply.status)
        elif reply.status < 400:
            self.aimd.success()
            self.slots.poke()
        if reply.status in (401, 403) and reply.status not in keep:
            _, message = error_summary(reply.status, reply.body)
            raise AuthenticationError(
                f"the Valar API rejected the API key ({message}); check VALAR_API_KEY",
                status_code=reply.status,
            )
        return reply

    def _overloaded(self, status: int) -> None:
        before = self.aimd.slots
        self.aimd.overloaded(self.now())
        after = self.aimd.slots
        if after < before and not self._warned:
            self._warned = True
            log.warning(
                "the server is overloaded (HTTP %d): requests in flight cut from %d to %d, "
                "growing back as answers succeed",
                status,
                before,
                after,
            )

    def backoff(
        self, tries: Tries, status: int | None, reason: str, retry_after: str | None
    ) -> float | None:
        """Count one failed try; say how long to wait before the next, if there is one.

        Args:
            tries: The exchange's failed tries so far; updated.
            status: The failed try's HTTP status, or None when no usable answer came.
            reason: Why it failed, for the event and the log.
            retry_after: The answer's ``Retry-After`` header, if any.

        Returns:
            Seconds to wait (a :class:`~valar_pandas._core.models.Retrying` event says so), or
            None when the policy gives up.
        """
        overloaded = status in OVERLOAD
        if overloaded:
            tries.overloads += 1
        else:
            tries.failures += 1
        if not self.retry.should_retry(status, tries.failures, tries.overloads):
            return None
        after = parse_retry_after(retry_after, time.time())
        delay = self.retry.delay(
            tries.overloads if overloaded else tries.failures, after, self.rand()
        )
        self.emit(Retrying(reason, delay))
        log.debug("retrying in %.2f s: %s", delay, reason)
        return delay

    def lag(self, misses: int) -> float | None:
        """How long to wait before asking again about something the server said it lacks.

        Args:
            misses: 404s in a row so far, the last one included.

        Returns:
            Seconds to wait (a 404 right after a create may be replication lag), or None
            after :data:`MAX_404` misses: the server does not have it.
        """
        return self.retry.delay(misses, None, self.rand()) if misses <= MAX_404 else None

    async def call(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        read: Callable[[Reply], T],
        payload: bytes | None = None,
        key: str | None = None,
        large: bool = False,
        on_try: Callable[[], None] | None = None,
        keep: frozenset[int] = frozenset(),
        seen: list[int | None] | None = None,
    ) -> Answered[T] | str:
        """Send, holding a slot for each try, until an answer that is not transient.

        Args:
            method: ``"GET"`` or ``"POST"``.
            path: Path below the base URL, already URL-quoted.
            timeout: Seconds each try may take.
            read: Makes the caller's value of a 2xx reply; a ``ValueError`` from it means
                the body is unreadable, which is retried like a dropped answer.
            payload: JSON bytes to send, if any.
            key: The ``Idempotency-Key``, resent unchanged on every try.
            large: The answer may be a batch's status map.
            on_try: Called before each try is sent.
            keep: 401 or 403 answers to return rather than raise (see :meth:`send`).
            seen: When given, receives each try's HTTP status in turn (None for a try that
                got no usable answer), so the caller can tell how the tries failed.

        Returns:
            The final answer (a 2xx read, or a status not worth retrying), or why the
            exchange gave up.

        Raises:
            EndpointError: The endpoint is proven unusable.
            AuthenticationError: The server rejected the API key.
        """
        tries = Tries()
        while True:
            if on_try is not None:
                on_try()
            retry_after: str | None = None
            await self.slots.acquire()
            try:
                reply = await self.send(
                    method, path, timeout=timeout, payload=payload, key=key, large=large,
                    keep=keep,
                )  # fmt: skip
            except Unreachable as exc:
                if seen is not None:
                    seen.append(None)
                if not exc.retryable:
                    return str(exc)
                status: int | None = None
                reason = str(exc)
            else:
                status, retry_after = reply.status, reply.retry_after
                if seen is not None:
                    seen.append(status)
                if 200 <= status < 300:
                    try:
                        return Answered(status, reply.body, read(reply), tries.total + 1)
                    except ValueError:
                        status, reason = None, f"HTTP {reply.status} with an unreadable body"
                elif status not in RETRYABLE:
                    return Answered(status, reply.body, None, tries.total + 1)
                else:
                    _, reason = error_summary(status, reply.body)
            finally:
                self.slots.release()
            delay = self.backoff(tries, status, reason, retry_after)
            if delay is None:
                return f"gave up after {tries.total} attempts: {reason}"
            await asyncio.sleep(delay)


class Admission:
    """A run's admission gate (a budget): the first refusal holds for every later request.

    Args:
        gate: Asked for each request in turn; returns a reason to refuse it, or None.
    """

    def __init__(self, gate: Callable[[Request], str | None] | None) -> None:
        self._gate = gate
        self.refusal: str | None = None

    def refuse(self, request: Request) -> str | None:
        """Why ``request`` may not be sent, or None to send it."""
        if self._gate is not None and self.refusal is None:
            self.refusal = self._gate(request)
        return self.refusal


def surface(group_error: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error worth raising out of a task group that failed.

    Several tasks may meet the same stop (a rejected key, an unusable endpoint), and the
    others are cancelled: the library's own error wins, else a lone error, else the group.

    Args:
        group_error: What the task group raised.

    Returns:
        The error to raise in the group's place.
    """
    errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
    for exc in errors:
        if isinstance(exc, ValarError):
            return exc
    return errors[0] if len(errors) == 1 else group_error
