"""The command's flags that mirror accessor options, each through the real command."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import MODEL, TEMPLATE, echo, words

from valar_pandas._cli.main import main
from valar_pandas._cli.reviews import make_reviews
from valar_pandas._core import batchplan as _batchplan
from valar_pandas._core.batchplan import BatchPoll
from valar_pandas.emulator import Faults, Latency

RUN = ["--model", MODEL, "--template", TEMPLATE, "--completion-window", "asap", "--quiet"]
QUICK = Latency(median=0.02, sigma=0.3)
SENTIMENT = "Classify the sentiment of this product review.\n\nReview: {review}"
LABELS = "positive,negative,neutral"


def _files(tmp_path, df):
    df.to_parquet(tmp_path / "in.parquet")
    return [str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet")]


def _summary(capsys):
    return json.loads(capsys.readouterr().out)


def test_temperature_and_salt_send_what_the_accessor_sends(serve_cli, tmp_path, capsys):
    serve_cli(latency=QUICK)
    df = words(12)
    paths = _files(tmp_path, df)
    flags = ["--temperature", "0.3", "--salt", "batch-7", "--json"]
    assert main(["run", *paths, *RUN, *flags]) == 0
    assert _summary(capsys)["answered"] == 12
    same = df.valar.run(
        TEMPLATE, model=MODEL, completion_window="asap", progress=None, temperature=0.3,
        salt="batch-7",
    )  # fmt: skip
    assert same.attrs["valar"]["cached"] == 12  # the very requests the command sent
    other = df.valar.run(TEMPLATE, model=MODEL, completion_window="asap", progress=None)
    assert other.attrs["valar"]["cached"] == 0


def test_no_cache_asks_every_row_again_and_keeps_nothing(serve_cli, tmp_path, capsys):
    emulator = serve_cli(latency=QUICK)
    paths = _files(tmp_path, words(10))
    assert main(["run", *paths, *RUN, "--json"]) == 0
    assert _summary(capsys)["cached"] == 0 and emulator.stats.inferences == 10
    assert main(["run", *paths, *RUN, "--json"]) == 0
    assert _summary(capsys)["cached"] == 10 and emulator.stats.inferences == 10
    assert main(["run", *paths, *RUN, "--json", "--no-cache"]) == 0
    assert _summary(capsys)["cached"] == 0 and emulator.stats.inferences == 20
    assert pd.read_parquet(paths[1])["output"].tolist() == echo(words(10))


def test_label_names_the_batches(serve_cli, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_batchplan, "BATCH_POLL", BatchPoll(first=0.1, growth=1.5, cap=0.5))
    emulator = serve_cli(latency=QUICK, batch_api=True)
    paths = _files(tmp_path, words(20))
    argv = ["run", *paths, "--model", MODEL, "--template", TEMPLATE, "--quiet", "--json"]
    assert main([*argv, "--mode", "batch", "--label", "nightly-7"]) == 0
    assert _summary(capsys)["answered"] == 20
    assert [b.label for b in emulator.store.batches.values()] == ["nightly-7"]
    assert main([*argv, "--label", "nightly-7"]) == 2  # a label names a batch: batch or auto
    assert "label" in capsys.readouterr().err


def test_details_adds_the_response_columns(serve_cli, tmp_path):
    serve_cli(latency=QUICK)
    paths = _files(tmp_path, words(6))
    assert main(["run", *paths, *RUN, "--details"]) == 0
    got = pd.read_parquet(paths[1])
    assert {"output_response_id", "output_status", "output_input_tokens"} <= set(got.columns)
    assert got["output_status"].eq("completed").all()


def test_reasons_write_a_reason_column(serve_cli, tmp_path):
    serve_cli(latency=QUICK)
    paths = _files(tmp_path, make_reviews(15)[["review"]])
    argv = ["--model", MODEL, "--template", SENTIMENT, "--completion-window", "asap", "--quiet"]
    assert main(["run", *paths, *argv, "--score-labels", LABELS, "--reasons"]) == 0
    got = pd.read_parquet(paths[1])
    assert got["score_reason"].notna().all() and got["score"].notna().all()
    assert main(["run", *paths, *argv, "--reasons"]) == 2  # reasons of what: no scoring flag


@pytest.mark.parametrize("window_rows", ["7", "100"])
def test_retries_on_invalid_reask_unreadable_replies_in_every_window(
    serve_cli, tmp_path, capsys, window_rows
):
    emulator = serve_cli(latency=QUICK, faults=Faults(invalid_structured=0.3), seed=1)
    paths = _files(tmp_path, make_reviews(40)[["review"]])
    argv = ["run", *paths, "--model", MODEL, "--template", SENTIMENT, "--quiet", "--json",
            "--completion-window", "asap", "--score-labels", LABELS,
            "--window-rows", window_rows]  # fmt: skip
    main(argv)
    first = _summary(capsys)
    assert first["failed"] > 0 and first["invalid_retries"] == 0
    before = emulator.stats.inferences
    main([*argv, "--retries-on-invalid", "2"])
    again = _summary(capsys)
    # Only the unreadable rows were asked again, under a salt of their own, and some of them
    # came back readable; the rows read the first time came from the store.
    assert again["invalid_retries"] >= first["failed"]
    assert emulator.stats.inferences == before + again["invalid_retries"]
    assert again["failed"] < first["failed"]
    got = pd.read_parquet(paths[1])
    assert int(got["score_error"].notna().sum()) == again["failed"]
