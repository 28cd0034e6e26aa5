"""The connection pool against scripted raw servers: framing, keep-alive, failures, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import pytest

from valar_pandas import ValarClient
from valar_pandas._core.errors import ConfigError
from valar_pandas._transport.conn import ConnectionFailed, Endpoint, Pool
from valar_pandas._transport.http import Http, Unreachable

CAP = 1 << 20
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One whole request (head and Content-Length body), or b"" at end of stream."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


def ok(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def serving(
    handler: Handler, work: Callable[[Pool], Awaitable[None]], limit: int = 4
) -> None:
    """Run ``work`` against a pool connected to a server running ``handler``."""
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(Endpoint.parse(f"http://127.0.0.1:{port}/v1"), b"X-Test: 1\r\n", limit)
    try:
        await work(pool)
    finally:
        await pool.close()
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.05)  # let the handlers see their connections end
        server.close()
        await server.wait_closed()


def keep_answering(answers: list[bytes], seen: list[bytes], connections: list[int]) -> Handler:
    """A server that answers each request on each connection with the next canned answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while request := await read_request(reader):
                seen.append(request)
                writer.write(answers.pop(0))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return handler


def test_request_bytes_and_keep_alive():
    seen: list[bytes] = []
    connections: list[int] = []

    async def work(pool: Pool) -> None:
        first = await pool.request(
            b"POST", "/responses", b'{"a":1}', b"Idempotency-Key: vp1-x\r\n", 5.0, CAP
        )
        second = await pool.request(b"GET", "/responses/resp_1", None, b"", 5.0, CAP)
        assert first == (200, None, b'{"n":1}', None)
        assert second == (200, "7", b'{"n":2}', None)

    answers = [ok(b'{"n":1}'), ok(b'{"n":2}', b"Retry-After: 7\r\n")]
    asyncio.run(serving(keep_answering(answers, seen, connections), work))
    port_line = seen[0].split(b"\r\n")[1]
    assert seen[0] == (
        b"POST /v1/responses HTTP/1.1\r\n"
        + port_line
        + b"\r\nX-Test: 1\r\nIdempotency-Key: vp1-x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n"
        b'{"a":1}'
    )
    assert port_line.startswith(b"Host: 127.0.0.1:")
    assert (
        seen[1] == b"GET /v1/responses/resp_1 HTTP/1.1\r\n" + port_line + b"\r\nX-Test: 1\r\n\r\n"
    )
    assert connections == [1]  # the second request reused the first connection


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n',
            b'{"a":1}',
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
            % (len(gzip.compress(b"zipped")), gzip.compress(b"zipped")),
            b"zipped",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s"
            % (len(zlib.compress(b"deflated")), zlib.compress(b"deflated")),
            b"deflated",
        ),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"after hints"), b"after hints"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["chunked", "gzip", "deflate", "interim-103", "no-content"],
)
def test_answer_framing(answer, body):
    async def work(pool: Pool) -> None:
        for _ in range(2):  # twice: the connection stays usable after each framing
            assert (await pool.request(b"GET", "/x", None, b"", 5.0, CAP))[2] == body

    asyncio.run(serving(keep_answering([answer, answer], [], []), work))


def test_close_delimited_answer_and_connection_close():
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async def work(pool: Pool) -> None:
        for _ in range(2):
            assert await pool.request(b"GET", "/x", None, b"", 5.0, CAP) == (
                200,
                None,
                b"until the end",
                None,
            )

    asyncio.run(serving(handler, work))
    assert len(connections) == 2


def idle_closer(count: list[int]) -> Handler:
    """Answers one request per connection with keep-alive, then closes the connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count.append(1)
        await read_request(reader)
        writer.write(ok(b"once"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    return handler


def closes_on_second_request(count: list[int]) -> Handler:
    """Answers the first request of a connection; closes it unanswered on the second."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count.append(1)
        await read_request(reader)
        writer.write(ok(b"once"))
        await writer.drain()
        await read_request(reader)
        writer.close()

    return handler


