"""Cassettes played and recorded over real sockets, by a small HTTP server in the test.

The library speaks HTTP through its own connection pool, which request-patching recorders
cannot see; a server can, and it checks the bytes that really leave the client. In ``replay``
the server answers each request with the first unplayed recorded interaction of the same method,
path, query and body. In ``record`` it forwards each request to the upstream API (the emulator
or the real one), answers with what came back and writes the exchange to the cassette with the
``Authorization`` header replaced by ``REDACTED``. Secret headers are masked as requests
arrive, so what the test holds in memory (``seen``, ``interactions``, the cassette's repr)
never has them either; the request forwarded upstream carries them as they came.

A cassette is JSON: ``{"interactions": [{"request": {...}, "response": {...}}, ...]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "set-cookie"}
_VARYING = {"host", "content-length", "transfer-encoding", "date", "server", "connection"}


@dataclass
class Cassette:
    """One cassette file and what happened to it in this test.

    Attributes:
        path: The JSON file.
        interactions: Recorded exchanges (loaded for replay, collected when recording).
        played: Indexes of interactions served so far (replay).
        seen: Every request as it arrived: method, path with query, headers, body.
        unmatched: Requests that had no recorded answer (replay).
    """

    path: Path
    interactions: list[dict[str, Any]] = field(default_factory=list)
    played: set[int] = field(default_factory=set)
    seen: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    @property
    def all_played(self) -> bool:
        """Whether every recorded interaction was asked for."""
        return len(self.played) == len(self.interactions)

    def load(self) -> None:
        """Read the recorded interactions."""
        self.interactions = json.loads(self.path.read_text())["interactions"]

    def save(self) -> None:
        """Write the interactions, secrets redacted."""
        for item in self.interactions:
            for part in (item["request"], item["response"]):
                for name in list(part["headers"]):
                    if name.lower() in SECRET_HEADERS:
                        part["headers"][name] = "REDACTED"
        text = json.dumps({"interactions": self.interactions}, indent=1, sort_keys=True)
        self.path.write_text(text + "\n")

    def answer(self, method: str, path_qs: str, body: str) -> dict[str, Any] | None:
        """The first unplayed recorded response to this request, marked played."""
        for index, item in enumerate(self.interactions):
            request = item["request"]
            if index in self.played or (request["method"], request["path"]) != (method, path_qs):
                continue
            if request["body"] == body:
                self.played.add(index)
                return dict(item["response"])
        return None


def _headers(raw: Any) -> dict[str, str]:
    return {name: value for name, value in raw.items() if name.lower() not in _VARYING}


def _masked(headers: dict[str, str]) -> dict[str, str]:
    """Headers with every secret value replaced, its scheme kept (``Bearer REDACTED``)."""
    return {
        name: _redacted(value) if name.lower() in SECRET_HEADERS else value
        for name, value in headers.items()
    }


def _redacted(value: str) -> str:
    scheme, space, _ = value.partition(" ")
    return f"{scheme} REDACTED" if space and scheme.isalpha() else "REDACTED"


def _app(cassette: Cassette, upstream: str | None) -> web.Application:
    session: dict[str, aiohttp.ClientSession] = {}

    async def handle(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        cassette.seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": _masked(dict(request.headers)),
                "body": body,
            }
        )
        if upstream is None:
            recorded = cassette.answer(request.method, request.path_qs, body)
            if recorded is None:
                cassette.unmatched.append(f"{request.method} {request.path_qs} {body[:200]}")
                return web.Response(status=599, text="no recorded answer for this request")
            return web.Response(
                status=recorded["status"],
                body=recorded["body"].encode(),
                headers=recorded["headers"],
            )
        if "client" not in session:
            session["client"] = aiohttp.ClientSession(auto_decompress=True)
        async with session["client"].request(
            request.method,
            upstream + request.path_qs,
            data=body.encode() if body else None,
            headers=_headers(request.headers),
        ) as reply:
            answer = await reply.read()
            headers = _headers(reply.headers)
            headers.pop("Content-Encoding", None)
            cassette.interactions.append(
                {
                    "request": {
                        "method": request.method,
                        "path": request.path_qs,
                        "headers": _masked(_headers(request.headers)),
                        "body": body,
                    },
                    "response": {
                        "status": reply.status,
                        "headers": _masked(headers),
                        "body": answer.decode(),
                    },
                }
            )
            return web.Response(status=reply.status, body=answer, headers=headers)

    async def close(_: web.Application) -> None:
        if "client" in session:
            await session["client"].close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_cleanup.append(close)
    return app


@contextlib.contextmanager
def serve(cassette: Cassette, upstream: str | None = None) -> Iterator[str]:
    """Serve the cassette on 127.0.0.1 for the ``with`` block.

    Args:
        cassette: What to replay (``upstream`` None) or where to record.
        upstream: The API's origin to record from, e.g. ``"https://api.valarhq.ai"``.

    Yields:
        The server's origin, e.g. ``"http://127.0.0.1:54321"``.
    """
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(cassette, upstream))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="cassette-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
