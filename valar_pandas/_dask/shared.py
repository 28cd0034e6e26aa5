"""What a computation's partitions share across workers: its one budget and its summary.

With a distributed cluster both live on the scheduler: the budget is a ``distributed.Variable``
holding the dollars not yet granted, changed only under a ``distributed.Lock`` of the same
name; each partition's totals go on a ``distributed.Queue``. With the threaded scheduler the
partitions run in this process, and both are plain objects under a ``threading.Lock``.

The budget is spent by reservation: before it sends anything a partition reserves the cost
its estimate gives for what it has to send (cache hits cost nothing), or what is left when
that is less, and runs with the grant as its ``budget=``. The estimate reserves the default
answer length; when answers run longer and the grant would refuse a row, the partition draws
more from the pool (at least a quarter of its first grant at a time) before refusing, so a row
is refused only when the whole budget is spent or reserved. Afterwards it hands back what it
did not spend. So the partitions together never admit more than the budget, whichever worker
they run on, and a partition that finds little left sends only what that pays for, its other
rows failing with the budget's error as in a single process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Meeting", "collect", "grant", "handles", "open_budget", "record", "settle"]

_WAIT = 30.0  # seconds a partition waits for the scheduler's budget or lock


@dataclass(frozen=True)
class Meeting:
    """Where one computation's partitions meet.

    Attributes:
        token: Unique to the computation (its budget and summary are named after it).
        distributed: Whether they meet on a distributed scheduler (else in this process).
        budget: The computation's budget in USD, or None.
        capped: Whether its requests set ``max_output_tokens``.
    """

    token: str
    distributed: bool
    budget: float | None
    capped: bool = False

    @property
    def name(self) -> str:
        """The name of the scheduler's lock, variable and queue."""
        return f"valar-pandas-{self.token}"


_lock = threading.Lock()
_left: dict[str, float] = {}
_summaries: dict[str, dict[int, dict[str, Any]]] = {}


def open_budget(meeting: Meeting) -> None:
    """Put the whole budget in the pool, before any partition runs."""
    if meeting.budget is None:
        return
    if meeting.distributed:
        from distributed import Variable

        Variable(meeting.name).set(meeting.budget)
    else:
        with _lock:
            _left[meeting.name] = meeting.budget


def handles(meeting: Meeting) -> tuple[Any, Any] | None:
    """The scheduler's lock and variable of a distributed meeting (None for a local one).

    Made on a thread Dask runs the partition on, they may then be used from another (the
    library's loop thread, topping up the partition's grant), where no worker is known.
    """
    return _on_scheduler(meeting) if meeting.distributed else None


def _on_scheduler(meeting: Meeting) -> tuple[Any, Any]:
    from distributed import Lock, Variable

    return Lock(meeting.name), Variable(meeting.name)


def grant(meeting: Meeting, want: float, held: tuple[Any, Any] | None = None) -> float:
    """Reserve up to ``want`` USD of the budget; returns what was granted.

    ``held`` are the meeting's :func:`handles`, made on a worker's task thread.
    """
    if meeting.distributed:
        lock, pool = held or _on_scheduler(meeting)
        with lock:
            left = float(pool.get(timeout=_WAIT))
            given = max(min(want, left), 0.0)
            pool.set(left - given)
        return given
    with _lock:
        left = _left[meeting.name]
        given = max(min(want, left), 0.0)
        _left[meeting.name] = left - given
        return given


def settle(
    meeting: Meeting, granted: float, spent: float, held: tuple[Any, Any] | None = None
) -> None:
    """Hand back what a partition did not spend of its grant (or take what it overspent)."""
    if meeting.distributed:
        lock, pool = held or _on_scheduler(meeting)
        with lock:
            pool.set(float(pool.get(timeout=_WAIT)) + granted - spent)
        return
    with _lock:
        _left[meeting.name] += granted - spent


def record(meeting: Meeting, partition: int, totals: Mapping[str, Any]) -> None:
    """Keep one partition's totals; a partition run again (a lost worker) replaces its own."""
    if meeting.distributed:
        from distributed import Queue

        Queue(meeting.name).put({"partition": partition, **totals})
        return
    with _lock:
        _summaries.setdefault(meeting.name, {})[partition] = dict(totals)


_collected: dict[str, dict[int, dict[str, Any]]] = {}


def collect(meeting: Meeting) -> dict[int, dict[str, Any]]:
    """Every partition's latest totals, by partition number."""
    if not meeting.distributed:
        with _lock:
            return dict(_summaries.get(meeting.name, {}))
    from distributed import Queue

    queue = Queue(meeting.name)
    seen = _collected.setdefault(meeting.name, {})
    waiting = queue.qsize()
    if waiting:
        items = queue.get(batch=waiting)
        for item in items:
            seen[int(item.pop("partition"))] = item
    return dict(seen)
