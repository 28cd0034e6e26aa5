"""How fast a run may send: adaptive concurrency and a request-rate budget.

Pure: time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Aimd", "TokenBucket"]


@dataclass
class Aimd:
    """Additive-increase, multiplicative-decrease concurrency. Pure: time is passed in.

    Starts at ``cap`` (the user's ``concurrency``); an overload answer (429, 503) halves the
    limit, at most once per ``cooldown`` seconds so one burst of rejections counts once; each
    success adds ``1 / limit``, so the limit regains one slot per window of successes. The
    limit never exceeds ``cap`` nor drops below 1.
    """

    cap: int
    cooldown: float = 1.0
    limit: float = 0.0
    _last_cut: float = float("-inf")

    def __post_init__(self) -> None:
        self.limit = float(self.cap)

    @property
    def slots(self) -> int:
        """Requests allowed in flight now."""
        return max(1, int(self.limit))

    def success(self) -> None:
        """A request succeeded."""
        self.limit = min(float(self.cap), self.limit + 1.0 / max(self.limit, 1.0))

    def overloaded(self, now: float) -> None:
        """The server answered 429 or 503."""
        if now - self._last_cut >= self.cooldown:
            self.limit = max(1.0, self.limit / 2.0)
            self._last_cut = now


@dataclass
class TokenBucket:
    """A request-rate budget: never more than ``rate`` requests a second over time.

    :meth:`reserve` books the next request and says how long to wait before sending it;
    bookings may run ahead of the bucket, so concurrent callers queue in order. Waits end on
    a grid of ``tick`` seconds: requests booked close together are released in one wake-up
    of the event loop, not one wake-up each (where the budget binds, a 20,000-row run against
    the emulator spent 0.28 ms of CPU per request instead of 0.33). A request leaves at most
    ``tick`` after its booking would allow, so any window holds at most ``rate × tick`` more
    requests than the rate alone would give.

    Attributes:
        rate: Requests per second.
        burst: Requests that may go at once after a quiet spell.
        tick: Waits end on multiples of this many seconds (of the clock ``now`` is read from).
    """

    rate: float
    burst: float = 50.0
    tick: float = 0.01
    _tokens: float | None = None
    _stamp: float = 0.0

    def reserve(self, now: float) -> float:
        """Book one request at time ``now``; return the seconds to wait before sending it."""
        if self._tokens is None:
            self._tokens, self._stamp = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        due = now - self._tokens / self.rate
        return max(0.0, math.ceil(due / self.tick - 1e-9) * self.tick - now)
