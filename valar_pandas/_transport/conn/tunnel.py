"""Opening a connection: directly, through an HTTP proxy, or through a proxy's CONNECT tunnel.

For an ``https://`` API behind a proxy, a plain TCP connection to the proxy carries
``CONNECT host:port`` (with ``Proxy-Authorization`` when the proxy URL has credentials); once
the proxy answers 2xx, the same transport is upgraded with :meth:`asyncio.loop.start_tls`, so
TLS runs end to end with the API host: the SNI and the certificate's host name check are the
API's, never the proxy's. An ``https://`` proxy is itself spoken to over TLS (checked with the
same context, so ``verify=`` must trust its CA too), and the API's TLS then runs inside that
(TLS in TLS, which ``start_tls`` supports from Python 3.11 on). ``start_tls`` was chosen over
a blocking ``CONNECT`` on a raw socket handed to ``create_connection(sock=...)`` because it
keeps the whole exchange on the event loop (no thread, one deadline for the lot), works over
a TLS connection to the proxy too, and the connection keeps the same
:class:`~.connection.Connection` protocol as a direct one. A plain ``http://`` API behind a
proxy needs no tunnel: its requests go to the proxy in absolute form (see the pool).

Connects use Happy Eyeballs (RFC 8305: ``happy_eyeballs_delay``, ``interleave``): when a
host has IPv6 and IPv4 addresses and the IPv6 route is broken, the next address is tried
after 0.25 s instead of after the first attempt times out.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import httptools

from ..._core.endpoint import Endpoint
from ..._core.proxy import ProxyRoute
from .connection import MAX_HEADER_BYTES, Connection, ConnectionFailed

__all__ = [
    "EYEBALLS_DELAY",
    "connect",
    "open_direct",
    "open_proxied",
    "open_tunnel",
    "refused",
    "unreachable",
]

EYEBALLS_DELAY = 0.25
"""Seconds before the next address of a host is tried while a connect to one is pending."""


async def open_direct(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Connection],
    host: str,
    port: int,
    context: ssl.SSLContext | None,
) -> Connection:
    """Connect to ``host:port`` (with TLS when ``context`` is given).

    Raises:
        OSError: The connection or the TLS handshake failed (``ssl.SSLError`` is one).
    """
    _, conn = await connect(
        loop, factory, host, port, context, host if context is not None else None
    )
    return conn


_P = TypeVar("_P", bound=asyncio.BaseProtocol)


async def connect(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], _P],
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    server_hostname: str | None,
) -> tuple[asyncio.Transport, _P]:
    """``loop.create_connection`` with Happy Eyeballs where there is a race to run.

    A host with one address is connected to without a race (asyncio then closes the socket
    of a cancelled connect). Python 3.11's Happy Eyeballs (``staggered_race``) leaks a
    connected socket when it is cancelled just after an attempt wins, which a run that stops
    (cancelling its connects) would hit; so it is used only for hosts with several
    addresses, and shielded: a connect cancelled there is left to finish, and what it made
    is closed.

    Raises:
        OSError: The connection or the TLS handshake failed.
    """
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned no address")
    if len(infos) == 1:  # the address as resolved: asyncio's one-at-a-time connect
        family, _, proto, _, address = infos[0]
        return await loop.create_connection(
            factory,
            str(address[0]),
            int(address[1]),
            ssl=context,
            server_hostname=server_hostname,
            family=family,
            proto=proto,
        )
    racing = loop.create_task(
        loop.create_connection(
            factory,
            host,
            port,
            ssl=context,
            server_hostname=server_hostname,
            happy_eyeballs_delay=EYEBALLS_DELAY,
            interleave=1,
        )
    )
    try:
        return await asyncio.shield(racing)
    except BaseException:
        racing.add_done_callback(_close_late)
        raise


def _close_late(racing: asyncio.Task[tuple[asyncio.Transport, Any]]) -> None:
    """Close a connection made after its caller stopped waiting for it."""
    if not racing.cancelled() and racing.exception() is None:
        racing.result()[0].abort()


async def open_proxied(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Connection],
    proxy: ProxyRoute,
    context: ssl.SSLContext | None,
) -> Connection:
    """Connect to the proxy for absolute-form requests (an ``http://`` API).

    Raises:
        ConnectionFailed: The proxy cannot be reached (``proxy_unreachable``), or its own
            certificate does not verify (``proxy``).
    """
    try:
        return await open_direct(loop, factory, proxy.host, proxy.port, _to_proxy(proxy, context))
    except OSError as exc:
        raise unreachable(proxy, exc) from None


def _to_proxy(proxy: ProxyRoute, context: ssl.SSLContext | None) -> ssl.SSLContext | None:
    if not proxy.tls:
        return None
    return context if context is not None else ssl.create_default_context()


async def open_tunnel(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Connection],
    proxy: ProxyRoute,
    endpoint: Endpoint,
    context: ssl.SSLContext,
) -> Connection:
    """Connect to the proxy, ask it for a tunnel to ``endpoint``, and speak TLS through it.

    Raises:
        ConnectionFailed: The proxy cannot be reached (fault ``proxy_unreachable``), or it
            refused the tunnel: a 407 or any other non-2xx answer, or its own certificate
            does not verify (fault ``proxy``).
        OSError: The TLS handshake with the API failed (``ssl.SSLError`` is one).
    """
    try:
        transport, reply = await connect(
            loop,
            _TunnelReply,
            proxy.host,
            proxy.port,
            _to_proxy(proxy, context),
            proxy.host if proxy.tls else None,
        )
    except OSError as exc:
        raise unreachable(proxy, exc) from None
    try:
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        target = f"{host}:{endpoint.port}".encode("idna")
        # The credentials are made into the header line inside the write: no variable holds it.
        transport.write(
            b"".join(
                (
                    b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target),
                    proxy.authorization(),
                    b"\r\n",
                )
            )
        )
        status, reason = await reply.answer
        if not 200 <= status < 300:
            raise refused(proxy, endpoint, status, reason)
        conn = factory()
        tls = await loop.start_tls(transport, conn, context, server_hostname=endpoint.host)
        if tls is None:  # the loop closed the transport meanwhile
            raise ConnectionFailed("the proxy closed the tunnel", untouched=True)
        conn.connection_made(tls)
        return conn
    except BaseException:
        transport.abort()
        raise


def unreachable(proxy: ProxyRoute, exc: OSError) -> ConnectionFailed:
    """The failure of a connection to the proxy itself: it names the proxy, not the API."""
    if isinstance(exc, ssl.SSLError):  # the proxy's own certificate or TLS: its word, final
        said = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        detail = (
            f"the TLS connection to the proxy {proxy.shown} (from {proxy.source}) failed: "
            f"{said}; verify= must also trust the proxy's certificate authority"
        )
        return ConnectionFailed(detail, fault="proxy", detail=detail)
    reason = exc.strerror or str(exc) or type(exc).__name__
    detail = f"cannot connect to the proxy {proxy.shown} (from {proxy.source}): {reason}"
    return ConnectionFailed(detail, fault="proxy_unreachable", detail=detail)


def refused(proxy: ProxyRoute, endpoint: Endpoint, status: int, reason: str) -> ConnectionFailed:
    """A proxy's refusal (407, or a non-2xx answer to ``CONNECT``), naming the proxy."""
    said = f"{status} {reason}".strip()
    detail = f"the proxy {proxy.shown} (from {proxy.source}) answered {said}"
    if status == 407:
        detail += (
            " to the credentials given" if proxy.has_credentials else ", asking for credentials"
        )
    else:
        detail += f" when asked for a tunnel to {endpoint.authority}"
    return ConnectionFailed(detail, fault="proxy", detail=detail)


class _TunnelReply(asyncio.Protocol):
    """The proxy's answer to ``CONNECT``: its status line and headers, parsed by httptools."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._head = 0

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return  # a refusal's body, read no further
        self._head += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"the proxy's answer to CONNECT is not HTTP: {exc}")
            return
        if not self.answer.done() and self._head > MAX_HEADER_BYTES:
            self._fail(f"the proxy's answer to CONNECT exceeds {MAX_HEADER_BYTES:,} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("the proxy closed the connection before answering CONNECT")

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_headers_complete(self) -> None:
        if not self.answer.done():
            text = self._reason.decode("latin-1", "replace")[:100]
            reason = "".join(char for char in text if char.isprintable())
            self.answer.set_result((self._parser.get_status_code(), reason))

    def _fail(self, message: str) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionFailed(message, fault="transient"))
