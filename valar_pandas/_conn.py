"""A lean HTTP/1.1 client: keep-alive connections on asyncio transports, parsed by httptools.

Why not aiohttp's client: at two requests a row the client's CPU per request is what a large
run costs, and ``aiohttp.ClientSession`` spends 0.33-0.41 ms of CPU per request on a 2-core
machine (URL and header objects, tracing hooks, timers, response objects) before the run does
any work of its own. The exchange this module performs costs about a third of that (measured in
``docs/performance.md``). The API needs a small part of HTTP, and that is all this speaks: JSON
bodies with a ``Content-Length`` out; answers with ``Content-Length``, chunked or
close-delimited bodies in, plain or gzip/deflate; one request at a time per connection; TLS
through :mod:`ssl` with the system's trust store. The grammar is httptools (llhttp, the parser
of Node.js), so no HTTP parsing lives here. Not supported, on purpose: proxies, redirects,
cookies and HTTP/2; the API uses none of them.

A request that fails on a reused keep-alive connection before any byte of the answer arrived
(the server closed the idle connection as the request left) is sent once more on a fresh
connection when that is safe: a ``GET``, or a request with an ``Idempotency-Key``.

Until one connection to the endpoint has succeeded, connection attempts go one at a time: a
certificate that does not verify, a host that does not resolve or a closed port is then seen
by a single handshake instead of one per waiting request, and the caller can stop there.
Every failure says what kind it is (:data:`~valar_pandas._policy.Fault`).

Answers are bounded: a body, and a gzip or deflate body once inflated, may not exceed the
request's ``cap`` in bytes. Inflating stops at the cap (``decompressobj`` with
``max_length``), so a small compressed answer cannot make a large one in memory.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections.abc import Callable

import httptools

from ._endpoint import Endpoint
from ._policy import Fault

__all__ = ["Answer", "ConnectionFailed", "Endpoint", "Pool"]

Answer = tuple[int, "str | None", bytes, "str | None"]
"""Status, ``Retry-After`` value, body and ``Location`` of an answer."""

_INLINE_BODY = 64 * 1024  # bodies up to this size leave in the same write as the head
_CONNECT_TIMEOUT = 30.0
MAX_HEADER_BYTES = 64 * 1024
"""The most bytes of status line and headers read before an answer is refused."""


class ConnectionFailed(Exception):
    """No complete answer arrived.

    Attributes:
        untouched: Nothing of an answer arrived, so the request may not have been read at all.
        fault: What kind of failure it was.
        detail: The transport's own words (e.g. the certificate error), for messages.
    """

    def __init__(
        self,
        message: str,
        *,
        untouched: bool = False,
        fault: Fault = "transient",
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.untouched = untouched
        self.fault: Fault = fault
        self.detail = detail or message


class _TooLarge(Exception):
    """An answer exceeds its cap."""


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
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
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

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used is the likeliest to be alive
            if not conn.closed:
                return conn
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        if not self._reached:
            async with self._probe:  # never connected yet: one attempt at a time
                if not self._reached:
                    conn = await self._open_connection(loop, deadline)
                    self._reached = True
                    return conn
        return await self._open_connection(loop, deadline)

    async def _open_connection(
        self, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> _Connection:
        endpoint = self._endpoint
        if self._closed:
            raise ConnectionFailed("the connection pool is closed")
        self.attempts += 1
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + _CONNECT_TIMEOUT)):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._open),
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


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the answer it is reading."""

    def __init__(self, registry: set[_Connection]) -> None:
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._cap = 0
        self._retry_after: str | None = None
        self._location: str | None = None
        self._encoding: bytes | None = None
        self._framed = False  # Content-Length or chunked: the parser sees where the body ends
        self._headers_done = False
        self._head = 0  # bytes received before the headers ended
        self._received = False
        self.closed = False
        self.keep_alive = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._registry.discard(self)
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed:
            self._finish()  # a close-delimited body ends with the connection
            return
        untouched = not self._received
        reason = "the server closed the connection" if untouched else "the answer was cut off"
        self._fail(ConnectionFailed(reason, untouched=untouched))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.drop()  # bytes nobody asked for: the connection is not trustworthy any more
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"unreadable HTTP answer: {exc}", fault="not_api"))
            self.drop()
            return
        if not self._headers_done:
            self._head += len(data)
            if self._head > MAX_HEADER_BYTES:  # headers without end: refused, not kept
                reason = f"the answer's headers exceed {MAX_HEADER_BYTES:,} bytes"
                self._fail(ConnectionFailed(reason, fault="too_large"))
                self.drop()
                return
        if self._size > self._cap:  # over the cap while the answer is still arriving
            self._fail(self._too_large())
            self.drop()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()
        elif name == b"content-length":
            self._framed = True
        elif name == b"transfer-encoding":
            self._framed = b"chunked" in value.lower()
        elif name == b"content-encoding":
            self._encoding = value.strip().lower()
        elif name == b"location":
            self._location = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self._cap:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # an interim answer (103); the real one follows
            self._reset_answer()
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._finish()

    # used by Pool

    def exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        line: bytes,
        secret_header: Callable[[], bytes],
        head: bytes,
        payload: bytes | None,
        deadline: float,
        cap: int,
    ) -> asyncio.Future[Answer]:
        """Write one request; the future resolves with its answer (at most ``cap`` bytes).

        The request is ``line``, then ``secret_header()``, then ``head`` (the other header
        lines, the blank line, perhaps the body), then ``payload``. The secret header is
        made inside the write call, so no variable holds it.
        """
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        self._cap = cap
        self._received = False
        self.keep_alive = False
        self._reset_answer()
        if self.closed or self._transport is None:
            self._fail(ConnectionFailed("the server closed the connection", untouched=True))
            return waiter
        self._timer = loop.call_at(deadline, self._expire)
        self._transport.write(b"".join((line, secret_header(), head)))
        if payload is not None:
            self._transport.write(payload)
        return waiter

    def drop(self) -> None:
        """Close the connection at once, whatever it was doing."""
        self.closed = True
        self._registry.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()

    # internals

    def _reset_answer(self) -> None:
        self._body = []
        self._size = 0
        self._retry_after = None
        self._location = None
        self._encoding = None
        self._framed = False
        self._headers_done = False
        self._head = 0

    def _expire(self) -> None:
        self._timer = None
        self._fail(ConnectionFailed("timed out", fault="silent"))
        self.drop()

    def _too_large(self) -> ConnectionFailed:
        return ConnectionFailed(
            f"the answer exceeds the {self._cap:,}-byte cap (ValarClient(max_response_bytes=...))",
            fault="too_large",
        )

    def _fail(self, exc: ConnectionFailed) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._size > self._cap:
            waiter.set_exception(self._too_large())
            return
        parts = self._body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        encoding = self._encoding
        if encoding is not None and encoding != b"identity":
            try:
                body = _decode(body, encoding, self._cap)
            except _TooLarge:
                waiter.set_exception(self._too_large())
                return
            except (zlib.error, ValueError) as exc:
                waiter.set_exception(ConnectionFailed(f"undecodable answer body: {exc}"))
                return
        status = self._parser.get_status_code()
        waiter.set_result((status, self._retry_after, body, self._location))


def _decode(body: bytes, encoding: bytes, cap: int) -> bytes:
    if encoding in (b"gzip", b"x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, cap)
    if encoding == b"deflate":  # zlib-wrapped as the standard says, or raw as some servers send
        try:
            return _inflate(body, zlib.MAX_WBITS, cap)
        except zlib.error:
            return _inflate(body, -zlib.MAX_WBITS, cap)
    raise ValueError(f"unsupported content encoding {encoding.decode('latin-1')!r}")


def _inflate(body: bytes, wbits: int, cap: int) -> bytes:
    """Inflate at most ``cap`` bytes; more raises :class:`_TooLarge` without making them."""
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, cap + 1)
    if len(out) > cap or inflater.unconsumed_tail:
        raise _TooLarge
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return out
