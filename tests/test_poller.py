"""The poller's heap between polls: rows waiting on the scouts, and the endgame's regroup.

The decisions are the planner's (tests/test_policy.py); these check that the poller asks for
them at the right moments: when a scout finishes, and when the endgame gets a row shorter.
The clock is a variable: no sockets, no sleeping.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from valar_pandas._core.models import Outcome
from valar_pandas._policy import PollSchedule
from valar_pandas._run.poller import Poller

ROWS = 1000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _poller(clock: Clock, start: bool = True) -> tuple[Poller, dict[str, Outcome]]:
    results: dict[str, Outcome] = {}
    exchange: Any = SimpleNamespace(now=clock, rand=lambda: 0.5)

    async def recreate(request: object) -> None:  # never called here
        raise AssertionError

    poller = Poller(
        exchange,
        PollSchedule.for_window("standard"),
        timeout=10.0,
        results=results,
        total=ROWS,
        finish=results.__setitem__,
        recreate=recreate,
    )
    for i in range(ROWS if start else 0):
        poller.start(f"fp{i}", f"resp_{i}", "queued")
    return poller, results


def _entries(poller: Poller) -> dict[str, tuple[float, bool]]:
    return {watch.fingerprint: (due, watch.probe) for due, _, watch in poller.heap}


def _scouts_finish(poller: Poller, results: dict[str, Outcome], at: float) -> None:
    """Every scout finishes; latencies spread evenly over 10..120 s."""
    scouts = [watch for _, _, watch in poller.heap if watch.scout]
    for k, watch in enumerate(scouts):
        latency = 10.0 + 110.0 * k / (len(scouts) - 1)
        poller.model.finished(watch.created, latency, latency)
        results[watch.fingerprint] = Outcome("completed", text="x")
    poller.heap = [entry for entry in poller.heap if not entry[2].scout]
    poller.reconsider()


def test_rows_waiting_on_the_scouts_are_decided_again_when_a_scout_finishes():
    clock = Clock()
    poller, results = _poller(clock)
    rows = {fp: entry for fp, entry in _entries(poller).items() if not entry[1]}
    assert len(rows) == ROWS - 12  # every non-scout waits, at no cost
    assert poller.parked == ROWS - 12
    clock.now = 100.0
    _scouts_finish(poller, results, at=100.0)
    after = _entries(poller)
    first = poller.planner.first_look(poller.model, clock.now)
    assert first is not None and first > 100.0
    # each waiting row now has a poll planned at the model's first look, not its old recheck
    assert all(after[fp] == (pytest.approx(first), True) for fp in rows)
    assert poller.parked == 0
    heap = poller.heap
    poller.reconsider()  # nothing waits on the scouts any more: the heap is left alone
    assert poller.heap is heap


def test_re_attached_rows_finishing_do_not_rescan_the_heap():
    # every re-attached row polls as a scout, so each completion is a scout's: with nothing
    # waiting on the scouts, a completion must not cost a pass over every outstanding row
    clock = Clock()
    poller, _ = _poller(clock, start=False)
    requests: Any = [SimpleNamespace(fingerprint=f"fp{i}") for i in range(ROWS)]
    poller.reattach(requests, {f"fp{i}": f"resp_{i}" for i in range(ROWS)})
    assert poller.parked == 0
    heap = poller.heap
    poller.reconsider()
    assert poller.heap is heap


def test_the_endgame_brings_planned_looks_sooner_at_each_new_low():
    clock = Clock()
    poller, results = _poller(clock)
    clock.now = 100.0
    _scouts_finish(poller, results, at=100.0)
    planned = _entries(poller)
    clock.now = 130.0  # before the looks planned at the first look (about 141 s)
    for _, _, watch in sorted(poller.heap, key=lambda entry: entry[0])[: ROWS - 12 - 15]:
        results[watch.fingerprint] = Outcome("completed", text="x")
    poller.heap = [entry for entry in poller.heap if entry[2].fingerprint not in results]
    poller.regroup()  # 15 rows left: within the endgame
    gap = poller.planner.endgame_gap(130.0, 15)
    assert gap is not None
    for fp, (due, probe) in _entries(poller).items():
        assert probe
        assert planned[fp][0] > clock.now + gap  # was planned later ...
        assert due == pytest.approx(clock.now + gap)  # ... and is brought sooner
    assert poller.regrouped_at == 15
    before = _entries(poller)
    poller.regroup()  # no new low: nothing moves
    assert _entries(poller) == before
