"""The HTTP surface: aiohttp routes for ``/v1/models`` and ``/v1/responses``.

The batch routes live in ``_batch_server`` and share this module's auth and fault gate.

Owns request handling only — auth, fault injection, body validation, idempotency replay,
waiting for realtime answers, dropping connections — and turns results into JSON. State
and decisions live on the :class:`~valar_pandas.emulator.Emulator`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._answers import canonical_json
from ._batch_server import add_batch_routes
from ._config import STATUS_WORDS
from ._misbehave import endpoint_faults
from ._state import TERMINAL, Record, render, status_of
from ._validate import ApiError, model_status, validate_create, validate_idempotency_key

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["build_app"]

_MODEL_CREATED = 1767225600  # 2026-01-01T00:00:00Z
_CREATE = "POST /v1/responses"
_RETRIEVE = "GET /v1/responses/{id}"
_CANCEL = "POST /v1/responses/{id}/cancel"
_MODELS = "GET /v1/models"
_FAULTS: dict[str, tuple[str, str, str]] = {
    "429": ("Rate limit reached; retry after the delay in Retry-After.", "rate_limit_error",
            "rate_limit_exceeded"),
    "500": ("The server had an error while processing your request.", "server_error",
            "internal_error"),
    "502": ("Upstream proxy error.", "server_error", "bad_gateway"),
    "503": ("The server is temporarily overloaded; retry after the delay in Retry-After.",
            "server_error", "service_unavailable"),
}  # fmt: skip
_UNAUTHORIZED = ApiError(
    401, "Incorrect or missing API key.", "authentication_error", "invalid_api_key"
)


def _seconds(value: float) -> str:
    """Format a Retry-After value: an integer when whole, else a short decimal."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _error(error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error.envelope(), status=error.status, headers=headers)


def _not_found(what: str) -> web.Response:
    return _error(ApiError(404, f"{what} not found.", "invalid_request_error", "not_found"))


