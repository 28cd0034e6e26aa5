"""Frames and expectations shared by the end-to-end tests, and scripted servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pandas as pd
from aiohttp import web

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
