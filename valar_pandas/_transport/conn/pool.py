"""The pool: keep-alive connections to one endpoint, one request at a time on each.

A request that fails on a reused keep-alive connection before any byte of the answer arrived
(the server closed the idle connection as the request left) is sent once more on a fresh
connection when the caller says that is safe (``resend_safe``): a ``GET``, or a request with
an ``Idempotency-Key``.

Behind a proxy (:class:`~valar_pandas._core.proxy.ProxyRoute`), an ``http://`` API's requests
go to the proxy in absolute form (``POST http://host/v1/responses``) with
``Proxy-Authorization`` when the proxy has credentials, and an ``https://`` API is reached
through a ``CONNECT`` tunnel (:mod:`.tunnel`). The proxy's refusal (a 407, a non-2xx answer to
``CONNECT``) fails with fault ``proxy``; a proxy that cannot be reached with
``proxy_unreachable``, naming the proxy.

Until one connection to the endpoint has succeeded, connection attempts go one at a time: a
certificate that does not verify, a host that does not resolve or a closed port is then seen
by a single handshake instead of one per waiting request, and the caller can stop there.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Callable

from ..._core.endpoint import Endpoint
from ..._core.proxy import ProxyRoute
from ..._policy import Fault
from .connection import Answer, Connection, ConnectionFailed
from .tunnel import open_direct, open_proxied, open_tunnel, refused

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
        proxy: The proxy to go through, or None to connect directly.
        ssl_context: The context TLS connections verify with (shared by the client's pools);
            None for :func:`ssl.create_default_context`.

    Attributes:
        attempts: Connection attempts so far (TCP connects, with their TLS handshakes).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        headers: bytes,
        limit: int,
        secret_header: Callable[[], bytes] = bytes,
        *,
        proxy: ProxyRoute | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._proxy = proxy
        self._forward = proxy is not None and not endpoint.tls  # absolute-form requests
        self._secret_header = (
            _WithProxyLogin(secret_header, proxy)
            if self._forward and proxy is not None and proxy.has_credentials
            else secret_header
        )
        origin = b"http://" + endpoint.authority.encode("idna") if self._forward else b""
        self._prefix = origin + endpoint.prefix.encode("ascii")
        self._common = b"Host: " + endpoint.authority.encode("idna") + b"\r\n" + headers
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        tls = endpoint.tls or (proxy is not None and proxy.tls)
        self._context = (ssl_context or ssl.create_default_context()) if tls else None
        self._ssl = self._context if endpoint.tls else None
        self._closed = False
        self._reached = False  # a connection succeeded once: connect freely from then on
        self._probe = asyncio.Semaphore(1)
        self.attempts = 0

    def __repr__(self) -> str:
        endpoint = getattr(self, "_endpoint", None)
        where = endpoint.authority if endpoint is not None else None
        via = getattr(self, "_proxy", None)
        through = f", proxy={via.shown!r}" if via is not None else ""
        return f"Pool({where!r}{through}, open={len(getattr(self, '_open', ()))})"

    async def request(
        self,
        method: bytes,
        path: str,
        payload: bytes | None,
        extra: bytes,
        timeout: float,
        cap: int,
        *,
        resend_safe: bool | None = None,
    ) -> Answer:
        """Send one request and read the whole answer.

        Args:
            method: ``b"GET"`` or ``b"POST"``.
            path: Path below the prefix, already URL-quoted.
            payload: JSON body, if any.
            extra: More header lines for this request only (e.g. ``Idempotency-Key``).
            timeout: Seconds for the whole exchange, connecting included.
            cap: Most bytes the answer's body may have, decoded.
            resend_safe: Whether the request may be sent a second time when a reused
                connection turns out closed before any of its answer arrived (the server
                would then not have acted on it): true for a ``GET`` and for a ``POST`` that
                carries an ``Idempotency-Key``. None: only a ``GET`` is.

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
        if resend_safe is None:
            resend_safe = method == b"GET"
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
                if answer[0] == 407 and self._forward and self._proxy is not None:
                    conn.drop()  # the API never asks for proxy credentials: the proxy did
                    reason = "Proxy Authentication Required"
                    raise refused(self._proxy, self._endpoint, 407, reason)
                if conn.keep_alive and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.drop()
                return answer
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def is_closed(self) -> bool:
        """Whether :meth:`close` was called (it may have been, during any ``await``)."""
        return self._closed

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
        proxy = self._proxy
        factory = functools.partial(Connection, self._open)
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + _CONNECT_TIMEOUT)):
                if proxy is None:
                    conn = await open_direct(loop, factory, endpoint.host, endpoint.port, self._ssl)
                elif self._ssl is not None:
                    conn = await open_tunnel(loop, factory, proxy, endpoint, self._ssl)
                else:
                    conn = await open_proxied(loop, factory, proxy, self._context)
        except TimeoutError:
            where = endpoint.authority
            if proxy is not None:
                where += f" through the proxy {proxy.shown}"
            raise ConnectionFailed(f"timed out connecting to {where}", fault="silent") from None
        except (OSError, ssl.SSLError) as exc:
            fault, reason = _connect_fault(exc)
            raise ConnectionFailed(
                f"cannot connect to {endpoint.authority}: {reason}", fault=fault, detail=reason
            ) from None
        if self.is_closed():  # closed while connecting: the request must not go out now
            conn.drop()
            raise ConnectionFailed("the connection pool is closed")
        return conn


class _WithProxyLogin:
    """The secret header line followed by ``Proxy-Authorization``, both made at the write."""

    __slots__ = ("_proxy", "_secret_header")

    def __init__(self, secret_header: Callable[[], bytes], proxy: ProxyRoute) -> None:
        self._secret_header = secret_header
        self._proxy = proxy

    def __call__(self) -> bytes:
        """Both header lines, CRLF-ended."""
        return self._secret_header() + self._proxy.authorization()

    def __repr__(self) -> str:
        return f"WithProxyLogin({self._secret_header!r}, {self._proxy!r})"


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
