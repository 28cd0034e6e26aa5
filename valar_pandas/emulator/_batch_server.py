"""The HTTP surface of the Batch API: ``POST/GET /v1/batches``, a batch, one item's result.

Each item of a batch becomes an ordinary response record (one inference, its own latency,
its outcome decided like a create's), so ``Faults(failed=...)`` fails items on demand and
``GET /v1/batches/{id}/{custom_id}`` answers the item's Response object. The Batch API is
off by default (``EmulatorConfig(batch_api=False)``): every batch route answers 404, as on a
server where the Batch API is not available. With it on, ``batch_refusal`` makes the routes
refuse as a server where batches are not enabled (403), "coming soon" or unavailable (400), or
overloaded (503 or 500 on every create); ``batch_failure_detail`` says where a failed item's
reason shows, and ``batch_drop_items`` drops the last items of every batch.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._answers import canonical_json
from ._batches import item_status, page, status_body, summary, validate_batch
from ._config import STATUS_WORDS
from ._state import Batch, Record, render, status_of
from ._validate import ApiError, model_status, validate_idempotency_key

if TYPE_CHECKING:
    from ._emulator import Emulator
    from ._server import Routes

__all__ = ["add_batch_routes"]

_CREATE = "POST /v1/batches"
_LIST = "GET /v1/batches"
_STATUS = "GET /v1/batches/{id}"
_RESULT = "GET /v1/batches/{id}/{custom_id}"


_REFUSALS = {
    "not_enabled": ApiError(
        403,
        "The Batch API is not enabled for your organisation. Contact support to request access.",
        "permission_error",
        "permission_denied",
    ),
    "coming_soon": ApiError(
        400,
        "Coming soon. The Batches API isn\u2019t generally available yet. For large "
        "workloads today, run requests asynchronously with background=True.",
        "invalid_request_error",
    ),
    "unavailable": ApiError(
        400, "The Batch API is not available for this account.", "invalid_request_error"
    ),
}
_OVERLOADED = ApiError(
    503,
    "The batch service is temporarily overloaded; retry after the delay in Retry-After.",
    "server_error",
    "service_unavailable",
)
_SERVER_ERROR = ApiError(
    500, "The server had an error while creating the batch.", "server_error", "internal_error"
)


def _seconds(value: float) -> str:
    """A Retry-After value: an integer when whole, else a short decimal."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _error(error: ApiError) -> web.Response:
    return web.json_response(error.envelope(), status=error.status)


def _not_found(what: str) -> web.Response:
    return _error(ApiError(404, f"{what} not found.", "invalid_request_error", "not_found"))


