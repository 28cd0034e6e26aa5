"""The Batch API path's decisions, as pure functions: ids, chunks, keys, statuses, the mode.

No sockets, no clock, no pandas. The three identities of a row stay apart: the index label
never leaves the frame; the **wire id** is a position-based ``custom_id`` (``r000123`` for
the request first seen at row 123); the **fingerprint** (a hash of the request) drives the
keys, the run store and resume.

A batch create body is assembled from each item's serialised bytes, so its size is measured,
not guessed: a chunk closes before it would reach ``max_requests`` items or ``max_bytes``
bytes. Each chunk's ``Idempotency-Key`` is a hash of its exact body and of every item's own
key (which carries the salt and the attempt), so a retried or re-run submit of the same
chunk replays the batch the server already holds, while a new salt or a re-asked failure
makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError
from .models import Request
from .scrub import printable
from .wire import Status, encodable, normalise_status

__all__ = [
    "AUTO_MIN_REQUESTS",
    "BATCH_POLL",
    "ENDPOINT",
    "LIMITS",
    "BatchLimits",
    "BatchPoll",
    "Chunk",
    "Item",
    "check_label",
    "choose_mode",
    "chunk_items",
    "custom_id",
    "first_positions",
    "is_custom_id",
    "is_model_error",
    "is_unavailable",
    "item_reason",
    "item_status",
    "make_item",
    "rebuild",
    "says_unavailable",
    "server_words",
    "status_map",
]

ENDPOINT = "/v1/responses"
AUTO_MIN_REQUESTS = 1_000
"""``mode="auto"`` uses the Batch API when at least this many requests are to be created."""

_LABEL = re.compile(r"[a-zA-Z0-9_-]+")
_MAX_LABEL = 128
_CUSTOM_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MAX_CUSTOM_ID = 64
_KEY_PREFIX = "vpb1-"
_COMING_SOON = re.compile(r"\bcoming soon\b", re.IGNORECASE)
_UNAVAILABLE = re.compile(
    r"\bunavailable\b|\bdisabled\b|\b(?:not|n['\u2019]t) (?:yet |generally |currently )?"
    r"(?:available|enabled)\b",
    re.IGNORECASE,
)
_ABOUT_AN_ITEM = re.compile(r"requests\[|\bmodel\b|\bwindow\b|\blabel\b", re.IGNORECASE)
_UNAVAILABLE_CODES = frozenset(
    {
        "batches_unavailable",
        "batch_unavailable",
        "batches_disabled",
        "batches_not_enabled",
        "batch_api_unavailable",
    }
)
_UNAVAILABLE_CODE_WORD = re.compile(
    r"(?<![a-z_])(?:" + "|".join(sorted(_UNAVAILABLE_CODES)) + r")(?![a-z_])", re.IGNORECASE
)
_BATCHES = re.compile(r"\bbatch(?:es)?\b", re.IGNORECASE)
_FOR_NOW = re.compile(r"temporar|overload|\bretry\b|try again|busy", re.IGNORECASE)
_MODEL_CODES = frozenset({"model_not_found", "model_not_available", "unknown_model"})
_MODEL_MISSING = re.compile(
    r"\bmodel\b[^.]*\b(?:does not exist|doesn['\u2019]t exist|not found|unknown|not available"
    r"|not supported)|\bunknown model\b|\bno such model\b",
    re.IGNORECASE,
)
_SERVER_WORDS = 200


@dataclass(frozen=True)
class BatchLimits:
    """What one batch may hold (``valar-api.md`` §8).

    Attributes:
        max_requests: Most items per batch.
        max_bytes: The serialised create body must stay strictly under this many bytes.
    """

    max_requests: int = 100_000
    max_bytes: int = 256_000_000  # "under 256 MB": decimal megabytes, not MiB


LIMITS = BatchLimits()


@dataclass(frozen=True)
class BatchPoll:
    """When to ask about a batch's status map again.

    The first look comes ``first`` seconds after the create and each gap grows by ``growth``
    up to a cap that rises with the batch's size (``per_item`` seconds per item, between
    ``cap`` and ``max_cap``): a 100,000-item map is megabytes, so it is not fetched every few
    seconds. ``deadline`` bounds the wait for any item.
    """

    first: float = 2.0
    growth: float = 1.5
    cap: float = 30.0
    per_item: float = 0.001
    max_cap: float = 120.0
    deadline: float = 24 * 3600.0

    def next_delay(self, polls: int, items: int, rand: float) -> float:
        """Seconds until the next status poll.

        Args:
            polls: Polls of this batch made so far (0 right after the create).
            items: Items the batch holds.
            rand: Uniform random number in [0, 1), spreading polls by ±10 %.

        Returns:
            The delay.

        Example:
            >>> BatchPoll().next_delay(0, 10, 0.5), BatchPoll().next_delay(20, 100_000, 0.5)
            (2.0, 100.0)
        """
        cap = min(self.max_cap, max(self.cap, self.per_item * items))
        return min(cap, self.first * self.growth**polls) * (0.9 + 0.2 * rand)


BATCH_POLL = BatchPoll()


def check_label(label: object) -> str | None:
    """Validate a batch label before any request.

    Raises:
        ConfigError: Not a string of 1–128 letters, digits, ``-`` or ``_``.

    Example:
        >>> check_label("reviews_2026-06")
        'reviews_2026-06'
    """
    if label is None:
        return None
    if not isinstance(label, str):
        raise ConfigError(f"label must be a string naming the batches, got {label!r}")
    if not _LABEL.fullmatch(label) or len(label) > _MAX_LABEL:
        raise ConfigError(
            f"label {label!r} is not a valid batch label: use 1 to {_MAX_LABEL} letters, "
            "digits, '-' or '_'"
        )
    return label


def custom_id(position: int) -> str:
    """The wire id of the request first seen at row ``position``.

    Example:
        >>> custom_id(123), custom_id(1_234_567)
        ('r000123', 'r1234567')
    """
    return f"r{position:06d}"


def is_custom_id(text: str) -> bool:
    """Whether ``text`` is a valid ``custom_id``: ``^[a-z0-9][a-z0-9_-]*$``, at most 64."""
    return len(text) <= _MAX_CUSTOM_ID and _CUSTOM_ID.fullmatch(text) is not None


def first_positions(rows: Iterable[object]) -> dict[str, int]:
    """Fingerprint → position of the first row that asks it (rows are fingerprints or not)."""
    positions: dict[str, int] = {}
    for position, row in enumerate(rows):
        if isinstance(row, str):
            positions.setdefault(row, position)
    return positions


def choose_mode(mode: str, window: str, to_create: int) -> Literal["batch", "background"]:
    """Decide how ``mode="auto"`` (or ``"batch"``) sends a run's new requests.

    Args:
        mode: The requested mode (``"batch"``, ``"auto"``, or another mode, which is kept).
        window: The completion window.
        to_create: Requests the run must create (not answered by the store, not re-attached).

    Returns:
        ``"batch"`` for ``mode="batch"``, and for ``mode="auto"`` on the standard window with
        at least :data:`AUTO_MIN_REQUESTS` requests to create; otherwise ``"background"``.

    Example:
        >>> choose_mode("auto", "standard", 5000), choose_mode("auto", "standard", 10)
        ('batch', 'background')
    """
    if mode == "batch":
        return "batch"
    if mode == "auto" and window == "standard" and to_create >= AUTO_MIN_REQUESTS:
        return "batch"
    return "background"


@dataclass(frozen=True, slots=True)
class Item:
    """One request as a batch item.

    Attributes:
        fingerprint: The request's fingerprint.
        custom_id: Its wire id in the batch.
        idempotency_key: The request's own key (salt and attempt), hashed into the batch key.
        line: The item's JSON bytes, exactly as they go into the create body.
    """

    fingerprint: str
    custom_id: str
    idempotency_key: str
    line: bytes


@dataclass(frozen=True, slots=True)
class Chunk:
    """One batch to create.

    Attributes:
        key: The create's ``Idempotency-Key``.
        items: Its items, in order.
        payload: The exact create body.
    """

    key: str
    items: tuple[Item, ...]
    payload: bytes


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def make_item(request: Request, position: int) -> Item:
    """Turn a planned request into a batch item.

    The item's ``params`` are the request body without ``background`` (batch items are
    asynchronous by nature); the fingerprint stays the request's, so a row answered through
    a batch is the same request, in the run store, as one answered in background mode.

    Args:
        request: The planned request.
        position: The row position its wire id is derived from.
    """
    return _item(request, custom_id(position))


def _item(request: Request, cid: str) -> Item:
    params = {k: v for k, v in request.body.items() if k != "background"}
    line = _dumps({"custom_id": cid, "params": params})
    return Item(request.fingerprint, cid, request.idempotency_key, line)


def rebuild(key: str, label: str | None, items: Sequence[tuple[Request, str]]) -> Chunk | None:
    """The batch a run created, or may have created, under ``key``, exactly as it was sent.

    Items go in the order their wire ids were given (row order), each with the wire id it
    was recorded with; the chunk stands only when its key is ``key``, i.e. when the body
    and every item's key are byte for byte those of the first create, so sending it again
    under that key replays the batch the server holds (or creates it, if the first create
    never arrived) and never makes a second one.

    Args:
        key: The batch's recorded ``Idempotency-Key``.
        label: The label it was recorded with.
        items: Each request (with the key it was recorded with) and its ``custom_id``.

    Returns:
        The chunk, or None when the same body cannot be built again.
    """
    ordered = sorted(items, key=lambda pair: (len(pair[1]), pair[1]))
    chunk = _seal(_head(label), [_item(request, cid) for request, cid in ordered])
    return chunk if chunk.key == key else None


def _head(label: str | None) -> bytes:
    labelled = b'"label":' + _dumps(label) + b"," if label is not None else b""
    return b'{"endpoint":' + _dumps(ENDPOINT) + b"," + labelled + b'"requests":['


def _seal(head: bytes, items: list[Item]) -> Chunk:
    payload = head + b",".join(item.line for item in items) + b"]}"
    digest = hashlib.sha256(payload)
    for item in items:
        digest.update(b"\x00" + item.idempotency_key.encode())
    return Chunk(_KEY_PREFIX + digest.hexdigest(), tuple(items), payload)


def chunk_items(
    items: Sequence[Item], label: str | None, limits: BatchLimits = LIMITS
) -> tuple[list[Chunk], list[Item]]:
    """Split items into as few batches as the limits allow, keeping their order.

    Args:
        items: The items, in row order.
        label: The batch label, if any (it is part of every body).
        limits: Most items per batch and the byte size each body must stay under.

    Returns:
        ``(chunks, oversize)``: the batches to create, and the items too large to fit in any
        batch on their own.
    """
    head = _head(label)
    base = len(head) + 2  # the closing "]}"
    chunks: list[Chunk] = []
    oversize: list[Item] = []
    current: list[Item] = []
    size = base
    for item in items:
        if base + len(item.line) >= limits.max_bytes:
            oversize.append(item)
            continue
        extra = len(item.line) + (1 if current else 0)
        if current and (len(current) >= limits.max_requests or size + extra >= limits.max_bytes):
            chunks.append(_seal(head, current))
            current, size, extra = [], base, len(item.line)
        current.append(item)
        size += extra
    if current:
        chunks.append(_seal(head, current))
    return chunks, oversize


def status_map(obj: object) -> dict[str, object] | None:
    """Read ``request_status`` off a batch-status body: custom_id → raw status.

    Entries may be ``{"status": "COMPLETED"}`` objects or bare strings. Returns None when the
    body carries no such map.
    """
    if not isinstance(obj, Mapping):
        return None
    statuses = obj.get("request_status")
    if not isinstance(statuses, Mapping):
        return None
    return {
        str(cid): entry.get("status") if isinstance(entry, Mapping) else entry
        for cid, entry in statuses.items()
    }


def item_reason(obj: object, cid: str) -> str | None:
    """Why a batch's status map says item ``cid`` failed, when its entry says so.

    The contract documents only ``{"status": ...}`` entries; an entry that also carries
    ``error`` (an object with ``message`` and ``code``, or a string), ``error_message``,
    ``reason`` or ``message`` gives the reason. Printable, one line, at most 200 characters.

    Example:
        >>> body = {"request_status": {"r1": {"status": "FAILED", "error": {"message": "OOM"}}}}
        >>> item_reason(body, "r1"), item_reason(body, "r2")
        ('OOM', None)
    """
    statuses = obj.get("request_status") if isinstance(obj, Mapping) else None
    entry = statuses.get(cid) if isinstance(statuses, Mapping) else None
    if not isinstance(entry, Mapping):
        return None
    for name in ("error", "error_message", "reason", "message"):
        value = entry.get(name)
        if isinstance(value, Mapping):
            message, code = value.get("message"), value.get("code") or value.get("type")
            parts = [str(p) for p in (message, f"({code})" if code else None) if p]
            value = " ".join(parts) if parts else None
        if isinstance(value, str) and value.strip():
            return server_words(" ".join(encodable(value).split()))
    return None


def item_status(raw: object) -> Status:
    """Normalise an item's status: UPPER batch words and both pending spellings.

    Example:
        >>> [item_status(s) for s in ("QUEUED", "PENDING", "RUNNING", "COMPLETED", "NEW")]
        ['queued', 'queued', 'running', 'completed', 'unknown']
    """
    return normalise_status(raw)


def is_model_error(status: int, code: str | None, message: str) -> bool:
    """Whether an answer to ``POST /v1/batches`` says the model is unknown.

    OpenAI-style servers answer an unknown model with 404 ``model_not_found``: that is the
    run's model at fault (as in background mode), not a Batch API that is absent.

    Example:
        >>> is_model_error(404, "model_not_found", "HTTP 404 model_not_found: ...")
        True
        >>> is_model_error(404, None, "HTTP 404: The model 'x' does not exist")
        True
    """
    if (code or "") in _MODEL_CODES:
        return True
    return 400 <= status < 500 and _MODEL_MISSING.search(message) is not None


def is_unavailable(status: int, code: str | None, message: str) -> bool:
    """Whether an answer to ``POST /v1/batches`` means the Batch API cannot be used here.

    A model error (:func:`is_model_error`) never does. 404, 405 and 501 do (the route is
    absent); so does 403 (batches not enabled for the organisation: the caller checks first
    that the same key works on ``/v1/responses``, else the key is at fault). A 400 does when
    its code says so, when it says "coming soon" (the vendor's words), or when it says
    unavailable, not available, not enabled or disabled without pointing at an item, a
    model, a window or the label.

    Example:
        >>> is_unavailable(404, None, ""), is_unavailable(400, None, "HTTP 400: bad label")
        (True, False)
        >>> is_unavailable(400, None, "HTTP 400: Coming soon. The Batches API isn\u2019t ...")
        True
    """
    if is_model_error(status, code, message):
        return False
    if status in (403, 404, 405, 501):
        return True
    if status != 400:
        return False
    if (code or "") in _UNAVAILABLE_CODES or _COMING_SOON.search(message):
        return True
    return _UNAVAILABLE.search(message) is not None and not _ABOUT_AN_ITEM.search(message)


def says_unavailable(status: int, message: str) -> bool:
    """Whether a server error that met every try of a create says the Batch API is absent.

    Only such an answer lets a run fall back: any other 5xx may come from a proxy in front
    of a server that did accept the batch. 501 does (not implemented: the route is absent);
    503 does when its code says so, when it says "coming soon", or when it says the Batch
    API is unavailable, not available or not enabled, and not only for now (a message that
    says "temporarily", "overloaded" or "retry" does not; nor does a proxy's bare "Service
    Unavailable", which does not name batches).

    Example:
        >>> says_unavailable(503, "HTTP 503: The Batch API is not available on this server")
        True
        >>> says_unavailable(503, "HTTP 503: Service Temporarily Unavailable")
        False
        >>> says_unavailable(502, "HTTP 502: Bad Gateway")
        False
    """
    if status == 501:
        return True
    if status != 503:
        return False
    if _UNAVAILABLE_CODE_WORD.search(message) or _COMING_SOON.search(message):
        return True
    return (
        _UNAVAILABLE.search(message) is not None
        and _BATCHES.search(message) is not None
        and _FOR_NOW.search(message) is None
        and _ABOUT_AN_ITEM.search(message) is None
    )


def server_words(reason: str) -> str:
    r"""The server's words, as a message may quote them: printable and at most 200 characters.

    Example:
        >>> server_words("HTTP 403: not enabled\x1b[2J")
        'HTTP 403: not enabled\\x1b[2J'
    """
    shown = printable(reason)
    return shown if len(shown) <= _SERVER_WORDS else shown[: _SERVER_WORDS - 1] + "\u2026"
