"""The SQLite run store: records, namespacing, schema versions, hygiene, two writers."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time

import pytest

from valar_pandas import ConfigError, RunStore
from valar_pandas._core.models import Outcome
from valar_pandas._store import SCHEMA_VERSION, StoreFault, default_store_path

EP = "http://127.0.0.1:1/v1"
DONE = Outcome("completed", "yes", None, "resp_1", 10, 1, 0)


def test_lifecycle_planned_submitted_done(tmp_path):
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", {"fp1": ("vp1-fp1", 0), "fp2": ("vp1-fp2", 0)})
        assert {k: v.state for k, v in store.lookup(EP, ["fp1", "fp2", "nope"]).items()} == {
            "fp1": "planned",
            "fp2": "planned",
        }
        store.submitted(EP, "fp1", "resp_1")
        store.finished(EP, "fp1", DONE)
        store.submitted(EP, "fp2", "resp_2")
        found = store.lookup(EP, ["fp1", "fp2"])
    assert found["fp1"].state == "done" and found["fp1"].outcome == DONE
    assert (found["fp2"].state, found["fp2"].response_id, found["fp2"].outcome) == (
        "submitted",
        "resp_2",
        None,
    )


def test_rows_are_namespaced_by_endpoint(tmp_path):
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", {"fp": ("k", 0)})
        store.finished(EP, "fp", DONE)
        assert store.lookup("http://other/v1", ["fp"]) == {}
        assert "fp" in store.lookup(EP, ["fp"])


def test_replanning_keeps_a_submitted_id_only_under_the_same_key(tmp_path):
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb", 0)})
        store.submitted(EP, "a", "resp_a")
        store.submitted(EP, "b", "resp_b")
        store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb-1", 1)})
        found = store.lookup(EP, ["a", "b"])
    assert (found["a"].state, found["a"].response_id) == ("submitted", "resp_a")
    assert (found["b"].state, found["b"].response_id, found["b"].attempt) == ("planned", None, 1)
    assert found["b"].idempotency_key == "kb-1"


def test_lookup_handles_more_than_one_chunk(tmp_path):
    keys = {f"fp{i}": (f"k{i}", 0) for i in range(1234)}
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", keys)
        assert len(store.lookup(EP, keys)) == 1234


def test_info_rows_and_clear(tmp_path):
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb", 0)})
        store.finished(EP, "a", DONE)
        info = store.info()
        assert info["rows"] == 2 and info["by_state"] == {"done": 1, "planned": 1}
        assert info["by_status"] == {"completed": 1} and info["input_tokens"] == 10
        assert info["schema_version"] == SCHEMA_VERSION
        assert [r["fingerprint"] for r in store.rows(limit=1)] == ["a"]
        assert store.clear(older_than=3600) == 0
        assert store.clear() == 2 and store.info()["rows"] == 0


def test_clear_older_than_keeps_recent_rows(tmp_path):
    path = tmp_path / "s.sqlite3"
    with RunStore(path) as store:
        store.plan(EP, "m", {"old": ("k1", 0), "new": ("k2", 0)})
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE requests SET updated_at = ? WHERE fingerprint = 'old'",
            (time.time() - 10 * 86400,),
        )
    with RunStore(path) as store:
        assert store.clear(older_than=86400) == 1
        assert list(store.lookup(EP, ["old", "new"])) == ["new"]


def test_newer_schema_is_refused_and_older_is_migrated(tmp_path):
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer valar_pandas"):
        RunStore(newer)
    older = tmp_path / "older.sqlite3"
    sqlite3.connect(older).close()  # an empty version-0 file: no store tables yet
    with RunStore(older) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.plan(EP, "m", {"a": ("k", 0)})
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE unrelated (x)")  # another program's file: never migrated
    with pytest.raises(ConfigError, match="another program"):
        RunStore(foreign)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot use"):
        RunStore(junk)


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.setenv("VALAR_PANDAS_STORE", str(tmp_path / "x.sqlite3"))
    assert default_store_path() == tmp_path / "x.sqlite3"
    monkeypatch.delenv("VALAR_PANDAS_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "valar-pandas" / "store.sqlite3"


def _writer(path: str, prefix: str, n: int) -> None:
    store = RunStore(path)
    for i in range(n):
        fp = f"{prefix}{i}"
        store.plan(EP, "m", {fp: (f"k{fp}", 0)})
        store.submitted(EP, fp, f"resp_{fp}")
        store.finished(EP, fp, Outcome("completed", fp, None, f"resp_{fp}", 1, 1, 0))
    store.close()


def test_two_processes_writing_one_store_do_not_corrupt_it(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    RunStore(path).close()
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_writer, args=(path, p, 300)) for p in ("x", "y")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    with RunStore(path) as store:
        found = store.lookup(EP, [f"{p}{i}" for p in "xy" for i in range(300)])
        assert len(found) == 600 and all(s.outcome and s.outcome.text for s in found.values())
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_version_1_store_is_migrated_and_its_rows_survive(tmp_path):
    from valar_pandas._store.schema import _MIGRATIONS

    path = tmp_path / "v1.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in _MIGRATIONS[1].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO requests (endpoint, fingerprint, idempotency_key, attempt, state, model,"
            " response_id, status, text, input_tokens, output_tokens, cached_tokens, created_at,"
            " updated_at) VALUES (?, 'done1', 'k1', 0, 'done', 'm', 'resp_1', 'completed', 'yes',"
            " 10, 1, 0, 1.0, 2.0)",
            (EP,),
        )
        db.execute(
            "INSERT INTO requests (endpoint, fingerprint, idempotency_key, attempt, state,"
            " response_id, created_at, updated_at) VALUES (?, 'sub1', 'k2', 0, 'submitted',"
            " 'resp_2', 1.0, 2.0)",
            (EP,),
        )
    with RunStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 5
        found = store.lookup(EP, ["done1", "sub1"])
        assert found["done1"].outcome == DONE
        assert (found["sub1"].state, found["sub1"].response_id) == ("submitted", "resp_2")
        assert (found["sub1"].batch_id, found["sub1"].custom_id) == (None, None)
        assert store.info()["batches"] == 0
        store.batch_planned(EP, "bk", None, [("sub1", "r000001")])  # the new table works
    with RunStore(path) as store:  # and a second open is a no-op
        assert (
            store.schema_version == SCHEMA_VERSION and store.lookup(EP, ["sub1"])["sub1"].custom_id
        )


def _indexes(path):
    with sqlite3.connect(path) as db:
        return {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }


def test_a_version_2_store_loses_its_updated_at_index_and_keeps_its_rows(tmp_path):
    from valar_pandas._store.schema import _MIGRATIONS

    path = tmp_path / "v2.sqlite3"
    with sqlite3.connect(path) as db:
        for version in (1, 2):
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.executemany(
            "INSERT INTO requests (endpoint, fingerprint, idempotency_key, state, response_id,"
            " created_at, updated_at) VALUES (?, ?, ?, 'submitted', ?, 1.0, ?)",
            [(EP, "old", "k1", "resp_1", 1.0), (EP, "new", "k2", "resp_2", time.time())],
        )
    assert "requests_updated" in _indexes(path)
    with RunStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 5
        assert [r["fingerprint"] for r in store.rows()] == ["new", "old"]
        assert store.lookup(EP, ["old"])["old"].response_id == "resp_1"
        assert store.clear(older_than=86400) == 1
        assert list(store.lookup(EP, ["old", "new"])) == ["new"]
    assert _indexes(path) >= {"requests_batch"} and "requests_updated" not in _indexes(path)
    fresh = tmp_path / "fresh.sqlite3"
    RunStore(fresh).close()
    assert _indexes(fresh) == _indexes(path)


def test_batch_lifecycle_key_before_the_create_id_after(tmp_path):
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb", 0), "c": ("kc", 0)})
        store.batch_planned(EP, "bk", "lbl", [("a", "r000000"), ("b", "r000001")])
        found = store.lookup(EP, ["a", "b", "c"])
        assert (found["a"].custom_id, found["a"].batch_id) == ("r000000", None)
        assert found["c"].custom_id is None
        store.batch_created(EP, "bk", "batch_1")
        for fp in ("a", "b"):
            store.submitted(EP, fp, None)
        store.finished(EP, "a", DONE)
        found = store.lookup(EP, ["a", "b"])
        assert (found["b"].state, found["b"].batch_id, found["b"].custom_id) == (
            "submitted",
            "batch_1",
            "r000001",
        )
        # re-planning under the same key keeps the batch; a new key (a re-ask) drops it
        store.plan(EP, "m", {"b": ("kb", 0)})
        assert store.lookup(EP, ["b"])["b"].batch_id == "batch_1"
        store.plan(EP, "m", {"b": ("kb-1", 1)})
        assert store.lookup(EP, ["b"])["b"].batch_id is None
        assert store.info()["batches"] == 1


def test_a_lost_batch_releases_its_unfinished_rows(tmp_path):
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb", 0)})
        store.batch_planned(EP, "bk", None, [("a", "r000000"), ("b", "r000001")])
        store.batch_created(EP, "bk", "batch_1")
        store.submitted(EP, "a", None)
        store.submitted(EP, "b", None)
        store.finished(EP, "a", DONE)
        store.batch_lost(EP, "bk")
        found = store.lookup(EP, ["a", "b"])
        assert found["a"].outcome == DONE and found["a"].idempotency_key == "ka"
        assert (found["b"].state, found["b"].batch_id, found["b"].custom_id) == (
            "planned",
            None,
            None,
        )
        assert (found["b"].idempotency_key, found["b"].attempt) == ("vp1-b-1", 1)
        assert store.info()["batches"] == 0
        store.batch_planned(EP, "bk2", None, [("b", "r000001")])
        store.batch_lost(EP, "bk2", rekey=False)  # never created: keep the key
        assert store.lookup(EP, ["b"])["b"].idempotency_key == "vp1-b-1"


def test_clear_drops_batches_with_no_rows_left(tmp_path):
    with RunStore(tmp_path / "s.sqlite3") as store:
        store.plan(EP, "m", {"a": ("ka", 0)})
        store.batch_planned(EP, "bk", None, [("a", "r000000")])
        assert store.info()["batches"] == 1
        store.clear()
        assert store.info()["batches"] == 0


def _states(path):
    with sqlite3.connect(path) as db:  # a second connection sees only what was committed
        return dict(db.execute("SELECT fingerprint, state FROM requests"))


def test_journal_holds_records_until_its_tick_then_writes_them_together(tmp_path):
    path = tmp_path / "s.sqlite3"

    async def run():
        with RunStore(path) as store:
            store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb", 0)})
            journal = store.journal(EP, tick=0.01)
            journal.submitted("a", "resp_a")
            journal.finished("a", DONE)
            journal.submitted("b", "resp_b")
            waiting = (_states(path), journal.waiting)
            await asyncio.sleep(0.2)  # the journal's timer (due first) fires while we sleep
            written = (_states(path), journal.waiting)
            journal.close()
            return waiting, written

    waiting, written = asyncio.run(run())
    assert waiting == ({"a": "planned", "b": "planned"}, 3)
    assert written == ({"a": "done", "b": "submitted"}, 0)
    with RunStore(path) as store:
        found = store.lookup(EP, ["a", "b"])
    assert found["a"].outcome == DONE and found["b"].response_id == "resp_b"


@pytest.mark.parametrize(
    ("limit", "records", "waiting"),
    [(3, 2, 2), (3, 3, 0), (3, 4, 1), (1, 1, 0)],
)
def test_journal_writes_at_once_when_its_limit_is_reached(tmp_path, limit, records, waiting):
    path = tmp_path / "s.sqlite3"

    async def run():
        with RunStore(path) as store:
            store.plan(EP, "m", {f"fp{i}": (f"k{i}", 0) for i in range(records)})
            journal = store.journal(EP, tick=3600.0, limit=limit)
            for i in range(records):
                journal.submitted(f"fp{i}", f"resp_{i}")
            seen = (journal.waiting, sorted(_states(path).values()).count("submitted"))
            journal.close()
            return seen

    assert asyncio.run(run()) == (waiting, records - waiting)


def test_journal_without_an_event_loop_writes_every_record_at_once(tmp_path):
    path = tmp_path / "s.sqlite3"
    with RunStore(path) as store:
        store.plan(EP, "m", {"a": ("ka", 0)})
        journal = store.journal(EP)
        journal.submitted("a", "resp_a")
        assert journal.waiting == 0 and _states(path) == {"a": "submitted"}


def test_journal_close_writes_what_waits_and_later_records_at_once(tmp_path):
    path = tmp_path / "s.sqlite3"

    async def run():
        with RunStore(path) as store:
            store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb", 0)})
            journal = store.journal(EP, tick=3600.0)
            journal.submitted("a", "resp_a")
            journal.close()
            closed = _states(path)
            journal.finished("b", DONE)
            return closed, _states(path)

    closed, later = asyncio.run(run())
    assert closed == {"a": "submitted", "b": "planned"}
    assert later == {"a": "submitted", "b": "done"}


def test_journal_writes_batch_records_in_order_with_what_waits(tmp_path):
    path = tmp_path / "s.sqlite3"

    async def run():
        with RunStore(path) as store:
            store.plan(EP, "m", {"a": ("ka", 0), "b": ("kb", 0)})
            journal = store.journal(EP, tick=3600.0)
            journal.batch_planned("bk", None, [("a", "r0"), ("b", "r1")])
            journal.batch_created("bk", "batch_1")
            journal.submitted("a", None)
            journal.submitted("b", None)
            journal.finished("a", DONE)
            journal.batch_lost("bk")  # after the rows were submitted: b goes back to planned
            found = store.lookup(EP, ["a", "b"])
            journal.close()
            return found

    found = asyncio.run(run())
    assert found["a"].outcome == DONE
    assert (found["b"].state, found["b"].batch_id, found["b"].attempt) == ("planned", None, 1)


def test_a_failed_tick_keeps_the_records_and_a_later_tick_writes_them(tmp_path):
    path = tmp_path / "s.sqlite3"

    async def run():
        store = RunStore(path)
        store.plan(EP, "m", {"a": ("ka", 0)})
        journal = store.journal(EP, tick=0.01)
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file
        journal.submitted("a", "resp_a")
        await asyncio.sleep(0.2)  # the tick fails while we sleep, and raises nothing
        journal.finished("a", DONE)  # nor does the next record
        assert journal.waiting == 2 and journal.fault is not None
        blocker.execute("ROLLBACK")
        blocker.close()
        await asyncio.sleep(1.5)  # the writer has gone: a retry writes the records kept
        assert journal.waiting == 0 and journal.fault is None
        found = store.lookup(EP, ["a"])["a"]
        store.close()
        return found

    assert asyncio.run(run()).outcome == DONE


def _take(*fingerprints):
    """A claim's decision: take those of ``fingerprints`` the store does not know."""
    return lambda known: {fp: ("k-" + fp, 0) for fp in fingerprints if fp not in known}


