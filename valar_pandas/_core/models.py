"""Plain data shared by every layer: requests, outcomes and the events a run emits.

Frozen, slotted dataclasses with no behaviour beyond trivial properties. No I/O, no pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "REASKED",
    "SERVER_VERDICTS",
    "BatchCreated",
    "BatchLost",
    "BatchPlanned",
    "Event",
    "Finished",
    "Outcome",
    "Request",
    "Retrying",
    "RowStatus",
    "Started",
    "Stopped",
    "Submitted",
]

RowStatus = Literal["completed", "failed", "cancelled", "incomplete", "skipped", "error"]
"""How a row ended. ``error`` means the client gave up (HTTP error, deadline, bad response);
the others are the server's own terminal states, plus ``skipped`` for rows never sent."""

SERVER_VERDICTS = frozenset({"completed", "failed", "cancelled", "incomplete"})
"""Outcomes the server decided. Only these are recorded as done: a row the client gave up
on (a connection that kept failing, a run stopped midway) keeps its key and response id, so
a re-run resumes it instead of paying for it again."""

REASKED = frozenset({"failed", "cancelled"})
"""Server verdicts ``retry_failed`` asks again on a later call. An ``incomplete`` answer
(cut at ``max_output_tokens``, stopped by a content filter) is not: the same body would be
cut the same way and paid for again. A changed request (another cap, prompt, model or
``salt``) is another body, with a fingerprint of its own, and is asked."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request to send, identified by the fingerprint of its content.

    Attributes:
        fingerprint: Hex SHA-256 of the canonical request body plus the optional salt.
        idempotency_key: The ``Idempotency-Key`` header value, derived from the fingerprint.
        body: The JSON body of ``POST /v1/responses``.
        payload: ``body`` serialised once, the exact bytes that go on the wire.
    """

    fingerprint: str
    idempotency_key: str
    body: Mapping[str, Any]
    payload: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request produced: only what the merge needs, never the whole response body.

    Attributes:
        status: How the request ended.
        text: The output text (all ``output_text`` parts joined); partial for ``incomplete``.
        error: A short readable reason when the row did not succeed, else None.
        response_id: The server's response id, when one was assigned.
        input_tokens: Input tokens billed, when the server reported usage.
        output_tokens: Output tokens billed, when the server reported usage.
        cached_tokens: Of the input tokens, those served from the prefix cache.
        reasoning_tokens: Of the output tokens, those the model spent reasoning (billed as
            output, never part of ``text``), when the server reported them.
    """

    status: RowStatus
    text: str | None = None
    error: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def ok(self) -> bool:
        """True when the row succeeded."""
        return self.status == "completed" and self.error is None


@dataclass(frozen=True, slots=True)
class Started:
    """A run began: ``total`` rows, of which ``unique`` distinct requests will be sent."""

    total: int
    unique: int


@dataclass(frozen=True, slots=True)
class Submitted:
    """The server accepted a request and named its response (``rows`` rows share it)."""

    fingerprint: str
    response_id: str | None
    rows: int


@dataclass(frozen=True, slots=True)
class Retrying:
    """An HTTP exchange failed transiently and will be retried after ``delay`` seconds."""

    reason: str
    delay: float


@dataclass(frozen=True, slots=True)
class Finished:
    """A request reached its end; ``rows`` rows share its outcome.

    ``fingerprint`` is None for rows that were never requests (skipped before planning);
    ``cached`` is True when the outcome came from the run store without any request.
    """

    fingerprint: str | None
    outcome: Outcome
    rows: int
    cached: bool = False


@dataclass(frozen=True, slots=True)
class BatchPlanned:
    """A batch is about to be created under ``key``; ``items`` are (fingerprint, custom_id).

    Emitted before the create is sent, so the run store holds the key if the process dies
    while the request is on the wire.
    """

    key: str
    label: str | None
    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class BatchCreated:
    """The server accepted the batch created under ``key`` and named it ``batch_id``."""

    key: str
    batch_id: str


@dataclass(frozen=True, slots=True)
class BatchLost:
    """The batch created under ``key`` is gone (unknown to the server, or never created).

    Its unfinished items are no longer attached to it: a later run sends them again, under
    new keys when ``rekey`` (the server may still hold the old batch key's reservation,
    which would only replay the batch it lost).
    """

    key: str
    rekey: bool = True


@dataclass(frozen=True, slots=True)
class Stopped:
    """The run was stopped (cancelled or interrupted) with ``rows`` rows still unanswered.

    Those rows end ``cancelled`` with ``reason`` in their error; nothing about them is
    recorded as finished, so a later run resumes them.
    """

    rows: int
    reason: str


Event = (
    Started | Submitted | Retrying | Finished | Stopped | BatchPlanned | BatchCreated | BatchLost
)
