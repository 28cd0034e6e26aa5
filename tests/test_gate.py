"""The gate's accounting under every interleaving of acquire, cancel, release and limit change."""

from __future__ import annotations

import asyncio
import random

import pytest

from valar_pandas._transport.gate import Gate


class Bench:
    """Tasks acquiring one gate, driven a step at a time, with the truth kept beside it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.gate = Gate(lambda: self.limit)
        self.tasks: list[asyncio.Task[None]] = []
        self.granted: list[int] = []  # task numbers whose acquire returned
        self.released: set[int] = set()

    def acquire(self) -> None:
        number = len(self.tasks)

        async def take() -> None:
            await self.gate.acquire()
            self.granted.append(number)

        self.tasks.append(asyncio.ensure_future(take()))

    def release(self) -> None:
        """The oldest holder gives its place back."""
        holder = next(n for n in self.granted if n not in self.released)
        self.released.add(holder)
        self.gate.release()

    def resize(self, limit: int) -> None:
        self.limit = limit
        self.gate.poke()

    @property
    def holders(self) -> int:
        return len(self.granted) - len(self.released)

    @property
    def waiting(self) -> list[int]:
        return [n for n, t in enumerate(self.tasks) if not t.done()]

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    def check(self) -> None:
        """Holders counted right, served first come first served, nobody waits for nothing."""
        assert self.gate.busy == self.holders
        if self.waiting:  # nobody who came later got in, and nobody waits for a free place
            assert max(self.granted, default=-1) < min(self.waiting)
            assert self.gate.busy >= self.limit
        for task in self.tasks:
            if task.done() and not task.cancelled():
                assert task.exception() is None


async def _issue_example() -> None:
    g = Gate(lambda: 1)
    await g.acquire()
    t = asyncio.create_task(g.acquire())
    await asyncio.sleep(0)
    t.cancel()
    g.release()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert g.busy == 0
    await g.acquire()  # the place is free again
    assert g.busy == 1


def test_a_waiter_cancelled_before_the_release_that_skips_it_raises_cancelled_error():
    asyncio.run(_issue_example())


# Each script: (limit, steps). Steps: "a" a new task acquires, "c<n>" cancel task n,
# "r" the oldest holder releases, "s" let the loop run, "l<n>" the limit becomes n.
SCRIPTS = {
    "cancelled, then the release skips it (the reported race)": (1, "a s a s c1 r s"),
    "cancelled and unwound before any release": (1, "a s a s c1 s r s"),
    "granted, then cancelled before it ran: the place is handed on": (1, "a s a a s r c1 s"),
    "granted, cancelled, nobody else waits": (1, "a s a s r c1 s"),
    "a middle waiter cancelled": (1, "a s a a a s c2 r s r s"),
    "every waiter cancelled, then a newcomer": (1, "a s a a s c1 c2 r s a s"),
    "cancelled while the limit grows": (1, "a s a a s c1 l3 s"),
    "cancelled while the limit shrinks": (2, "a a s a a s l1 c2 r s r s"),
    "cancelled twice": (1, "a s a s c1 c1 r s"),
    "newcomer behind a cancelled waiter not yet unwound": (1, "a s a s c1 a r s"),
    "the holder itself cancelled after acquiring": (1, "a s c0 s a s"),
}


async def _play(limit: int, steps: str) -> Bench:
    bench = Bench(limit)
    for step in steps.split():
        if step == "a":
            bench.acquire()
        elif step == "r":
            bench.release()
        elif step == "s":
            await bench.settle()
            bench.check()
        elif step[0] == "c":
            bench.tasks[int(step[1:])].cancel()
        elif step[0] == "l":
            bench.resize(int(step[1:]))
    await bench.settle()
    bench.check()
    return bench


@pytest.mark.parametrize("limit, steps", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_gate_interleavings(limit, steps):
    bench = asyncio.run(_play(limit, steps))
    for task in bench.tasks:
        if task.done() and not task.cancelled():
            assert task.exception() is None


def test_a_granted_waiter_cancelled_before_it_ran_hands_its_place_to_the_next():
    bench = asyncio.run(_play(1, "a s a a s r c1 s"))
    assert bench.granted == [0, 2] and bench.gate.busy == 1
    assert bench.tasks[1].cancelled()


async def _random_walk(seed: int) -> None:
    rng = random.Random(seed)
    bench = Bench(rng.randint(1, 3))
    for _ in range(40):
        op = rng.choice("aaaccrrsl")
        if op == "a":
            bench.acquire()
        elif op == "c" and bench.tasks:
            bench.tasks[rng.randrange(len(bench.tasks))].cancel()
        elif op == "r" and bench.holders:
            bench.release()
        elif op == "l":
            bench.resize(rng.randint(1, 4))
        elif op == "s":
            await bench.settle()
            bench.check()
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    await bench.settle()
    bench.check()
    while bench.holders:  # everyone still waiting gets in, in order, as places come back
        bench.release()
        await bench.settle()
        bench.check()
    assert not bench.waiting and bench.gate.busy == 0


@pytest.mark.parametrize("block", range(10))
def test_gate_accounting_holds_on_random_interleavings(block):
    for seed in range(block * 100, block * 100 + 100):
        asyncio.run(_random_walk(seed))
