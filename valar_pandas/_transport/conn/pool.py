"""The pool: keep-alive connections to one endpoint, one request at a time on each.

A request that fails on a reused keep-alive connection before any byte of the answer arrived
(the server closed the idle connection as the request left) is sent once more on a fresh
connection when that is safe: a ``GET``, or a request with an ``Idempotency-Key``.

Until one connection to the endpoint has succeeded, connection attempts go one at a time: a
certificate that does not verify, a host that does not resolve or a closed port is then seen
by a single handshake instead of one per waiting request, and the caller can stop there.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from ..._core.endpoint import Endpoint
from ..._policy import Fault
from .connection import Answer, Connection, ConnectionFailed

__all__ = ["Pool"]

_INLINE_BODY = 64 * 1024  # bodies up to this size leave in the same write as the head
_CONNECT_TIMEOUT = 30.0


class Pool:
    """Up to ``limit`` keep-alive connections to one endpoint, one request at a time on each.

    Args:
        endpoint: Where to connect.
        headers: Header lines sent with every request (each ending in CRLF); the
            pool adds ``Host``, ``Content-Length`` and ``Content-Type``.
        limit: Most connections open at once; further requests wait for one to be free.
        secret_header: Called as each request is written, for one more header line that
            must not be kept (``Authorization``): its bytes go straight into the write and
            are held by no variable or attribute, so a traceback that shows locals cannot
            show them.

    Attributes:
        attempts: Connection attempts so far (TCP connects, with their TLS handshakes).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        headers: bytes,
        limit: int,
        secret_header: Callable[[], bytes] = bytes,
    ) -> None:
        self._endpoint = endpoint
        self._secret_header = secret_header
        self._prefix = endpoint.prefix.encode("ascii")
        self._common = b"Host: " + endpoint.authority.encode("idna") + b"\r\n" + headers
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._ssl = ssl.create_default_context() if endpoint.tls else None
        self._closed = False
        self._reached = False  # a connection succeeded once: connect freely from then on
        self._probe = asyncio.Semaphore(1)
        self.attempts = 0

    def __repr__(self) -> str:
        endpoint = getattr(self, "_endpoint", None)
        where = endpoint.authority if endpoint is not None else None
        return f"Pool({where!r}, open={len(getattr(self, '_open', ()))})"

    async def request(
        self,
        method: bytes,
        path: str,
        payload: bytes | None,
        extra: bytes,
        timeout: float,
        cap: int,
    ) -> Answer:
        """Send one request and read the whole answer.

        Args:
            method: ``b"GET"`` or ``b"POST"``.
            path: Path below the prefix, already URL-quoted.
            payload: JSON body, if any.
            extra: More header lines for this request only (e.g. ``Idempotency-Key``).
            timeout: Seconds for the whole exchange, connecting included.
            cap: Most bytes the answer's body may have, decoded.

        Returns:
            The answer.

        Raises:
            ConnectionFailed: No complete answer (refused, reset, closed, timed out, unreadable,
                over the cap).
        """
        line = b"%s %s%s HTTP/1.1\r\n" % (method, self._prefix, path.encode("ascii"))
        head = self._common + extra
        if payload is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
            if len(payload) <= _INLINE_BODY:
                head, payload = head + payload, None
        else:
            head += b"Content-Length: 0\r\n\r\n" if method == b"POST" else b"\r\n"
        resend_safe = method == b"GET" or b"Idempotency-Key:" in extra
        async with self._slots:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            for attempt in (1, 2):
                conn = self._take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(loop, deadline)
                try:
                    answer = await conn.exchange(
                        loop, line, self._secret_header, head, payload, deadline, cap
                    )
                except ConnectionFailed as exc:
                    conn.drop()
                    if reused and exc.untouched and resend_safe and attempt == 1:
                        continue
                    raise
                except BaseException:  # cancelled mid-exchange: the connection state is unknown
                    conn.drop()
                    raise
                if conn.keep_alive and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.drop()
                return answer
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def close(self) -> None:
        """Close every connection; requests still running fail with :class:`ConnectionFailed`."""
        self._closed = True
        self._idle.clear()
        for conn in list(self._open):
            conn.drop()

    def _take_idle(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used is the likeliest to be alive
            if not conn.closed:
                return conn
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> Connection:
        if not self._reached:
            async with self._probe:  # never connected yet: one attempt at a time
                if not self._reached:
                    conn = await self._open_connection(loop, deadline)
                    self._reached = True
                    return conn
        return await self._open_connection(loop, deadline)

    async def _open_connection(
        self, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> Connection:
        endpoint = self._endpoint
        if self._closed:
            raise ConnectionFailed("the connection pool is closed")
        self.attempts += 1
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + _CONNECT_TIMEOUT)):
                _, conn = await loop.create_connection(
                    lambda: Connection(self._open),
                    endpoint.host,
                    endpoint.port,
                    ssl=self._ssl,
                    server_hostname=endpoint.host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise ConnectionFailed(
                f"timed out connecting to {endpoint.authority}", fault="silent"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            fault, reason = _connect_fault(exc)
            raise ConnectionFailed(
                f"cannot connect to {endpoint.authority}: {reason}", fault=fault, detail=reason
            ) from None
        return conn


def _connect_fault(exc: BaseException) -> tuple[Fault, str]:
    """Classify a failed connect: its fault and a short reason."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate", exc.verify_message or exc.reason or str(exc)
    if isinstance(exc, ssl.SSLError):
        return "tls", exc.reason or str(exc)
    assert isinstance(exc, OSError)
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, socket.gaierror):
        return "dns", reason
    if isinstance(exc, ConnectionRefusedError):
        return "refused", reason
    return "transient", reason
