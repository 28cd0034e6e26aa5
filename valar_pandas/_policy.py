"""When to retry, how long to wait, when to poll next. Pure arithmetic: time is passed in.

Retry rules follow the contract (``valar-api.md`` §6): connection errors, timeouts, 408, 429,
500, 502, 503 and 504 are retried, always with the same ``Idempotency-Key``, so a retried
create replays instead of billing twice. 409 is retried too: OpenAI-style servers answer it
when a retry arrives while the first request under the same key is still being processed.
Other 4xx are never retried. Overload answers (429, 503: the server asks the client to slow
down, and the run's concurrency is cut) are counted apart from other failures, so a busy
server does not use up a row's tries.

Some failures say nothing about a row and everything about the endpoint: a certificate that
does not verify, a host that does not resolve, a port nobody listens on, a redirect, answers
that are not the API's JSON, a server that never answers. :class:`Health` watches every
exchange of a run and decides when such a failure is proven (one redirect; a few failures of
the same kind in a row with no good answer between), and :func:`explain` says what to do.
"""

from __future__ import annotations

import bisect
import email.utils
import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "FATAL_EVIDENCE",
    "MAX_RETRY_AFTER_CHARS",
    "OVERLOAD",
    "RETRYABLE",
    "Aimd",
    "ColdStart",
    "Fault",
    "Health",
    "LatencyModel",
    "PollPlanner",
    "PollSchedule",
    "RetryPolicy",
    "TokenBucket",
    "explain",
    "parse_retry_after",
    "suggest_base_url",
]

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


class LatencyModel:
    """What the run has learnt about how long its responses take. Pure: time is passed in.

    Every response is known to have finished somewhere between the poll before and the poll
    that found it done (it is recorded three quarters of the way along: completions bunch
    towards the later poll), and every pending response is known to take longer than its
    current age. The fraction done by age ``t`` is estimated among the
    responses observed up to ``t`` only:

        F(t) = D(t) / (D(t) + (done later than t) + (pending and older than t))

    which corrects for the fast responses being the first ones seen. The curve is
    recomputed at most every ``refresh`` seconds (and when a completion arrives), so a
    decision costs two bisections whatever the run's size.
    """

    def __init__(self, refresh: float = 0.5) -> None:
        self._done: list[float] = []  # completion ages, sorted
        self._created: list[float] = []  # create times of every watched response, sorted
        self._done_created: list[float] = []  # create times of the finished ones, sorted
        self._refresh = refresh
        self._curve_at: float | None = None
        self._curve: list[float] = []  # running maximum of F at each completion age

    @property
    def observed(self) -> int:
        """How many completions have been recorded."""
        return len(self._done)

    def started(self, created: float) -> None:
        """A response began to be watched (created at ``created``)."""
        if self._created and created < self._created[-1]:
            bisect.insort(self._created, created)
        else:
            self._created.append(created)

    def finished(self, created: float, low: float, high: float) -> None:
        """A response was found done at age ``high``; the poll before was at age ``low``."""
        bisect.insort(self._done, low + 0.75 * (high - low))
        bisect.insort(self._done_created, created)
        self._curve_at = None

    def forget(self, created: float) -> None:
        """A response stopped being watched without a completion (an error)."""
        bisect.insort(self._done_created, created)
        self._curve_at = None

    @property
    def watching(self) -> int:
        """Responses the model is watching that have not finished."""
        return len(self._created) - len(self._done_created)

    def pending_older(self, age: float, now: float) -> int:
        """How many watched responses are still running at an age above ``age``."""
        cutoff = now - age
        return bisect.bisect_left(self._created, cutoff) - bisect.bisect_left(
            self._done_created, cutoff
        )

    def _exact(self, age: float, now: float) -> float:
        done = bisect.bisect_right(self._done, age)
        later = len(self._done) - done
        seen = done + later + max(self.pending_older(age, now), 0)
        return done / seen if seen else 0.0

    def _fresh_curve(self, now: float) -> list[float]:
        if self._curve_at is None or now - self._curve_at >= self._refresh:
            curve: list[float] = []
            peak = 0.0
            for age in self._done:
                peak = max(peak, self._exact(age, now))
                curve.append(peak)
            self._curve, self._curve_at = curve, now
        return self._curve

    def fraction_done(self, age: float, now: float) -> float:
        """Estimated share of responses finished by ``age`` (0 when nothing is known)."""
        index = bisect.bisect_right(self._done, age)
        return self._fresh_curve(now)[index - 1] if index else 0.0

    def quantile(self, q: float, now: float) -> float | None:
        """The smallest recorded completion age by which a share ``q`` is done, if known."""
        curve = self._fresh_curve(now)
        index = bisect.bisect_left(curve, q - 1e-12)
        return self._done[index] if index < len(curve) else None


