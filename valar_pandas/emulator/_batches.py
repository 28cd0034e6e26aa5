"""The Batch API's contract: create validation, batch rendering and list paging. Pure.

Owns :func:`validate_batch` (endpoint, item count, body size, label, each ``custom_id`` and
each item's ``params``, checked like a create; the ``asap`` window is refused for batches),
:func:`summary` and :func:`status_body` (the JSON a batch is shown as) and :func:`page`
(``GET /v1/batches``: a bare array, newest first, paged by ``after_id``/``before_id`` and
``limit``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._state import Batch, Record
from ._validate import ApiError, validate_create

__all__ = ["item_status", "page", "status_body", "summary", "validate_batch"]

ENDPOINT = "/v1/responses"
_LABEL = re.compile(r"[a-zA-Z0-9_-]+")
_MAX_LABEL = 128
_CUSTOM_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MAX_CUSTOM_ID = 64
_MAX_LIMIT = 200
_DEFAULT_LIMIT = 25


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def _check_item(
    i: int, item: Any, seen: set[str], models: tuple[str, ...], **accepts: Any
) -> ApiError | None:
    where = f"requests[{i}]"
    if not isinstance(item, dict):
        return _invalid(f"{where} must be an object with 'custom_id' and 'params'.", where)
    cid = item.get("custom_id")
    if not isinstance(cid, str) or not _CUSTOM_ID.fullmatch(cid) or len(cid) > _MAX_CUSTOM_ID:
        return _invalid(
            f"{where}.custom_id must be 1 to {_MAX_CUSTOM_ID} lowercase letters, digits, '-' "
            "or '_', starting with a letter or digit.",
            f"{where}.custom_id",
        )
    if cid in seen:
        return _invalid(
            f"{where}.custom_id {cid!r} is used twice; custom_ids must be unique in a batch.",
            f"{where}.custom_id",
            "duplicate_custom_id",
        )
    seen.add(cid)
    params = item.get("params")
    error = validate_create(params, models, **accepts)
    if error is not None:
        param = f"{where}.params" + (f".{error.param}" if error.param else "")
        return ApiError(400, f"{where}.params: {error.message}", error.type, error.code, param)
    metadata = params.get("metadata") if isinstance(params, dict) else None
    if isinstance(metadata, dict) and metadata.get("completion_window") == "asap":
        return _invalid(
            f"{where}.params: the asap completion window is not available for batch requests; "
            "batch items run on the standard window.",
            f"{where}.params.metadata.completion_window",
            "unsupported_completion_window",
        )
    return None


def validate_batch(
    body: Any,
    size: int,
    models: tuple[str, ...],
    max_requests: int,
    max_bytes: int,
    **accepts: Any,
) -> ApiError | None:
    """Check a ``POST /v1/batches`` body against the contract.

    Args:
        body: The decoded JSON body.
        size: Its size on the wire, in bytes.
        models: The model ids the server serves.
        max_requests: Most items a batch may hold.
        max_bytes: The body must be smaller than this.
        **accepts: What every item's body is checked with besides the models
            (``strict_schemas``, ``image_models``: see ``validate_create``).

    Returns:
        The error to answer with, or None when the batch is acceptable.
    """
    if size >= max_bytes:
        return _invalid(
            f"The batch body is {size:,} bytes; it must stay under {max_bytes:,} bytes.",
            None,
            "batch_too_large",
        )
    if not isinstance(body, dict):
        return _invalid("The request body must be a JSON object.", None, "invalid_json")
    if body.get("endpoint") != ENDPOINT:
        return _invalid(f"'endpoint' must be {ENDPOINT!r}.", "endpoint")
    requests = body.get("requests")
    if not isinstance(requests, list) or not 1 <= len(requests) <= max_requests:
        return _invalid(f"'requests' must hold 1 to {max_requests:,} requests.", "requests")
    label = body.get("label")
    if label is not None and (
        not isinstance(label, str) or not _LABEL.fullmatch(label) or len(label) > _MAX_LABEL
    ):
        return _invalid(f"'label' must be 1 to {_MAX_LABEL} letters, digits, '-' or '_'.", "label")
    seen: set[str] = set()
    for i, item in enumerate(requests):
        error = _check_item(i, item, seen, models, **accepts)
        if error is not None:
            return error
    return None


def summary(batch: Batch) -> dict[str, Any]:
    """The batch as create and list show it: id, request_counts, created_at, label."""
    shown: dict[str, Any] = {
        "id": batch.id,
        "request_counts": len(batch.items),
        "created_at": batch.created_at,
    }
    if batch.label is not None:
        shown["label"] = batch.label
    return shown


def item_status(status: str, initial: str) -> str:
    """An item's status in the map: upper case; ``incomplete`` items show ``COMPLETED``.

    Args:
        status: The record's status in the responses vocabulary.
        initial: The upper-case word for an item not yet running (``PENDING`` or ``QUEUED``).
    """
    if status in ("pending", "queued"):
        return initial
    if status in ("running", "in_progress"):
        return "RUNNING"
    return "COMPLETED" if status == "incomplete" else status.upper()


def status_body(
    batch: Batch, status: Callable[[Record], str], reasons: bool = False
) -> dict[str, Any]:
    """The batch with its ``request_status`` map (custom_id → ``{"status": ...}``).

    Args:
        batch: The batch.
        status: An item's upper-case status.
        reasons: Give each ``FAILED`` entry its reason too, as
            ``"error": {"code", "message"}``.
    """
    shown = summary(batch)
    statuses: dict[str, Any] = {}
    for cid, record in batch.items.items():
        entry: dict[str, Any] = {"status": status(record)}
        if reasons and entry["status"] == "FAILED":
            entry["error"] = {"code": "server_error", "message": record.text}
        statuses[cid] = entry
    shown["request_status"] = statuses
    return shown


def page(batches: Sequence[Batch], query: Mapping[str, str]) -> list[dict[str, Any]] | ApiError:
    """One page of ``GET /v1/batches``, newest first.

    Args:
        batches: The caller's batches, oldest first.
        query: ``after_id`` (start after this batch), ``before_id`` (the page just before
            it) and ``limit`` (1–200, default 25).

    Returns:
        The page as a bare array of summaries, or the error to answer with.
    """
    raw = query.get("limit", str(_DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= _MAX_LIMIT:
        return _invalid(f"'limit' must be an integer from 1 to {_MAX_LIMIT}.", "limit")
    newest = list(reversed(batches))
    ids = [b.id for b in newest]
    start, stop = 0, len(newest)
    for name in ("after_id", "before_id"):
        cursor = query.get(name)
        if cursor is None:
            continue
        if cursor not in ids:
            return _invalid(f"No batch {cursor!r} to page from.", name, "not_found")
        if name == "after_id":
            start = ids.index(cursor) + 1
        else:
            stop = ids.index(cursor)
            start = max(start, stop - limit)
    return [summary(b) for b in newest[start:stop][:limit]]
