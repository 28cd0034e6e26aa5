"""df.valar.submit(): background jobs, their status, results and cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pandas as pd
import pytest
from helpers import FAST, TEMPLATE, echo, words

from valar_pandas import ConfigError
from valar_pandas._run.cancel import classify, drain
from valar_pandas._run.loop import StopSignal, get_loop, run_sync
from valar_pandas.emulator import Latency

CANCEL_ROUTE = "POST /v1/responses/{id}/cancel"


def wait_until(predicate, timeout: float = 30.0) -> None:
    """Poll a condition (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_a_job_returns_at_once_and_its_result_is_the_frame_run_returns(serve):
    _, client = serve(latency=Latency(median=0.3, sigma=0.3))
    df = words(30)
    job = df.valar.submit(TEMPLATE, client=client, **FAST)
    assert not job.done() and job.status()["state"] == "running"
    out = job.result(timeout=60)
    assert job.done() and job.result() is out
    assert out["output"].tolist() == echo(df)
    again = df.valar.run(TEMPLATE, client=client, **FAST)  # served from the store
    pd.testing.assert_frame_equal(out, again)
    status = job.status()
    assert status["state"] == "done" and status["done"] == status["total"] == 30
    assert "done" in repr(job) and "30/30 rows" in repr(job)
    assert "valar job" in job._repr_html_() and "done: 30 rows" in job._repr_html_()


def test_the_job_keeps_the_frame_as_it_was_when_submitted(serve):
    _, client = serve(latency=Latency(median=0.3, sigma=0.1))
    df = words(10)
    job = df.valar.submit(TEMPLATE, client=client, **FAST)
    df.loc[0, "word"] = "changed"
    df["extra"] = 1
    out = job.result(timeout=60)
    assert "extra" not in out.columns and out.loc[0, "word"] == "apple"
    assert out["output"].tolist() == echo(words(10))


def test_several_jobs_run_at_once(serve):
    _, client = serve(latency=Latency(median=0.5, sigma=0.1))
    frames = [words(60).iloc[20 * i : 20 * (i + 1)] for i in range(3)]  # rows of their own
    jobs = [
        f.valar.submit(TEMPLATE, client=client, into=f"c{i}", **FAST) for i, f in enumerate(frames)
    ]
    wait_until(lambda: all(j.status()["submitted"] == 20 for j in jobs))
    assert not any(j.done() for j in jobs)  # all three in flight together
    for i, job in enumerate(jobs):
        assert job.result(timeout=60)[f"c{i}"].tolist() == echo(frames[i])


def test_result_with_a_timeout_says_how_far_the_job_got(serve):
    _, client = serve(latency=Latency(median=30.0, sigma=0.1))
    job = words(5).valar.submit(TEMPLATE, client=client, **FAST)
    with pytest.raises(TimeoutError, match=r"still running after 0.2 s \(0/5 rows\)"):
        job.result(timeout=0.2)
    assert job.cancel() and not job.cancel()
    assert job.result(timeout=30)["output"].isna().all()


def test_cancel_keeps_answers_and_leaves_running_responses_for_the_same_call(serve):
    """A plain cancel stops creating and polling, cancels nothing on the server, and the
    same call afterwards collects what was left running: every row, each billed once."""
    emulator, client = serve(latency=Latency(median=1.5, sigma=0.6, minimum=0.05), seed=3)
    df = words(40)
    job = df.valar.submit(TEMPLATE, client=client, **FAST)
    wait_until(lambda: job.status()["done"] >= 5)
    assert job.cancel()
    out = job.result(timeout=30)
    assert job.status()["state"] == "cancelled" and not job.cancel()
    answered = out["output"].notna()
    assert out["output"][answered].tolist() == [
        e for e, a in zip(echo(df), answered, strict=True) if a
    ]
    left = out.loc[~answered, "output_error"]
    assert len(left) > 0 and left.str.startswith("cancelled before an answer arrived").all()
    running = left.str.contains("is left to finish on the server: run the same call again")
    assert running.sum() > 0
    assert out.attrs["valar"]["cancelled"] == len(left) == job.status()["cancelled"]
    run_sync(drain())
    assert emulator.stats.requests[CANCEL_ROUTE] == 0
    assert not any(r.cancelled for r in emulator.store.records.values())
    posts = emulator.stats.requests["POST /v1/responses"]
    again = df.valar.run(TEMPLATE, client=client, **FAST)
    assert again["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 40 == len(emulator.stats.inferences_by_body)
    # Rows left running were collected by id; only rows never created were created now.
    assert emulator.stats.requests["POST /v1/responses"] - posts <= len(left) - running.sum()


def test_cancel_on_the_server_when_asked_and_the_same_call_pays_those_rows_again(serve):
    emulator, client = serve(
        latency=Latency(median=2.0, sigma=2.0, minimum=0.05), seed=3, cancel_supported=True
    )
    df = words(40)
    job = df.valar.submit(TEMPLATE, client=client, **FAST)
    wait_until(lambda: job.status()["done"] >= 5 and job.status()["submitted"] == 40)
    assert job.cancel(server=True)
    out = job.result(timeout=30)
    assert job.status()["state"] == "cancelled" and not job.cancel(server=True)
    left = out.loc[out["output"].isna(), "output_error"]
    assert len(left) > 0 and left.str.startswith("cancelled before an answer arrived").all()
    assert left.str.contains("asked to stop on the server").all()
    run_sync(drain())
    assert emulator.stats.requests[CANCEL_ROUTE] == len(left)
    # The server's verdicts are in the store: the same call asks only the cancelled rows.
    before = emulator.stats.inferences
    killed = sum(r.cancelled for r in emulator.store.records.values())
    assert killed > 0
    emulator.config = emulator.config.__class__(latency=Latency(median=0.05), seed=3)
    again = df.valar.run(TEMPLATE, client=client, **FAST)
    assert again["output"].tolist() == echo(df)
    assert emulator.stats.inferences - before == killed


def test_a_server_without_a_cancel_route_is_asked_only_a_few_times(serve):
    emulator, client = serve(latency=Latency(median=60.0, sigma=0.1), cancel_supported=False)
    job = words(60).valar.submit(TEMPLATE, client=client, **FAST)
    wait_until(lambda: job.status()["submitted"] == 60)
    job.cancel(server=True)
    out = job.result(timeout=30)
    assert out["output_error"].str.startswith("cancelled").all()
    run_sync(drain())
    assert 3 <= emulator.stats.requests[CANCEL_ROUTE] < 60


def test_bad_calls_fail_at_submit_before_any_request(serve):
    emulator, client = serve()
    with pytest.raises(ConfigError, match="nope"):
        words(3).valar.submit("{nope}", client=client, **FAST)
    with pytest.raises(ConfigError, match="not a Jupyter kernel"):
        words(3).valar.submit(TEMPLATE, client=client, **{**FAST, "progress": "widget"})
    assert emulator.stats.total_requests == 0


@pytest.mark.parametrize(
    ("status", "verdict", "result"),
    [
        (200, "cancelled", "cancelled"),
        (200, "completed", "finished"),
        (200, "failed", "finished"),
        (200, "in_progress", "failed"),
        (200, None, "failed"),
        (404, None, "unsupported"),
        (405, None, "unsupported"),
        (501, None, "unsupported"),
        (409, None, "failed"),
        (500, None, "failed"),
        (None, None, "failed"),
    ],
)
def test_cancel_answers_are_classified(status, verdict, result):
    assert classify(status, verdict) == result


def test_a_stop_signal_wakes_a_waiter_from_another_thread():
    stop = StopSignal()

    async def waits() -> str:
        await stop.wait()
        return stop.reason

    loop = get_loop()
    future = asyncio.run_coroutine_threadsafe(waits(), loop)
    threading.Timer(0.05, stop.stop, args=("interrupted",)).start()
    assert future.result(timeout=10) == "interrupted"
    assert stop.stopped and not stop.stop("again") and stop.reason == "interrupted"
    assert run_sync(waits()) == "interrupted"  # already stopped: returns at once
