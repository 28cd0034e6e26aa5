"""Request bodies, their fingerprints and idempotency keys.

A request's key is the SHA-256 of its canonical body (plus an optional salt), so retries and
re-runs send the same key and the server replays; a failed row is re-asked under its next
attempt's key (``vp1-<fingerprint>-<n>``). Pure: decided from plain data and table-tested.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..models import Request

__all__ = ["attempt_key", "make_request", "response_body"]

_KEY_PREFIX = "vp1-"


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
    reasoning: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
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
        reasoning: The ``reasoning`` field (``{"effort": ...}``) for a reasoning model.
        extra: More fields, as checked by
            :func:`~valar_pandas._core.options.check_extra_body` (never one set here).

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
    if reasoning is not None:
        body["reasoning"] = dict(reasoning)
    for name, value in (extra or {}).items():
        body.setdefault(name, value)  # never a field set above: checked before
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
