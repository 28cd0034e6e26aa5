"""``ddf.valar`` on a real ``distributed.LocalCluster`` of two worker processes.

The emulator serves on 127.0.0.1 in the test process; the workers reach it over loopback
sockets. Every test counts what the emulator saw: creates, polls, inferences billed.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import pandas as pd  # noqa: E402
from dask.base import tokenize  # noqa: E402

import valar_pandas.dask  # noqa: E402  (registers ddf.valar)
from valar_pandas import ConfigError  # noqa: E402
from valar_pandas.emulator import Latency  # noqa: E402

Serve = Any

MODEL = "zai-org/GLM-5.1-FP8"
CREATE = "POST /v1/responses"
LABELS = ["positive", "negative", "neutral"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Two worker processes of two threads each; their default store is a private file."""
    store = tmp_path_factory.mktemp("workers") / "store.sqlite3"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
            env={"VALAR_PANDAS_STORE": str(store)},
        ) as local,
        distributed.Client(local) as client,
    ):  # fmt: skip
        yield client


def _reviews(rows: int, distinct: int) -> pd.DataFrame:
    """Reviews whose index repeats its labels in every partition (0..4 again and again)."""
    texts = [f"review number {i % distinct}" for i in range(rows)]
    return pd.DataFrame({"review": texts, "n": range(rows)}, index=[i % 5 for i in range(rows)])


def test_every_row_in_order_with_its_index_and_the_meta_dtypes(
    cluster: object, serve: Serve, tmp_path: Path
) -> None:
    emulator, client = serve()
    frame = _reviews(60, 60)
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=tmp_path / "s")
    assert emulator.stats.total_requests == 0  # lazy: nothing sent before compute
    assert out.npartitions == 4
    got = out.compute()
    expected = ddf.compute().valar.run("R: {review}", model=MODEL, client=client, store=False)
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.index) == list(frame.index)  # duplicate labels across partitions kept
    assert dict(out._meta.dtypes) == dict(got.dtypes)
    summary = valar_pandas.dask.summary(out)
    assert summary["rows"] == 60 and summary["partitions"] == 4 and summary["failed"] == 0
    assert summary["requests"] == 60 and summary["output_tokens"] > 0
    assert summary["http_requests"] == emulator.stats.total_requests - 60  # 60 by pandas


@pytest.mark.parametrize("dedupe", [False, True])
def test_score_meta_is_the_labels_category_and_values_match_pandas(
    cluster: object, serve: Serve, tmp_path: Path, dedupe: bool
) -> None:
    _, client = serve()
    frame = _reviews(24, 24)
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    out = ddf.valar.score(
        "R: {review}", labels=LABELS, model=MODEL, client=client, store=tmp_path / "s",
        details=True, dedupe=dedupe,
    )  # fmt: skip
    assert out._meta["score"].dtype == pd.CategoricalDtype(LABELS)
    got = out.compute()
    assert dict(out._meta.dtypes) == dict(got.dtypes)
    expected = ddf.compute().valar.score(
        "R: {review}", labels=LABELS, model=MODEL, client=client, store=False, details=True
    )
    pd.testing.assert_frame_equal(
        got.drop(columns="score_response_id"), expected.drop(columns="score_response_id")
    )


@pytest.mark.parametrize("dedupe", [False, True])
def test_identical_prompts_in_every_partition_are_billed_once(
    cluster: object, serve: Serve, dedupe: bool
) -> None:
    emulator, client = serve()
    frame = _reviews(80, 5)  # 5 prompts, each in all 4 partitions
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    # store=False: no store shared on the machine, as with a store per worker on a cluster
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=False, dedupe=dedupe)
    got = out.compute()
    assert emulator.stats.inferences == 5
    creates = emulator.stats.requests[CREATE]
    # Without the shuffle each partition creates its own 5 (the server replays 15 of 20);
    # with it, each prompt is one partition's and is created once.
    assert creates == (5 if dedupe else 20)
    assert list(got.index) == list(frame.index) and list(got["n"]) == list(range(80))
    assert list(got["output"]) == [f"Echo: R: review number {i % 5}" for i in range(80)]


