"""Reading the API's answers: statuses, output text, Response objects and error envelopes.

Status vocabulary: the API reference documents ``pending/running`` while the idempotency
guide and observed traffic use ``queued/in_progress``; batch item statuses are upper-case.
:func:`normalise_status` accepts all of them. A server's message is shortened and made
printable before it reaches a row's error. Pure: decided from plain data and table-tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..models import Outcome
from ..scrub import printable
from .untrusted import decode_json, encodable, usable_id

__all__ = [
    "MAX_TOKENS",
    "TERMINAL",
    "ParsedResponse",
    "Status",
    "error_summary",
    "incomplete_error",
    "normalise_status",
    "output_text",
    "parse_response",
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
_MAX_ERROR = 300
MAX_TOKENS = 10**9
"""The largest token count believed: no context or answer comes near a billion tokens."""


class _BadUsage(ValueError):
    """A usage field holds something that is not a token count."""


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
class ParsedResponse:
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


def parse_response(obj: object, sent: Mapping[str, Any] | None = None) -> ParsedResponse:
    """Read a Response object (create, replay or retrieve).

    A response that carries ``incomplete_details`` (any value but null) is ``incomplete``
    whatever its ``status`` says, once the server has stopped working on it (any status but
    queued, running, failed or cancelled): a ``completed`` answer cut at the output cap is
    partial text, never a success. Its error names the reason and what to change
    (:func:`incomplete_error`).

    Args:
        obj: The decoded JSON body.
        sent: The request body it answers, when the caller has it: its ``max_output_tokens``
            is the cap a truncation names; without it, the cap the response echoes is named.

    Returns:
        What the client needs: status, id and, when terminal, the outcome. A body that is not
        a JSON object, or lacks an id while not terminal, parses as ``unknown``. A terminal
        response whose ``usage`` holds an impossible token count (negative, not a whole
        number, over :data:`MAX_TOKENS`) is the row's ``error``: not a server verdict, so the
        run store keeps its id and a re-run asks again, for free.
    """
    if not isinstance(obj, Mapping):
        return ParsedResponse("unknown", repr(obj)[:60], None, None)
    raw = obj.get("status")
    status = normalise_status(raw)
    cut = obj.get("incomplete_details")
    if _says_something(cut) and status in ("completed", "incomplete", "unknown"):
        status = "incomplete"  # cut short, whatever the status word: never a success
    sent_id = obj.get("id")
    rid = sent_id if usable_id(sent_id) else None
    raw_status = encodable(raw) if isinstance(raw, str) else repr(raw)
    if status not in TERMINAL:
        if isinstance(sent_id, str) and rid is None:
            shown = _shorten(repr(encodable(sent_id)))
            bad = f"the server sent a response id that cannot be used ({shown}): not polled"
            return ParsedResponse(status, raw_status, None, Outcome("error", error=bad))
        return ParsedResponse(status, raw_status, rid, None)
    usage = obj.get("usage")
    try:
        tokens_in = _int_or_none(usage, "input_tokens", "prompt_tokens")
        tokens_out = _int_or_none(usage, "output_tokens", "completion_tokens")
        cached = _detail(usage, "cached_tokens", _INPUT_DETAILS)
        reasoning = _detail(usage, "reasoning_tokens", _OUTPUT_DETAILS + _INPUT_DETAILS)
    except _BadUsage as exc:
        bad = (
            f"the server reported an impossible token count ({exc}), so the answer was not "
            "kept; a re-run asks for it again, without a new inference"
        )
        return ParsedResponse(status, raw_status, rid, Outcome("error", error=bad, response_id=rid))
    text = output_text(obj)
    if text is not None:
        text = encodable(text)
    error: str | None = None
    if status == "completed":
        if text is None:
            _, cap = _cap(obj, sent)
            spent = cap is not None and (
                (tokens_out is not None and tokens_out >= cap) or (tokens_out is None and reasoning)
            )
            # The cap was spent and nothing written: the same body is cut again, so the row
            # is incomplete (it stands on a re-run) rather than failed (which is re-asked).
            status = "incomplete" if spent else "failed"
            error = _empty_answer(tokens_out, reasoning, cap)
    elif status == "incomplete":
        known, cap = _cap(obj, sent)
        error = incomplete_error(cut, cap, known=known)
    else:
        error = f"{status}: {_reason(obj.get('error')) or 'no reason given'}"
    outcome = Outcome(status, text, error, rid, tokens_in, tokens_out, cached, reasoning)  # type: ignore[arg-type]
    return ParsedResponse(status, raw_status, rid, outcome)


def _says_something(details: object) -> bool:
    """Whether ``incomplete_details`` holds anything (null, ``{}``, ``{"reason": null}`` do not).

    An empty value next to ``completed`` is read as "not cut": the field's shape is
    undocumented, and a server that sends ``{}`` on every answer must not turn every row into
    an error. An ``incomplete`` status is incomplete whatever this field holds.
    """
    if details is None:
        return False
    if isinstance(details, str):
        return bool(details.strip())
    if isinstance(details, Mapping):  # {"reason": null} says no more than {}
        return any(_says_something(value) for value in details.values())
    if isinstance(details, list | tuple):
        return any(_says_something(value) for value in details)
    return True


def incomplete_error(details: object, cap: int | None, *, known: bool = True) -> str:
    """A truncated answer's row error: the reason, and the option that changes it.

    Args:
        details: The response's ``incomplete_details``, in any shape (an object with a
            ``reason``, a bare string, anything else).
        cap: The ``max_output_tokens`` the request was sent with; None when it was not set.
        known: False when the cap the request was sent with is not known (not at hand, and
            not echoed by the server): the error then names the option alone.

    Returns:
        ``incomplete: <reason>``, then what to do about it.

    Example:
        >>> incomplete_error({"reason": "max_output_tokens"}, 16)
        'incomplete: max_output_tokens: the answer was cut at the output cap; raise max_output_tokens (now 16)'
    """  # noqa: E501
    reason = details.get("reason") if isinstance(details, Mapping) else details
    if not isinstance(reason, str) or not reason.strip():
        return "incomplete: no reason given"
    said = _shorten(reason)
    if reason.strip() == "max_output_tokens":
        now = f"now {cap}" if cap is not None else "not set, so the server's default applied"
        return f"incomplete: {said}: the answer was cut at the output cap; raise " + (
            f"max_output_tokens ({now})" if known else "max_output_tokens"
        )
    if reason.strip() == "content_filter":
        return (
            f"incomplete: {said}: the server's content filter stopped the answer; asking "
            "the same prompt again is not expected to pass, change the prompt or the model"
        )
    return f"incomplete: {said}"


def _cap(obj: Mapping[str, Any], sent: Mapping[str, Any] | None) -> tuple[bool, int | None]:
    """Whether the output cap a response was asked with is known, and that cap.

    The request's own when at hand, else the one the response echoes (a field of the
    Response object); unknown when neither says.
    """
    source = sent if sent is not None else obj
    if sent is None and "max_output_tokens" not in obj:
        return False, None
    cap = source.get("max_output_tokens")
    if cap is None:
        return True, None
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap <= MAX_TOKENS:
        return True, cap
    return False, None


def _empty_answer(output: int | None, reasoning: int | None, cap: int | None) -> str:
    """Why a completed response may hold no text: the cap, and reasoning, when they can be.

    A reasoning model spends output tokens before it writes; under a tight
    ``max_output_tokens`` it can spend them all and write nothing.

    Args:
        output: The output tokens reported, if any.
        reasoning: Of those, the reasoning tokens reported, if any.
        cap: The ``max_output_tokens`` the request was sent with (or the response echoes).
    """
    said = "completed without any output text"
    capped = cap is not None
    if reasoning:
        spent = f"{reasoning:,} reasoning tokens" + (
            f" of {output:,} output tokens" if output and output != reasoning else ""
        )
        if capped:
            return (
                f"{said}: the model spent {spent} under the cap max_output_tokens={cap}, "
                "likely all of it on reasoning; raise max_output_tokens or lower reasoning="
            )
        return f"{said}: the model spent {spent}; reasoning may have taken the whole answer"
    if capped:
        return (
            f"{said} under the cap max_output_tokens={cap}: a reasoning model may have spent "
            "it all on reasoning; raise max_output_tokens or set a lower reasoning= effort"
        )
    return said


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


_INPUT_DETAILS = ("input_tokens_details", "prompt_tokens_details")
_OUTPUT_DETAILS = ("output_tokens_details", "completion_tokens_details")


def _detail(usage: object, name: str, places: tuple[str, ...]) -> int | None:
    """``name`` from the first of the usage's detail objects ``places`` that holds it.

    The contract lists ``cached_tokens`` and ``reasoning_tokens`` under both
    ``input_tokens_details`` and ``output_tokens_details``; Chat-style servers say
    ``prompt_tokens_details`` and ``completion_tokens_details``. Reasoning tokens are read
    from the output's details first, where they belong (they are billed as output).

    Raises:
        _BadUsage: The value is not a whole number between 0 and :data:`MAX_TOKENS`.
    """
    if not isinstance(usage, Mapping):
        return None
    for place in places:
        found = _int_or_none(usage.get(place), name)
        if found is not None:
            return found
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
