"""df.valar.run end to end against the emulator over loopback: correctness and idempotency."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pandas as pd
import pytest
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas._core.options import validate_options
from valar_pandas._core.plan import plan_requests
from valar_pandas.emulator import Faults, Latency


@pytest.mark.parametrize("vocabulary", ["pending", "queued"])
@pytest.mark.parametrize("create_status", [202, 200])
def test_both_status_vocabularies_and_create_codes(serve, vocabulary, create_status):
    emulator, client = serve(vocabulary=vocabulary, background_create_status=create_status)
    df = words(40)
    out = df.valar.run(TEMPLATE, into="answer", client=client, **FAST)
    assert out["answer"].tolist() == echo(df)
    assert out["answer_error"].isna().all()
    assert emulator.stats.inferences == 40


def test_result_is_a_new_frame_and_input_is_untouched(serve):
    _, client = serve()
    df = words(5)
    before = df.copy()
    out = df.valar.run(TEMPLATE, client=client, **FAST)
    pd.testing.assert_frame_equal(df, before)
    assert list(out.columns) == ["i", "word", "output", "output_error"]
    assert out is not df


def test_faults_lose_no_row_and_bill_no_inference_twice(serve):
    """3% 500, 3% 429, 1% 503 and 2% connections dropped after create, on 1,000 rows."""
    faults = Faults(
        rate_500=0.03, rate_429=0.03, retry_after=0.05, rate_503=0.01, drop_after_create=0.02
    )
    emulator, client = serve(faults=faults, seed=11)
    df = words(1000)
    out = df.valar.run(TEMPLATE, client=client, **FAST)
    assert out["output"].tolist() == echo(df)
    assert out["output_error"].isna().all()
    assert emulator.stats.inferences == 1000
    assert set(emulator.stats.inferences_by_body.values()) == {1}
    kinds = emulator.stats.faults
    assert kinds["500"] > 0 and kinds["429"] > 0 and kinds["503"] > 0 and kinds["drop"] > 0


def test_failed_responses_land_in_the_error_column(serve):
    emulator, client = serve(faults=Faults(failed=0.10), seed=3)
    df = words(300)
    out = df.valar.run(TEMPLATE, client=client, **FAST)
    options = validate_options(**FAST)
    prompts = [TEMPLATE.format(i=i, word=w) for i, w in zip(df["i"], df["word"], strict=True)]
    plan = plan_requests(prompts, options)
    expected = [emulator.expected_outcome(dict(plan.requests[fp].body)) for fp in plan.rows]
    failed = [status == "failed" for status, _ in expected]
    assert 15 <= sum(failed) <= 50
    assert out["output_error"].notna().tolist() == failed
    assert all(e.startswith("failed: ") for e in out.loc[failed, "output_error"])
    good = [not f for f in failed]
    assert out.loc[good, "output"].tolist() == [e for e, f in zip(echo(df), good, strict=True) if f]


def test_identical_rows_are_sent_once_and_fill_every_row(serve):
    emulator, client = serve()
    df = pd.DataFrame({"q": ["same", "other", "same", "same"]})
    out = df.valar.run("say {q}", client=client, **FAST)
    assert out["output"].tolist() == ["Echo: say same", "Echo: say other"] + ["Echo: say same"] * 2
    assert emulator.stats.requests["POST /v1/responses"] == 2
    assert emulator.stats.inferences == 2


def test_rerun_replays_instead_of_paying_again(serve):
    emulator, client = serve()
    df = words(20)
    first = df.valar.run(TEMPLATE, client=client, **FAST)
    second = df.valar.run(TEMPLATE, client=client, **FAST)
    pd.testing.assert_frame_equal(first, second)
    assert emulator.stats.inferences == 20
    salted = df.valar.run(TEMPLATE, client=client, salt="fresh", **FAST)
    assert salted["output"].tolist() == first["output"].tolist()
    assert emulator.stats.inferences == 40


@pytest.mark.parametrize(
    "index",
    [
        pd.Index(["c", "a", "b", "d"]),
        pd.Index([3, 3, 1, 0]),
        pd.MultiIndex.from_tuples([("x", 2), ("x", 1), ("y", 2), ("y", 1)]),
        pd.Index([10, 20, 30, 40]),
    ],
    ids=["string", "duplicate", "multi", "integer"],
)
def test_index_variants_merge_back(serve, index):
    _, client = serve()
    df = words(4).set_axis(index)
    out = df.valar.run(TEMPLATE, client=client, **FAST)
    assert out.index.equals(df.index)
    assert out["output"].tolist() == echo(df)


def test_realtime_mode_sends_no_polls(serve):
    emulator, client = serve()
    df = words(10)
    out = df.valar.run(TEMPLATE, client=client, mode="realtime", model=MODEL, progress=None)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.requests["POST /v1/responses"] == 10
    assert sum(n for k, n in emulator.stats.requests.items() if k.startswith("GET")) == 0


def test_details_columns(serve):
    _, client = serve()
    out = words(3).valar.run(TEMPLATE, client=client, details=True, **FAST)
    assert out["output_status"].tolist() == ["completed"] * 3
    assert out["output_response_id"].str.startswith("resp_").all()
    assert (out["output_input_tokens"] > 0).all() and (out["output_output_tokens"] > 0).all()
    assert str(out["output_output_tokens"].dtype) == "Int64"


def test_incomplete_answer_keeps_partial_text_and_says_why(serve):
    _, client = serve()
    df = pd.DataFrame({"q": ["one two three four five six"]})
    out = df.valar.run("say {q}", client=client, max_output_tokens=2, details=True, **FAST)
    assert out["output_error"].tolist() == [
        "incomplete: max_output_tokens: the answer was cut at the output cap; "
        "raise max_output_tokens (now 2)"
    ]
    assert out["output"].isna().all()  # a cut answer is not an answer
    assert out["output_partial"].tolist() == ["Echo: say"]


def test_missing_values_render_empty_or_skip(serve):
    _, client = serve()
    df = pd.DataFrame({"q": ["a", None, float("nan"), "d"]})
    empty = df.valar.run("say {q}", client=client, **FAST)
    assert empty["output"].tolist() == ["Echo: say a", "Echo: say", "Echo: say", "Echo: say d"]
    skipped = df.valar.run("say {q}", client=client, on_missing="skip", **FAST)
    assert skipped["output"].tolist()[::3] == ["Echo: say a", "Echo: say d"]
    assert skipped["output"].isna().tolist() == [False, True, True, False]
    assert skipped["output_error"].tolist()[1] == "skipped: missing value in 'q'"


def test_callable_template_with_messages_and_skips(serve):
    _, client = serve()
    df = pd.DataFrame({"q": ["a", "skip", "c"]})

    def prompt(row):
        if row.q == "skip":
            return None
        return [
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": f"say {row.q}"},
        ]

    out = df.valar.run(prompt, client=client, **FAST)
    assert out["output"].tolist()[::2] == ["Echo: say a", "Echo: say c"]
    assert out["output_error"].tolist()[1] == "skipped: the template callable returned None"


def test_instructions_travel_as_a_system_message(serve):
    _, client = serve()
    out = words(2).valar.run(TEMPLATE, client=client, instructions="Answer briefly.", **FAST)
    assert out["output"].tolist() == echo(words(2))


def test_run_works_inside_a_running_event_loop(serve):
    """As in Jupyter, where the cell already runs inside an event loop."""
    _, client = serve()
    df = words(5)

    async def cell():
        return df.valar.run(TEMPLATE, client=client, **FAST)

    out = asyncio.run(cell())
    assert out["output"].tolist() == echo(df)


def test_arun_gives_the_same_frame_as_run(serve):
    _, client = serve()
    df = words(8)
    blocking = df.valar.run(TEMPLATE, client=client, **FAST)
    awaited = asyncio.run(df.valar.arun(TEMPLATE, client=client, **FAST))
    pd.testing.assert_frame_equal(blocking, awaited)


def test_client_from_environment(serve, monkeypatch):
    emulator, client = serve()
    monkeypatch.setenv("VALAR_API_KEY", emulator.config.api_key)
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    out = words(2).valar.run(TEMPLATE, **FAST)
    assert out["output"].tolist() == echo(words(2))


def test_progress_bar_draws_to_stderr(serve, capsys):
    _, client = serve()
    words(5).valar.run(
        TEMPLATE, client=client, model=MODEL, completion_window="asap", progress="tqdm"
    )
    err = capsys.readouterr().err
    assert "5/5" in err and "valar" in err
    assert client.api_key.reveal() not in err


def test_max_rps_reaches_the_transport(serve, monkeypatch):
    from valar_pandas._run import compose as _run
    from valar_pandas._transport.http import Http

    _, client = serve()
    budgets = []

    class Recording(Http):
        def __init__(self, client, connections, max_rps=None):
            budgets.append(max_rps)
            super().__init__(client, connections, max_rps)

    monkeypatch.setattr(_run, "Http", Recording)
    out = words(3).valar.run(TEMPLATE, client=client, max_rps=7, **FAST)
    words(3).valar.score(TEMPLATE, client=client, labels=["a", "b"], max_rps=None, **FAST)
    words(3).valar.run(TEMPLATE, client=client, salt="again", **FAST)
    assert out["output"].tolist() == echo(words(3))
    assert budgets == [7.0, None, 2000.0]


def test_cancelling_arun_cancels_nothing_on_the_server_and_the_same_call_completes(serve, tmp_path):
    """A caller's timeout cancels arun's task; the same call collects what was left running."""
    emulator, client = serve(latency=Latency(median=1.0, sigma=0.5, minimum=0.05), seed=8)
    df = words(300)
    ask = dict(client=client, store=tmp_path / "s.sqlite3", **FAST)

    async def cut_short() -> None:
        task = asyncio.ensure_future(df.valar.arun(TEMPLATE, **ask))
        while emulator.stats.inferences < 150:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cut_short())
    # Creates already on the wire when the task was cancelled still reach the server: let
    # them land before counting, or they would be taken for the second call's creates.
    settled, deadline = -1, time.monotonic() + 10
    while settled != emulator.stats.total_requests and time.monotonic() < deadline:
        settled = emulator.stats.total_requests
        time.sleep(0.3)
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall())
    assert states.get("submitted", 0) > 0 and sum(states.values()) == 300
    billed = emulator.stats.inferences
    posts = emulator.stats.requests["POST /v1/responses"]
    out = asyncio.run(df.valar.arun(TEMPLATE, **ask))
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.requests["POST /v1/responses/{id}/cancel"] == 0
    assert billed <= emulator.stats.inferences == 300 == len(emulator.stats.inferences_by_body)
    # Responses whose ids were recorded were collected by id, not created again.
    assert emulator.stats.requests["POST /v1/responses"] - posts <= states.get("planned", 0)