def test_a_claim_gives_each_row_one_owner_across_connections(tmp_path):
    from valar_pandas._store import new_owner

    path = tmp_path / "s.sqlite3"
    with RunStore(path) as one, RunStore(path) as two:
        first, second = new_owner(), new_owner()
        assert one.claim(EP, first, "m", ["a", "b"], _take("a", "b")) == {}
        seen = two.claim(EP, second, "m", ["a", "b", "c"], _take("a", "b", "c"))
        assert isinstance(seen, dict) and {fp: s.holder for fp, s in seen.items()} == {
            "a": first,
            "b": first,
        }
        assert one.lookup(EP, ["a"], me=first)["a"].holder is None  # its own rows
        assert one.lookup(EP, ["c"], me=first)["c"].holder == second
        assert one.release(EP, first, ["a", "b"])
        assert two.lookup(EP, ["a", "b"], me=second)["a"].holder is None


def test_a_claim_while_another_process_writes_fails_at_once_and_writes_nothing(tmp_path):
    path = tmp_path / "s.sqlite3"
    with RunStore(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        fault = store.claim(EP, "h:1:x", "m", ["a"], _take("a"))
        assert isinstance(fault, StoreFault) and fault.kind == "locked"
        assert time.monotonic() - started < store.lock_timeout  # never the busy wait
        other.execute("ROLLBACK")
        other.close()
        assert store.lookup(EP, ["a"]) == {}


def test_owners_are_judged_by_heartbeat_and_by_their_process(tmp_path):
    import os
    import socket

    path = tmp_path / "s.sqlite3"
    with RunStore(path) as store:
        host = socket.gethostname()
        dead = subprocess_pid()
        owners = {
            "live": f"{host}:{os.getpid()}:a",  # this process, fresh heartbeat
            "killed": f"{host}:{dead}:b",  # a process of this machine that is gone
            "stale": "elsewhere:1:c",  # another machine, silent for an hour
            "remote": "elsewhere:1:d",  # another machine, fresh heartbeat
        }
        beats = {"live": time.time(), "killed": time.time(), "stale": time.time() - 3600}
        beats["remote"] = time.time()
        for fp, owner in owners.items():
            store.claim(EP, owner, "m", [fp], lambda known, fp=fp: {fp: ("k-" + fp, 0)})
        with sqlite3.connect(path) as db:
            for fp, owner in owners.items():
                db.execute("UPDATE owners SET beat = ? WHERE owner = ?", (beats[fp], owner))
        found = store.lookup(EP, list(owners), me="someone:else:z")
        held = {fp for fp, stored in found.items() if stored.holder is not None}
        assert held == {"live", "remote"}


def subprocess_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_a_version_3_store_gains_claims_and_keeps_its_rows(tmp_path):
    from valar_pandas._store.schema import _MIGRATIONS

    path = tmp_path / "v3.sqlite3"
    with sqlite3.connect(path) as db:
        for version in (1, 2, 3):
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("PRAGMA user_version = 3")
        db.execute(
            "INSERT INTO requests (endpoint, fingerprint, idempotency_key, state, response_id,"
            " created_at, updated_at) VALUES (?, 'old', 'k1', 'submitted', 'resp_1', 1.0, 1.0)",
            (EP,),
        )
    with RunStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 5
        old = store.lookup(EP, ["old"])["old"]
        assert old.response_id == "resp_1" and old.holder is None
        assert store.claim(EP, "h:1:x", "m", ["new"], lambda known: {"new": ("k2", 0)}) == {}
