"""``valar-pandas run IN OUT --dask local:N``: the windows on a real local cluster."""

from __future__ import annotations

import json
import socket

import pandas as pd
import pytest
from helpers import MODEL

pytest.importorskip("distributed")

from valar_pandas._cli.main import main

CREATE = "POST /v1/responses"
RUN = ["--model", MODEL, "--template", "Review: {review}", "--quiet", "--json"]


def test_a_file_on_two_workers_matches_one_machine_and_resumes_for_free(
    serve_cli, tmp_path, capsys
):
    emulator = serve_cli()
    source = tmp_path / "in.parquet"
    frame = pd.DataFrame({"review": [f"review {i % 40}" for i in range(230)], "n": range(230)})
    frame.to_parquet(source)
    here, there = tmp_path / "here.parquet", tmp_path / "there.parquet"
    labels = ["--score-labels", "positive,negative,neutral"]
    store = ["--store", str(tmp_path / "store.sqlite3")]
    argv = ["run", str(source), str(there), *RUN, *labels, *store, "--window-rows", "50"]
    assert main([*argv, "--dask", "local:2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert emulator.stats.inferences == 40  # the distinct prompts, once each
    assert (summary["rows"], summary["answered"], summary["windows"]) == (230, 230, 5)
    # One machine, its own store: the same requests (the server replays them), the same file
    assert main(["run", str(source), str(here), *RUN, *labels, "--store", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(pd.read_parquet(there), pd.read_parquet(here))
    assert emulator.stats.inferences == 40
    emulator.stats.reset()
    assert main([*argv, "--dask", "local:2"]) == 0  # the same command again: from the store
    assert emulator.stats.requests[CREATE] == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] == 230


def test_a_bad_target_is_refused_before_anything(serve_cli, tmp_path, capsys):
    emulator = serve_cli()
    pd.DataFrame({"review": ["a"]}).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    assert main(["run", str(tmp_path / "in.parquet"), str(out), *RUN, "--dask", "local:0"]) == 2
    assert "local:N" in capsys.readouterr().err
    assert emulator.stats.total_requests == 0 and not out.exists()


def test_an_unreachable_scheduler_is_a_usage_error(serve_cli, tmp_path, capsys):
    import dask

    emulator = serve_cli()
    pd.DataFrame({"review": ["a"]}).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        "run",
        str(tmp_path / "in.parquet"),
        str(out),
        *RUN,
        "--dask",
        f"tcp://127.0.0.1:{port}",
    ]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(argv) == 2
    assert "cannot reach the scheduler" in capsys.readouterr().err
    assert emulator.stats.total_requests == 0 and not out.exists()


def test_the_commands_own_cluster_runs_without_the_profiler():
    """``local:N`` serves no dashboard, so its workers do not pay for Dask's profiler."""
    from distributed import Client

    from valar_pandas._cli.cluster import _local_cluster

    cluster = _local_cluster(1)
    try:
        with Client(cluster) as dask:
            seen = dask.run(
                lambda: __import__("dask").config.get("distributed.worker.profile.enabled")
            )
    finally:
        cluster.close()
    assert list(seen.values()) == [False]
