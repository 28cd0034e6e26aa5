"""A run's doorway to the API: a thin wrapper over its client's pool that counts requests.

The pool, the client-wide request budget and limit in flight belong to the client
(:mod:`valar_pandas._transport.shared`); a doorway is the run's own view of them. It turns
every transport failure (refused, reset, dropped, timed out, unreadable, too large) and every
redirect into :class:`Unreachable` and hands back status, ``Retry-After`` and body bytes, with
any echo of the API key masked (:mod:`valar_pandas._core.scrub`). Every request of a run goes
through it (creates, polls, batch calls, retries), so it also holds the run's own request
budget (never more than ``max_rps`` requests a second, within the client's) and the run's
:class:`~valar_pandas._policy.Health`: when the exchanges so far prove the endpoint unusable (a
certificate, a redirect, an unresolvable host, ...), the :class:`Unreachable` it raises carries
the :class:`~valar_pandas._core.errors.EndpointError` that the exchange
(:mod:`valar_pandas._transport.exchange`) raises instead of retrying. The ``Authorization``
header is made from the client's :class:`~valar_pandas._core.secret.Secret` by a callable the
pool calls while it writes each request (given to the pool by
:mod:`~valar_pandas._transport.shared`), so the key never sits in a local variable or attribute
as plain bytes (a traceback that shows locals cannot show it), and it is never logged or
echoed. A client closed under a run makes its next request, or the one in flight, raise a
:class:`~valar_pandas._core.errors.ConfigError` that says so. The wire itself is
:mod:`valar_pandas._transport.conn` (why not aiohttp's client is explained there).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from .._core.config import CLOSED, ValarClient
from .._core.errors import ConfigError, EndpointError
from .._core.scrub import printable, scrub_body, scrub_text
from .._policy import RETRYABLE, Fault, Health, TokenBucket, explain
from .conn import ConnectionFailed, Endpoint
from .shared import Lane, shared

__all__ = ["LARGE_ANSWER", "Http", "Reply", "Unreachable"]

LARGE_ANSWER = 64 * 1024 * 1024
"""The cap on a batch's status map (``GET /batches/{id}``), when the client's own cap is lower.

A status map names every item of a batch: up to 100,000 ``custom_id``s of up to 64
characters with their statuses, about 10 MB. 64 MiB leaves room for servers that say more
per item; every other answer is one Response object, under the client's
``max_response_bytes``."""


_HEADER_VALUE = re.compile(r"[!-~]{1,255}")


class Unreachable(Exception):
    """No usable HTTP answer: refused, reset, dropped, timed out, too large, or a redirect.

    Attributes:
        fault: What kind of failure it was.
        fatal: Set when this failure proves the endpoint unusable: the caller raises it
            instead of retrying.
    """

    def __init__(
        self, message: str, fault: Fault = "transient", fatal: EndpointError | None = None
    ) -> None:
        super().__init__(message)
        self.fault: Fault = fault
        self.fatal = fatal

    @property
    def retryable(self) -> bool:
        """Whether trying again could help (an over-cap answer would only come again)."""
        return self.fault != "too_large"


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, reduced to what the engine reads."""

    status: int
    retry_after: str | None
    body: bytes