def test_a_second_compute_sends_no_create(cluster: object, serve: Serve, tmp_path: Path) -> None:
    emulator, client = serve()
    ddf = dd.from_pandas(_reviews(40, 40), npartitions=4, sort=False)
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=tmp_path / "s")
    first = out.compute()
    assert emulator.stats.requests[CREATE] == 40
    emulator.stats.reset()
    # The same call built again is a new computation (the cluster holds none of its
    # results): every partition runs, and the store on the machine answers every row.
    again = ddf.valar.run("R: {review}", model=MODEL, client=client, store=tmp_path / "s")
    pd.testing.assert_frame_equal(first, again.compute())
    assert emulator.stats.total_requests == 0
    summary = valar_pandas.dask.summary(again)
    assert (summary["cached"], summary["http_requests"], summary["partitions"]) == (40, 0, 4)


def test_a_worker_killed_mid_run_the_compute_finishes_and_nothing_is_billed_twice(
    cluster: distributed.Client, serve: Serve, tmp_path: Path
) -> None:
    emulator, client = serve(latency=Latency(median=1.5, sigma=0.0))
    frame = _reviews(200, 200)
    ddf = dd.from_pandas(frame, npartitions=8, sort=False)
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=tmp_path / "s")
    future = cluster.compute(out)
    deadline = time.monotonic() + 30
    while emulator.stats.requests[CREATE] < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not future.done()
    pids = cluster.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    got = future.result(timeout=120)
    assert victim not in cluster.run(os.getpid).values()  # the worker was lost and replaced
    assert list(got["output"]) == [f"Echo: R: review number {i}" for i in range(200)]
    assert emulator.stats.inferences == 200  # each prompt billed once
    assert max(emulator.stats.inferences_by_body.values()) == 1


def test_one_budget_for_the_whole_computation(cluster: object, serve: Serve) -> None:
    emulator, client = serve()
    frame = _reviews(40, 40)
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    # $1 an output token; an answer is 3, reserved as 3: 35 pays for 11 answers; a budget
    # per partition would pay for 11 in each of the 4
    price = {"input": 0.0, "output": 1_000_000.0}
    out = ddf.valar.run(
        "R: {review}", model=MODEL, client=client, store=False, budget=35.0, price=price,
        max_output_tokens=3,
    )  # fmt: skip
    got = out.compute()
    summary = valar_pandas.dask.summary(out)
    assert summary["spent_usd"] <= 35.0
    sent = emulator.stats.inferences  # answers cut at the cap: sent and billed all the same
    assert 1 <= sent <= 11
    assert got["output_error"].str.startswith("not sent: the budget").sum() == 40 - sent


def test_estimate_and_requests_send_nothing(cluster: object, serve: Serve) -> None:
    emulator, client = serve()
    frame = _reviews(30, 10)
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    estimate = ddf.valar.estimate("R: {review}", model=MODEL, client=client, store=False)
    assert (estimate.rows, estimate.to_send) == (30, 30)  # 10 prompts in each of 3 partitions
    previews = ddf.valar.requests("R: {review}", model=MODEL, n=12)
    expected = frame.valar.requests("R: {review}", model=MODEL, n=12)
    assert list(previews["idempotency_key"]) == list(expected["idempotency_key"])
    assert emulator.stats.total_requests == 0