@pytest.mark.parametrize(
    ("method", "extra", "safe", "resent"),
    [
        (b"GET", b"", None, True),
        (b"POST", b"Idempotency-Key: k\r\n", True, True),
        (b"POST", b"", None, False),
        # The caller's word decides, not a search of the header bytes.
        (b"POST", b"Idempotency-Key: k\r\n", False, False),
    ],
    ids=["get", "post-with-key", "post-without-key", "post-said-unsafe"],
)
def test_request_on_a_connection_the_server_closes_is_resent_when_safe(method, extra, safe, resent):
    count: list[int] = []

    async def work(pool: Pool) -> None:
        first = await pool.request(method, "/x", None, extra, 5.0, CAP, resend_safe=safe)
        assert first[2] == b"once"
        if resent:
            again = await pool.request(method, "/x", None, extra, 5.0, CAP, resend_safe=safe)
            assert again[2] == b"once"
        else:
            with pytest.raises(ConnectionFailed, match="closed the connection") as caught:
                await pool.request(method, "/x", None, extra, 5.0, CAP, resend_safe=safe)
            assert caught.value.untouched

    asyncio.run(serving(closes_on_second_request(count), work))
    assert len(count) == (2 if resent else 1)


def test_closed_idle_connection_is_not_reused():
    count: list[int] = []

    async def work(pool: Pool) -> None:
        await pool.request(b"POST", "/x", None, b"", 5.0, CAP)
        await asyncio.sleep(0.2)
        assert pool._idle[0].closed
        assert (await pool.request(b"POST", "/x", None, b"", 5.0, CAP))[2] == b"once"

    asyncio.run(serving(idle_closer(count), work))
    assert len(count) == 2


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "cut off"),
        (b"SMTP ready\r\n\r\n", "unreadable HTTP answer"),
        (b"", "closed the connection"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nxx",
            "unsupported content encoding 'br'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nxx",
            "undecodable answer body",
        ),
    ],
    ids=["cut-off", "garbage", "closed", "brotli", "bad-gzip"],
)
def test_broken_answers_fail_the_request(script, message):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(script)
        await writer.drain()
        writer.close()

    async def work(pool: Pool) -> None:
        with pytest.raises(ConnectionFailed, match=message):
            await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
        assert not pool._open or all(conn.closed for conn in pool._open)

    asyncio.run(serving(handler, work))


def test_timeout_and_cancellation_drop_the_connection():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    async def work(pool: Pool) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ConnectionFailed, match="timed out"):
            await pool.request(b"GET", "/x", None, b"", 0.2, CAP)
        assert 0.15 < loop.time() - started < 2.0
        task = asyncio.create_task(pool.request(b"GET", "/x", None, b"", 5.0, CAP))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert not pool._idle and not pool._open

    asyncio.run(serving(silent, work))


def test_limit_bounds_open_connections_and_close_fails_running_requests():
    open_now = [0, 0]  # open connections now, most at once

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        open_now[1] = max(open_now)
        try:
            while request := await read_request(reader):
                if b"/never" in request:
                    await reader.read()
                await asyncio.sleep(0.05)
                writer.write(ok())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        open_now[0] -= 1
        writer.close()

    async def work(pool: Pool) -> None:
        answers = await asyncio.gather(
            *(pool.request(b"GET", "/x", None, b"", 5.0, CAP) for _ in range(6))
        )
        assert [status for status, *_ in answers] == [200] * 6
        assert open_now[1] == 2
        running = asyncio.create_task(pool.request(b"GET", "/never", None, b"", 5.0, CAP))
        await asyncio.sleep(0.05)
        await pool.close()
        with pytest.raises(ConnectionFailed):
            await running
        with pytest.raises(ConnectionFailed, match="pool is closed"):
            await pool.request(b"GET", "/x", None, b"", 5.0, CAP)

    asyncio.run(serving(slow, work, limit=2))


def test_connection_refused_names_only_host_and_port():
    async def work() -> None:
        pool = Pool(Endpoint.parse("http://127.0.0.1:9/v1"), b"Authorization: Bearer sk-s\r\n", 2)
        with pytest.raises(ConnectionFailed, match=r"cannot connect to 127\.0\.0\.1:9") as caught:
            await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
        assert "sk-s" not in str(caught.value)

    asyncio.run(work())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.valarhq.ai/v1", ("api.valarhq.ai", 443, True, "/v1", "api.valarhq.ai")),
        ("http://127.0.0.1:8080/v1/", ("127.0.0.1", 8080, False, "/v1", "127.0.0.1:8080")),
        ("http://localhost", ("localhost", 80, False, "", "localhost")),
        ("https://h.example:8443/a/b", ("h.example", 8443, True, "/a/b", "h.example:8443")),
        ("http://[::1]:9000/v1", ("::1", 9000, False, "/v1", "[::1]:9000")),
    ],
)
def test_endpoint_parse(url, expected):
    endpoint = Endpoint.parse(url)
    assert (endpoint.host, endpoint.port, endpoint.tls, endpoint.prefix, endpoint.authority) == (
        expected
    )


