"""A run store that fails under a run: locked, full, read-only, damaged, foreign; file modes.

Every answer the server was paid for reaches the caller whatever the store does, no SQLite
error escapes raw, the loop never sleeps in SQLite's busy handler, and no message quotes what
the store holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from helpers import FAST, TEMPLATE, echo, words

import valar_pandas._service.call as service
import valar_pandas._store.runstore as store_module
from valar_pandas import ConfigError, RunStore, StoreError, StoreWarning
from valar_pandas._cli.reviews import make_reviews
from valar_pandas._core.models import Outcome
from valar_pandas.emulator import Latency

EP = "http://127.0.0.1:1/v1"
DONE = Outcome("completed", "yes", None, "resp_1", 10, 1, 0)
SECRET = "SECRET-ANSWER-7731"

_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
db.execute("ROLLBACK")
"""


@contextlib.contextmanager
def locked(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the store's write lock until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        release(holder)


def release(holder: subprocess.Popen[str]) -> None:
    """The other process rolls back and ends."""
    assert holder.stdin is not None and holder.stdout is not None
    if not holder.stdin.closed:
        holder.stdin.close()
    holder.wait(timeout=30)
    holder.stdout.close()


def _states(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"))


# -- the journal on its own ----------------------------------------------------------------


def test_a_locked_store_never_blocks_the_loop_and_a_later_tick_writes_the_records(tmp_path):
    path = tmp_path / "s.sqlite3"
    RunStore(path).close()
    gaps: list[float] = []

    async def run() -> RunStore:
        store = RunStore(path, lock_timeout=5.0)  # SQLite's own busy wait would be 5 s
        journal = store.journal(EP, tick=0.01, limit=1)  # every record tries a write at once

        async def heartbeat() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.ensure_future(heartbeat())
        with locked(path) as holder:
            journal.plan("m", {"a": ("ka", 0), "b": ("kb", 0)})
            journal.submitted("a", "resp_a")
            journal.finished("a", DONE)
            journal.submitted("b", "resp_b")
            await asyncio.sleep(0.3)  # retried ticks fail meanwhile, and never raise
            assert journal.waiting == 5
            assert journal.fault is not None and journal.fault.kind == "locked"
            release(holder)
            await asyncio.sleep(1.5)  # a retry after the backoff finds the lock free
        assert journal.waiting == 0 and journal.fault is None
        assert await journal.aclose(1.0) is None
        beat.cancel()
        return store

    store = asyncio.run(run())
    found = store.lookup(EP, ["a", "b"])
    store.close()
    assert found["a"].outcome == DONE
    assert (found["b"].state, found["b"].response_id) == ("submitted", "resp_b")
    assert max(gaps) < 2.5  # the loop ran all along; a blocking write would stall it 5 s


def test_close_waits_for_a_lock_without_blocking_and_reports_what_it_could_not_write(tmp_path):
    path = tmp_path / "s.sqlite3"
    RunStore(path).close()

    async def run() -> tuple[object, object]:
        with RunStore(path, lock_timeout=0.3) as store, locked(path):
            journal = store.journal(EP, tick=0.01)
            journal.plan("m", {"a": ("ka", 0), "b": ("kb", 0)})
            journal.finished("a", DONE)
            fault = await journal.aclose(store.lock_timeout)
            return fault, store.fault

    fault, noted = asyncio.run(run())
    assert fault is not None and fault == noted
    assert (fault.kind, fault.answers, fault.records, fault.path) == ("locked", 1, 2, path)
    message = fault.message("the returned frame")
    assert str(path) in message and "write lock" in message and "returned frame" in message


# -- a run through the accessor --------------------------------------------------------------


@pytest.fixture
def short_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close of a run waits 1 s for a lock, not 30."""
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 1.0)


def _entry(name: str, df: pd.DataFrame, client: object, path: Path, **extra: object):
    if name == "run":
        return df.valar.run(TEMPLATE, client=client, store=path, **FAST, **extra)
    if name == "arun":

        async def go():
            return await df.valar.arun(TEMPLATE, client=client, store=path, **FAST, **extra)

        return asyncio.run(go())
    if name == "submit":
        return df.valar.submit(TEMPLATE, client=client, store=path, **FAST, **extra).result()
    assert name == "score"
    return df.valar.score(
        "Review: {review}", labels=["positive", "negative", "neutral"], into="output",
        client=client, store=path, **FAST, **extra,
    )  # fmt: skip


@pytest.mark.parametrize("entry", ["run", "arun", "submit", "score"])
def test_a_store_locked_for_the_whole_run_returns_every_paid_answer(
    serve, tmp_path, short_lock, entry
):
    emulator, client = serve(latency=Latency(median=0.05, sigma=0.3))
    df = make_reviews(60) if entry == "score" else words(60)
    path = tmp_path / "s.sqlite3"
    RunStore(path).close()
    with locked(path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _entry(entry, df, client, path)
    assert emulator.stats.inferences == 60 and len(out) == 60
    column = "output"
    assert out[column].notna().all() and out[f"{column}_error"].isna().all()
    if entry != "score":
        assert out[column].tolist() == echo(df)
    assert out.attrs["valar"]["store_unsaved"] == 60
    (warning,) = [w for w in caught if issubclass(w.category, StoreWarning)]
    assert str(path) in str(warning.message) and "write lock" in str(warning.message)
    assert _states(path) == {}  # the other process never let us write

    # Once the store is free, the same call resends the same keys: the server replays them.
    again = _entry(entry, df, client, path)
    assert emulator.stats.inferences == 60
    assert again[column].tolist() == out[column].tolist()
    assert _states(path) == {"done": 60}


def test_errors_raise_gives_a_store_error_that_carries_the_frame(serve, tmp_path, short_lock):
    emulator, client = serve(latency=Latency(median=0.05, sigma=0.3))
    df = words(40)
    path = tmp_path / "s.sqlite3"
    RunStore(path).close()
    with locked(path), pytest.raises(StoreError) as caught:
        df.valar.run(TEMPLATE, client=client, store=path, errors="raise", **FAST)
    assert caught.value.path == path and str(path) in str(caught.value)
    assert caught.value.frame["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 40


def test_a_lock_released_before_the_end_loses_nothing_and_warns_nothing(serve, tmp_path):
    emulator, client = serve(latency=Latency(median=0.3, sigma=0.2))
    df = words(100)
    path = tmp_path / "s.sqlite3"
    RunStore(path).close()
    with locked(path) as holder, warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        job = df.valar.submit(TEMPLATE, client=client, store=path, **FAST)
        time.sleep(0.5)
        release(holder)
        out = job.result()
    assert out["output"].tolist() == echo(df) and "store_unsaved" not in out.attrs["valar"]
    assert _states(path) == {"done": 100}
    assert df.valar.run(TEMPLATE, client=client, store=path, **FAST).attrs["valar"]["cached"] == 100
    assert emulator.stats.inferences == 100


def _failing_store(monkeypatch: pytest.MonkeyPatch, pragma: str) -> None:
    """The store the accessor opens gets ``pragma`` on its connection (a full disk, ...)."""
    real = service.open_store

    def open_store(store, options):
        opened = real(store, options)
        if opened is not None:
            pages = opened._db.execute("PRAGMA page_count").fetchone()[0]
            opened._db.execute(pragma.format(pages=pages))
        return opened

    monkeypatch.setattr(service, "open_store", open_store)


@pytest.mark.parametrize(
    "pragma, reason",
    [
        ("PRAGMA max_page_count = {pages}", "disk is full"),  # the file cannot grow
        ("PRAGMA query_only = 1", "read-only"),  # every write is refused
    ],
    ids=["full-disk", "read-only"],
)
def test_a_store_that_cannot_be_written_returns_the_frame(
    serve, tmp_path, monkeypatch, pragma, reason
):
    emulator, client = serve(latency=Latency(median=0.05, sigma=0.3))
    _failing_store(monkeypatch, pragma)
    df = words(200)
    path = tmp_path / "s.sqlite3"
    with pytest.warns(StoreWarning, match=reason) as caught:
        out = df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    assert out["output"].tolist() == echo(df) and emulator.stats.inferences == 200
    assert str(path) in str(caught[0].message)


# -- damaged and foreign files -----------------------------------------------------------------


def _filled_store(path: Path, rows: int = 3000) -> None:
    with RunStore(path) as store:
        store.plan(EP, "m", {f"fp{i}": (f"k{i}", 0) for i in range(rows)})
        done = Outcome("completed", f"{SECRET} " * 5, None, "r", 1, 1, 0)
        store.record(EP, [], [(f"fp{i}", done) for i in range(rows)])
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def damage(kind: str, path: Path) -> None:
    """Make ``path`` a damaged or foreign file of the given kind."""
    if kind == "garbage":
        path.write_bytes(os.urandom(8192))
    elif kind == "text":
        path.write_text(f"id,answer\n1,{SECRET}\n")
    elif kind == "truncated":
        _filled_store(path)
        os.truncate(path, path.stat().st_size // 2)
    elif kind == "foreign":
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE notes (body TEXT)")
            db.execute("INSERT INTO notes VALUES (?)", (SECRET,))
            db.commit()
    else:
        raise AssertionError(kind)


KINDS = ["garbage", "text", "truncated", "foreign"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_or_foreign_store_is_refused_before_any_request(serve, tmp_path, kind):
    emulator, client = serve()
    path = tmp_path / "s.sqlite3"
    damage(kind, path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as caught:
        words(5).valar.run(TEMPLATE, client=client, store=path, **FAST)
    message = str(caught.value)
    assert str(path) in message and "store clear --store" in message
    assert SECRET not in message and caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    assert emulator.stats.total_requests == 0
    assert path.read_bytes() == before  # refused before anything was written to it
    assert not Path(f"{path}-wal").exists()


def test_a_foreign_sqlite_file_is_never_migrated(tmp_path):
    path = tmp_path / "app.db"
    damage("foreign", path)
    with pytest.raises(ConfigError, match="another program"):
        RunStore(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_stored_text_that_cannot_be_read_is_a_store_error_that_quotes_nothing(serve, tmp_path):
    emulator, client = serve()
    path = tmp_path / "s.sqlite3"
    df = words(5)
    df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    with contextlib.closing(sqlite3.connect(path)) as db:  # not UTF-8: the driver quotes it
        db.execute("UPDATE requests SET text = CAST(? AS TEXT)", (SECRET.encode() + b"\xff",))
        db.commit()
    sent = emulator.stats.total_requests
    with pytest.raises(StoreError) as caught:
        df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    assert str(path) in str(caught.value) and SECRET not in str(caught.value)
    assert caught.value.__suppress_context__ and emulator.stats.total_requests == sent
    with RunStore(path) as store, pytest.raises(StoreError) as listed:
        list(store.rows())
    assert SECRET not in str(listed.value)


# -- read-only folder and file modes -----------------------------------------------------------


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr")
def test_a_read_only_folder_is_refused_before_any_request(serve, tmp_path):
    emulator, client = serve()
    folder = tmp_path / "ro"
    folder.mkdir()
    _filled_store(folder / "s.sqlite3", rows=3)
    # Root ignores modes; the immutable flag stops root too (no -wal or -shm can be made).
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here")
    try:
        with pytest.raises(ConfigError) as caught:
            words(5).valar.run(TEMPLATE, client=client, store=folder / "s.sqlite3", **FAST)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert str(folder / "s.sqlite3") in str(caught.value)
    assert emulator.stats.total_requests == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_the_store_is_private_and_only_folders_it_makes_are_chmodded(serve, tmp_path):
    _, client = serve()
    path = tmp_path / "made" / "deeper" / "s.sqlite3"
    words(3).valar.run(TEMPLATE, client=client, store=path, **FAST)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "made") == 0o700 and mode(path.parent) == 0o700
    with RunStore(path) as store:  # open: the -wal and -shm files exist
        store.lookup(EP, ["x"])
        assert {mode(Path(f"{path}{s}")) for s in ("", "-wal", "-shm")} == {0o600}
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    RunStore(shared / "s.sqlite3").close()
    assert mode(shared) == 0o755 and mode(shared / "s.sqlite3") == 0o600


def test_a_stopped_run_on_a_locked_store_returns_at_once_with_its_answers(serve, tmp_path):
    _, client = serve(latency=Latency(median=0.2, sigma=0.3))
    df = words(400)
    path = tmp_path / "s.sqlite3"
    RunStore(path).close()
    with locked(path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job = df.valar.submit(TEMPLATE, client=client, store=path, **FAST, concurrency=20)
        while job.status()["done"] < 40:
            time.sleep(0.01)
        job.cancel()
        out = job.result(timeout=15)  # no 30 s wait for the lock after a stop
    answered = out["output"].notna()
    assert 0 < answered.sum() < 400
    assert out.loc[answered, "output"].tolist() == echo(df[answered.to_numpy()])
    assert any(issubclass(w.category, StoreWarning) for w in caught)
