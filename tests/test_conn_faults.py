"""The pool's connects and cut answers against real sockets: resets, stalled addresses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import struct
import time

import pytest
from test_conn import CAP, read_request, serving

from valar_pandas._core.proxy import ProxyRoute, parse_proxy
from valar_pandas._transport.conn import ConnectionFailed, Endpoint, Pool


def test_a_reset_in_the_middle_of_a_close_delimited_body_is_a_failure():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"output": "half of')
        await writer.drain()
        await asyncio.sleep(0.1)  # the part arrives, then the reset
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # SO_LINGER 0: the close sends RST, not FIN

    async def work(pool: Pool) -> None:
        with pytest.raises(ConnectionFailed, match=r"cut off|reset") as caught:
            await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
        assert caught.value.fault == "transient"  # worth a retry, not a complete answer

    asyncio.run(serving(handler, work))


def stalled_port(stack: list[socket.socket]) -> int:
    """A port whose accept queue is full: the kernel drops new SYNs, so connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    stack.append(listener)
    port = listener.getsockname()[1]
    for _ in range(4):  # fill the queue; never accepted
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        stack.append(filler)
    time.sleep(0.1)
    return int(port)


def test_a_stalled_first_address_does_not_stall_the_connect():
    """Happy Eyeballs: a host whose first address hangs (a broken IPv6 route) is reached
    through its next address after a quarter second, not after the connect timeout."""
    sockets: list[socket.socket] = []
    stalled = stalled_port(sockets)

    async def main() -> float:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        good = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()

        async def addresses(host: str, port: object, **kw: object) -> list[tuple]:
            assert host == "dual.test"
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", stalled)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", good)),
            ]

        loop.getaddrinfo = addresses  # type: ignore[method-assign]
        pool = Pool(Endpoint.parse("http://dual.test:8080/v1"), b"", 2)
        began = loop.time()
        try:
            answer = await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
        finally:
            await pool.close()
            server.close()
        assert answer[:1] == (200,)
        return loop.time() - began

    try:
        took = asyncio.run(main())
    finally:
        for sock in sockets:
            sock.close()
    assert took < 2.0  # without Happy Eyeballs: the whole 5 s timeout


def proxy_at(port: int, login: str = "") -> ProxyRoute:
    route = parse_proxy(f"http://{login}127.0.0.1:{port}", "HTTPS_PROXY")
    assert isinstance(route, ProxyRoute)
    return route


def test_the_bytes_a_proxy_receives_absolute_form_and_connect():
    seen: list[bytes] = []

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await read_request(reader)
            seen.append(request)
            if request.startswith(b"CONNECT"):
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
                )
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        route = proxy_at(port, "alice:p%40ss@")
        plain = Pool(
            Endpoint.parse("http://bücher.example:8080/v1"),
            b"",
            1,
            lambda: b"X-Key: k\r\n",
            proxy=route,
        )
        tunnel = Pool(Endpoint.parse("https://api.example.com/v1"), b"", 1, proxy=route)
        try:
            assert (await plain.request(b"GET", "/x", None, b"", 5.0, CAP))[2] == b"{}"
            with pytest.raises(ConnectionFailed) as caught:
                await tunnel.request(b"GET", "/x", None, b"", 5.0, CAP)
        finally:
            await plain.close()
            await tunnel.close()
            server.close()
        assert caught.value.fault == "proxy"
        assert str(caught.value) == (
            f"the proxy http://alice@127.0.0.1:{port} (from HTTPS_PROXY) answered 407 Proxy "
            "Authentication Required to the credentials given"
        )
        assert (
            repr(plain)
            == f"Pool('bücher.example:8080', proxy='http://alice@127.0.0.1:{port}', open=0)"
        )

    asyncio.run(main())
    login = b"Proxy-Authorization: Basic " + base64.b64encode(b"alice:p@ss") + b"\r\n"
    assert seen[0] == (
        b"GET http://xn--bcher-kva.example:8080/v1/x HTTP/1.1\r\nX-Key: k\r\n"
        + login
        + b"Host: xn--bcher-kva.example:8080\r\n\r\n"
    )
    assert seen[1] == (
        b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n" + login + b"\r\n"
    )