class Http:
    """A run's doorway to the API, through its client's shared pool, budget and limit.

    Args:
        client: Where to connect and with which key; its pool on the running loop is used
            (:mod:`valar_pandas._transport.shared`). Made outside any event loop, the
            doorway has a pool of its own instead, closed with it.
        connections: The most requests of this doorway in flight at once, within the
            client's ``concurrency``; None for the client's limit alone (a run's exchange
            keeps its own count of slots).
        max_rps: The most requests a second of this doorway, within the client's
            ``max_rps`` (a token bucket: bursts of up to 50 requests, never more than one
            second's worth); None for the client's budget alone.

    Raises:
        ConfigError: The client is closed.

    Attributes:
        sent: HTTP requests sent so far, retries included.
        health: What the run has seen of the endpoint.
    """

    def __init__(
        self, client: ValarClient, connections: int | None = None, max_rps: float | None = None
    ) -> None:
        self._timeout = client.timeout
        self._realtime = client.realtime_timeout
        self._base_url = client.base_url
        self._cap = client.max_response_bytes
        self._large = max(client.max_response_bytes, LARGE_ANSWER)
        self.health = Health()
        self._secret = client.api_key
        self._endpoint = Endpoint.parse(client.base_url)
        self._shared = shared(client)
        self._client = client  # held: a client collected is closed, and this one is in use
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._lane = Lane(None, self._shared.pool(connections or client.concurrency))
        else:
            self._lane = self._shared.join()
        self._pool = self._lane.pool
        self._left = False
        # A cap of the doorway's own only where it is below the client's.
        self._slots = (
            asyncio.Semaphore(connections)
            if connections is not None and connections < client.concurrency
            else None
        )
        rate = self._shared.rate
        self._bucket = (
            TokenBucket(max_rps, burst=min(50.0, max(1.0, max_rps)))
            if max_rps is not None and (rate is None or max_rps < rate)
            else None
        )
        self.sent = 0

    def __repr__(self) -> str:
        return f"Http({getattr(self, '_pool', None)!r}, sent={getattr(self, 'sent', 0)})"

    @property
    def timeout(self) -> float:
        """Seconds one exchange that does not wait for the model may take."""
        return self._timeout

    @property
    def realtime_timeout(self) -> float:
        """Seconds one exchange that waits for the model (a realtime create) may take."""
        return self._realtime

    @property
    def connects(self) -> int:
        """Connection attempts so far."""
        return self._pool.attempts

    async def close(self) -> None:
        """Stop using the client's pool (closed with its last user unless the loop is kept).

        A doorway that sent requests and never had a usable answer retires the pool: the
        next run opens a new one, so a fix made meanwhile (a CA trusted through
        ``SSL_CERT_FILE``, a DNS entry) is seen by the same client.
        """
        if self._left:
            return
        self._left = True
        if self._lane.loop is None:
            await self._pool.close()
        else:
            await self._shared.leave(self._lane, retire=self.sent > 0 and not self.health.reached)

    async def request(
        self,
        method: str,
        path: str,
        *,
        payload: bytes | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        large: bool = False,
    ) -> Reply:
        """Send one request and read the whole answer.

        Args:
            method: ``"GET"`` or ``"POST"``.
            path: Path below the base URL, e.g. ``"/responses"``, already URL-quoted.
            payload: JSON bytes to send, if any.
            idempotency_key: Value of the ``Idempotency-Key`` header, if any.
            timeout: Seconds the whole exchange may take, connecting included; None for
                the client's ``timeout``. A call that waits for the model (a realtime
                create) passes :attr:`realtime_timeout`.
            large: The answer may be as large as :data:`LARGE_ANSWER` (a batch's status map).

        Returns:
            The reply.

        Raises:
            Unreachable: No complete, usable HTTP answer arrived; its ``fatal`` is set when
                the endpoint is proven unusable.
        """
        shared = self._shared
        if shared.closed:
            raise ConfigError(CLOSED)
        now = asyncio.get_running_loop().time()
        wait = shared.reserve(now)
        if self._bucket is not None:
            wait = max(wait, self._bucket.reserve(now))
        if wait > 0:
            await asyncio.sleep(wait)
        if idempotency_key and not _HEADER_VALUE.fullmatch(idempotency_key):
            # Never reached by the library's own keys; a key from elsewhere must not be able
            # to add header lines (CR/LF) to the request.
            raise ValueError("an Idempotency-Key must be 1-255 visible ASCII characters")
        extra = (
            b"Idempotency-Key: %s\r\n" % idempotency_key.encode("ascii") if idempotency_key else b""
        )
        self.sent += 1
        if timeout is None:
            timeout = self._timeout
        # A GET, or a POST the server deduplicates by its key, may be sent twice.
        resend_safe = method == "GET" or idempotency_key is not None
        try:
            if self._slots is None:
                answer = await self._pool.request(
                    method.encode("ascii"), path, payload, extra, timeout,
                    self._large if large else self._cap, resend_safe=resend_safe,
                )  # fmt: skip
            else:
                async with self._slots:
                    answer = await self._pool.request(
                        method.encode("ascii"), path, payload, extra, timeout,
                        self._large if large else self._cap, resend_safe=resend_safe,
                    )  # fmt: skip
        except ConnectionFailed as exc:
            if shared.closed:  # closed under the run: say so, not "connection failed"
                raise ConfigError(CLOSED) from None
            fatal = self._judge(exc.fault, exc.detail, path, None, timeout)
            raise Unreachable(str(exc), exc.fault, fatal) from None
        status, retry_after, body, location = answer
        # Everything the server says enters here: a key it echoes is masked before any of it
        # is parsed, stored, written, shown or raised.
        body = scrub_body(body, self._secret)
        if location is not None:
            location = printable(scrub_text(location, self._secret))
        if 300 <= status < 400:  # the API never redirects; following would move key and body
            detail = f"HTTP {status}"
            fatal = self._judge("redirect", detail, path, location, timeout)
            raise Unreachable(f"{detail} redirect to {location or 'nowhere'}", "redirect", fatal)
        fault: Fault | None = None
        if status >= 500 or status in RETRYABLE:
            fault = "transient"
        elif not _looks_like_json(body):
            fault = "not_api"
        if self.health.observe(fault):
            detail = f"HTTP {status}: {body[:60]!r}"
            raise Unreachable(
                detail, "not_api", self._fatal("not_api", detail, path, None, timeout)
            )
        return Reply(status, retry_after, body)

    def _judge(
        self, fault: Fault, detail: str, path: str, location: str | None, timeout: float
    ) -> EndpointError | None:
        """The error that stops the run, if this failure proves the endpoint unusable."""
        if not self.health.observe(fault):
            return None
        return self._fatal(fault, detail, path, location, timeout)

    def _fatal(
        self, fault: Fault, detail: str, path: str, location: str | None, timeout: float
    ) -> EndpointError:
        endpoint = self._endpoint
        message = explain(
            fault,
            base_url=self._base_url,
            host=endpoint.host,
            authority=endpoint.authority,
            detail=detail,
            location=location,
            path=path.partition("?")[0],
            timeout=timeout,
        )
        return EndpointError(message, cause=fault, location=location)


def _looks_like_json(body: bytes) -> bool:
    """Whether a body starts like a JSON object or array (the API sends nothing else)."""
    first = body[:1]
    if first in (b"{", b"["):
        return True
    return body[:64].lstrip()[:1] in (b"{", b"[")
