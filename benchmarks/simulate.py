"""``python -m benchmarks.simulate``: the poll planner on a simulated clock, in seconds.

The real scenarios take as long as their slowest answer (ten minutes and more at the
standard window's latencies). This drives the library's pure planner
(:class:`~valar_pandas._policy.PollPlanner` and :class:`~valar_pandas._policy.LatencyModel`)
the way the run's poller does, with no sockets and no sleeping: rows are created at a steady
rate, each is given a latency drawn from a lognormal law (or a mix of laws), and every poll
the planner asks for is answered at once, "done" when the row's latency has elapsed. What it
reports is what the planner alone decides: requests per row (one create plus the polls),
wall time against the ideal (the last answer ready), and how late the last answer was
noticed. Round trips, request budgets, faults and CPU are not modelled: the real scenarios
(``python -m benchmarks``) measure those.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from valar_pandas._policy import LatencyModel, PollPlanner, PollSchedule

from .scenarios import SCENARIOS

__all__ = ["Law", "SimResult", "main", "parse_law", "simulate"]


@dataclass(frozen=True)
class Law:
    """A latency law: a mix of lognormal components.

    Attributes:
        parts: ``(weight, median, sigma)`` per component; weights need not sum to one.
    """

    parts: tuple[tuple[float, float, float], ...]

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """A function drawing one latency (seconds) from the law with ``rng``."""
        weights = [w for w, _, _ in self.parts]

        def draw() -> float:
            _, median, sigma = rng.choices(self.parts, weights)[0]
            return median * math.exp(sigma * rng.gauss(0.0, 1.0))

        return draw

    def describe(self) -> str:
        """E.g. ``"median 150 s sigma 0.5"`` or ``"50% 10 s + 50% 300 s (sigma 0.5)"``."""
        if len(self.parts) == 1:
            _, median, sigma = self.parts[0]
            return f"median {median:g} s sigma {sigma:g}"
        total = sum(w for w, _, _ in self.parts)
        return " + ".join(f"{100 * w / total:.0f}% {m:g} s (σ {s:g})" for w, m, s in self.parts)


def parse_law(text: str) -> Law:
    """Parse ``"150"``, ``"150:0.5"`` or a mix ``"0.5*10:0.5+0.5*300:0.5"``.

    Args:
        text: Median seconds, optionally ``:sigma`` (default 0.5), optionally ``weight*``,
            components joined by ``+``.

    Returns:
        The law.

    Raises:
        ValueError: The text is not of that form.
    """
    parts = []
    for item in text.split("+"):
        weight, _, rest = item.rpartition("*")
        median, _, sigma = rest.partition(":")
        parts.append((float(weight or 1.0), float(median), float(sigma or 0.5)))
    if not parts or any(w <= 0 or m <= 0 or s < 0 for w, m, s in parts):
        raise ValueError(f"not a latency law: {text!r}")
    return Law(tuple(parts))


@dataclass(frozen=True)
class SimResult:
    """What one simulated run cost and how long it took.

    Attributes:
        rows: Rows in the run.
        requests: Creates plus polls.
        scout_polls: Polls of scouts.
        wall: When the last answer was noticed (seconds from the first create).
        ideal: When the last answer was ready.
        late_last: Seconds from the last answer ready to the run's end (``wall - ideal``).
        worst_delay: The longest wait of any row between being ready and being noticed.
    """

    rows: int
    requests: int
    scout_polls: int
    wall: float
    ideal: float
    late_last: float
    worst_delay: float

    @property
    def per_row(self) -> float:
        """Requests per row."""
        return self.requests / self.rows

    @property
    def ratio(self) -> float:
        """Wall time over the ideal."""
        return self.wall / self.ideal


def simulate(
    rows: int,
    law: Law,
    *,
    seed: int = 0,
    submit_rate: float = 1000.0,
    window: str = "standard",
    planner: PollPlanner | None = None,
    latencies: Sequence[float] | None = None,
) -> SimResult:
    """Run the poll planner over ``rows`` simulated background responses.

    Mirrors :class:`valar_pandas._run.poller.Poller`: one heap of rows by next look; a
    row created becomes a scout or not (:meth:`PollPlanner.is_scout`); every look goes
    through :meth:`PollPlanner.plan`; only scouts teach the model, and tail scouts (the
    first rows still running at their first poll) the tail's; a row past the schedule's
    deadline is given up on; a scout's or tail scout's completion has every row waiting on
    them decide again at once; the endgame brings planned looks sooner
    (:meth:`PollPlanner.regroup`), also when a tail scout's completion leaves few rows
    probably running (:meth:`PollPlanner.endgame_from`).

    Args:
        rows: Rows in the run.
        law: Their latency law.
        seed: Seed for latencies and jitter.
        submit_rate: Creates a second (the k-th row is created at ``k / submit_rate``).
        window: The completion window (the cold schedule and deadline).
        planner: The planner to drive; the library's default for ``window`` if None.
        latencies: The rows' latencies in creation order, instead of draws from ``law``.

    Returns:
        The figures.
    """
    rng = random.Random(seed)
    draw = law.sampler(random.Random(f"latency:{seed}"))
    schedule = PollSchedule.for_window(window)
    planner = planner or PollPlanner.from_schedule(schedule)
    model = LatencyModel()
    tail = LatencyModel()  # learnt from the tail scouts: rows still running at a first poll
    tail_scout = [False] * rows
    tail_taken = 0
    created = [k / submit_rate for k in range(rows)]
    latency = list(latencies[:rows]) if latencies is not None else [draw() for _ in range(rows)]
    scout = [planner.is_scout(k, rows) for k in range(rows)]
    polls = [0] * rows
    last_age = [0.0] * rows
    probe = [True] * rows
    due: list[float | None] = [None] * rows  # when each row's live heap entry falls due
    heap: list[tuple[float, int, int]] = []  # (due, seq, row); stale entries are skipped
    seq = itertools.count()
    requests, scout_polls, finished = rows, 0, 0
    noticed = [math.inf] * rows
    regrouped_at = rows + 1
    estimated_at = rows + 1  # the fewest rows probably running at a regroup so far

    def push(row: int, when: float) -> None:
        due[row] = when
        heapq.heappush(heap, (when, next(seq), row))

    def plan_next(row: int, now: float) -> None:
        age = now - created[row]
        if age >= schedule.deadline:
            finish(row, now)
            return
        delay, probe[row] = planner.plan(
            age=age,
            polls=polls[row],
            scout=scout[row],
            model=model,
            now=now,
            outstanding=rows - finished,
            rand=rng.random(),
            tail=tail,
            tail_scout=tail_scout[row],
        )
        push(row, now + min(delay, schedule.deadline - age))

    def finish(row: int, now: float) -> None:
        nonlocal finished
        finished += 1
        due[row] = None
        noticed[row] = now

    for row in range(rows):  # creates interleave with polls through the heap
        heapq.heappush(heap, (created[row], next(seq), ~row))
    while heap:
        now, _, entry = heapq.heappop(heap)
        if entry < 0:  # a create
            row = ~entry
            if scout[row]:
                model.started(created[row])
            plan_next(row, now)
            continue
        row = entry
        if due[row] != now:
            continue  # superseded by a regroup
        due[row] = None
        if not probe[row]:
            plan_next(row, now)
            continue
        requests += 1
        polls[row] += 1
        scout_polls += scout[row]
        age = now - created[row]
        if age >= latency[row]:
            if scout[row]:
                model.finished(created[row], last_age[row], age)
            if tail_scout[row]:
                tail.finished(created[row], last_age[row], age)
            finish(row, now)
            if scout[row] or tail_scout[row]:  # rows waiting on them decide again at once
                for r, d in enumerate(due):
                    if d is not None and not probe[r]:
                        plan_next(r, now)
            if tail_scout[row]:  # the rows probably still running may be few enough
                running = sum(
                    planner.still_running(
                        age=now - created[r],
                        polls=polls[r],
                        scout=scout[r],
                        tail=tail,
                        tail_scout=tail_scout[r],
                        now=now,
                    )
                    for r, d in enumerate(due)
                    if d is not None
                )
                left = planner.endgame_from(
                    running, outstanding=rows - finished, fewest=estimated_at
                )
                if left is not None:
                    estimated_at = left
                    for r, old in [(r, d) for r, d in enumerate(due) if d is not None]:
                        sooner = planner.regroup(
                            age=now - created[r], due_in=old - now, outstanding=left
                        )
                        if sooner is not None:
                            probe[r] = True
                            push(r, now + sooner)
            outstanding = rows - finished
            if outstanding < regrouped_at and outstanding <= planner.endgame_rows:
                regrouped_at = outstanding
                waiting = [(r, d) for r, d in enumerate(due) if d is not None]
                for r, old in waiting:
                    sooner = planner.regroup(
                        age=now - created[r], due_in=old - now, outstanding=outstanding
                    )
                    if sooner is not None:
                        probe[r] = True
                        push(r, now + sooner)
            continue
        last_age[row] = age
        if planner.is_tail_scout(polls=polls[row], scout=scout[row], taken=tail_taken):
            tail_scout[row] = True  # among the first rows still running at a first poll
            tail_taken += 1
            tail.started(created[row])
        plan_next(row, now)
    ready = [c + lat for c, lat in zip(created, latency, strict=True)]
    ideal = max(ready)
    wall = max(noticed)
    return SimResult(
        rows=rows,
        requests=requests,
        scout_polls=scout_polls,
        wall=wall,
        ideal=ideal,
        late_last=wall - ideal,
        worst_delay=max(n - r for n, r in zip(noticed, ready, strict=True)),
    )


DEFAULT_CASES = (
    ("latency10", 5000, "10"),
    ("latency40", 3000, "40"),
    ("faults (no faults)", 2000, "2"),
    ("standard150", 1000, "150"),
    ("standard300", 3000, "300"),
    ("mix 10 s / 300 s", 2000, "0.5*10+0.5*300"),
    ("mix 2 s / 150 s", 2000, "0.8*2+0.2*150"),
    ("small 100 @ 150 s", 100, "150"),
    ("small 400 @ 40 s", 400, "40"),
    ("narrow 40 s", 2000, "40:0.25"),
    ("narrow 150 s", 1000, "150:0.25"),
    ("sigma 1 @ 60 s", 2000, "60:1"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.simulate",
        description="The poll planner on a simulated clock: requests per row and wall time "
        "against the ideal, for several latency laws, in seconds of CPU.",
    )
    parser.add_argument("--rows", type=int, help="rows (with --law; default 1000)")
    parser.add_argument(
        "--law",
        help="latency law: median seconds[:sigma], or a mix like 0.5*10+0.5*300 "
        "(default: a table of cases)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="replay the latencies the emulator draws for this benchmark scenario (--seed "
        "is the emulator's), instead of the table of cases; repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="emulator seed for --scenario")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per case (default 3)")
    parser.add_argument("--window", choices=("standard", "asap"), default="standard")
    parser.add_argument(
        "--submit-rate", type=float, default=1000.0, help="creates a second (default 1000)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print one markdown row per case: median over seeds, worst seed in brackets.

    Args:
        argv: Arguments without the program name.

    Returns:
        The exit code.
    """
    args = _parser().parse_args(argv)
    if args.scenario:
        return _replay(args.scenario, args.seed, args.submit_rate)
    cases = [(args.law, args.rows or 1000, args.law)] if args.law else list(DEFAULT_CASES)
    print("| case | rows | law | req/row | wall ÷ ideal | last ready → end s | worst delay s |")
    print("|---|--:|---|--:|--:|--:|--:|")
    for name, rows, law_text in cases:
        law = parse_law(law_text)
        results = [
            simulate(rows, law, seed=seed, submit_rate=args.submit_rate, window=args.window)
            for seed in range(args.seeds)
        ]
        per_row = [r.per_row for r in results]
        ratio = [r.ratio for r in results]
        late = [r.late_last for r in results]
        worst = [r.worst_delay for r in results]
        print(
            f"| {name} | {rows:,} | {law.describe()} "
            f"| {statistics.median(per_row):.2f} ({max(per_row):.2f}) "
            f"| {statistics.median(ratio):.3f} ({max(ratio):.3f}) "
            f"| {statistics.median(late):.1f} ({max(late):.1f}) "
            f"| {statistics.median(worst):.1f} ({max(worst):.1f}) |",
            flush=True,
        )
    return 0


def _replay(names: list[str], seed: int, submit_rate: float) -> int:
    from .harness import sampled_latencies  # imports the emulator, for its latency draws

    print("| scenario | rows | req/row | wall ÷ ideal | last ready → end s | worst delay s |")
    print("|---|--:|--:|--:|--:|--:|")
    for name in names:
        scenario = SCENARIOS[name]
        latencies = sampled_latencies(scenario, seed)
        law = Law(((1.0, scenario.latency_median, scenario.latency_sigma),))
        result = simulate(
            scenario.rows,
            law,
            submit_rate=submit_rate,
            window=scenario.completion_window,
            latencies=latencies,
        )
        print(
            f"| {name} | {scenario.rows:,} | {result.per_row:.2f} | {result.ratio:.3f} "
            f"| {result.late_last:.1f} | {result.worst_delay:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
