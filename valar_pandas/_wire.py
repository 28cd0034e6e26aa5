"""The Valar contract as pure functions: request bodies, fingerprints, parsing, statuses.

No sockets, no sleeping, no pandas. Everything here is decided from plain data, so it is
table-tested without a server. See ``valar-api.md`` in the design notes for the sources.

Status vocabulary: the API reference documents ``pending/running`` while the idempotency
guide and observed traffic use ``queued/in_progress``; batch item statuses are upper-case.
:func:`normalise_status` accepts all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._models import Outcome, Request
from ._scrub import printable

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_TOKENS",
    "Parsed",
    "Status",
    "TooDeep",
    "attempt_key",
    "decode_json",
    "encodable",
    "error_summary",
    "make_request",
    "normalise_status",
    "output_text",
    "parse_response",
    "response_body",
    "usable_id",
]

Status = Literal["queued", "running", "completed", "failed", "cancelled", "incomplete", "unknown"]

_STATUS = {
    "pending": "queued",
    "queued": "queued",
    "running": "running",
    "in_progress": "running",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "incomplete": "incomplete",
    "expired": "failed",
}
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "incomplete"})
_KEY_PREFIX = "vp1-"
_MAX_ERROR = 300
MAX_TOKENS = 10**9
"""The largest token count believed: no context or answer comes near a billion tokens."""


MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects read in a reply (a Response object needs 5)."""
_MAX_ID = 256
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
"""A JSON string (skipped whole, brackets inside it are text) or one bracket."""


class TooDeep(ValueError):
    """A reply nests arrays and objects deeper than anything the contract sends."""


