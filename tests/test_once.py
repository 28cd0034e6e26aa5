"""One owner per row: windows, jobs and re-runs never pay for one body twice.

Every test counts the emulator's inferences per body: a body the server ran twice is a body
paid twice, whatever the output says.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time

import pandas as pd
import pytest
from helpers import MODEL, TEMPLATE, echo, words

from valar_pandas._cli.main import main
from valar_pandas._core import batchplan as _batchplan
from valar_pandas._core.batchplan import BatchPoll
from valar_pandas.emulator import Faults, Latency

QUICK = Latency(median=0.05, sigma=0.3)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """Batches are polled from 0.1 s on, so a test waits for its items, not for the schedule."""
    monkeypatch.setattr(_batchplan, "BATCH_POLL", BatchPoll(first=0.1, growth=1.5, cap=0.5))


def _command_env(serve, monkeypatch, **config):
    emulator, client = serve(**config)
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    return emulator, client


def shared(rows: int, bodies: int) -> pd.DataFrame:
    """``rows`` rows asking ``bodies`` distinct bodies, each body in every window."""
    df = words(rows)
    df["i"] = df["i"] % bodies
    df["word"] = [["apple", "pear"][i % 2] for i in df["i"]]
    return df


def _store_rows(path, sql, *args):
    with sqlite3.connect(path, timeout=5) as db:
        return db.execute(sql, args).fetchall()


@pytest.mark.parametrize("mode", ["batch", "auto"])
def test_windows_running_at_once_pay_each_shared_body_once(serve, monkeypatch, tmp_path, mode):
    monkeypatch.setattr(_batchplan, "AUTO_MIN_REQUESTS", 10)  # auto picks batch, as at scale
    emulator, _ = _command_env(
        serve, monkeypatch, latency=Latency(median=0.3, sigma=0.3), batch_api=True
    )
    df = shared(900, 120)  # 9 windows of 100 rows, 3 at once, every body in every window
    df.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL, "--template",
            TEMPLATE, "--mode", mode, "--window-rows", "100", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert pd.read_parquet(out)["output"].tolist() == echo(df)
    assert emulator.stats.requests["POST /v1/batches"] >= 1  # the Batch API was used
    assert emulator.stats.inferences == 120
    assert max(emulator.stats.inferences_by_body.values()) == 1


def test_background_windows_create_each_shared_body_once(serve, monkeypatch, tmp_path):
    emulator, _ = _command_env(serve, monkeypatch, latency=Latency(median=0.3, sigma=0.3))
    df = shared(600, 80)
    df.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL, "--template",
            TEMPLATE, "--window-rows", "100", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert pd.read_parquet(out)["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 80
    assert emulator.stats.requests["POST /v1/responses"] == 80  # each body asked once


def test_two_jobs_on_one_store_in_batch_mode_pay_each_body_once(serve, tmp_path):
    # The first job's create reaches the server but its answer is lost, so while it backs
    # off to replay it, its rows are in a batch with a key and no id: the second job starts.
    emulator, client = serve(latency=Latency(median=0.3, sigma=0.3), batch_api=True,
                             faults=Faults(drop_after_create=1.0))  # fmt: skip
    path = tmp_path / "s.sqlite3"
    df = words(50)
    options = {"client": client, "store": path, "model": MODEL, "mode": "batch", "progress": None}
    first = df.valar.submit(TEMPLATE, **options)
    deadline = time.monotonic() + 30
    while emulator.stats.batch_creates == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    flipped = df.iloc[::-1]  # the same rows in another order: other batch chunks
    second = flipped.valar.submit(TEMPLATE, into="again", **options)
    assert first.result(timeout=60)["output"].tolist() == echo(df)
    assert second.result(timeout=60)["again"].tolist() == echo(flipped)
    assert emulator.stats.inferences == 50 and emulator.stats.batch_creates == 1
    assert max(emulator.stats.inferences_by_body.values()) == 1
    assert _store_rows(path, "SELECT COUNT(*) FROM requests WHERE owner IS NOT NULL") == [(0,)]


def _interrupted_create(emulator, client, path, df):
    """Stop a batch run while its create is on the wire: the server made the batch, the
    connection dropped before the answer, and the stop lands before any retry (from the
    drop on, the server answers nothing)."""
    drop = emulator.drop_connection

    def drop_then_hang(request):
        dropped = drop(request)
        if dropped:
            emulator.config = dataclasses.replace(emulator.config, faults=Faults(hang=True))
        return dropped

    emulator.drop_connection = drop_then_hang
    job = df.valar.submit(TEMPLATE, client=client, store=path, model=MODEL, mode="batch",
                          progress=None)  # fmt: skip
    deadline = time.monotonic() + 30
    while emulator.stats.batch_creates == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    job.cancel()
    job.result(timeout=30)
    rows = _store_rows(path, "SELECT batch_key IS NOT NULL, batch_id FROM requests r LEFT JOIN"
                             " batches b USING (endpoint, batch_key)")  # fmt: skip
    assert rows and all(planned and batch_id is None for planned, batch_id in rows)
    assert emulator.stats.batch_creates == 1 and emulator.stats.inferences == len(df)
    emulator.config = emulator.config.__class__(latency=QUICK, batch_api=True)  # fault gone


def test_a_rerun_with_one_more_row_reattaches_the_batch_an_interrupted_create_made(serve, tmp_path):
    emulator, client = serve(latency=QUICK, faults=Faults(drop_after_create=1.0), batch_api=True)
    path = tmp_path / "s.sqlite3"
    _interrupted_create(emulator, client, path, words(50))
    df = words(51)  # not byte-identical: one more row, so other chunks
    out = df.valar.run(TEMPLATE, client=client, store=path, model=MODEL, mode="batch",
                       progress=None)  # fmt: skip
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 51  # the 50 the server holds, and the new one
    assert max(emulator.stats.inferences_by_body.values()) == 1
    assert emulator.stats.batch_creates == 2  # the replayed one is not a new batch


def test_a_background_rerun_reattaches_the_batch_an_interrupted_create_made(serve, tmp_path):
    emulator, client = serve(latency=QUICK, faults=Faults(drop_after_create=1.0), batch_api=True)
    path = tmp_path / "s.sqlite3"
    df = words(50)
    _interrupted_create(emulator, client, path, df)
    out = df.valar.run(TEMPLATE, client=client, store=path, model=MODEL, progress=None)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 50 and emulator.stats.batch_creates == 1
    assert emulator.stats.requests.get("POST /v1/responses", 0) == 0


def test_retry_failed_is_once_per_command_and_can_be_turned_off(serve, monkeypatch, tmp_path):
    emulator, _ = _command_env(serve, monkeypatch, latency=QUICK, faults=Faults(failed=0.3), seed=7)
    df = shared(1000, 100)  # the same 100 bodies in each of 10 windows
    df.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL, "--template",
            TEMPLATE, "--completion-window", "asap", "--window-rows", "100", "--quiet"]  # fmt: skip
    assert main(argv) == 1
    got = pd.read_parquet(out)
    assert emulator.stats.inferences == 100  # as many as the accessor sends for the frame
    failed = set(got.loc[got["output_error"].notna(), "i"])
    assert 0 < len(failed) < 100
    # every row of a body has its one verdict, in every window
    assert got.groupby("i")["output_error"].apply(lambda s: s.isna().nunique() == 1).all()
    assert main([*argv, "--no-retry-failed"]) == 1  # failures stand: nothing is asked
    assert emulator.stats.inferences == 100
    emulator.config = emulator.config.__class__(latency=QUICK)  # no more failures
    assert main([*argv, "--retry-failed"]) == 0  # each failed body re-asked once
    assert emulator.stats.inferences == 100 + len(failed)
    assert max(emulator.stats.inferences_by_body.values()) == 2


def test_a_row_held_by_a_run_that_died_is_taken_over(serve, tmp_path):
    emulator, client = serve(latency=QUICK)
    path = tmp_path / "s.sqlite3"
    df = words(20)
    df.head(10).valar.run(TEMPLATE, client=client, store=path, model=MODEL, progress=None)
    # a run of a process that no longer exists holds every row, unanswered
    with sqlite3.connect(path) as db:
        db.execute("UPDATE requests SET state = 'planned', status = NULL, text = NULL,"
                   " owner = 'gone-host:1:dead'")  # fmt: skip
        db.execute("INSERT INTO owners VALUES ('gone-host:1:dead', ?)", (time.time() - 3600,))
    out = df.valar.run(TEMPLATE, client=client, store=path, model=MODEL, progress=None)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 20  # the first 10 replayed under their keys


def test_a_row_held_by_a_live_run_is_awaited_then_taken_over_when_it_lets_go(serve, tmp_path):
    emulator, client = serve(latency=QUICK)
    path = tmp_path / "s.sqlite3"
    df = words(10)
    df.valar.run(TEMPLATE, client=client, store=path, model=MODEL, progress=None)
    with sqlite3.connect(path) as db:  # another live process holds row 0, unanswered
        (fp,) = db.execute("SELECT fingerprint FROM requests LIMIT 1").fetchone()
        db.execute("UPDATE requests SET state = 'planned', status = NULL, text = NULL,"
                   " owner = 'elsewhere:1:live' WHERE fingerprint = ?", (fp,))  # fmt: skip
        db.execute("INSERT INTO owners VALUES ('elsewhere:1:live', ?)", (time.time(),))

    def let_go():  # the other run ends without a verdict and releases its claim
        time.sleep(0.5)
        with sqlite3.connect(path, timeout=5) as db:
            db.execute("UPDATE requests SET owner = NULL WHERE owner = 'elsewhere:1:live'")
            db.execute("DELETE FROM owners")

    thread = threading.Thread(target=let_go)
    thread.start()
    started = time.monotonic()
    out = df.valar.run(TEMPLATE, client=client, store=path, model=MODEL, progress=None)
    thread.join()
    assert time.monotonic() - started >= 0.5  # it waited for the owner
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 10  # re-sent under its key: replayed


def test_two_processes_on_one_store_in_batch_mode_pay_each_body_once(serve, tmp_path):
    import os
    import subprocess
    import sys

    emulator, client = serve(latency=Latency(median=0.5, sigma=0.3), batch_api=True)
    df = shared(400, 150)
    df.to_parquet(tmp_path / "in.parquet")
    env = {
        **os.environ,
        "VALAR_API_KEY": client.api_key.reveal(),
        "VALAR_BASE_URL": client.base_url,
        "VALAR_PANDAS_STORE": str(tmp_path / "s.sqlite3"),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "valar_pandas", "run", str(tmp_path / "in.parquet"),
             str(tmp_path / f"out{rows}.parquet"), "--model", MODEL, "--template", TEMPLATE,
             "--mode", "batch", "--window-rows", str(rows), "--quiet"],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        for rows in (100, 70)  # other windows, so other batch chunks and keys
    ]  # fmt: skip
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    for rows in (100, 70):
        assert pd.read_parquet(tmp_path / f"out{rows}.parquet")["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 150
    assert max(emulator.stats.inferences_by_body.values()) == 1