@pytest.mark.parametrize("url", ["ftp://h/v1", "http:///v1", "http://h:99999/v1"])
def test_endpoint_parse_rejects(url):
    with pytest.raises(ValueError, match="base URL"):
        Endpoint.parse(url)


def test_client_checks_url_and_key_before_any_request():
    with pytest.raises(ConfigError, match="port between 1 and 65535"):
        ValarClient(api_key="sk-x", base_url="http://h:99999/v1")
    with pytest.raises(ConfigError, match="API key contains") as caught:
        ValarClient(api_key="sk-bad key\n", base_url="http://h/v1")
    assert "sk-bad" not in str(caught.value)


def test_http_maps_failures_and_never_shows_the_key():
    async def work() -> None:
        http = Http(ValarClient(api_key="sk-hidden", base_url="http://127.0.0.1:9/v1"), 2)
        assert "sk-hidden" not in repr(http)
        with pytest.raises(Unreachable, match="cannot connect") as caught:
            await http.request("GET", "/responses/x")
        assert "sk-hidden" not in str(caught.value)
        assert http.sent == 1
        await http.close()

    asyncio.run(work())


# -- bounds and the kinds of failure ---------------------------------------------------------


MOVED = b"HTTP/1.1 %s Moved\r\nLocation: https://new.test/v1/responses\r\nContent-Length: 0\r\n\r\n"


def _answer_once(script: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(script)
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    return handler


def _bomb(size: int, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = b"\0" * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, packer.flush()])


@pytest.mark.parametrize(
    ("encoding", "wbits"), [(b"gzip", 31), (b"deflate", 15), (b"deflate", -15)]
)
def test_a_compressed_answer_inflates_no_further_than_the_cap(encoding, wbits):
    body = _bomb(256 * 1024 * 1024, wbits)  # well under 1 MB on the wire
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
    script = head % (encoding, len(body)) + body

    async def work(pool: Pool) -> None:
        tracemalloc.start()
        try:
            with pytest.raises(ConnectionFailed, match="exceeds the 1,048,576-byte cap") as caught:
                await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert caught.value.fault == "too_large"
        assert peak < 8 * CAP  # the 256 MB were never made

    asyncio.run(serving(_answer_once(script), work))


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_plain_answer_over_the_cap_fails_while_it_arrives(framing):
    body = b"x" * (CAP + 1)
    if framing == "length":
        script = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    elif framing == "chunked":
        script = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(body),
            body,
        )
    else:
        script = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body

    async def work(pool: Pool) -> None:
        with pytest.raises(ConnectionFailed, match="cap") as caught:
            await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
        assert caught.value.fault == "too_large"

    asyncio.run(serving(_answer_once(script), work))


def test_an_answer_at_the_cap_is_whole():
    body = b"y" * CAP
    packed = gzip.compress(body)
    script = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (
        len(packed),
        packed,
    )

    async def work(pool: Pool) -> None:
        assert (await pool.request(b"GET", "/x", None, b"", 5.0, CAP))[2] == body

    asyncio.run(serving(_answer_once(script), work))


def test_a_redirect_is_not_followed_and_its_location_is_kept():
    script = MOVED % b"301"

    async def work(pool: Pool) -> None:
        answer = await pool.request(b"POST", "/responses", b"{}", b"", 5.0, CAP)
        assert answer == (301, None, b"", "https://new.test/v1/responses")

    asyncio.run(serving(_answer_once(script), work))


def _count_connects(monkeypatch: pytest.MonkeyPatch, flying: dict[str, int]) -> None:
    """Count the running loop's connection attempts in flight, now and at the most."""
    loop = asyncio.get_running_loop()
    real = loop.create_connection

    async def counted(*args, **kwargs):
        flying["now"] += 1
        flying["peak"] = max(flying["peak"], flying["now"])
        try:
            await asyncio.sleep(0.01)
            return await real(*args, **kwargs)
        finally:
            flying["now"] -= 1

    monkeypatch.setattr(loop, "create_connection", counted)


