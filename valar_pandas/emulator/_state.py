"""Response records, their lazily computed status, their JSON rendering, and the counters.

Owns :class:`Record` (a small slotted object per response; no timer or task per record),
:func:`status_of` (status from the clock), :func:`render` (the Response object), the
idempotency reservations and :class:`Stats`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TERMINAL", "Batch", "Record", "Stats", "Store", "render", "status_of"]

TERMINAL = frozenset(("completed", "failed", "incomplete", "cancelled"))
_TEXT_FORMAT: dict[str, Any] = {"type": "text"}


@dataclass(slots=True)
class Record:
    """One response record; its status follows from the clock and ``cancelled``.

    Attributes:
        id: ``resp_<hex>``.
        owner: API key the record was created under.
        created_at: Unix time of creation (seconds).
        t0: Monotonic clock reading at creation.
        latency: Seconds from creation to the terminal status.
        background: Whether it was a background request.
        model: Model id.
        metadata: Metadata as sent (shared with the request body, never copied).
        max_output_tokens: As sent.
        temperature: As sent.
        outcome: Terminal status: ``completed``, ``failed`` or ``incomplete``.
        text: Emitted text (possibly truncated), or the failure reason when failed.
        input_tokens: Billed input tokens.
        output_tokens: Billed output tokens.
        cancelled: Set when cancelled before finishing.
        truncation: How an ``incomplete`` outcome is reported: ``"incomplete"``, or
            ``"completed"`` with ``incomplete_details`` (the configuration when created).
        reasoning_tokens: Of ``output_tokens``, those spent reasoning.
        cached_tokens: Of ``input_tokens``, those served from the prefix cache.
        reasoning: The ``reasoning`` field as sent, or None.
    """

    id: str
    owner: str
    created_at: int
    t0: float
    latency: float
    background: bool
    model: str
    metadata: dict[str, str]
    max_output_tokens: int | None
    temperature: float | None
    outcome: str
    text: str
    input_tokens: int
    output_tokens: int
    cancelled: bool = False
    truncation: str = "incomplete"
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    reasoning: dict[str, str] | None = None


def status_of(record: Record, now: float, words: tuple[str, str]) -> str:
    """Compute a record's status at ``now``.

    The record shows the initial word for the first tenth of its latency, the running word
    until its latency has elapsed, then its terminal outcome (or ``cancelled``).

    Args:
        record: The record.
        now: Current monotonic clock reading.
        words: ``(initial, running)`` status words of the configured vocabulary.

    Returns:
        The status string.
    """
    if record.cancelled:
        return "cancelled"
    elapsed = now - record.t0
    if elapsed >= record.latency:
        return record.outcome
    return words[0] if elapsed < 0.1 * record.latency else words[1]


def _usage(
    input_tokens: int, output_tokens: int, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "reasoning_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"cached_tokens": 0, "reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
    }


def render(record: Record, status: str) -> dict[str, Any]:
    """Build the Response object for a record in a given status.

    Args:
        record: The record.
        status: Its status (from :func:`status_of`).

    Returns:
        The JSON-ready Response object.
    """
    output: list[dict[str, Any]] = []
    error: dict[str, str] | None = None
    incomplete: dict[str, str] | None = None
    usage = _usage(0, 0)
    if status in ("completed", "incomplete"):
        if record.reasoning_tokens:  # reasoning first; its content is never shown
            output.append({"type": "reasoning", "id": "rs_" + record.id[5:], "summary": []})
        if record.text or not record.reasoning_tokens:  # a cap spent reasoning: no message
            output.append(
                {
                    "type": "message",
                    "id": "msg_" + record.id[5:],
                    "role": "assistant",
                    "status": status,
                    "content": [{"type": "output_text", "text": record.text, "annotations": []}],
                }
            )
        usage = _usage(
            record.input_tokens,
            record.output_tokens,
            record.cached_tokens,
            record.reasoning_tokens,
        )
        if status == "incomplete":
            incomplete = {"reason": "max_output_tokens"}
            if record.truncation == "completed":  # cut, yet reported completed
                status = "completed"
    elif status == "failed":
        error = {"code": "server_error", "message": record.text}
    return {
        "id": record.id,
        "object": "response",
        "created_at": record.created_at,
        "status": status,
        "background": record.background,
        "model": record.model,
        "metadata": record.metadata,
        "output": output,
        "error": error,
        "incomplete_details": incomplete,
        "max_output_tokens": record.max_output_tokens,
        "temperature": record.temperature,
        "top_p": None,
        "reasoning": record.reasoning,
        "store": True,
        "text": {"format": _TEXT_FORMAT},
        "usage": usage,
    }


@dataclass
class Stats:
    """What the emulator has seen and done since start (or the last :meth:`reset`).

    Attributes:
        inferences: Response records created (each one is an inference billed).
        inferences_by_body: SHA-256 of the canonical body JSON → records created for it.
        requests: Requests per route, e.g. ``"POST /v1/responses"``,
            ``"GET /v1/responses/{id}"``, ``"GET /v1/models"``.
        total_requests: Every HTTP request received, including faulted and rejected ones.
        faults: Injected faults by kind: ``"429"``, ``"500"``, ``"502"``, ``"503"``, ``"drop"``,
            and a batch create refused by ``batch_refusal`` (``"overloaded"``,
            ``"server_error"``).
        batch_creates: Batches created (replays of a batch create are not counted); each
            item is also one of ``inferences``.
    """

    inferences: int = 0
    inferences_by_body: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    total_requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    batch_creates: int = 0

    def reset(self) -> None:
        """Set every counter back to zero (records and reservations are kept)."""
        self.inferences = 0
        self.inferences_by_body.clear()
        self.requests.clear()
        self.total_requests = 0
        self.faults.clear()
        self.batch_creates = 0


@dataclass(slots=True)
class Batch:
    """One batch: its items are ordinary response records, keyed by ``custom_id``.

    Attributes:
        id: ``batch_<hex>``.
        owner: API key the batch was created under.
        created_at: Unix time of creation (seconds).
        label: The label, if one was given.
        items: custom_id → record, in the order submitted.
    """

    id: str
    owner: str
    created_at: int
    label: str | None
    items: dict[str, Record]


@dataclass
class Store:
    """Every record and batch by id, and idempotency reservations.

    Attributes:
        records: Response id → record (batch items included).
        reservations: (api key, Idempotency-Key) → (body digest, record).
        batches: Batch id → batch, oldest first.
        batch_reservations: (api key, Idempotency-Key) → (body digest, batch).
    """

    records: dict[str, Record] = field(default_factory=dict)
    reservations: dict[tuple[str, str], tuple[str, Record]] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)
    batch_reservations: dict[tuple[str, str], tuple[str, Batch]] = field(default_factory=dict)
