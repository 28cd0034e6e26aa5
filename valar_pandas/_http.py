"""The one place that speaks HTTP: a thin aiohttp wrapper that counts what it sends.

It turns every transport failure (refused, reset, dropped, timed out, unreadable) into
:class:`Unreachable` and hands back status, ``Retry-After`` and body bytes. Every request of a
run goes through it (creates, polls, batch calls, retries), so it also holds the run's request
budget: never more than ``max_rps`` requests a second. It makes no other decisions. The
``Authorization`` header is attached here from the client's secret and never logged or echoed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from ._config import ValarClient
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
    """Send requests to the Valar API over one pooled aiohttp session.

    Args:
        client: Where to connect and with which key.
        connections: Size of the connection pool (the run's concurrency).
        max_rps: The most requests a second (a token bucket: bursts of up to 50 requests,
            never more than one second's worth); None for no limit.

    Attributes:
        sent: HTTP requests sent so far, retries included.
    """

    def __init__(self, client: ValarClient, connections: int, max_rps: float | None = None) -> None:
        self._base = client.base_url
        self._timeout = aiohttp.ClientTimeout(total=client.timeout, sock_connect=30.0)
        self._realtime = aiohttp.ClientTimeout(total=client.realtime_timeout, sock_connect=30.0)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
            headers={
                "Authorization": f"Bearer {client.api_key.reveal()}",
                "Content-Type": "application/json",
                "User-Agent": "valar-pandas",
            },
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets none: skip the jar per request
        )
        # Bursts of up to 50 requests, never more than one second's worth.
        self._bucket = (
            TokenBucket(max_rps, burst=min(50.0, max(1.0, max_rps)))
            if max_rps is not None
            else None
        )
        self.sent = 0

    async def close(self) -> None:
        """Close the pool."""
        await self._session.close()

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
            path: Path below the base URL, e.g. ``"/responses"``.
            payload: JSON bytes to send, if any.
            idempotency_key: Value of the ``Idempotency-Key`` header, if any.
            realtime: Use the long realtime timeout (the call waits for the model).

        Returns:
            The reply.

        Raises:
            Unreachable: No complete HTTP answer arrived.
        """
        if self._bucket is not None:
            wait = self._bucket.reserve(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        self.sent += 1
        try:
            async with self._session.request(
                method,
                self._base + path,
                data=payload,
                headers=headers,
                timeout=self._realtime if realtime else self._timeout,
            ) as response:
                body = await response.read()
                return Reply(response.status, response.headers.get("Retry-After"), body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Unreachable(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    name = type(exc).__name__
    text = str(exc)
    # aiohttp messages name host and port only; never headers.
    return f"{name}: {text}" if text else name