@dataclass(frozen=True)
class PollPlanner:
    """When each outstanding response is next worth a GET, learnt from the run itself.

    Scouts (every ``scout_every``-th response, or all in a small run) are polled on a dense
    geometric schedule (each poll at ``scout_growth`` times the previous age) and are what
    the latency model learns from. The others wait, at no cost, until the model is warm and
    speaks for their age; then a response of age ``a`` is polled when the share ``target``
    of the responses still running at ``a`` is expected to have finished, so most rows need
    one poll. A row older than every running scout, or past the learnt nine-in-ten point,
    keeps gaps under ``tail`` times its age (a late row is noticed soon after it is ready).
    In the endgame (the last 1 % of the rows seen done, at least 20) the share shrinks with the
    rows left, from ``endgame`` times the age down to a floor of half ``min_gap``: the run's
    end waits on exactly these rows, and tight polls of a handful of rows are cheap. Otherwise
    gaps stay within ``[min_gap, cold.cap]``.

    Attributes:
        cold: Gives the first scout poll, the longest gap and the deadline.
        min_gap: Shortest gap between two polls of one response.
        target: Share of the remaining responses expected done at the next poll.
        tail: Longest gap, as a share of the response's age.
        endgame: Longest gap as a share of age when the endgame begins; it shrinks in
            proportion to the rows left.
        warm: Completions needed before the learnt model is trusted.
        scout_every: One scout per this many responses.
        scout_growth: Each scout poll comes at this multiple of the previous one's age.
        recheck: A row waiting on the scouts is reconsidered after this share of its age.
    """

    cold: PollSchedule
    min_gap: float
    target: float = 0.8
    tail: float = 0.25
    endgame: float = 0.04
    warm: int = 10
    scout_every: int = 40
    scout_growth: float = 1.25
    recheck: float = 0.5

    @classmethod
    def from_schedule(cls, schedule: PollSchedule) -> PollPlanner:
        """A planner whose cold start, caps and deadline are ``schedule``'s.

        The shortest gap is a third of the schedule's first poll (1 s on the standard window).
        """
        return cls(cold=schedule, min_gap=schedule.first / 3.0)

    def is_scout(self, index: int, total: int) -> bool:
        """Whether the ``index``-th response of ``total`` polls during the cold start."""
        return total <= 10 * self.scout_every or index % self.scout_every == 0

    def plan(
        self,
        *,
        age: float,
        polls: int,
        scout: bool,
        model: LatencyModel,
        now: float,
        outstanding: int,
        rand: float,
    ) -> tuple[float, bool]:
        """Decide the next look at one response.

        Args:
            age: Seconds since the response was created.
            polls: Polls made so far for it.
            scout: Whether it is a cold-start scout.
            model: What the run has learnt.
            now: The current time (the model's clock).
            outstanding: Responses not yet finished in the run.
            rand: Uniform random number in [0, 1) for ±10 % jitter.

        Returns:
            ``(delay, poll)``: after ``delay`` seconds, poll it (True) or just decide again
            (False: a cold-start non-scout, which costs no request).
        """
        jitter = 0.9 + 0.2 * rand
        if not scout and model.observed < self.warm and model.watching == 0:
            scout = True  # nothing to learn from: poll as a scout rather than wait forever
        if scout:
            # Dense enough that what scouts report keeps up with the rows waiting on them.
            gap = max(self.min_gap, (self.scout_growth - 1.0) * age, self.cold.first * (polls == 0))
            return min(gap, self.cold.cap) * jitter, True
        if model.observed < self.warm:
            return max(self.cold.first, age * 0.5) * jitter, False
        done = model.fraction_done(age, now)
        when = model.quantile(done + (1.0 - done) * self.target, now)
        endgame_rows = max(20, model.observed // 100)
        endgame = outstanding <= endgame_rows
        late_from = model.quantile(0.9, now)
        late = late_from is not None and age >= late_from
        if when is not None:
            gap = when - age if when > age else self.tail * age  # overdue: a late row
        elif model.pending_older(age, now) > 0 and not (late or endgame):
            # Scouts older than this row are still running: they will tell, for free.
            return max(self.min_gap, self.recheck * age) * jitter, False
        else:
            gap = self.tail * age  # beyond what the scouts have shown: a late row
        if endgame:
            share = self.endgame * max(outstanding, 1) / endgame_rows
            gap = min(gap, self.cold.cap, max(self.min_gap / 2.0, share * age))
            return gap * jitter, True
        if late or late_from is None:
            gap = min(gap, max(self.min_gap, self.tail * age))
        gap = min(gap, self.cold.cap)
        return max(gap, self.min_gap) * jitter, True


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


Fault = Literal[
    "certificate", "tls", "dns", "refused", "redirect", "not_api", "silent", "too_large",
    "transient",
]  # fmt: skip
"""Why an exchange gave no usable answer.

``certificate``: the server's certificate did not verify. ``tls``: no TLS session could be
set up (e.g. https:// to a plain-HTTP port). ``dns``: the host name did not resolve.
``refused``: nothing listens on the port. ``redirect``: a 3xx answer. ``not_api``: an answer
that is not JSON (an HTML page, a proxy's text). ``silent``: no answer before the timeout.
``too_large``: the answer exceeds the size cap (a row error, never retried). ``transient``:
anything else worth a retry (a reset, a cut answer, a 5xx, 408, 409, 429).
"""

FATAL_EVIDENCE: dict[str, tuple[int, bool]] = {
    "certificate": (1, False),
    "redirect": (1, False),
    "dns": (2, True),
    "tls": (3, True),
    "refused": (3, True),
    "not_api": (3, True),
    "silent": (3, False),
}
"""Fault → (failures of that kind in a row that prove the endpoint unusable, whether they
count only before the first good answer). A certificate or a redirect is the server's own
word; a host that does not resolve is checked twice; the rest need three in a row. Refused
connections, TLS errors, unresolvable names and non-JSON answers are taken as transient once
the endpoint has answered well: a server restarting mid-run is not a wrong address."""


@dataclass
class Health:
    """What a run has seen of its endpoint. Pure: it is told each exchange's result.

    Every exchange reports once: ``None`` for a good answer, else its :data:`Fault`. A good
    answer, or a fault of another kind, ends a streak; :meth:`observe` says when a streak
    proves the endpoint unusable (see :data:`FATAL_EVIDENCE`).

    Attributes:
        reached: A good answer arrived at least once.
        fault: The kind of the current streak, if any.
        streak: Failures of that kind in a row.
    """

    reached: bool = False
    fault: Fault | None = None
    streak: int = 0

    def observe(self, fault: Fault | None) -> bool:
        """Record one exchange's result.

        Args:
            fault: None for a good answer, else why it gave no usable answer.

        Returns:
            True when this result proves the endpoint unusable: the run must stop.
        """
        if fault is None:
            self.reached, self.fault, self.streak = True, None, 0
            return False
        rule = FATAL_EVIDENCE.get(fault)
        if rule is None or (rule[1] and self.reached):
            self.fault, self.streak = None, 0
            return False
        if fault == self.fault:
            self.streak += 1
        else:
            self.fault, self.streak = fault, 1
        return self.streak >= rule[0]


@dataclass
class ColdStart:
    """Creates in flight before the first is accepted. Pure: time is passed in.

    Until one create has been accepted, at most ``limit`` creates are out at once, fewer by
    the identical rejections seen so far: a run whose every create is refused the same way
    (an unknown model, a bad key) sends ``limit`` creates, not ``concurrency``, before it
    stops. A realtime create is only answered when its model has finished, so the limit also
    lifts ``grace`` seconds after the first create left without a rejection coming back.

    Attributes:
        limit: Creates in flight while cold.
        grace: Seconds after the first create after which the limit lifts anyway.
        first: When the first create left (None before).
        warm: The limit has lifted.
    """

    limit: int = 5
    grace: float = 2.0
    first: float | None = None
    warm: bool = False

    def allowed(self, rejections: int, now: float) -> int | None:
        """Creates allowed in flight now, or None for no limit.

        Args:
            rejections: Identical rejections so far (none accepted).
            now: The current time.
        """
        if not self.warm and self.first is not None and now - self.first >= self.grace:
            self.warm = True
        return None if self.warm else max(1, self.limit - rejections)


def suggest_base_url(location: str, path: str) -> str | None:
    """The base URL a redirect points at, when it kept the request's path.

    Args:
        location: The ``Location`` header (an absolute URL).
        path: The request's path below the base URL, e.g. ``/responses``.

    Returns:
        The location without ``path`` at its end (and without a query), or None when the
        location is relative or does not end with the path.

    Example:
        >>> suggest_base_url("https://api.example.com/v1/responses", "/responses")
        'https://api.example.com/v1'
    """
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if not parts.path.endswith(path):
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path[: len(parts.path) - len(path)]}"