def test_connection_attempts_go_one_at_a_time_until_one_succeeds(monkeypatch):
    flying = {"now": 0, "peak": 0}

    async def work() -> None:
        _count_connects(monkeypatch, flying)
        pool = Pool(Endpoint.parse("http://127.0.0.1:9/v1"), b"", 8)
        failures = await asyncio.gather(
            *(pool.request(b"GET", "/x", None, b"", 5.0, CAP) for _ in range(8)),
            return_exceptions=True,
        )
        assert all(isinstance(f, ConnectionFailed) and f.fault == "refused" for f in failures)
        assert pool.attempts == 8 and flying["peak"] == 1

    asyncio.run(work())

    async def healthy(pool: Pool) -> None:  # once one connection worked, they go together
        flying["peak"] = 0
        _count_connects(monkeypatch, flying)
        await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
        await asyncio.gather(*(pool.request(b"GET", "/x", None, b"", 5.0, CAP) for _ in range(4)))
        assert flying["peak"] >= 3

    async def slow_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await read_request(reader):
                await asyncio.sleep(0.05)
                writer.write(ok())
                await writer.drain()

    asyncio.run(serving(slow_ok, healthy, limit=8))


def test_unresolvable_host_is_a_dns_fault():
    async def work() -> None:
        pool = Pool(Endpoint.parse("http://nonexistent.invalid/v1"), b"", 2)
        with pytest.raises(ConnectionFailed, match=r"nonexistent\.invalid") as caught:
            await pool.request(b"GET", "/x", None, b"", 5.0, CAP)
        assert caught.value.fault == "dns"

    asyncio.run(work())


def test_http_turns_a_redirect_into_the_endpoint_error():
    script = MOVED % b"308"

    async def go() -> None:
        server = await asyncio.start_server(_answer_once(script), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        http = Http(ValarClient(api_key="sk-hidden", base_url=f"http://127.0.0.1:{port}/v1"), 2)
        try:
            with pytest.raises(Unreachable) as caught:
                await http.request("POST", "/responses", payload=b"{}")
        finally:
            await http.close()
            await asyncio.sleep(0.05)  # let the handler see its connection end
            server.close()
            await server.wait_closed()
        fatal = caught.value.fatal
        assert fatal is not None and fatal.cause == "redirect"
        assert fatal.location == "https://new.test/v1/responses"
        assert "base_url='https://new.test/v1'" in str(fatal) and "sk-hidden" not in str(fatal)

    asyncio.run(go())


@pytest.mark.parametrize("value", [1000, 2.0**20, True, "1MB"])
def test_max_response_bytes_is_checked(value):
    with pytest.raises(ConfigError, match="max_response_bytes"):
        ValarClient(api_key="k", base_url="http://h/v1", max_response_bytes=value)


def test_a_pool_closed_while_connecting_sends_nothing(monkeypatch):
    """close() during a connect: the request fails and never reaches the server."""
    import valar_pandas._transport.conn.pool as pool_module

    seen: list[bytes] = []
    real = pool_module.open_direct

    async def slow(*args, **kwargs):
        await asyncio.sleep(0.2)
        return await real(*args, **kwargs)

    monkeypatch.setattr(pool_module, "open_direct", slow)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            seen.append(await reader.read(1024))

    async def work(pool: Pool) -> None:
        sending = asyncio.ensure_future(pool.request(b"POST", "/responses", b"{}", b"", 5.0, CAP))
        await asyncio.sleep(0.05)
        await pool.close()
        with pytest.raises(ConnectionFailed, match="closed"):
            await sending

    asyncio.run(serving(handler, work))
    assert not any(seen)


def test_a_close_delimited_answer_cut_by_closing_the_pool_is_not_complete():
    """Closing the pool mid-body is a failure, not the end of a close-delimited answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"partial": ')
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read(1)  # hold the connection open until the client drops it

    async def work(pool: Pool) -> None:
        sending = asyncio.ensure_future(pool.request(b"GET", "/x", None, b"", 5.0, CAP))
        await asyncio.sleep(0.2)  # the headers and part of the body have arrived
        await pool.close()
        with pytest.raises(ConnectionFailed):
            await sending

    asyncio.run(serving(handler, work))
