"""The poller's heap between polls: rows waiting on the scouts, and the endgame's regroup.

The decisions are the planner's (tests/test_policy.py); these check that the poller asks for
them at the right moments: when a scout finishes, and when the endgame gets a row shorter.
The clock is a variable: no sockets, no sleeping.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from valar_pandas._core.models import Outcome
from valar_pandas._policy import PollSchedule
from valar_pandas._run.poller import Polled, Poller
from valar_pandas._transport.http import Reply

ROWS = 1000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _poller(clock: Clock, start: bool = True) -> tuple[Poller, dict[str, Outcome]]:
    results: dict[str, Outcome] = {}
    exchange: Any = SimpleNamespace(
        now=clock, rand=lambda: 0.5, slots=SimpleNamespace(release=lambda: None)
    )

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


def _answer(poller: Poller, watch: Polled, status: str) -> None:
    """Poll ``watch`` once; the server says ``status`` (``completed`` with a text)."""
    body: dict[str, Any] = {"id": watch.response_id, "object": "response", "status": status}
    if status == "completed":
        body["output"] = [{"type": "message", "content": [{"type": "output_text", "text": "x"}]}]

    async def send(method: str, path: str, *, timeout: float) -> Reply:
        return Reply(200, None, json.dumps(body).encode())

    poller.exchange.send = send  # type: ignore[attr-defined]
    poller.heap = [entry for entry in poller.heap if entry[2] is not watch]
    asyncio.run(poller.poll(watch))


def test_rows_still_running_at_their_first_poll_scout_the_tail_and_the_rest_wait():
    clock = Clock()
    poller, results = _poller(clock)
    clock.now = 100.0
    _scouts_finish(poller, results, at=100.0)
    clock.now = poller.planner.first_look(poller.model, clock.now) or 0.0
    late = [watch for _, _, watch in sorted(poller.heap, key=lambda entry: entry[1])][:20]
    for watch in late:
        _answer(poller, watch, "in_progress")
    # the first dozen still running at their first poll scout the tail, at a quarter of
    # their age; the others wait for the tail's curve, at no cost
    assert [watch.tail_scout for watch in late] == [True] * 12 + [False] * 8
    assert poller.tail.watching == 12
    entries = _entries(poller)
    age = clock.now
    assert all(entries[w.fingerprint] == (pytest.approx(1.25 * age), True) for w in late[:12])
    assert all(not entries[w.fingerprint][1] for w in late[12:])
    # six tail scouts finish: the tail's curve is warm, and the waiting late rows are
    # decided again at once, each with one look planned
    clock.now = 1.3 * age
    for watch in late[:6]:
        _answer(poller, watch, "completed")
    assert poller.tail.observed == 6
    entries = _entries(poller)
    assert all(entries[w.fingerprint][1] for w in late[12:])


def test_the_endgame_begins_when_the_rows_probably_still_running_are_few():
    clock = Clock()
    poller, results = _poller(clock)
    clock.now = 100.0
    _scouts_finish(poller, results, at=100.0)
    clock.now = 141.0
    # every row but 40 was found done at its first look; of those 40 the first 12 scout
    # the tail and 28 wait on them
    rows = [watch for _, _, watch in sorted(poller.heap, key=lambda entry: entry[1])]
    for watch in rows[40:]:
        results[watch.fingerprint] = Outcome("completed", text="x")
    poller.heap = [entry for entry in poller.heap if entry[2].fingerprint not in results]
    for watch in rows[:40]:
        _answer(poller, watch, "in_progress")
    assert poller.total - len(results) == 40
    # the tail scouts finish by 200 s, all but one: the 28 waiting rows are probably done
    # (each at most one in seven still running), so the run waits on about five rows
    for k, watch in enumerate(rows[:11]):
        clock.now = 150.0 + 5.0 * k
        _answer(poller, watch, "completed")
    assert poller.estimated_at <= poller.planner.endgame_rows
    gap = poller.planner.endgame_gap(clock.now - rows[20].created, poller.estimated_at)
    assert gap is not None
    entries = _entries(poller)
    # ... so their looks were brought to the endgame's gap although nothing that finished
    # was noticed among them, and no later completion is taken for a new low of the rows
    # left
    assert all(entries[w.fingerprint][0] <= clock.now + gap + 1e-6 for w in rows[12:40])
    assert all(entries[w.fingerprint][1] for w in rows[12:40])
    assert poller.regrouped_at == ROWS + 1
