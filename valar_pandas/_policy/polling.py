"""When to look at a background response again, learnt from the run itself. Pure.

Time is passed in.

:class:`PollSchedule` is the cold-start schedule and the deadline; :class:`LatencyModel` is
what the run has learnt of how long its responses take; :class:`PollPlanner` turns both into
the next look at each response.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

__all__ = ["LatencyModel", "PollPlanner", "PollSchedule"]


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

    **Scouts.** A few responses (``scouts`` of them, spread over the first rows; every row
    of a run of up to that many) are polled on a geometric schedule, each poll at
    ``scout_growth`` times the previous age, then at ``scout_growth_warm`` times once the
    model is warm, and are what the latency model learns from. A handful places the bulk
    of the curve, and each costs a poll per growth step for as long as it runs, so they
    are kept few: at latencies of minutes they would otherwise be most of the run's polls.

    **Everyone else** waits, at no cost, until the model speaks for its age. Created in
    one burst, the rows are as old as the scouts, so the model knows no more of their
    future than of the scouts' past: a row is first polled once the learnt nine-in-ten
    point is known, at that point stretched by the curve's own spread (the nine-in-ten
    point times its ratio to the median, raised to ``reach``, at most ``reach_cap``), where
    nearly every row is done, so most rows need one poll.

    **Late rows**, still running at their first poll, are decided the same way from a
    curve of their own (the ``tail`` model of :meth:`plan`), because a run that mixes
    answers of seconds and minutes has a tail the scouts barely saw: the first
    ``tail_scouts`` of them (:meth:`is_tail_scout`) scout it at ``scout_growth_warm``, the
    others wait for free and are looked at once past its stretched nine-in-ten point. After
    that look a row is polled when the share ``target`` of the late rows still running at
    its age is expected to have finished; past the tail's nine-in-ten point, or beyond
    what its scouts have shown, its gaps stay under ``tail`` times its age, with no
    absolute cap: at latencies of minutes a late row asked every 30 s would pay more polls
    than the whole curve is worth, and the run's end waits only on the endgame's rows.

    **Endgame.** With ``endgame_rows`` rows left, scouts included, a row's gap is at most
    ``endgame`` of its age, shrinking in proportion to the rows left down to
    ``endgame_floor`` of its age (at least half ``min_gap``), and every completion there
    brings sooner the looks already planned (:meth:`regroup`): the run's end waits on
    exactly these rows. It waits for the run's first answer: a run of the endgame's size or
    smaller is in it from the start, and before any answer no row is likely done, so the
    scouts keep their geometric steps (a run of 20 rows at 150 s paid 45 requests a row
    with dense looks from the start, 17 without). Late rows waiting on the tail may finish
    unnoticed, so the rows
    *probably* still running (:meth:`still_running`) can start it too
    (:meth:`endgame_from`).

    Attributes:
        cold: Gives the first scout poll, the endgame's gap cap and the deadline.
        min_gap: Shortest gap between two polls of one response.
        target: Share of the remaining responses expected done at a row's next poll.
        tail: Longest gap of a late row, as a share of the response's age.
        reach: How far past the nine-in-ten point a row's first poll is stretched: the
            point times (its ratio to the median) to this power.
        reach_cap: The most that stretch multiplies the nine-in-ten point by.
        endgame: Longest gap as a share of age when the endgame begins; it shrinks in
            proportion to the rows left.
        endgame_floor: The endgame's gap never shrinks below this share of the age.
        endgame_rows: Rows left when the endgame begins.
        warm: Completions needed before the learnt model is trusted.
        scouts: How many responses scout.
        scout_every: At most this many responses between two scouts.
        scout_growth: Each scout poll comes at this multiple of the previous one's age.
        scout_growth_warm: The same, once the model is warm.
        recheck: A row waiting on the scouts is reconsidered after this share of its age
            (and whenever a scout finishes: see the poller).
        tail_scouts: How many late rows scout the tail.
    """

    cold: PollSchedule
    min_gap: float
    target: float = 0.8
    tail: float = 0.25
    reach: float = 0.5
    reach_cap: float = 1.5
    endgame: float = 0.12
    endgame_floor: float = 0.02
    endgame_rows: int = 20
    warm: int = 6
    scouts: int = 12
    scout_every: int = 40
    scout_growth: float = 1.5
    scout_growth_warm: float = 1.25
    recheck: float = 0.5
    tail_scouts: int = 12

    @classmethod
    def from_schedule(cls, schedule: PollSchedule) -> PollPlanner:
        """A planner whose cold start, caps and deadline are ``schedule``'s.

        The shortest gap is a third of the schedule's first poll (1 s on the standard window).
        """
        return cls(cold=schedule, min_gap=schedule.first / 3.0)

    def is_scout(self, index: int, total: int) -> bool:
        """Whether the ``index``-th response of ``total`` is a scout.

        Scouts are ``total // endgame_rows`` responses apart (at least 1, at most
        ``scout_every``), the first ``scouts`` such.
        """
        stride = max(1, min(self.scout_every, total // self.endgame_rows))
        return index % stride == 0 and index // stride < self.scouts

    def endgame_gap(self, age: float, outstanding: int) -> float | None:
        """The longest gap for a response of ``age`` in the endgame; None before it.

        Args:
            age: Seconds since the response was created.
            outstanding: Responses not yet finished in the run.

        Returns:
            ``endgame`` × rows left ÷ ``endgame_rows`` of the age, at least
            ``endgame_floor`` of it and half ``min_gap``, at most ``cold.cap``; None while
            more than ``endgame_rows`` are left.
        """
        if outstanding > self.endgame_rows:
            return None
        share = max(self.endgame * max(outstanding, 1) / self.endgame_rows, self.endgame_floor)
        return min(self.cold.cap, max(self.min_gap / 2.0, share * age))

    def regroup(self, *, age: float, due_in: float, outstanding: int) -> float | None:
        """A sooner look at a waiting response, now that the endgame has fewer rows.

        The poller calls it for every waiting response when a completion leaves
        ``outstanding`` rows, a new low within the endgame.

        Args:
            age: Seconds since the response was created.
            due_in: Seconds until its planned look.
            outstanding: Responses not yet finished in the run.

        Returns:
            Seconds until the sooner look (a poll), or None to keep the planned one.
        """
        gap = self.endgame_gap(age, outstanding)
        return gap if gap is not None and gap < due_in else None

    def is_tail_scout(self, *, polls: int, scout: bool, taken: int) -> bool:
        """Whether a response just found still running becomes a tail scout.

        Args:
            polls: Polls made so far for it, the one that found it running included.
            scout: Whether it is a scout.
            taken: Tail scouts the run has already.

        Returns:
            True for the first ``tail_scouts`` responses found running at their first poll.
        """
        return not scout and polls == 1 and taken < self.tail_scouts

    def endgame_from(self, running: float, *, outstanding: int, fewest: int) -> int | None:
        """Rows to plan the endgame for, from the rows probably still running; None if none.

        Args:
            running: The sum of :meth:`still_running` over the outstanding rows.
            outstanding: Responses not yet finished in the run.
            fewest: The fewest rows an earlier such regroup was made for.

        Returns:
            The rows probably running, rounded up (at least 1), when they are fewer than the
            rows outstanding and than at any earlier such regroup, and within the endgame.
        """
        rows = math.ceil(running - 1e-9)
        if rows >= min(outstanding, fewest) or rows > self.endgame_rows:
            return None
        return max(rows, 1)

    def still_running(
        self,
        *,
        age: float,
        polls: int,
        scout: bool,
        tail: LatencyModel,
        tail_scout: bool,
        now: float,
    ) -> float:
        """The chance that a response not yet found done is still running.

        A late row (still running at its first poll, no scout of either kind) that waits
        for its first look from the tail scouts' curve is running with the chance that
        curve gives for its age, at least one in the curve's completions plus one (a curve
        learnt from n rows cannot say a row is surely done). Every other row counts as
        running: scouts and rows already polled in their stage are watched, and a row's
        first poll is planned near the point where nearly every row is done. Summed over
        the outstanding rows, it says how many the run still waits for, which falls when
        late rows finish unnoticed: the endgame can then begin although nothing was seen
        to complete.
        """
        if scout or tail_scout or polls != 1:
            return 1.0
        return max(1.0 - tail.fraction_done(age, now), 1.0 / (tail.observed + 1))

    def first_look(self, model: LatencyModel, now: float) -> float | None:
        """The age at which a row is first worth polling, once the model knows it.

        The learnt nine-in-ten point, stretched by the curve's spread; None until the model
        has that point.
        """
        late_from = model.quantile(0.9, now)
        median = model.quantile(0.5, now)
        if late_from is None or not median:
            return late_from
        stretch: float = (late_from / median) ** self.reach
        return late_from * min(self.reach_cap, stretch)

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
        tail: LatencyModel | None = None,
        tail_scout: bool = False,
    ) -> tuple[float, bool]:
        """Decide the next look at one response.

        Args:
            age: Seconds since the response was created.
            polls: Polls made so far for it.
            scout: Whether it is a scout.
            model: What the run has learnt from its scouts.
            now: The current time (the model's clock).
            outstanding: Responses not yet finished in the run.
            rand: Uniform random number in [0, 1) for ±10 % jitter.
            tail: What the run has learnt from its tail scouts (rows found still running
                at their first poll); None to decide late rows from ``model`` alone.
            tail_scout: Whether it is a tail scout.

        Returns:
            ``(delay, poll)``: after ``delay`` seconds, poll it (True) or just decide again
            (False: a row waiting on the scouts, which costs no request).
        """
        jitter = 0.9 + 0.2 * rand
        # No endgame before the first answer (see the class): nothing is likely done yet.
        endgame = self.endgame_gap(age, outstanding) if model.observed else None
        first_at = 0  # polls made when this stage's first look is due
        growth = self.scout_growth_warm if model.observed >= self.warm else self.scout_growth
        if tail is not None and not scout and polls > 0:
            # Still running at its first poll: a late row, decided from what the late rows'
            # own scouts show (a mix of fast and slow answers has a tail of its own).
            model, scout, first_at, growth = tail, tail_scout, 1, self.scout_growth_warm
        if not scout and model.observed < self.warm and model.watching == 0:
            scout = True  # nothing to learn from: poll as a scout rather than wait forever
        if scout:
            # Geometric in the age: cheap at minutes-long latencies, dense at short ones.
            gap = max(self.min_gap, (growth - 1.0) * age, self.cold.first * (polls == 0))
            return min(gap, endgame or gap) * jitter, True
        if model.observed < self.warm and endgame is None:
            return max(self.cold.first, age * 0.5) * jitter, False
        done = model.fraction_done(age, now)
        when = model.quantile(done + (1.0 - done) * self.target, now)
        late_from = model.quantile(0.9, now)
        late = late_from is not None and age >= late_from
        if polls == first_at and endgame is None:
            first = self.first_look(model, now)
            if first is not None and first > age:
                return max(first - age, self.min_gap) * jitter, True
        if when is not None:
            gap = when - age if when > age else self.tail * age  # overdue: a late row
        elif model.pending_older(age, now) > 0 and not (late or endgame is not None):
            # Scouts older than this row are still running: they will tell, for free.
            return max(self.min_gap, self.recheck * age) * jitter, False
        else:
            gap = self.tail * age  # beyond what the scouts have shown: a late row
        if endgame is not None:
            return min(gap, endgame) * jitter, True
        if late or late_from is None:
            gap = min(gap, self.tail * age)
        return max(gap, self.min_gap) * jitter, True