class _BatchRoutes:
    """Batch request handlers bound to one emulator, sharing its auth and fault gate."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.emulator: Emulator = routes.emulator

    def _enter(self, request: web.Request, route: str) -> web.Response | None:
        """Count the request; answer 404 when the Batch API is off, else gate and refuse."""
        self.routes.count(route)
        config = self.emulator.config
        if not config.batch_api:
            return _not_found(f"Route {request.method} {request.path}")
        rejected = self.routes.gate(request)
        if rejected is not None or config.batch_refusal is None:
            return rejected
        if config.batch_refusal in _REFUSALS:
            return _error(_REFUSALS[config.batch_refusal])
        if route != _CREATE:
            return None
        self.emulator.stats.faults[config.batch_refusal] += 1
        if config.batch_refusal == "overloaded":
            headers = {"Retry-After": _seconds(config.faults.retry_after)}
            return web.json_response(_OVERLOADED.envelope(), status=503, headers=headers)
        return _error(_SERVER_ERROR)

    def _owned(self, request: web.Request) -> Batch | None:
        batch = self.emulator.store.batches.get(request.match_info["id"])
        if batch is None or batch.owner != self.emulator.config.api_key:
            return None
        return batch

    def _status(self, record: Record) -> str:
        words = STATUS_WORDS[self.emulator.config.vocabulary]
        return status_of(record, self.emulator.clock(), words)

    async def create(self, request: web.Request) -> web.Response:
        rejected = self._enter(request, _CREATE)
        if rejected is not None:
            return rejected
        emulator = self.emulator
        config = emulator.config
        raw = await request.content.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            return _error(ApiError(400, "The request body is not valid JSON.", code="invalid_json"))
        key = request.headers.get("Idempotency-Key")
        error = validate_batch(
            body,
            len(raw),
            config.models,
            config.batch_max_requests,
            config.batch_max_bytes,
            strict_schemas=config.strict_schemas,
            image_models=config.image_models,
        )
        error = model_status(error, config.unknown_model_status)
        if error is None and key is not None:
            error = validate_idempotency_key(key)
        if error is not None:
            return _error(error)
        digest = hashlib.sha256(canonical_json(body)).hexdigest()
        if key is not None and config.idempotency:
            reserved = emulator.store.batch_reservations.get((config.api_key, key))
            if reserved is not None:
                if reserved[0] != digest:
                    return _error(
                        ApiError(
                            400,
                            "This Idempotency-Key was already used with a different batch; "
                            "use a new key for a different batch.",
                            "idempotency_error",
                            "idempotency_error",
                        )
                    )
                return web.json_response(summary(reserved[1]))
        batch = self._make(body, key)
        if key is not None and config.idempotency:
            emulator.store.batch_reservations[(config.api_key, key)] = (digest, batch)
        if emulator.drop_connection(request):
            return web.Response()  # never sent: writing to the closed transport fails quietly
        return web.json_response(summary(batch))

    def _make(self, body: dict[str, Any], key: str | None) -> Batch:
        """Create (and bill) a batch: one response record per item (``key``: the batch's)."""
        emulator = self.emulator
        items: dict[str, Record] = {}
        requests = body["requests"]
        kept = max(0, len(requests) - emulator.config.batch_drop_items)
        for item in requests[:kept]:  # the rest are dropped: never run, never billed
            params = item["params"]
            canonical = canonical_json(params)
            digest = hashlib.sha256(canonical).hexdigest()
            cid = item["custom_id"]
            attempt = None if key is None else f"{key}/{cid}"
            items[cid] = emulator.create_record(params, canonical, digest, attempt)
        batch = Batch(
            id="batch_" + uuid.uuid4().hex,
            owner=emulator.config.api_key,
            created_at=int(time.time()),
            label=body.get("label"),
            items=items,
        )
        emulator.store.batches[batch.id] = batch
        emulator.stats.batch_creates += 1
        return batch

    async def listing(self, request: web.Request) -> web.Response:
        rejected = self._enter(request, _LIST)
        if rejected is not None:
            return rejected
        owner = self.emulator.config.api_key
        mine = [b for b in self.emulator.store.batches.values() if b.owner == owner]
        shown = page(mine, request.query)
        if isinstance(shown, ApiError):
            return _error(shown)
        return web.json_response(shown)

    async def status(self, request: web.Request) -> web.Response:
        rejected = self._enter(request, _STATUS)
        if rejected is not None:
            return rejected
        batch = self._owned(request)
        if batch is None:
            return _not_found(f"Batch {request.match_info['id']!r}")
        initial = self.emulator.config.vocabulary.upper()
        reasons = self.emulator.config.batch_failure_detail == "status"
        shown = status_body(
            batch, lambda record: item_status(self._status(record), initial), reasons
        )
        return web.json_response(shown)

    async def result(self, request: web.Request) -> web.Response:
        rejected = self._enter(request, _RESULT)
        if rejected is not None:
            return rejected
        batch = self._owned(request)
        cid = request.match_info["custom_id"]
        record = batch.items.get(cid) if batch is not None else None
        if batch is None or record is None:
            return _not_found(f"Batch request {request.match_info['id']!r}/{cid!r}")
        status = self._status(record)
        if status == "failed" and self.emulator.config.batch_failure_detail == "none":
            return _not_found(f"A result for batch request {request.match_info['id']!r}/{cid!r}")
        return web.json_response(render(record, status))


def add_batch_routes(app: web.Application, routes: Routes) -> None:
    """Register the four batch endpoints on ``app``.

    Args:
        app: The application being built.
        routes: The responses routes, whose request counting and gate the batch routes share.
    """
    batch = _BatchRoutes(routes)
    app.router.add_post("/v1/batches", batch.create)
    app.router.add_get("/v1/batches", batch.listing)
    app.router.add_get("/v1/batches/{id}", batch.status)
    app.router.add_get("/v1/batches/{id}/{custom_id}", batch.result)
