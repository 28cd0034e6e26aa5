"""mode="batch" and mode="auto" end to end against the emulator over loopback."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest
from helpers import MODEL, TEMPLATE, echo, words

from valar_pandas import APIError, BatchFallbackWarning, BatchUnavailable, ConfigError, Price
from valar_pandas._core import batchplan as _batchplan
from valar_pandas._core.batchplan import BatchLimits, BatchPoll
from valar_pandas.emulator import Faults, Latency

QUICK = Latency(median=0.02, sigma=0.3)
BATCH = {"model": MODEL, "mode": "batch", "progress": None}


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """Batches are polled from 0.1 s on, so a test waits for its items, not for the schedule."""
    monkeypatch.setattr(_batchplan, "BATCH_POLL", BatchPoll(first=0.1, growth=1.5, cap=0.5))


def limits(monkeypatch, **kw):
    monkeypatch.setattr(_batchplan, "LIMITS", BatchLimits(**kw))


def test_3000_rows_in_batch_mode_are_correct_aligned_and_cheap_in_requests(serve):
    emulator, client = serve(batch_api=True, latency=QUICK, seed=5)
    df = words(3000)
    df["word"] = np.where(df["i"] % 10 == 0, "same", df["word"])
    df.loc[df["i"] % 10 == 0, "i"] = -1  # 300 identical rows: one request
    df.index = pd.Index([f"row-{n}" for n in np.random.default_rng(1).permutation(3000)])
    out = df.valar.run(TEMPLATE, client=client, label="three-thousand", **BATCH)
    assert out.index.equals(df.index) and out["output"].tolist() == echo(df)
    assert out["output_error"].isna().all()
    distinct = 2700 + 1
    assert emulator.stats.inferences == distinct and emulator.stats.batch_creates == 1
    assert emulator.stats.requests["POST /v1/batches"] == 1
    assert emulator.stats.requests["GET /v1/batches/{id}/{custom_id}"] == distinct
    assert emulator.stats.requests.get("POST /v1/responses", 0) == 0
    http = out.attrs["valar"]["http_requests"]
    assert http == emulator.stats.total_requests and http / len(df) <= 1.05
    (stored,) = emulator.store.batches.values()
    assert stored.label == "three-thousand"
    assert all(_batchplan.is_custom_id(cid) for cid in stored.items)


def test_a_frame_over_the_item_limit_is_split(serve, monkeypatch):
    limits(monkeypatch, max_requests=400)
    emulator, client = serve(batch_api=True, latency=QUICK, batch_max_requests=400)
    df = words(1000)
    out = df.valar.run(TEMPLATE, client=client, **BATCH)
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    sizes = sorted(len(b.items) for b in emulator.store.batches.values())
    assert sizes == [200, 400, 400] and emulator.stats.inferences == 1000


def test_an_over_size_payload_is_split_by_measured_bytes(serve, monkeypatch):
    limits(monkeypatch, max_bytes=40_000)
    emulator, client = serve(batch_api=True, latency=QUICK, batch_max_bytes=40_000)
    df = pd.DataFrame({"text": [f"{i} " + "lorem ipsum " * 20 for i in range(600)]})
    out = df.valar.run("Echo {text}", client=client, **BATCH)
    assert out["output_error"].isna().all() and emulator.stats.inferences == 600
    assert len(emulator.store.batches) >= 4  # ~300 bytes an item, so ~130 items a batch
    assert emulator.stats.requests["POST /v1/batches"] == len(emulator.store.batches)


def test_an_invalid_label_is_an_error_before_any_request(serve):
    emulator, client = serve(batch_api=True)
    for label in ("not valid!", "x" * 129):
        with pytest.raises(ConfigError, match="label"):
            words(3).valar.run(TEMPLATE, client=client, label=label, **BATCH)
    with pytest.raises(ConfigError, match="standard window only"):
        words(3).valar.run(TEMPLATE, client=client, completion_window="asap", **BATCH)
    assert emulator.stats.total_requests == 0


def test_an_absent_batch_api_is_a_clear_error_in_batch_mode(serve):
    emulator, client = serve(batch_api=False)
    with pytest.raises(BatchUnavailable, match="mode='auto'") as info:
        words(5).valar.run(TEMPLATE, client=client, **BATCH)
    assert isinstance(info.value, APIError) and info.value.status_code == 404
    assert "mode='background'" in str(info.value)
    assert emulator.stats.requests["POST /v1/batches"] == 1 and emulator.stats.inferences == 0


def test_auto_falls_back_to_background_with_a_warning_when_the_batch_api_is_absent(
    serve, monkeypatch
):
    monkeypatch.setattr(_batchplan, "AUTO_MIN_REQUESTS", 50)
    emulator, client = serve(batch_api=False, latency=QUICK)
    df = words(60)
    with pytest.warns(BatchFallbackWarning, match="not available on this server"):
        out = df.valar.run(TEMPLATE, client=client, model=MODEL, mode="auto", progress=None)
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    assert emulator.stats.requests["POST /v1/batches"] == 1
    assert emulator.stats.requests["POST /v1/responses"] == 60
    again = df.valar.run(TEMPLATE, client=client, model=MODEL, mode="auto", progress=None)
    assert again.attrs["valar"]["cached"] == 60  # the store holds the fallback's answers


def test_auto_picks_batch_for_large_standard_runs_and_background_otherwise(serve, monkeypatch):
    monkeypatch.setattr(_batchplan, "AUTO_MIN_REQUESTS", 50)
    emulator, client = serve(batch_api=True, latency=QUICK)
    auto = {"model": MODEL, "mode": "auto", "progress": None}
    asap = words(60).assign(word="fast")
    asap.valar.run(TEMPLATE, client=client, completion_window="asap", **auto)
    assert emulator.stats.requests.get("POST /v1/batches", 0) == 0
    large = words(50)
    out = large.valar.run(TEMPLATE, client=client, **auto)
    assert out["output"].tolist() == echo(large)
    assert emulator.stats.requests["POST /v1/batches"] == 1
    assert emulator.stats.requests["POST /v1/responses"] == 60
    small = words(60)  # 50 rows answered from the store: 10 to send, under the threshold
    assert small.valar.run(TEMPLATE, client=client, **auto)["output"].tolist() == echo(small)
    assert emulator.stats.requests["POST /v1/batches"] == 1
    assert emulator.stats.requests["POST /v1/responses"] == 70


def test_failed_items_are_row_errors_and_are_asked_again_later(serve):
    emulator, client = serve(batch_api=True, latency=QUICK, faults=Faults(failed=0.2), seed=7)
    df = words(200)
    out = df.valar.run(TEMPLATE, client=client, **BATCH)
    failed = out["output_error"].notna()
    assert 20 <= failed.sum() <= 70
    assert out.loc[failed, "output_error"].str.startswith("failed: ").all()
    assert out.loc[~failed, "output"].tolist() == [
        e for e, f in zip(echo(df), failed, strict=True) if not f
    ]
    # the server recovers
    emulator.config = emulator.config.__class__(latency=QUICK, batch_api=True)
    again = df.valar.run(TEMPLATE, client=client, **BATCH)
    assert again["output"].tolist() == echo(df)
    assert emulator.stats.batch_creates == 2
    (_, retry) = emulator.store.batches.values()
    assert len(retry.items) == failed.sum()


def test_transient_faults_and_a_dropped_create_lose_nothing_and_bill_nothing_twice(serve):
    faults = Faults(rate_429=0.03, rate_502=0.03, retry_after=0.02, drop_after_create=1.0)
    emulator, client = serve(batch_api=True, latency=QUICK, faults=faults, seed=3)
    df = words(200)
    out = df.valar.run(TEMPLATE, client=client, **BATCH)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.batch_creates == 1 and emulator.stats.inferences == 200
    assert set(emulator.stats.inferences_by_body.values()) == {1}
    assert emulator.stats.faults["drop"] == 1


def test_a_finished_batch_run_reruns_free_and_serves_background_mode(serve):
    emulator, client = serve(batch_api=True, latency=QUICK)
    df = words(100)
    first = df.valar.run(TEMPLATE, client=client, **BATCH)
    sent = emulator.stats.total_requests
    again = df.valar.run(TEMPLATE, client=client, **BATCH)
    background = df.valar.run(TEMPLATE, client=client, model=MODEL, progress=None)
    assert emulator.stats.total_requests == sent
    assert again.attrs["valar"]["http_requests"] == 0 and again.attrs["valar"]["cached"] == 100
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, background)


def test_the_budget_holds_batch_items_back(serve):
    emulator, client = serve(batch_api=True, latency=QUICK)
    price = Price(input=0.0, output=1_000.0)  # $0.016 per request at 16 output tokens
    out = words(50).valar.run(
        TEMPLATE, client=client, max_output_tokens=16, budget=0.1, price=price, **BATCH
    )
    refused = out["output_error"].dropna()
    assert emulator.stats.inferences == 50 - len(refused) and 1 <= emulator.stats.inferences <= 6
    assert refused.str.startswith("not sent: the budget of $0.1000 would be exceeded").all()


def test_items_past_the_deadline_are_errors_and_a_rerun_reattaches(serve, monkeypatch, tmp_path):
    monkeypatch.setattr(_batchplan, "BATCH_POLL", BatchPoll(first=0.1, cap=0.2, deadline=0.5))
    emulator, client = serve(batch_api=True, latency=Latency(median=2.0, sigma=0.0))
    path = tmp_path / "s.sqlite3"
    df = words(5)
    out = df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    assert out["output_error"].str.startswith("no final status after").all()
    assert out["output_error"].str.contains("'RUNNING'").all()
    time.sleep(2.0)
    again = df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    assert again["output"].tolist() == echo(df)
    assert emulator.stats.batch_creates == 1 and emulator.stats.inferences == 5


def test_progress_and_totals_are_those_of_background_mode(serve, capsys):
    _, client = serve(batch_api=True, latency=QUICK, faults=Faults(failed=0.3), seed=2)
    out = words(40).valar.run(TEMPLATE, client=client, **{**BATCH, "progress": "tqdm"})
    totals = out.attrs["valar"]
    assert totals["failed"] == out["output_error"].notna().sum() > 0
    assert totals["input_tokens"] > 0 and totals["output_tokens"] > 0 and totals["spent_usd"] > 0
    bar = capsys.readouterr().err
    assert "40/40" in bar and f"failed={totals['failed']}" in bar and "spent=$" in bar


def test_a_rejected_first_batch_stops_the_run(serve):
    emulator, client = serve(batch_api=True)
    with pytest.raises(APIError, match="rejected the batch"):
        words(3).valar.run(TEMPLATE, client=client, **{**BATCH, "model": "no/such-model"})
    assert emulator.stats.inferences == 0


def _store_rows(path, sql, *args):
    with sqlite3.connect(path, timeout=5) as db:
        return db.execute(sql, args).fetchall()


def test_a_batch_created_but_never_acknowledged_is_replayed_not_duplicated(serve, tmp_path):
    emulator, client = serve(batch_api=True, latency=QUICK)
    path = tmp_path / "s.sqlite3"
    df = words(50)
    df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    # as if the process died after recording the batch key, before the create's answer
    _store_rows(path, "UPDATE batches SET batch_id = NULL")
    _store_rows(path, "UPDATE requests SET state = 'planned', status = NULL, text = NULL")
    out = df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.requests["POST /v1/batches"] == 2
    assert emulator.stats.batch_creates == 1 and emulator.stats.inferences == 50


def test_a_batch_the_server_forgot_is_reported_and_sent_again_next_time(serve, tmp_path):
    emulator, client = serve(batch_api=True, latency=Latency(median=30.0, sigma=0.0))
    path = tmp_path / "s.sqlite3"
    df = words(20)

    def forget():  # the server loses the batch (and its key) once the run has created it
        deadline = time.monotonic() + 10
        while not emulator.store.batches and time.monotonic() < deadline:
            time.sleep(0.01)
        emulator.store.batches.clear()

    thread = threading.Thread(target=forget)
    thread.start()
    out = df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    thread.join()
    assert out["output_error"].str.contains("lost track of batch").all()
    assert out["output_error"].str.contains("a re-run sends these rows again").all()
    assert _store_rows(path, "SELECT COUNT(*) FROM batches") == [(0,)]
    emulator.config = emulator.config.__class__(latency=QUICK, batch_api=True)
    again = df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    assert again["output"].tolist() == echo(df) and emulator.stats.batch_creates == 2


def test_a_reattached_batch_the_server_no_longer_knows_is_released(serve, tmp_path):
    emulator, client = serve(batch_api=True, latency=QUICK)
    path = tmp_path / "s.sqlite3"
    df = words(10)
    df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    _store_rows(path, "UPDATE requests SET state = 'submitted', status = NULL, text = NULL")
    emulator.store.batches.clear()  # the server forgot the batch, not its key
    out = df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    assert out["output_error"].str.contains("a re-run sends these rows again").all()
    assert emulator.stats.requests["POST /v1/batches"] == 1
    again = df.valar.run(TEMPLATE, client=client, store=path, **BATCH)
    assert again["output"].tolist() == echo(df) and emulator.stats.batch_creates == 2


def test_background_mode_reattaches_rows_a_batch_run_left_running(serve, tmp_path):
    emulator, client = serve(batch_api=True, latency=QUICK)
    path = tmp_path / "s.sqlite3"
    df = words(30)
    df.head(20).valar.run(TEMPLATE, client=client, store=path, **BATCH)
    _store_rows(path, "UPDATE requests SET state = 'submitted', status = NULL, text = NULL")
    out = df.valar.run(TEMPLATE, client=client, store=path, model=MODEL, progress=None)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.requests["POST /v1/batches"] == 1  # the 20 came from the batch
    assert emulator.stats.requests["POST /v1/responses"] == 10  # the 10 new rows did not
    assert emulator.stats.inferences == 30


KILLED_RUN = textwrap.dedent(
    """
    import sys, pandas as pd, valar_pandas
    from valar_pandas import ValarClient
    from valar_pandas._core import batchplan as _batchplan
    _batchplan.BATCH_POLL = _batchplan.BatchPoll(first=0.1, growth=1.5, cap=0.5)
    url, key = sys.argv[1], sys.argv[2]
    df = pd.DataFrame({"i": range(400), "word": ["w"] * 400})
    df.valar.run("item {i} {word}", model="zai-org/GLM-5.1-FP8", mode="batch",
                 concurrency=20, progress=None, client=ValarClient(api_key=key, base_url=url))
    """
)


def test_sigkill_after_the_create_then_rerun_reattaches_without_a_second_create(serve, tmp_path):
    emulator, client = serve(batch_api=True, latency=Latency(median=0.8, sigma=0.5), seed=4)
    path = tmp_path / "killed.sqlite3"
    env = {**os.environ, "VALAR_PANDAS_STORE": str(path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, client.base_url, client.api_key.reveal()],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline:
        try:
            done = _store_rows(path, "SELECT COUNT(*) FROM requests WHERE state = 'done'")[0][0]
        except sqlite3.OperationalError:
            done = 0
        if done >= 40:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, stderr
    ((batch_id,),) = _store_rows(path, "SELECT batch_id FROM batches")
    assert batch_id is not None and 40 <= done < 400
    df = words(400).assign(word="w")
    out = df.valar.run(TEMPLATE, client=client, store=path, concurrency=20, **BATCH)
    assert out["output"].tolist() == [f"Echo: item {i} w" for i in range(400)]
    assert emulator.stats.requests["POST /v1/batches"] == 1  # re-attached, not created again
    assert emulator.stats.batch_creates == 1 and emulator.stats.inferences == 400
    assert out.attrs["valar"]["cached"] >= done