def explain(
    fault: Fault,
    *,
    base_url: str,
    host: str,
    authority: str,
    detail: str,
    location: str | None = None,
    path: str = "/responses",
    timeout: float = 0.0,
) -> str:
    """The message of a run stopped by an unusable endpoint: the cause, then the fix.

    Args:
        fault: The proven fault.
        base_url: The configured base URL.
        host: Its host.
        authority: Its host and port as shown.
        detail: What the transport said (e.g. the certificate error), or the status seen.
        location: A redirect's ``Location``.
        path: The path of the request that was redirected.
        timeout: Seconds each request waited, for ``silent``.

    Returns:
        One paragraph, without the API key (none of the inputs holds it).
    """
    where = "VALAR_BASE_URL or ValarClient(base_url=...)"
    if fault == "certificate":
        return (
            f"the TLS certificate of {authority} could not be verified ({detail}), so nothing "
            f"was sent. If the server uses a private or self-signed certificate authority, "
            f"trust that CA: set the environment variable SSL_CERT_FILE to a PEM bundle that "
            f"includes it (or SSL_CERT_DIR to a directory of hashed certificates) before the "
            f"run starts. Otherwise check the host in the base URL ({base_url})"
        )
    if fault == "redirect":
        target = location or "no Location"
        suggested = suggest_base_url(location, path) if location else None
        fix = (
            f"use base_url={suggested!r} if that is the Valar API"
            if suggested
            else f"check the base URL ({where})"
        )
        return (
            f"the server at {base_url} answered {detail} redirecting to {_clip(target)}; "
            f"valar_pandas does not follow redirects (they would carry the key and the "
            f"request elsewhere): {fix}"
        )
    if fault == "dns":
        return (
            f"the host name {host!r} could not be resolved ({detail}): check the host in the "
            f"base URL ({where}) and the network's DNS"
        )
    if fault == "refused":
        return (
            f"every connection to {authority} was refused: nothing listens there. Check the "
            f"host and port of the base URL ({base_url}) and that the server is running"
        )
    if fault == "tls":
        return (
            f"no TLS session could be set up with {authority} ({detail}): if the server "
            f"speaks plain HTTP, the base URL must start with http://, not https://"
        )
    if fault == "not_api":
        return (
            f"the server at {base_url} answers with something other than the API's JSON "
            f"({detail}): check the base URL ({where}); it is the API root, ending in /v1"
        )
    if fault == "silent":
        return (
            f"the server at {authority} accepted requests but answered none of the last "
            f"{FATAL_EVIDENCE['silent'][0]} (each waited {timeout:g} s), so the run stopped: "
            f"check that the base URL ({base_url}) is the API and that it is up, or give "
            f"slower servers more time with ValarClient(timeout=...)"
        )
    return f"the server at {base_url} cannot be used: {detail}"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
