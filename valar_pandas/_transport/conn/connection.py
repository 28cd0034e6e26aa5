"""One HTTP/1.1 connection: a request written, its answer parsed by httptools, bounded.

Answers with ``Content-Length``, chunked or close-delimited bodies are read, plain or
gzip/deflate. A close-delimited body is complete only when the connection closes in order; a
reset (or a TLS connection cut without its close) in the middle of one is a cut-off answer.
A body, and a gzip or deflate body once inflated, may not exceed the request's ``cap`` in
bytes: inflating stops at the cap (``decompressobj`` with ``max_length``), so a small
compressed answer cannot make a large one in memory. Every failure says what kind it is
(:data:`~valar_pandas._policy.Fault`).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable

import httptools

from ..._policy import Fault

__all__ = ["MAX_HEADER_BYTES", "Answer", "Connection", "ConnectionFailed"]

Answer = tuple[int, "str | None", bytes, "str | None"]
"""Status, ``Retry-After`` value, body and ``Location`` of an answer."""
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


class Connection(asyncio.Protocol):
    """One keep-alive connection and the answer it is reading."""

    def __init__(self, registry: set[Connection]) -> None:
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
        if self._headers_done and not self._framed and exc is None:
            self._finish()  # a close-delimited body ends with the connection's orderly close
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
        """Close the connection at once, whatever it was doing.

        An answer being read fails here: the abort below reports the close as orderly, which
        would end a close-delimited body as if it were complete.
        """
        self.closed = True
        self._registry.discard(self)
        self._fail(ConnectionFailed("connection closed", untouched=not self._received))
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
