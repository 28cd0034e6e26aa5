"""The one place that speaks HTTP: a thin wrapper over the connection pool that counts requests.

It turns every transport failure (refused, reset, dropped, timed out, unreadable) into
:class:`Unreachable` and hands back status, ``Retry-After`` and body bytes. Every request of a
run goes through it (creates, polls, batch calls, retries), so it also holds the run's request
budget: never more than ``max_rps`` requests a second. It makes no other decisions. The
``Authorization`` header is attached here from the client's secret and never logged or echoed.
The wire itself is :mod:`valar_pandas._conn` (why not aiohttp's client is explained there).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ._config import ValarClient
from ._conn import ConnectionFailed, Endpoint, Pool
from ._policy import TokenBucket

__all__ = ["Http", "Reply", "Unreachable"]


class Unreachable(Exception):
    """No HTTP answer: connection refused, reset or dropped, or a timeout."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, reduced to what the engine reads."""

    status: int
    retry_after: str | None
    body: bytes


class Http:
    """Send requests to the Valar API over one pool of keep-alive connections.

    Args:
        client: Where to connect and with which key.
        connections: Size of the connection pool (the run's concurrency).
        max_rps: The most requests a second (a token bucket: bursts of up to 50 requests,
            never more than one second's worth); None for no limit.

    Attributes:
        sent: HTTP requests sent so far, retries included.
    """

    def __init__(self, client: ValarClient, connections: int, max_rps: float | None = None) -> None:
        self._timeout = client.timeout
        self._realtime = client.realtime_timeout
        headers = (
            b"Authorization: Bearer " + client.api_key.reveal().encode("latin-1") + b"\r\n"
            b"User-Agent: valar-pandas\r\n"
            b"Accept: application/json\r\n"
            b"Accept-Encoding: gzip, deflate\r\n"
        )
        self._pool = Pool(Endpoint.parse(client.base_url), headers, connections)
        # Bursts of up to 50 requests, never more than one second's worth.
        self._bucket = (
            TokenBucket(max_rps, burst=min(50.0, max(1.0, max_rps)))
            if max_rps is not None
            else None
        )
        self.sent = 0

    def __repr__(self) -> str:
        return f"Http({self._pool!r}, sent={self.sent})"

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        payload: bytes | None = None,
        idempotency_key: str | None = None,
        realtime: bool = False,
    ) -> Reply:
        """Send one request and read the whole answer.

        Args:
            method: ``"GET"`` or ``"POST"``.
            path: Path below the base URL, e.g. ``"/responses"``, already URL-quoted.
            payload: JSON bytes to send, if any.
            idempotency_key: Value of the ``Idempotency-Key`` header, if any.
            realtime: Use the long realtime timeout (the call waits for the model).

        Returns:
            The reply.

        Raises:
            Unreachable: No complete HTTP answer arrived.
        """
        if self._bucket is not None:
            wait = self._bucket.reserve(asyncio.get_running_loop().time())
            if wait > 0:
                await asyncio.sleep(wait)
        extra = (
            b"Idempotency-Key: %s\r\n" % idempotency_key.encode("ascii") if idempotency_key else b""
        )
        self.sent += 1
        try:
            status, retry_after, body = await self._pool.request(
                method.encode("ascii"),
                path,
                payload,
                extra,
                self._realtime if realtime else self._timeout,
            )
        except ConnectionFailed as exc:
            raise Unreachable(str(exc)) from None
        return Reply(status, retry_after, body)
