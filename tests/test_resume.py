"""Durability and cost end to end: free re-runs, resume after SIGKILL, retries, budget, estimate."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas import ConfigError, Price, RunStore
from valar_pandas._core.models import Submitted
from valar_pandas._core.options import validate_options
from valar_pandas._core.plan import plan_requests
from valar_pandas._display.tally import Tally
from valar_pandas._run.cancel import drain
from valar_pandas._run.compose import run_plan
from valar_pandas._run.loop import StopSignal
from valar_pandas._store import Journal
from valar_pandas.emulator import Faults, Latency

CANCEL_ROUTE = "POST /v1/responses/{id}/cancel"


def test_a_finished_call_reruns_with_zero_requests(serve):
    emulator, client = serve()
    df = words(300)
    first = df.valar.run(TEMPLATE, client=client, **FAST)
    sent = emulator.stats.total_requests
    again = df.valar.run(TEMPLATE, client=client, **FAST)
    assert emulator.stats.total_requests == sent
    assert again.attrs["valar"]["http_requests"] == 0 and again.attrs["valar"]["cached"] == 300
    pd.testing.assert_frame_equal(first, again)


def test_failed_rows_are_asked_again_under_a_new_key(serve):
    emulator, client = serve(faults=Faults(failed=0.3), seed=2)
    df = words(60)
    first = df.valar.run(TEMPLATE, client=client, **FAST)
    failed = int(first["output_error"].notna().sum())
    assert failed > 5
    kept = df.valar.run(TEMPLATE, client=client, retry_failed=False, **FAST)
    assert kept.attrs["valar"]["http_requests"] == 0
    assert kept["output_error"].notna().sum() == failed
    emulator.config = emulator.config.__class__(faults=Faults())  # the server recovers
    retried = df.valar.run(TEMPLATE, client=client, **FAST)
    assert retried["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 60 + failed


def test_cache_false_asks_afresh_and_salt_too(serve):
    emulator, client = serve()
    df = words(10)
    df.valar.run(TEMPLATE, client=client, **FAST)
    df.valar.run(TEMPLATE, client=client, cache=False, **FAST)
    assert emulator.stats.inferences == 20
    df.valar.run(TEMPLATE, client=client, salt="b", **FAST)
    df.valar.run(TEMPLATE, client=client, salt="b", **FAST)
    assert emulator.stats.inferences == 30


def test_store_false_keeps_nothing(serve, tmp_path):
    _, client = serve()
    path = tmp_path / "explicit.sqlite3"
    words(3).valar.run(TEMPLATE, client=client, store=path, **FAST)
    assert RunStore(path).info()["rows"] == 3
    words(3).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert not (tmp_path / "default.sqlite3").exists()


def test_answers_from_one_server_never_serve_another(serve):
    _, first = serve()
    other, second = serve()
    words(5).valar.run(TEMPLATE, client=first, **FAST)
    words(5).valar.run(TEMPLATE, client=second, **FAST)
    assert other.stats.inferences == 5


KILLED_RUN = textwrap.dedent(
    """
    import sys, pandas as pd, valar_pandas
    from valar_pandas import ValarClient
    url, key = sys.argv[1], sys.argv[2]
    df = pd.DataFrame({"i": range(400), "word": ["w"] * 400})
    df.valar.run("item {i} {word}", model="zai-org/GLM-5.1-FP8", completion_window="asap",
                 concurrency=50, progress=None, client=ValarClient(api_key=key, base_url=url))
    """
)


def _count(path, state):
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM requests WHERE state = ?", (state,)).fetchone()[
                0
            ]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_run_then_rerun_bills_zero_extra_inferences(serve, tmp_path):
    """A process killed at an arbitrary moment; the same call again returns every row."""
    emulator, client = serve(latency=Latency(median=1.5, sigma=0.6), seed=4)
    path = tmp_path / "killed.sqlite3"
    env = {**os.environ, "VALAR_PANDAS_STORE": str(path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, client.base_url, client.api_key.reveal()],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while _count(path, "done") < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, stderr
    done, submitted, planned = (_count(path, s) for s in ("done", "submitted", "planned"))
    assert done >= 60 and done < 400 and submitted + planned > 0
    billed = emulator.stats.inferences
    posts_before = emulator.stats.requests["POST /v1/responses"]

    df = words(400).assign(word="w")
    out = df.valar.run(TEMPLATE, client=client, store=path, concurrency=50, **FAST)
    assert out["output"].tolist() == [f"Echo: item {i} w" for i in range(400)]
    assert out["output_error"].isna().all()
    assert emulator.stats.inferences == 400 >= billed
    assert set(emulator.stats.inferences_by_body.values()) == {1}
    # finished rows cost nothing; submitted rows were re-attached, not created again
    posts = emulator.stats.requests["POST /v1/responses"] - posts_before
    assert posts <= 400 - done - submitted + 5
    assert out.attrs["valar"]["cached"] == done


INTERRUPTED_RUN = textwrap.dedent(
    """
    import json, signal, sys, warnings, pandas as pd, valar_pandas
    # A parent started in the background may pass SIGINT down as ignored; restore Python's own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from valar_pandas import ValarClient
    from valar_pandas._run.cancel import drain
    from valar_pandas._run.loop import run_sync
    url, key = sys.argv[1], sys.argv[2]
    df = pd.DataFrame({"i": range(1000), "word": ["w"] * 1000})
    print("started", flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = df.valar.run("item {i} {word}", model="zai-org/GLM-5.1-FP8", max_rps=100,
                           completion_window="asap", concurrency=50, progress=None,
                           client=ValarClient(api_key=key, base_url=url))
    run_sync(drain())  # anything sent in the background ends before the process does
    print(json.dumps({
        "answered": int(out["output"].notna().sum()),
        "errors": out["output_error"].dropna().str.split(";").str[0].value_counts().to_dict(),
        "running": int(out["output_error"].str.contains("left to finish").sum()),
        "warning": " ".join(str(w.message) for w in caught),
    }), flush=True)
    """
)


def test_ctrl_c_midway_then_the_same_call_pays_for_no_row_twice(serve, tmp_path):
    """1,000 rows, a real SIGINT midway, the same call again: every row, each billed once."""
    emulator, client = serve(latency=Latency(median=0.8, sigma=0.5, minimum=0.05), seed=6)
    path = tmp_path / "interrupted.sqlite3"
    env = {**os.environ, "VALAR_PANDAS_STORE": str(path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN, client.base_url, client.api_key.reveal()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    # Midway: a few rows answered, most created (at 100 creates a second), some not yet.
    creates = emulator.stats.requests
    while _count(path, "done") < 5 or creates["POST /v1/responses"] < 600:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    first = json.loads(stdout)
    assert first["errors"] == {"interrupted before an answer arrived": 1000 - first["answered"]}
    assert 0 < first["answered"] < 1000 and first["running"] > 0, first
    assert f"{first['running']:,} of them with a response left to finish" in first["warning"]
    assert "pays for no row twice" in first["warning"]
    # The interrupt cancelled nothing on the server, and every state it left is resumable:
    # answered rows are done, created ones keep their ids, the rest their keys.
    assert emulator.stats.requests[CANCEL_ROUTE] == 0
    done, submitted, planned = (_count(path, s) for s in ("done", "submitted", "planned"))
    assert done >= first["answered"] and done + submitted + planned == 1000
    assert submitted >= first["running"] and planned > 0
    billed = emulator.stats.inferences
    posts_before = emulator.stats.requests["POST /v1/responses"]

    df = words(1000).assign(word="w")
    out = df.valar.run(TEMPLATE, client=client, store=path, max_rps=100, concurrency=50, **FAST)
    assert out["output"].tolist() == [f"Echo: item {i} w" for i in range(1000)]
    assert out["output_error"].isna().all()
    assert billed <= emulator.stats.inferences == 1000 == len(emulator.stats.inferences_by_body)
    assert set(emulator.stats.inferences_by_body.values()) == {1}  # no row billed twice
    # Responses left running were collected by id, not created again.
    posts = emulator.stats.requests["POST /v1/responses"] - posts_before
    assert posts <= planned + 5
    assert out.attrs["valar"]["cached"] == done
    print(
        f"interrupted after {first['answered']} answered, {submitted} running, {planned} not "
        f"created; billed {billed} then {emulator.stats.inferences} in all; re-run "
        f"{out.attrs['valar']['http_requests']} HTTP requests, {posts} creates"
    )


INTERRUPTED_SCORE = textwrap.dedent(
    """
    import json, signal, sys, warnings, valar_pandas
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from valar_pandas import ValarClient
    from valar_pandas._cli.reviews import make_reviews
    url, key = sys.argv[1], sys.argv[2]
    print("started", flush=True)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        out = make_reviews(300).valar.score(
            "Sentiment of: {review}", labels=["positive", "negative", "neutral"],
            retries_on_invalid=1, model="zai-org/GLM-5.1-FP8", completion_window="asap",
            max_rps=150, concurrency=50, progress=None,
            client=ValarClient(api_key=key, base_url=url))
    print(json.dumps({"scored": int(out["score"].notna().sum()),
                      "retries": out.attrs["valar"]["invalid_retries"]}), flush=True)
    """
)


def test_ctrl_c_during_score_then_the_same_call_pays_for_no_row_twice(serve, tmp_path):
    """score(): the interrupt skips the re-asks; the same call completes and re-asks once."""
    from valar_pandas._cli.reviews import make_reviews

    emulator, client = serve(
        latency=Latency(median=1.0, sigma=0.4, minimum=0.05),
        faults=Faults(invalid_structured=0.2),
        seed=9,
    )
    path = tmp_path / "score.sqlite3"
    env = {**os.environ, "VALAR_PANDAS_STORE": str(path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_SCORE, client.base_url, client.api_key.reveal()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    while _count(path, "done") < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    first = json.loads(stdout)
    assert 0 < first["scored"] < 300 and first["retries"] == 0, first
    assert emulator.stats.requests[CANCEL_ROUTE] == 0

    out = make_reviews(300).valar.score(
        "Sentiment of: {review}", labels=["positive", "negative", "neutral"],
        retries_on_invalid=1, client=client, store=path, max_rps=150, concurrency=50, **FAST,
    )  # fmt: skip
    retries = out.attrs["valar"]["invalid_retries"]
    assert retries > 0 and (out["score"].notna() | out["score_error"].notna()).all()
    # One inference per distinct request, plus one per re-asked row: none paid twice.
    distinct = make_reviews(300)["review"].nunique()
    assert emulator.stats.inferences == distinct + retries
    assert emulator.stats.requests[CANCEL_ROUTE] == 0


def test_budget_stops_new_rows_and_says_why(serve):
    emulator, client = serve()
    df = words(50)
    price = Price(input=0.0, output=1_000.0)  # $0.016 per request at 16 output tokens
    out = df.valar.run(
        TEMPLATE, client=client, max_output_tokens=16, budget=0.1, price=price, **FAST
    )
    sent = emulator.stats.inferences
    assert 1 <= sent <= 6
    refused = out["output_error"].dropna()
    assert len(refused) == 50 - sent
    assert refused.str.startswith("not sent: the budget of $0.1000 would be exceeded").all()
    assert out.attrs["valar"]["spent_usd"] <= 0.1
    again = df.valar.run(TEMPLATE, client=client, max_output_tokens=16, **FAST)
    assert again["output"].tolist() == echo(df)  # the refused rows go out on a later call


def test_budget_needs_a_price(serve):
    emulator, client = serve()
    with pytest.raises(ConfigError, match="budget= needs a price"):
        words(2).valar.run(
            TEMPLATE, client=client, budget=1.0, model="some/new-model", progress=None
        )
    assert emulator.stats.total_requests == 0


def test_spend_is_reported(serve, capsys):
    _, client = serve()
    out = words(4).valar.run(
        TEMPLATE, client=client, model=MODEL, completion_window="asap", progress="tqdm"
    )
    spent = out.attrs["valar"]["spent_usd"]
    assert spent > 0
    assert "spent=$" in capsys.readouterr().err


def test_requests_is_a_dry_run(serve):
    emulator, _ = serve()
    df = pd.DataFrame({"q": ["a", None, "a"]}, index=["x", "y", "z"])
    plan = df.valar.requests("say {q}", model=MODEL, max_output_tokens=8, on_missing="skip")
    assert emulator.stats.total_requests == 0
    assert list(plan.index) == ["x", "y", "z"]
    assert plan["body"]["x"]["input"] == [{"role": "user", "content": "say a"}]
    assert plan["body"]["x"]["max_output_tokens"] == 8 and plan["body"]["y"] is None
    assert plan["fingerprint"]["x"] == plan["fingerprint"]["z"]
    assert plan["idempotency_key"]["x"].startswith("vp1-")
    assert plan["skipped"]["y"] == "skipped: missing value in 'q'"


def test_estimate_counts_cache_hits_and_prices_the_rest(serve):
    emulator, client = serve()
    df = words(100)
    before = df.valar.estimate(
        TEMPLATE, model=MODEL, max_output_tokens=10, base_url=client.base_url
    )
    assert (before.rows, before.requests, before.cache_hits, before.to_send) == (100, 100, 0, 100)
    assert before.output_tokens == 1000 and before.input_tokens > 0
    standard = Price(0.15, 0.60, 0.03)
    assert before.cost_usd == pytest.approx(standard.cost(before.input_tokens, 1000))
    df.head(40).valar.run(TEMPLATE, client=client, max_output_tokens=10, model=MODEL, progress=None)
    after = df.valar.estimate(TEMPLATE, model=MODEL, max_output_tokens=10, base_url=client.base_url)
    assert (after.cache_hits, after.to_send) == (40, 60)
    assert emulator.stats.requests["POST /v1/responses"] == 40  # estimating sent nothing
    assert "cache hits" in repr(after) and "$" in repr(after)
    unknown = df.valar.estimate(TEMPLATE, model="some/new-model")
    assert unknown.cost_usd is None and unknown.output_assumed_per_request == 256
    priced = df.valar.estimate(
        TEMPLATE, model="some/new-model", price={"input": 1.0, "output": 2.0}
    )
    assert priced.cost_usd == pytest.approx((priced.input_tokens + 2 * 256 * 100) / 1e6)


def _set_state(path, state, response_id=None):
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE requests SET state = ?, response_id = ?, status = NULL, text = NULL",
            (state, response_id),
        )


def test_rows_only_planned_are_resent_under_the_same_key(serve, tmp_path):
    emulator, client = serve()
    path = tmp_path / "s.sqlite3"
    df = words(20)
    df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    _set_state(path, "planned")  # as if the process died after recording, before the POSTs
    out = df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 20  # the server replayed every key
    assert emulator.stats.requests["POST /v1/responses"] == 40


def test_a_stale_response_id_falls_back_to_the_same_key(serve, tmp_path):
    emulator, client = serve()
    path = tmp_path / "s.sqlite3"
    df = words(5)
    df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    _set_state(path, "submitted", "resp_unknown_to_the_server")
    out = df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 5


class _Recording:
    """A display that keeps every event."""

    def __init__(self):
        self.tally = Tally()
        self.events = []

    def __call__(self, event):
        self.tally.add(event)
        self.events.append(event)

    def close(self):
        pass


@pytest.mark.parametrize("how", ["cancel", "stop"])
def test_a_cancelled_run_writes_every_response_id_it_received(serve, tmp_path, monkeypatch, how):
    """Ids wait in memory for a tick; cancelling (arun) or stopping (Ctrl-C, job.cancel())
    the run writes them before it ends, and the stop cancels nothing on the server."""
    # A tick no test outlives: only the run's own unwinding can write the ids.
    monkeypatch.setattr(
        RunStore, "journal", lambda self, ep: Journal(self, ep, tick=3600, limit=10**6)
    )
    emulator, client = serve(latency=Latency(median=60.0, sigma=0.1), seed=1)
    path = tmp_path / "s.sqlite3"
    options = validate_options(**FAST, concurrency=10)
    plan = plan_requests([f"item {i}" for i in range(200)], options)
    display = _Recording()

    stop = StopSignal() if how == "stop" else None

    async def cancel_midway():
        with RunStore(path) as store:
            task = asyncio.ensure_future(
                run_plan(plan, options, client, store, None, display=display, stop=stop)
            )
            while sum(isinstance(e, Submitted) for e in display.events) < 30:
                await asyncio.sleep(0.005)
            if stop is None:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                stop.stop("interrupted")
                report = await task
                assert {o.status for o in report.outcomes} == {"cancelled"}
            await drain()

    asyncio.run(cancel_midway())
    assert emulator.stats.requests[CANCEL_ROUTE] == 0
    ids = {e.fingerprint: e.response_id for e in display.events if isinstance(e, Submitted)}
    assert 30 <= len(ids) < 200
    with RunStore(path) as store:
        found = store.lookup(client.base_url, plan.requests)
    assert {fp: s.response_id for fp, s in found.items() if s.state == "submitted"} == ids
    assert {s.state for fp, s in found.items() if fp not in ids} == {"planned"}
    assert len(found) == 200 and emulator.stats.inferences >= len(ids)