class Routes:
    """Request handlers bound to one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def count(self, route: str) -> None:
        stats = self.emulator.stats
        stats.total_requests += 1
        stats.requests[route] += 1

    def gate(self, request: web.Request, faulted: bool = True) -> web.Response | None:
        """Inject a transient fault or reject a bad key; None lets the request through."""
        emulator = self.emulator
        kind = emulator.draw_fault() if faulted else None
        if kind is not None:
            emulator.stats.faults[kind] += 1
            message, kind_type, code = _FAULTS[kind]
            headers = None
            if kind in ("429", "503"):
                headers = {"Retry-After": _seconds(emulator.config.faults.retry_after)}
            return _error(ApiError(int(kind), message, kind_type, code), headers)
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        expected = emulator.config.api_key
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.strip().encode(), expected.encode()
        ):
            return _error(_UNAUTHORIZED)
        return None

    def _owned(self, request: web.Request) -> Record | None:
        record = self.emulator.store.records.get(request.match_info["id"])
        if record is None or record.owner != self.emulator.config.api_key:
            return None
        return record

    async def models(self, request: web.Request) -> web.Response:
        self.count(_MODELS)
        rejected = self.gate(request, faulted=False)
        if rejected is not None:
            return rejected
        data = [
            {"id": m, "object": "model", "created": _MODEL_CREATED, "owned_by": m.split("/")[0]}
            for m in self.emulator.config.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def create(self, request: web.Request) -> web.Response:
        self.count(_CREATE)
        rejected = self.gate(request)
        if rejected is not None:
            return rejected
        emulator = self.emulator
        config = emulator.config
        if config.faults.echo_key:
            sent = request.headers.get("Authorization", "")
            return _error(
                ApiError(
                    400,
                    f"Key {sent.partition(' ')[2]} may not use this model."
                    "\x1b[2J\x1b]0;pwned\x07\x1b[31m",
                    "invalid_request_error",
                    "model_not_allowed",
                )
            )
        try:
            body: Any = json.loads(await request.read())
        except ValueError:
            return _error(ApiError(400, "The request body is not valid JSON.", code="invalid_json"))
        key = request.headers.get("Idempotency-Key")
        error = model_status(
            validate_create(
                body,
                config.models,
                strict_schemas=config.strict_schemas,
                image_models=config.image_models,
            ),
            config.unknown_model_status,
        )
        if error is None and key is not None:
            error = validate_idempotency_key(key)
        if error is not None:
            return _error(error)
        canonical = canonical_json(body)
        digest = hashlib.sha256(canonical).hexdigest()
        if key is not None and config.idempotency:
            reserved = emulator.store.reservations.get((config.api_key, key))
            if reserved is not None:
                if reserved[0] != digest:
                    return _error(
                        ApiError(
                            400,
                            "This Idempotency-Key was already used with a different request "
                            "body; use a new key for a different request.",
                            "idempotency_error",
                            "idempotency_error",
                        )
                    )
                return await self._answer(reserved[1], fresh=False)
        record = emulator.create_record(body, canonical, digest, key)
        if key is not None and config.idempotency:
            emulator.store.reservations[(config.api_key, key)] = (digest, record)
        if emulator.drop_connection(request):
            return web.Response()  # never sent: writing to the closed transport fails quietly
        return await self._answer(record, fresh=True)

    async def _answer(self, record: Record, *, fresh: bool) -> web.Response:
        """Answer a create (or its replay) the way a create with this body is answered."""
        emulator = self.emulator
        config = emulator.config
        words = STATUS_WORDS[config.vocabulary]
        if record.background:
            now = record.t0 if fresh else emulator.clock()
            status = status_of(record, now, words)
            return web.json_response(render(record, status), status=config.background_create_status)
        finish = record.t0 + record.latency
        remaining = finish - emulator.clock()
        if remaining > 0.0:
            await asyncio.sleep(remaining)
        status = status_of(record, max(finish, emulator.clock()), words)
        return web.json_response(render(record, status))

    async def retrieve(self, request: web.Request) -> web.Response:
        self.count(_RETRIEVE)
        rejected = self.gate(request)
        if rejected is not None:
            return rejected
        record = self._owned(request)
        if record is None:
            return _not_found(f"Response {request.match_info['id']!r}")
        emulator = self.emulator
        words = STATUS_WORDS[emulator.config.vocabulary]
        return web.json_response(render(record, status_of(record, emulator.clock(), words)))

    async def cancel(self, request: web.Request) -> web.Response:
        self.count(_CANCEL)
        emulator = self.emulator
        if not emulator.config.cancel_supported:
            return _not_found(f"Route {request.method} {request.path}")
        rejected = self.gate(request)
        if rejected is not None:
            return rejected
        record = self._owned(request)
        if record is None:
            return _not_found(f"Response {request.match_info['id']!r}")
        status = status_of(record, emulator.clock(), STATUS_WORDS[emulator.config.vocabulary])
        if status not in TERMINAL:
            record.cancelled = True
            status = "cancelled"
        return web.json_response(render(record, status))

    async def unmatched(self, request: web.Request) -> web.Response:
        self.count(f"{request.method} {request.path}")
        return _not_found(f"Route {request.method} {request.path}")


def build_app(emulator: Emulator) -> web.Application:
    """Build the aiohttp application for an emulator.

    Args:
        emulator: Whose state and configuration the handlers use.

    Returns:
        The application, with routes under ``/v1`` and a JSON 404 for anything else.
    """
    routes = Routes(emulator)
    app = web.Application(middlewares=[endpoint_faults(emulator)])
    app.router.add_get("/v1/models", routes.models)
    app.router.add_post("/v1/responses", routes.create)
    app.router.add_get("/v1/responses/{id}", routes.retrieve)
    app.router.add_post("/v1/responses/{id}/cancel", routes.cancel)
    add_batch_routes(app, routes)
    app.router.add_route("*", "/{tail:.*}", routes.unmatched)
    return app
