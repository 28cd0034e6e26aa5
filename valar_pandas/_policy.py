"""When to retry, how long to wait, when to poll next. Pure arithmetic: time is passed in.

Retry rules follow the contract (``valar-api.md`` §6): connection errors, timeouts, 408, 429,
500, 502, 503 and 504 are retried, always with the same ``Idempotency-Key``, so a retried
create replays instead of billing twice. 409 is retried too: OpenAI-style servers answer it
when a retry arrives while the first request under the same key is still being processed.
Other 4xx are never retried.
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass

__all__ = ["RETRYABLE", "PollSchedule", "RetryPolicy", "parse_retry_after"]

RETRYABLE: frozenset[int] = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Retry decisions for one HTTP exchange.

    Attributes:
        attempts: Tries in total, the first included.
        base: Backoff before the second try, in seconds; doubles each try.
        cap: Longest backoff without a ``Retry-After``.
        retry_after_cap: Longest wait a server's ``Retry-After`` may impose.
    """

    attempts: int = 8
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 120.0

    def should_retry(self, status: int | None, attempt: int) -> bool:
        """Decide whether try number ``attempt`` (1-based) deserves another.

        Args:
            status: The HTTP status, or None for a connection error or timeout.
            attempt: How many tries have been made so far.

        Returns:
            True when the failure is transient and tries remain.
        """
        transient = status is None or status in RETRYABLE
        return transient and attempt < self.attempts

    def delay(self, attempt: int, retry_after: float | None, rand: float) -> float:
        """Seconds to wait before the next try.

        Args:
            attempt: How many tries have been made so far (1 after the first failure).
            retry_after: The server's ``Retry-After`` in seconds, if it sent one.
            rand: A uniform random number in [0, 1) for jitter.

        Returns:
            The server's ``Retry-After`` (capped, plus up to 10 % jitter so a crowd of
            clients does not return at once) when given; otherwise full-jitter exponential
            backoff, never less than a tenth of the nominal delay.
        """
        if retry_after is not None:
            wait = min(max(retry_after, 0.0), self.retry_after_cap)
            return wait * (1.0 + 0.1 * rand)
        nominal = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        return nominal * (0.1 + 0.9 * rand)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Read a ``Retry-After`` header.

    Args:
        value: The header value: delay seconds (integer or decimal) or an HTTP date.
        now: The current Unix time, for the date form.

    Returns:
        Seconds to wait (never negative), or None when absent or unreadable.

    Example:
        >>> parse_retry_after("2", now=0.0), parse_retry_after("soon", now=0.0)
        (2.0, None)
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(when.timestamp() - now, 0.0)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


@dataclass(frozen=True)
class PollSchedule:
    """When to ask about a background response again.

    Polls start ``first`` seconds after the create and the gap grows by ``growth`` each
    time up to ``cap``, so a row that finishes quickly is noticed quickly while a slow one
    is not asked about every second. ``deadline`` bounds the whole wait.

    Attributes:
        first: Seconds from create to the first poll.
        growth: Factor by which each gap exceeds the previous one.
        cap: Longest gap between polls.
        deadline: Seconds after create after which a non-terminal row is given up on.
    """

    first: float
    growth: float
    cap: float
    deadline: float

    @classmethod
    def for_window(cls, window: str) -> PollSchedule:
        """The schedule for a completion window.

        Args:
            window: ``"asap"`` (seconds per turn) or ``"standard"`` (about five minutes).

        Returns:
            A schedule: asap polls from 1 s up to every 5 s for 30 minutes; standard
            from 3 s up to every 30 s for 3 hours.
        """
        if window == "asap":
            return cls(first=1.0, growth=1.5, cap=5.0, deadline=1800.0)
        return cls(first=3.0, growth=1.5, cap=30.0, deadline=3 * 3600.0)

    def next_delay(self, polls: int, rand: float) -> float:
        """Seconds until the next poll.

        Args:
            polls: Polls already made for this response (0 right after the create).
            rand: A uniform random number in [0, 1), spreading polls by ±10 %.

        Returns:
            The delay.
        """
        nominal = min(self.cap, self.first * self.growth**polls)
        return nominal * (0.9 + 0.2 * rand)
