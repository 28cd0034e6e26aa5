"""The command speaks its users' language: flags, never Python arguments; and it offers every
flag its messages ask for (``--price``), and reads ``--score-scale -1,1``."""

from __future__ import annotations

import json
import re
import sqlite3

import pandas as pd
import pytest
from helpers import MODEL, TEMPLATE, words

from valar_pandas import ConfigError
from valar_pandas._cli.main import main
from valar_pandas._cli.run import joined_values
from valar_pandas.emulator import Latency
from valar_pandas.emulator._config import DEFAULT_MODELS

UNPRICED = "acme/unpriced-model"
PYTHON = re.compile(r"\b(price|client|store|mode|completion_window|into|budget)=|ValarClient\(")


@pytest.fixture
def env(serve_cli, monkeypatch, tmp_path):
    emulator = serve_cli(latency=Latency(median=0.05), models=(*DEFAULT_MODELS, UNPRICED))
    monkeypatch.chdir(tmp_path)
    words(6).to_parquet(tmp_path / "in.parquet")
    return emulator


def run(*argv: str) -> list[str]:
    return ["run", "in.parquet", "out.parquet", "--template", TEMPLATE, "--quiet", *argv]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], flag: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and not PYTHON.search(err), err
    return err


def test_a_budget_on_an_unpriced_model_asks_for_price_and_price_makes_it_work(env, capsys):
    refused(capsys, run("--model", UNPRICED, "--budget", "1"), "give --price INPUT,OUTPUT")
    assert env.stats.total_requests == 0
    assert main(run("--model", UNPRICED, "--budget", "1", "--price", "0.5,1.5", "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 0 and summary["spent_usd"] > 0
    assert main(run("--model", UNPRICED, "--price", "0.5,1.5", "--estimate")) == 0
    assert "unknown" not in capsys.readouterr().out


def test_the_estimate_of_an_unpriced_model_names_the_flag(env, capsys):
    assert main(run("--model", UNPRICED, "--estimate")) == 0
    out = capsys.readouterr().out
    assert "give --price INPUT,OUTPUT" in out and "price=" not in out


@pytest.mark.parametrize("value", ["1", "a,b", "-1,2", "1,2,3", "inf,1"])
def test_bad_prices_are_usage_errors(env, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(run("--model", MODEL, "--price", value))
    assert exit_info.value.code == 2
    assert "INPUT,OUTPUT" in capsys.readouterr().err


def test_no_key_names_the_variable_only(env, monkeypatch, capsys):
    monkeypatch.delenv("VALAR_API_KEY")
    err = refused(capsys, run("--model", MODEL), "VALAR_API_KEY")
    assert (
        err.strip() == "valar-pandas: No Valar API key: set the VALAR_API_KEY environment variable."
    )
    with pytest.raises(ConfigError, match=r"client=ValarClient\(api_key=\.\.\.\)"):
        words(1).valar.run(TEMPLATE, model=MODEL)  # Python's callers get Python's words


def test_batch_messages_name_flags(serve, env, monkeypatch, capsys):
    refused(capsys, run("--model", MODEL, "--mode", "batch", "--completion-window", "asap"),
            "--completion-window standard")  # fmt: skip
    _, client = serve(latency=Latency(median=0.05), batch_api=False)
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    refused(capsys, run("--model", MODEL, "--mode", "batch"), "--mode auto")


def test_store_messages_name_the_store_flag(env, tmp_path, capsys):
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    refused(capsys, run("--model", MODEL, "--store", str(other)), "Give another --store path")
    with pytest.raises(ConfigError, match="Pass another store= path"):
        words(1).valar.run(TEMPLATE, model=MODEL, store=other)


def test_a_repeated_column_in_the_file_is_named(env, tmp_path, capsys):
    (tmp_path / "dup.csv").write_text("i,word,word\n1,a,b\n")
    argv = ["run", "dup.csv", "out.parquet", "--template", TEMPLATE, "--model", MODEL]
    err = refused(capsys, argv, "more than one column named 'word'")
    assert "--columns" not in err and env.stats.total_requests == 0


def test_score_scale_may_start_below_zero(env, capsys):
    assert main(run("--model", MODEL, "--score-scale", "-1,1", "--dry-run", "--json")) == 0
    body = json.loads(capsys.readouterr().out)["first"][0]["body"]
    score = body["text"]["format"]["schema"]["properties"]["score"]
    assert (score["minimum"], score["maximum"]) == (-1, 1)
    assert main(run("--model", MODEL, "--score-scale", "-1.5,-0.5", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 6
    got = pd.read_parquet("out.parquet")["score"]
    assert got.notna().any() and got.dropna().between(-1.5, -0.5).all()


def test_joined_values_touches_only_negative_values_of_its_options():
    assert joined_values(["run", "--score-scale", "-1,1", "--price", "1,2"]) == [
        "run", "--score-scale=-1,1", "--price", "1,2"
    ]  # fmt: skip
    assert joined_values(["--template", "-1,1", "--score-scale", "-2e3,5"]) == [
        "--template", "-1,1", "--score-scale=-2e3,5"
    ]  # fmt: skip
    assert joined_values(["--score-scale", "--quiet"]) == ["--score-scale", "--quiet"]
    assert joined_values(["--", "--score-scale", "-1,1"]) == ["--", "--score-scale", "-1,1"]
