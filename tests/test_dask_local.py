"""``ddf.valar`` without a cluster (the threaded scheduler), and what the pandas path loads."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

dd = pytest.importorskip("dask.dataframe")

import dask  # noqa: E402
import pandas as pd  # noqa: E402

import valar_pandas.dask  # noqa: E402  (registers ddf.valar)

Serve = Any
MODEL = "zai-org/GLM-5.1-FP8"


def test_importing_the_package_loads_no_dask() -> None:
    probe = (
        "import json, sys, valar_pandas; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed') or m.startswith('valar_pandas._dask'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


def test_the_threaded_scheduler_runs_every_row_with_one_budget(serve: Serve) -> None:
    emulator, client = serve()
    frame = pd.DataFrame({"review": [f"r{i}" for i in range(30)]}, index=[i % 3 for i in range(30)])
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    price = {
        "input": 0.0,
        "output": 1_000_000.0,
    }  # $1 an output token; an answer is 3, reserved as 3
    out = ddf.valar.run(
        "R: {review}", model=MODEL, client=client, store=False, budget=25.0, price=price,
        max_output_tokens=3,
    )  # fmt: skip
    with dask.config.set(scheduler="threads"):
        got = out.compute()
    summary = valar_pandas.dask.summary(out)
    assert list(got.index) == list(frame.index)
    assert summary["spent_usd"] <= 25.0 and summary["partitions"] == 3
    sent = int(got["output"].notna().sum())
    assert 1 <= sent == emulator.stats.inferences <= 8  # 25 // 3; one budget per partition: 24


def test_summary_of_another_frame_is_refused() -> None:
    ddf = dd.from_pandas(pd.DataFrame({"a": [1]}), npartitions=1)
    with pytest.raises(valar_pandas.ConfigError, match="not returned by"):
        valar_pandas.dask.summary(ddf)


@pytest.mark.filterwarnings("ignore::valar_pandas.BudgetWarning")
@pytest.mark.parametrize("budget", [1_000_000.0, 20_000.0])
def test_a_partition_draws_more_of_the_budget_when_answers_run_long(
    serve: Serve, budget: float
) -> None:
    from valar_pandas.emulator import Faults

    # Every answer bills 1024 output tokens at $1 each, four times the estimate's default;
    # four at a time, so each partition's budget sees the long answers come back.
    emulator, client = serve(faults=Faults(usage_tokens=1024))
    frame = pd.DataFrame({"review": [f"r{i}" for i in range(40)]})
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)
    price = {"input": 0.0, "output": 1_000_000.0}
    out = ddf.valar.run(
        "R: {review}", model=MODEL, client=client, store=False, budget=budget, price=price,
        concurrency=4, mode="realtime",
    )  # fmt: skip
    with dask.config.set(scheduler="threads"):
        got = out.compute()
    sent = int(got["output"].notna().sum())
    if budget == 1_000_000.0:
        assert sent == emulator.stats.inferences == 40
        return
    refused = got["output_error"].dropna()
    assert 0 < sent < 40 and len(refused) == 40 - sent
    assert refused.str.contains(r"the budget of \$20,000\.0000 would be exceeded").all()


def test_the_clients_own_limits_hold_on_the_workers(serve: Serve) -> None:
    from valar_pandas import ValarClient
    from valar_pandas._dask.worker import _clients

    emulator, given = serve()
    client = ValarClient(
        api_key=emulator.config.api_key, base_url=given.base_url, concurrency=10, max_rps=5
    )
    ddf = dd.from_pandas(pd.DataFrame({"review": ["a", "b"]}), npartitions=1)
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=False, mode="realtime")
    with dask.config.set(scheduler="threads"):
        assert out.compute()["output"].notna().all()
    used = [c for c in _clients if c.base_url == client.base_url]
    assert [(c.concurrency, c.max_rps) for c in used] == [(10, 5.0)]


def test_dedupe_shows_a_callable_template_only_the_frames_columns(serve: Serve) -> None:
    emulator, client = serve()
    frame = pd.DataFrame({"review": [f"r{i % 4}" for i in range(20)]})
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)

    def prompt(row: pd.Series) -> str:
        return " | ".join(f"{name}={value}" for name, value in row.items())

    out = ddf.valar.run(prompt, model=MODEL, client=client, store=False, dedupe=True)
    with dask.config.set(scheduler="threads"):
        got = out.compute()
    assert emulator.stats.inferences == 4
    assert list(got["output"]) == [f"Echo: review=r{i % 4}" for i in range(20)]
    assert list(got.columns) == ["review", "output", "output_error"]


def test_dedupe_row_errors_hold_only_the_frames_columns(serve: Serve) -> None:
    from valar_pandas.emulator import Faults

    _, client = serve(faults=Faults(failed=1.0))
    ddf = dd.from_pandas(pd.DataFrame({"review": ["a", "b", "c"]}), npartitions=1)
    out = ddf.valar.run(
        "R: {review}", model=MODEL, client=client, store=False, dedupe=True, errors="raise"
    )
    with dask.config.set(scheduler="threads"), pytest.raises(valar_pandas.RowErrors) as raised:
        out.compute()
    assert list(raised.value.frame.columns) == ["review", "output", "output_error"]


def test_summary_says_how_far_the_computation_passed_its_budget(serve: Serve) -> None:
    from valar_pandas.emulator import Faults

    # Answers bill 1024 tokens at $1; the first in flight are reserved at the default 256.
    _, client = serve(faults=Faults(usage_tokens=1024))
    ddf = dd.from_pandas(pd.DataFrame({"review": [f"r{i}" for i in range(20)]}), npartitions=1)
    with pytest.warns(valar_pandas.BudgetWarning, match="not a hard cap"):
        out = ddf.valar.run(
            "R: {review}", model=MODEL, client=client, store=False, budget=2000.0,
            price={"input": 0.0, "output": 1_000_000.0}, concurrency=4, mode="realtime",
        )  # fmt: skip
    with dask.config.set(scheduler="threads"):
        out.compute()
    with pytest.warns(valar_pandas.BudgetWarning, match="past its budget"):
        summary = valar_pandas.dask.summary(out)
    assert summary["spent_usd"] > 2000.0
    assert summary["budget_overspent_usd"] == summary["spent_usd"] - 2000.0
    assert any("past its budget" in notice for notice in summary["notices"])


def test_a_workers_batch_fallback_is_said_again_by_summary(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valar_pandas._core import batchplan

    monkeypatch.setattr(batchplan, "AUTO_MIN_REQUESTS", 5)
    _, client = serve(batch_api=False)
    ddf = dd.from_pandas(pd.DataFrame({"review": [f"r{i}" for i in range(6)]}), npartitions=1)
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=False, mode="auto")
    with dask.config.set(scheduler="threads"):
        assert out.compute()["output"].notna().all()
    with pytest.warns(valar_pandas.BatchFallbackWarning, match="not available on this server"):
        summary = valar_pandas.dask.summary(out)
    assert any("not available on this server" in notice for notice in summary["notices"])


def test_partitions_on_threads_record_their_warnings_without_swapping_the_processs(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each partition keeps its own warnings; the process's warning state is left as found.

    ``catch_warnings`` in each partition put back, on leaving, what it found on entering, so
    partitions on several threads left one partition's recorder and filters in place for good.
    """
    import warnings

    from valar_pandas._core import batchplan

    monkeypatch.setattr(batchplan, "AUTO_MIN_REQUESTS", 5)
    _, client = serve(batch_api=False)
    reviews = [f"r{i}" for i in range(6 * 6)]
    ddf = dd.from_pandas(pd.DataFrame({"review": reviews}), npartitions=6)
    out = ddf.valar.run("R: {review}", model=MODEL, client=client, store=False, mode="auto")
    filters = list(warnings.filters)
    shown = (warnings.showwarning, warnings._showwarnmsg_impl)  # type: ignore[attr-defined]
    with dask.config.set(scheduler="threads", num_workers=6):
        assert out.compute()["output"].notna().all()
    assert warnings.filters == filters
    assert warnings._showwarnmsg_impl is shown[1]  # type: ignore[attr-defined]
    with pytest.warns(valar_pandas.BatchFallbackWarning, match="not available on this server"):
        summary = valar_pandas.dask.summary(out)
    assert summary["partitions"] == 6
    assert any("not available on this server" in notice for notice in summary["notices"])
