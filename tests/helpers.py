"""Frames and expectations shared by the end-to-end tests, and scripted servers."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pandas as pd
import trustme
from aiohttp import web

from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TEMPLATE = "item {i} {word}"
MODEL = "zai-org/GLM-5.1-FP8"
FAST = {"model": MODEL, "completion_window": "asap", "progress": None}


def words(n: int) -> pd.DataFrame:
    """A frame whose prompts the emulator echoes back: ``Echo: item <i> <word>``."""
    vocabulary = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu"]
    return pd.DataFrame({"i": range(n), "word": [vocabulary[i % 8] for i in range(n)]})


def echo(frame: pd.DataFrame) -> list[str]:
    """What the emulator answers for TEMPLATE on each row of ``frame``."""
    return [f"Echo: item {i} {w}" for i, w in zip(frame["i"], frame["word"], strict=True)]


@contextlib.asynccontextmanager
async def scripted(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """Serve ``routes`` (``"METHOD /path"`` → handler) on loopback; yield the base URL."""
    app = web.Application()
    for spec, handler in routes.items():
        method, path = spec.split(" ")
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def tls_emulator(
    ca: trustme.CA, hellos: list[int] | None = None, latency: float = 0.01
) -> Iterator[tuple[Emulator, str]]:
    """The emulator over HTTPS for ``localhost``, its certificate from ``ca``.

    Args:
        ca: The certificate authority that signs the server's certificate.
        hellos: Gets one item per TLS handshake the server begins, if given.
        latency: The emulator's answer latency, seconds.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    if hellos is not None:
        context.sni_callback = lambda *_: hellos.append(1)
    emulator = Emulator(EmulatorConfig(latency=Latency(median=latency, sigma=0.0)))
    with emulator.run_in_thread(host="localhost", port=0, ssl_context=context) as url:
        yield emulator, url


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