def test_bad_calls_are_refused_when_built(cluster: object, serve: Serve) -> None:
    _, client = serve()
    ddf = dd.from_pandas(_reviews(10, 10), npartitions=2, sort=False)
    with pytest.raises(ConfigError, match="missing"):
        ddf.valar.run("R: {missing}", model=MODEL, client=client)
    with pytest.raises(ConfigError, match="temprature"):
        ddf.valar.run("R: {review}", model=MODEL, client=client, temprature=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="max_rps"):
        ddf.valar.run("R: {review}", model=MODEL, client=client, max_rps="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="concurrency"):
        ddf.valar.run("R: {review}", model=MODEL, client=client, concurrency=0)
    with pytest.raises(ConfigError, match="labels"):
        ddf.valar.score("R: {review}", model=MODEL, client=client)


def test_limits_are_split_among_the_workers_and_the_key_never_shows(
    cluster: object, serve: Serve
) -> None:
    from valar_pandas._dask.worker import config_for

    _, client = serve()
    ddf = dd.from_pandas(_reviews(10, 10), npartitions=2, sort=False)
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, concurrency=9, max_rps=10)
    work = next(
        a
        for t in out.__dask_graph__().values()
        for a in getattr(t, "args", ())
        if hasattr(a, "config")
    )
    assert (work.config.concurrency, work.config.max_rps) == (4, 5.0)  # 2 workers share them
    key = client.api_key.reveal()
    assert key not in repr(work) and key not in tokenize(work)
    config = config_for(client, 200, None, 1)
    assert pickle.loads(pickle.dumps(config)) == config


def _clients_here(base_url: str) -> tuple[int, int]:
    """In a worker: its clients for ``base_url``, and its library loop threads."""
    import threading

    from valar_pandas._dask.worker import _clients

    loops = [t for t in threading.enumerate() if t.name == "valar-pandas-loop"]
    return sum(c.base_url == base_url for c in _clients.values()), len(loops)


def test_each_worker_keeps_one_client_and_one_loop_for_every_partition(
    cluster: distributed.Client, serve: Serve
) -> None:
    _, client = serve()
    ddf = dd.from_pandas(_reviews(80, 80), npartitions=8, sort=False)
    for _ in range(2):  # two computations, 16 partitions, on the same settings
        out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=False)
        assert out.compute()["output_error"].isna().all()
    assert set(cluster.run(_clients_here, client.base_url).values()) == {(1, 1)}


@pytest.mark.filterwarnings("ignore::valar_pandas.BudgetWarning")
def test_long_answers_draw_more_of_the_budget_on_the_workers(cluster: object, serve: Serve) -> None:
    from valar_pandas.emulator import Faults

    # Every answer bills 1024 output tokens at $1, four times what each partition reserved.
    emulator, client = serve(faults=Faults(usage_tokens=1024))
    ddf = dd.from_pandas(_reviews(40, 40), npartitions=2, sort=False)
    price = {"input": 0.0, "output": 1_000_000.0}
    out = ddf.valar.run(
        "R: {review}", model=MODEL, client=client, store=False, budget=1_000_000.0,
        price=price, concurrency=4, mode="realtime",
    )  # fmt: skip
    got = out.compute()
    assert int(got["output"].notna().sum()) == emulator.stats.inferences == 40
    assert valar_pandas.dask.summary(out)["spent_usd"] == 40 * 1024


def test_a_call_built_before_the_client_is_refused_on_the_workers(
    cluster: object, serve: Serve
) -> None:
    from distributed.client import _current_client, _global_clients

    emulator, client = serve()
    ddf = dd.from_pandas(_reviews(8, 8), npartitions=2, sort=False)
    saved, current = dict(_global_clients), _current_client.set(None)
    _global_clients.clear()  # no distributed client yet when the call is built
    try:
        out = ddf.valar.run(
            "R: {review}", model=MODEL, client=client, store=False, budget=100.0,
            price={"input": 0.0, "output": 0.0}, max_output_tokens=16,
        )  # fmt: skip
    finally:
        _global_clients.update(saved)
        _current_client.reset(current)
    with pytest.raises(ConfigError, match="after creating the distributed Client"):
        out.compute()  # on the cluster's workers
    assert emulator.stats.total_requests == 0
