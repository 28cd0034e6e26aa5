"""Rows' prompts → the distinct requests to send. Pure: no I/O, no pandas.

Rows whose request bodies are identical share one fingerprint: the request is sent once and
its outcome fills every such row. Rows that are skipped carry their outcome from the start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .models import Outcome, Request
from .options import RunOptions
from .wire import make_request, response_body

__all__ = ["Plan", "Skip", "build_request", "plan_requests", "request_body"]


@dataclass(frozen=True, slots=True)
class Skip:
    """A row that will not be sent, and why."""

    reason: str


@dataclass
class Plan:
    """What a run will send.

    Attributes:
        rows: Per row position, the fingerprint of its request or the outcome of a skip.
        requests: The distinct requests, by fingerprint, in first-seen order.
        shares: How many rows each fingerprint fills.
    """

    rows: list[str | Outcome] = field(default_factory=list)
    requests: dict[str, Request] = field(default_factory=dict)
    shares: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        """How many rows are not sent."""
        return len(self.rows) - sum(self.shares.values())

    def outcomes(self, results: dict[str, Outcome]) -> list[Outcome]:
        """Spread results by fingerprint back over the rows, in row order.

        Args:
            results: Outcome per fingerprint. A fingerprint with none (the run was stopped
                before it ended) gives an ``error`` outcome saying so.

        Returns:
            One outcome per row.
        """
        missing = Outcome("error", error="not finished: the run stopped before this row ended")
        return [row if isinstance(row, Outcome) else results.get(row, missing) for row in self.rows]


def plan_requests(inputs: Iterable[str | list[dict[str, Any]] | Skip], options: RunOptions) -> Plan:
    """Turn each row's prompt into a request and collapse identical ones.

    Args:
        inputs: Per row, its rendered prompt, its messages, or a :class:`Skip`.
        options: The validated run options (model, window, sampling, salt, mode).

    Returns:
        The plan.

    Raises:
        ConfigError: A row's messages hold values JSON cannot carry.
    """
    plan = Plan()
    for position, item in enumerate(inputs):
        if isinstance(item, Skip):
            plan.rows.append(Outcome("skipped", error=f"skipped: {item.reason}"))
            continue
        request = build_request(position, item, options)
        fingerprint = request.fingerprint
        plan.requests.setdefault(fingerprint, request)
        plan.shares[fingerprint] += 1
        plan.rows.append(fingerprint)
    return plan


def build_request(position: int, item: str | list[dict[str, Any]], options: RunOptions) -> Request:
    """The request of one row's prompt or messages.

    Args:
        position: The row's position, for the error message.
        item: The rendered prompt, or the messages.
        options: The validated run options.

    Returns:
        The request.

    Raises:
        ConfigError: The messages hold values JSON cannot carry.
    """
    try:
        return make_request(request_body(item, options), options.salt)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"row {position}: its prompt cannot be sent as JSON ({exc})") from None


def request_body(item: str | list[dict[str, Any]], options: RunOptions) -> dict[str, Any]:
    """The request body of one rendered prompt under a call's options.

    Args:
        item: A rendered prompt (text or messages).
        options: The validated options.

    Returns:
        The body, as :func:`~valar_pandas._core.wire.response_body` builds it.
    """
    return response_body(
        options.model,
        item,
        instructions=options.instructions,
        max_output_tokens=options.max_output_tokens,
        temperature=options.temperature,
        completion_window=options.completion_window,
        background=options.background,
        text=options.text,
        reasoning=options.reasoning,
        extra=options.extra_body,
    )
