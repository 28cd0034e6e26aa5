"""Faults of the whole endpoint: a redirect, HTML instead of JSON, silence, huge or absurd answers.

One aiohttp middleware, in front of every route, reading :class:`~._config.Faults` afresh on
each request. The per-request faults (429, 500, dropped connections, ...) live in the routes;
these are the ones a wrong base URL, a broken proxy or a broken server show on every request.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ._config import Faults

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["endpoint_faults"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PAGE = "<!doctype html><html><head><title>Welcome</title></head><body>It works!</body></html>"
_PAD = b"x" * (1 << 20)


def endpoint_faults(emulator: Emulator) -> Middleware:
    """The middleware injecting ``emulator``'s endpoint-wide faults.

    Args:
        emulator: Whose configuration and counters it uses.

    Returns:
        An aiohttp middleware.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        faults = emulator.config.faults
        if faults.hang or faults.redirect_to is not None or faults.not_json:
            stats = emulator.stats
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else request.path
            stats.total_requests += 1
            stats.requests[f"{request.method} {route}"] += 1
            if faults.hang:
                stats.faults["hang"] += 1
                await asyncio.Event().wait()  # until the server stops
            if faults.redirect_to is not None:
                stats.faults["redirect"] += 1
                location = faults.redirect_to.rstrip("/") + request.path_qs
                return web.Response(status=301, text="Moved", headers={"Location": location})
            stats.faults["not_json"] += 1
            return web.Response(text=_PAGE, content_type="text/html")
        if faults.hostile == "retry_after_date":
            emulator.stats.faults["retry_after_date"] += 1
            if emulator.stats.faults["retry_after_date"] % 2:
                return web.json_response(
                    {"error": {"message": "slow down", "type": "rate_limit_error"}},
                    status=429,
                    headers={"Retry-After": _FAR_DATE},
                )
        response = await handler(request)
        if not isinstance(response, web.Response):
            return response
        if faults.hostile in ("surrogate_text", "surrogate_id", "nested_json", "raw_body"):
            return await _hostile(request, response, faults.hostile)
        if faults.inflate_to or faults.usage_tokens is not None:
            return _rewrite(response, faults)
        return response

    return middleware


_FAR_DATE = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"
_RAW_BYTES = 1 << 30


def _json_object(response: web.Response) -> dict[str, Any] | None:
    """The JSON object ``response`` carries, or None."""
    body = response.body
    if not isinstance(body, bytes):
        return None
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _finished(response: web.Response) -> dict[str, Any] | None:
    """The finished Response object ``response`` carries, or None."""
    obj = _json_object(response)
    if obj is None or obj.get("object") != "response":
        return None
    return obj if obj.get("status") in ("completed", "incomplete") else None


def _created_batch(request: web.Request, response: web.Response) -> dict[str, Any] | None:
    """The batch a ``POST /batches`` answer carries, or None."""
    if request.method != "POST" or not request.path.endswith("/batches"):
        return None
    obj = _json_object(response)
    return obj if obj is not None and isinstance(obj.get("id"), str) else None


async def _hostile(request: web.Request, response: web.Response, kind: str) -> web.StreamResponse:
    """Send a finished Response object (``surrogate_id``: a created batch too) as ``kind`` says."""
    obj = _finished(response)
    if obj is None and kind == "surrogate_id":
        batch = _created_batch(request, response)
        if batch is not None:
            batch["id"] = f"{batch['id']}\ud83d"
            return web.json_response(batch, status=response.status)
    if obj is None:
        return response
    if kind == "surrogate_text":
        for item in obj.get("output") or []:
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    part["text"] += "\ud83d"  # JSON-escaped on the wire, as a server sends it
        return web.json_response(obj, status=response.status)
    if kind == "surrogate_id":
        obj["id"] = f"{obj['id']}\ud83d"
        return web.json_response(obj, status=response.status)
    if kind == "nested_json":
        return web.Response(
            body=b"[" * 200_000, status=response.status, content_type="application/json"
        )
    streamed = web.StreamResponse(status=response.status)
    streamed.content_type = "application/json"
    streamed.content_length = _RAW_BYTES
    await streamed.prepare(request)
    try:
        for _ in range(_RAW_BYTES // len(_PAD)):
            await streamed.write(_PAD)
    except (ConnectionError, RuntimeError):  # the client stopped reading: as it should
        pass
    return streamed


def _rewrite(response: web.Response, faults: Faults) -> web.Response:
    """Give a finished Response object absurd usage, or a gzip body that inflates hugely."""
    obj = _finished(response)
    if obj is None:
        return response
    if faults.usage_tokens is not None:
        obj["usage"]["output_tokens"] = faults.usage_tokens
        obj["usage"]["completion_tokens"] = faults.usage_tokens
    if not faults.inflate_to:
        return web.json_response(obj, status=response.status)
    head = json.dumps(obj).encode()[:-1] + b',"padding":"'
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(head)]
    left = faults.inflate_to
    while left > 0:
        parts.append(packer.compress(_PAD[: min(left, len(_PAD))]))
        left -= len(_PAD)
    parts += [packer.compress(b'"}'), packer.flush()]
    return web.Response(
        body=b"".join(parts),
        status=response.status,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
