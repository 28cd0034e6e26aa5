"""The call service's additions: a background score, score previews, client= for estimate,
and arun planning off the caller's loop."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from helpers import FAST

import valar_pandas._accessor as accessor
from valar_pandas import ConfigError, Job, RunStore, ValarClient
from valar_pandas._cli.reviews import make_reviews
from valar_pandas.emulator import Faults

SENTIMENT = "Classify the sentiment of this product review.\n\nReview: {review}"
LABELS = ["positive", "negative", "neutral"]
ASKED = {"model": FAST["model"], "completion_window": "asap"}  # what previews take of FAST


def test_submit_score_returns_the_frame_score_would(serve, tmp_path):
    _, client = serve(faults=Faults(invalid_structured=0.3), seed=1)
    df = make_reviews(40)
    store = tmp_path / "store.sqlite3"
    asked = dict(labels=LABELS, into="s", retries_on_invalid=2, client=client, store=store)
    job = df.valar.submit_score(SENTIMENT, **asked, **FAST)
    assert isinstance(job, Job)
    out = job.result(timeout=60)
    assert isinstance(out["s"].dtype, pd.CategoricalDtype)
    assert list(out["s"].cat.categories) == LABELS
    assert out.attrs["valar"]["invalid_retries"] > 0  # the re-asks ran in the job too
    assert job.status()["state"] == "done"
    # The same call, blocking: every round is answered from the store, with the same values.
    again = df.valar.score(SENTIMENT, **asked, **FAST)
    assert again.attrs["valar"]["http_requests"] == 0
    assert again.attrs["valar"]["invalid_retries"] == out.attrs["valar"]["invalid_retries"]
    pd.testing.assert_frame_equal(again, out)


def test_submit_score_refuses_a_call_without_a_shape():
    with pytest.raises(ConfigError, match="labels"):
        make_reviews(3).valar.submit_score(SENTIMENT, **FAST)


def test_requests_and_estimate_preview_what_score_sends(serve, tmp_path):
    _, client = serve()
    df = make_reviews(30)
    store = tmp_path / "store.sqlite3"
    shape = dict(labels=LABELS, reasons=True)
    preview = df.valar.requests(SENTIMENT, **shape, **ASKED)
    body = preview["body"].iloc[0]
    assert body["text"]["format"]["type"] == "json_schema"
    assert "reason" in body["text"]["format"]["schema"]["properties"]
    plain = df.valar.requests(SENTIMENT, **ASKED)
    assert "text" not in plain["body"].iloc[0]
    before = df.valar.estimate(SENTIMENT, **shape, **ASKED, client=client, store=store)
    assert before.cache_hits == 0 and before.to_send == before.requests
    df.valar.score(SENTIMENT, **shape, **FAST, client=client, store=store)
    with RunStore(store) as opened:
        known = opened.lookup(client.base_url, set(preview["fingerprint"]))
    assert set(known) == set(preview["fingerprint"])  # exactly the requests score sent
    after = df.valar.estimate(SENTIMENT, **shape, **ASKED, client=client, store=store)
    assert after.cache_hits == after.requests and after.to_send == 0


def test_estimate_reads_the_cache_of_the_clients_endpoint(serve, tmp_path):
    _, client = serve()
    df = make_reviews(10)
    store = tmp_path / "store.sqlite3"
    df.valar.run(SENTIMENT, **FAST, client=client, store=store)
    ours = df.valar.estimate(SENTIMENT, **ASKED, client=client, store=store)
    assert ours.cache_hits == ours.requests > 0
    by_url = df.valar.estimate(SENTIMENT, **ASKED, base_url=client.base_url, store=store)
    assert by_url.cache_hits == ours.cache_hits
    elsewhere = ValarClient(api_key="sk-other", base_url="http://127.0.0.1:9/v1")
    assert df.valar.estimate(SENTIMENT, **ASKED, client=elsewhere, store=store).cache_hits == 0
    with pytest.raises(ConfigError, match="not both"):
        df.valar.estimate(SENTIMENT, **ASKED, client=client, base_url=client.base_url)


class Planned(Exception):
    """Raised where the run would start sending: planning is over."""


def test_arun_plans_off_the_callers_loop(monkeypatch):
    async def planned(*args: object, **kwargs: object) -> object:
        raise Planned

    monkeypatch.setattr(accessor, "run_plan", planned)
    df = pd.DataFrame({"text": [f"row number {i}" for i in range(60_000)]})
    client = ValarClient(api_key="sk-test", base_url="http://127.0.0.1:9/v1")

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        with pytest.raises(Planned):
            await df.valar.arun("{text}", **FAST, client=client, store=False)
        task.cancel()
        return ticks

    # Planning 60,000 rows takes most of a second; on the caller's loop the ticker would
    # not tick at all until it ended.
    assert asyncio.run(main()) >= 10
