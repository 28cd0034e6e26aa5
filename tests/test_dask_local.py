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