def decode_json(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode a reply's JSON, refusing nesting deeper than ``max_depth``.

    Args:
        body: The reply's body.
        max_depth: The deepest nesting of arrays and objects accepted.

    Returns:
        The decoded value.

    Raises:
        ValueError: The body is not JSON.
        TooDeep: It nests deeper than ``max_depth`` (which would otherwise exhaust the
            stack while decoding, or after): the same reply again would be no better.

    Example:
        >>> decode_json(b'{"a": ["[[[["]}')
        {'a': ['[[[[']}
        >>> decode_json(b"[" * 100)
        Traceback (most recent call last):
        valar_pandas._wire.TooDeep: JSON nested deeper than 64 levels
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") > max_depth:  # may nest too deep: measure it
        depth = 0
        for token in _TOKENS.finditer(raw):
            char = token.group()
            if char in (b"[", b"{"):
                depth += 1
                if depth > max_depth:
                    raise TooDeep(f"JSON nested deeper than {max_depth} levels")
            elif char in (b"]", b"}"):
                depth -= 1
    try:
        return json.loads(raw)
    except RecursionError:  # a deep nest with brackets the scan could not see: still refused
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None


def encodable(text: str) -> str:
    r"""Text UTF-8 can carry: each lone surrogate (half an emoji) becomes its escape.

    The six characters ``\udXXX`` stand for the surrogate, so nothing is lost, and the
    same text is written to the run store, the frame and output files.

    Example:
        >>> encodable("ok \ud83d")
        'ok \\ud83d'
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def usable_id(value: object) -> bool:
    r"""Whether a server's id can go into a request path and the run store as it is.

    A usable id is a string of 1 to 256 printable ASCII characters, without spaces.

    Example:
        >>> usable_id("resp_abc123"), usable_id("resp_\ud83d"), usable_id("a b")
        (True, False, False)
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_ID
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


class _BadUsage(ValueError):
    """A usage field holds something that is not a token count."""


def response_body(
    model: str,
    input: str | list[dict[str, Any]],
    *,
    instructions: str | None = None,
    max_output_tokens: int | None = None,
    temperature: float | None = None,
    completion_window: str = "standard",
    background: bool = True,
    text: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the JSON body of ``POST /v1/responses``.

    Instructions travel as a leading ``system`` message rather than the ``instructions``
    field, which Valar does not document as supported; a shared leading message also keeps
    the prompt prefix identical across rows, which is what prefix caching rewards.

    Args:
        model: Model id, e.g. ``"zai-org/GLM-5.1-FP8"``.
        input: The rendered prompt, or a list of messages.
        instructions: Optional system instructions prepended to every request.
        max_output_tokens: Optional cap on output tokens.
        temperature: Optional sampling temperature (0–2).
        completion_window: ``"standard"`` or ``"asap"``, sent as ``metadata.completion_window``.
        background: Whether to ask for background (asynchronous) processing.
        text: The ``text`` field (``{"format": ...}``) asking for structured output.

    Returns:
        The request body, with keys in a fixed order.
    """
    messages = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    body: dict[str, Any] = {"model": model, "input": messages}
    if max_output_tokens is not None:
        body["max_output_tokens"] = max_output_tokens
    if temperature is not None:
        body["temperature"] = temperature
    if text is not None:
        body["text"] = dict(text)
    if background:
        body["background"] = True
    body["metadata"] = {"completion_window": completion_window}
    return body


def make_request(body: Mapping[str, Any], salt: str | None = None) -> Request:
    """Fingerprint a body and derive its ``Idempotency-Key``.

    The key is a hash of the canonical body (model included) and the optional salt, so any
    retry or re-run of the same row re-sends the same key and the server replays instead of
    running, and billing, the inference again. A new salt asks for a fresh sample.

    Args:
        body: The request body.
        salt: Optional user salt; different salts give different keys.

    Returns:
        The request with its fingerprint, key and wire bytes (canonical JSON: sorted keys,
        no spaces, so the bytes sent are the bytes hashed).
    """
    payload = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    digest = hashlib.sha256(payload)
    if salt is not None:
        digest.update(b"\x00salt\x00" + salt.encode())
    fingerprint = digest.hexdigest()
    return Request(fingerprint, attempt_key(fingerprint, 0), body, payload)


def attempt_key(fingerprint: str, attempt: int) -> str:
    """The ``Idempotency-Key`` for a request's ``attempt``-th asking.

    Attempt 0 is the first; a row whose response the server failed is asked again under a
    new key (the old one would only replay the failure).

    Example:
        >>> attempt_key("ab12", 0), attempt_key("ab12", 2)
        ('vp1-ab12', 'vp1-ab12-2')
    """
    return _KEY_PREFIX + fingerprint + (f"-{attempt}" if attempt else "")


def normalise_status(status: object) -> Status:
    """Map any documented status spelling to one vocabulary.

    Args:
        status: The ``status`` field as received (any case; may be missing or not a string).

    Returns:
        ``queued``, ``running``, a terminal status, or ``unknown``.

    Example:
        >>> [normalise_status(s) for s in ("pending", "IN_PROGRESS", "COMPLETED", "weird")]
        ['queued', 'running', 'completed', 'unknown']
    """
    if not isinstance(status, str):
        return "unknown"
    return _STATUS.get(status.strip().lower(), "unknown")  # type: ignore[return-value]


def output_text(obj: Mapping[str, Any]) -> str | None:
    """Join every ``output_text`` part of every message item in a Response object.

    Falls back to a top-level string ``output`` or ``output_text`` field, which the contract
    types loosely. Returns None when the object carries no text at all.
    """
    output = obj.get("output")
    if isinstance(output, str):
        return output
    parts: list[str] = []
    found = False
    if isinstance(output, list):
        for item in output:
            if not isinstance(item, Mapping) or item.get("type", "message") != "message":
                continue
            content = item.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                if isinstance(part, Mapping) and part.get("type") == "output_text":
                    text = part.get("text")
                    if isinstance(text, str):
                        parts.append(text)
                        found = True
    if found:
        return "".join(parts)
    fallback = obj.get("output_text")
    return fallback if isinstance(fallback, str) else None


@dataclass(frozen=True, slots=True)
class Parsed:
    """A Response object read off the wire.

    Attributes:
        status: The normalised status.
        raw_status: The status string as sent, for error messages.
        response_id: The ``id`` field, if any.
        outcome: The row's outcome once the status is terminal, else None.
    """

    status: Status
    raw_status: str
    response_id: str | None
    outcome: Outcome | None


def parse_response(obj: object) -> Parsed:
    """Read a Response object (create, replay or retrieve).

    Args:
        obj: The decoded JSON body.

    Returns:
        What the client needs: status, id and, when terminal, the outcome. A body that is not
        a JSON object, or lacks an id while not terminal, parses as ``unknown``. A terminal
        response whose ``usage`` holds an impossible token count (negative, not a whole
        number, over :data:`MAX_TOKENS`) is the row's ``error``: not a server verdict, so the
        run store keeps its id and a re-run asks again, for free.
    """
    if not isinstance(obj, Mapping):
        return Parsed("unknown", repr(obj)[:60], None, None)
    raw = obj.get("status")
    status = normalise_status(raw)
    sent_id = obj.get("id")
    rid = sent_id if usable_id(sent_id) else None
    raw_status = encodable(raw) if isinstance(raw, str) else repr(raw)
    if status not in TERMINAL:
        if isinstance(sent_id, str) and rid is None:
            shown = _shorten(repr(encodable(sent_id)))
            bad = f"the server sent a response id that cannot be used ({shown}): not polled"
            return Parsed(status, raw_status, None, Outcome("error", error=bad))
        return Parsed(status, raw_status, rid, None)
    usage = obj.get("usage")
    try:
        tokens_in = _int_or_none(usage, "input_tokens", "prompt_tokens")
        tokens_out = _int_or_none(usage, "output_tokens", "completion_tokens")
        details = usage.get("input_tokens_details") if isinstance(usage, Mapping) else None
        cached = _int_or_none(details, "cached_tokens")
    except _BadUsage as exc:
        bad = (
            f"the server reported an impossible token count ({exc}), so the answer was not "
            "kept; a re-run asks for it again, without a new inference"
        )
        return Parsed(status, raw_status, rid, Outcome("error", error=bad, response_id=rid))
    text = output_text(obj)
    if text is not None:
        text = encodable(text)
    error: str | None = None
    if status == "completed":
        if text is None:
            status, error = "failed", "completed without any output text"
    elif status == "incomplete":
        details = obj.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        error = f"incomplete: {_shorten(str(reason)) if reason else 'no reason given'}"
    else:
        error = f"{status}: {_reason(obj.get('error')) or 'no reason given'}"
    outcome = Outcome(status, text, error, rid, tokens_in, tokens_out, cached)  # type: ignore[arg-type]
    return Parsed(status, raw_status, rid, outcome)


def error_summary(status_code: int, body: bytes | str | None) -> tuple[str | None, str]:
    """Read an error envelope into a code and a short message.

    Args:
        status_code: The HTTP status.
        body: The raw response body (any content type).

    Returns:
        ``(code, message)``: the envelope's ``code`` or ``type`` (None when absent) and a
        message of at most 300 characters that starts with the HTTP status.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    code: str | None = None
    message = text.strip()
    try:
        decoded = decode_json(text) if text else None
    except ValueError:
        decoded = None
    if isinstance(decoded, Mapping):
        err = decoded.get("error", decoded)
        if isinstance(err, Mapping):
            raw_code = err.get("code") or err.get("type")
            if "idempotency_error" in (err.get("code"), err.get("type")):
                raw_code = "idempotency_error"
            code = str(raw_code) if raw_code is not None else None
            message = _reason(err) or message
        elif isinstance(err, str):
            message = err
    summary = (
        f"HTTP {status_code}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    )
    return code, _shorten(summary)


def _reason(err: object) -> str | None:
    if isinstance(err, str):
        return _shorten(err)
    if isinstance(err, Mapping):
        message = err.get("message")
        code = err.get("code") or err.get("type")
        if message and code:
            return _shorten(f"{message} ({code})")
        if message or code:
            return _shorten(str(message or code))
    return None


def _int_or_none(usage: object, *names: str) -> int | None:
    """The first of ``names`` present in ``usage``, checked; None when none is.

    Raises:
        _BadUsage: The value is not a whole number between 0 and :data:`MAX_TOKENS`.
    """
    if not isinstance(usage, Mapping):
        return None
    for name in names:
        value = usage.get(name)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
            return value
        try:
            shown = repr(value)
        except ValueError:  # an integer past Python's digit limit for str()
            shown = "an integer too long to print"
        raise _BadUsage(f"usage.{name} = {shown if len(shown) <= 40 else shown[:39] + '…'}")
    return None


def _shorten(text: str) -> str:
    text = printable(" ".join(encodable(text).split()))  # a server's message: no controls
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
