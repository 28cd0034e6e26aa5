"""Retry decisions for one HTTP exchange, and the server's ``Retry-After``. Pure arithmetic.

Retry rules follow the contract (``valar-api.md`` §6): connection errors, timeouts, 408, 429,
500, 502, 503 and 504 are retried, always with the same ``Idempotency-Key``, so a retried
create replays instead of billing twice. 409 is retried too: OpenAI-style servers answer it
when a retry arrives while the first request under the same key is still being processed.
Other 4xx are never retried. Overload answers (429, 503: the server asks the client to slow
down, and the run's concurrency is cut) are counted apart from other failures, so a busy
server does not use up a row's tries.
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass

__all__ = ["MAX_RETRY_AFTER_CHARS", "OVERLOAD", "RETRYABLE", "RetryPolicy", "parse_retry_after"]

RETRYABLE: frozenset[int] = frozenset({408, 409, 429, 500, 502, 503, 504})
OVERLOAD: frozenset[int] = frozenset({429, 503})
"""Statuses that say the server is busy: they cut concurrency and have their own budget of tries."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retry decisions for one HTTP exchange.

    Attributes:
        attempts: Tries that may fail for other reasons than overload, the first included.
        base: Backoff before the second try, in seconds; doubles each try.
        cap: Longest backoff without a ``Retry-After``.
        retry_after_cap: Longest wait a server's ``Retry-After`` may impose.
        overload_attempts: Tries that may be answered 429 or 503, on top of ``attempts``.
    """

    attempts: int = 8
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 120.0
    overload_attempts: int = 20

    def should_retry(self, status: int | None, attempt: int, overloads: int = 0) -> bool:
        """Decide whether a failed try deserves another.

        Args:
            status: The HTTP status of the failed try, or None for a connection error or
                timeout.
            attempt: Tries so far that failed for other reasons than overload (the failed
                one included when it did).
            overloads: Tries so far answered 429 or 503 (the failed one included when it
                was).

        Returns:
            True when the failure is transient and tries of its kind remain.
        """
        if status in OVERLOAD:
            return overloads < self.overload_attempts
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


MAX_RETRY_AFTER_CHARS = 64
"""The longest ``Retry-After`` value read (an HTTP date is 29 characters)."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Read a ``Retry-After`` header.

    Args:
        value: The header value: delay seconds (integer or decimal) or an HTTP date.
        now: The current Unix time, for the date form.

    Returns:
        Seconds to wait (never negative), or None when absent or unreadable: longer than
        :data:`MAX_RETRY_AFTER_CHARS` characters, or a date no calendar holds (the policy
        then backs off on its own schedule). A long wait is capped by the retry policy.

    Example:
        >>> parse_retry_after("2", now=0.0), parse_retry_after("soon", now=0.0)
        (2.0, None)
        >>> parse_retry_after("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", now=0.0)
    """
    if not value or len(value) > MAX_RETRY_AFTER_CHARS:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - now, 0.0)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)
