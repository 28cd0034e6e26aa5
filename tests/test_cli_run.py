"""``valar-pandas run``: files in, parquet out, streamed in windows, checked first, resumable."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import MODEL, TEMPLATE, echo, words

from valar_pandas import ConfigError
from valar_pandas._cli.main import main
from valar_pandas._cli.stream import StreamSettings, prepare_window
from valar_pandas._files import MANIFEST, windows
from valar_pandas.emulator import Faults, Latency

RUN = ["--model", MODEL, "--template", TEMPLATE, "--completion-window", "asap", "--quiet"]


@pytest.fixture
def env(serve_cli):
    """An emulator, with the command's environment pointing at it."""
    return serve_cli(latency=Latency(median=0.05, sigma=0.3))


def frame(n: int) -> pd.DataFrame:
    df = words(n)
    df["n"] = pd.array([None if i % 3 == 0 else i for i in range(n)], dtype="Int64")
    df["label"] = [f"row-{i}" for i in range(n)]
    return df


def test_windows_do_not_depend_on_how_the_reader_chunks():
    table = pa.table({"x": list(range(23))})
    for chunk in (1, 4, 23):
        cut = list(windows(iter(table.to_batches(max_chunksize=chunk)), table.schema, 10))
        assert [w.num_rows for w in cut] == [10, 10, 3]
        assert pa.concat_tables(cut).column("x").to_pylist() == list(range(23))
    limited = list(windows(iter(table.to_batches(max_chunksize=4)), table.schema, 10, limit=12))
    assert [w.num_rows for w in limited] == [10, 2]
    empty = list(windows(iter([]), table.schema, 10))
    assert [w.num_rows for w in empty] == [0] and empty[0].schema == table.schema


def test_parquet_round_trip_keeps_every_column_row_and_type(env, tmp_path, capsys):
    df = frame(50)
    df.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    args = ["run", str(tmp_path / "in.parquet"), str(out), *RUN, "--window-rows", "7", "--json",
            "--max-rps", "500"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 50 and summary["failed"] == 0 and summary["windows"] == 8
    assert summary["http_requests"] > 0 and summary["spent_usd"] > 0
    got = pd.read_parquet(out)
    assert list(got.columns) == ["i", "word", "n", "label", "output", "output_error"]
    pd.testing.assert_frame_equal(got[["i", "word", "n", "label"]], df)
    assert got["output"].tolist() == echo(df) and got["output_error"].isna().all()
    # The accessor asks the very same requests: its run is served from the CLI's store.
    again = df.valar.run(TEMPLATE, model=MODEL, completion_window="asap", progress=None)
    assert again.attrs["valar"]["cached"] == 50 and again.attrs["valar"]["http_requests"] == 0
    assert not list(tmp_path.glob(".*tmp")), "no temporary file is left behind"
    sent = env.stats.total_requests
    assert main(args) == 0  # a finished run again: every row from the store
    assert json.loads(capsys.readouterr().out)["cached"] == 50
    assert env.stats.total_requests == sent
    pd.testing.assert_frame_equal(pd.read_parquet(out), got)


def test_csv_jsonl_and_directories(env, tmp_path):
    df = frame(30)
    df.to_csv(tmp_path / "in.csv", index=False)
    df.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    parts = tmp_path / "parts"
    parts.mkdir()
    df.iloc[:12].to_parquet(parts / "a.parquet")
    df.iloc[12:].to_parquet(parts / "b.parquet")
    outputs = {}
    for name in ("in.csv", "in.jsonl", "parts"):
        target = tmp_path / f"out-{name.replace('.', '-')}"
        code = main(["run", str(tmp_path / name), str(target), *RUN, "--window-rows", "8"])
        assert code == 0
        manifest = json.loads((target / MANIFEST).read_text())
        assert manifest["complete"] and manifest["rows"] == 30 and len(manifest["parts"]) == 4
        outputs[name] = pd.read_parquet(target)
    for got in outputs.values():
        assert got["i"].tolist() == list(range(30)) and got["output"].tolist() == echo(df)
        assert got["label"].tolist() == df["label"].tolist()
    assert env.stats.inferences == 30  # identical prompts from every format: sent once


def test_columns_limit_into_and_replacing_a_column(env, tmp_path):
    df = frame(20).assign(output="old")
    df.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    code = main(
        ["run", str(tmp_path / "in.parquet"), str(out), *RUN, "--columns", "label,output",
         "--limit", "9"]
    )  # fmt: skip
    assert code == 0
    got = pd.read_parquet(out)
    assert list(got.columns) == ["label", "output", "output_error"]
    assert got["output"].tolist() == echo(df.head(9))
    assert env.stats.inferences == 9


def test_an_empty_input_gives_an_empty_output_with_the_new_columns(env, tmp_path):
    words(0).to_parquet(tmp_path / "in.parquet")
    assert main(["run", str(tmp_path / "in.parquet"), str(tmp_path / "o.parquet"), *RUN]) == 0
    got = pd.read_parquet(tmp_path / "o.parquet")
    assert list(got.columns) == ["i", "word", "output", "output_error"] and got.empty
    assert env.stats.total_requests == 0


def test_batch_mode_sends_one_batch_per_window(env, tmp_path, capsys):
    env.config = dataclasses.replace(env.config, batch_api=True)
    words(60).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL, "--template",
            TEMPLATE, "--mode", "batch", "--window-rows", "20", "--quiet", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["requests_per_row"] < 1.2
    assert env.stats.requests["POST /v1/batches"] == 3
    assert pd.read_parquet(out)["output"].tolist() == echo(words(60))


def test_score_labels_give_a_category_column(env, tmp_path):
    df = pd.DataFrame({"review": ["great", "awful", "fine"] * 4})
    df.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    labels = "positive,negative,neutral"
    code = main(
        ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL, "--template",
         "Review: {review}", "--score-labels", labels, "--into", "sentiment", "--quiet",
         "--completion-window", "asap", "--window-rows", "5"]
    )  # fmt: skip
    got = pd.read_parquet(out)
    assert code == (1 if got["sentiment_error"].notna().any() else 0)
    assert list(got.columns) == ["review", "sentiment", "sentiment_error"]
    assert isinstance(got["sentiment"].dtype, pd.CategoricalDtype)
    assert list(got["sentiment"].cat.categories) == labels.split(",")
    answered = got["sentiment"].notna() | got["sentiment_error"].notna()
    assert answered.all()


def test_failed_rows_exit_1_and_the_output_is_still_written(serve, tmp_path, monkeypatch, capsys):
    emulator, client = serve(latency=Latency(median=0.05), faults=Faults(failed=0.3), seed=3)
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    words(40).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    code = main(["run", str(tmp_path / "in.parquet"), str(out), *RUN[:-1], "--window-rows", "15"])
    assert code == 1
    got = pd.read_parquet(out)
    failed = int(got["output_error"].notna().sum())
    assert 0 < failed < 40 and len(got) == 40 and emulator.stats.inferences == 40
    text = capsys.readouterr().out
    assert f"failed: {failed}" in text and "First error: failed" in text
    assert "HTTP requests" in text and "per row" in text


def test_budget_holds_for_the_whole_file(env, tmp_path):
    words(60).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    # About $0.00008 a request on the asap window: room for a few in all, not a few per window.
    code = main(
        ["run", str(tmp_path / "in.parquet"), str(out), *RUN, "--window-rows", "10",
         "--max-output-tokens", "16", "--budget", "0.0003"]
    )  # fmt: skip
    assert code == 1
    got = pd.read_parquet(out)
    sent = env.stats.inferences
    assert 1 <= sent <= 8  # a budget per window would have let 3 of 6 windows send 18+
    assert got["output_error"].str.startswith("not sent: the budget").sum() == 60 - sent


def test_dry_run_and_estimate_send_nothing(env, tmp_path, capsys):
    words(25).to_parquet(tmp_path / "in.parquet")
    base = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), *RUN]
    assert main([*base, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "nothing is sent" in text and '"content": "item 0 apple"' in text
    assert "rows 25" in text and "requests 25" in text
    assert main([*base, "--estimate", "--max-output-tokens", "10", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert (before["rows"], before["cache_hits"], before["to_send"]) == (25, 0, 25)
    assert before["output_tokens"] == 250 and before["cost_usd"] > 0
    assert env.stats.total_requests == 0
    assert not (tmp_path / "out.parquet").exists()
    assert main([*base, "--limit", "10", "--max-output-tokens", "10"]) == 0
    capsys.readouterr()
    assert main([*base, "--estimate", "--max-output-tokens", "10", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert (after["cache_hits"], after["to_send"]) == (10, 15)
    assert main([*base, "--estimate"]) == 0
    assert "cache hits" in capsys.readouterr().out


def _bad_inputs(tmp_path):
    words(5).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "in.txt").write_text("i,word\n1,a\n")
    (tmp_path / "ragged.csv").write_text("i,word\n1,a\n2,b,c\n")
    (tmp_path / "bad.jsonl").write_text('{"i": 1, "word": "a"}\n{"i": \n')


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.parquet", "o.parquet"], "does not exist"),
        (["broken.parquet", "o.parquet"], "cannot read"),
        (["in.txt", "o.parquet"], "unknown kind '.txt'"),
        (["ragged.csv", "o.parquet"], "cannot read"),
        (["bad.jsonl", "o.parquet"], "cannot read"),
        (["in.parquet", "o.parquet", "--template", "item {i} {wrd}"], "did you mean 'word'"),
        (["in.parquet", "o.parquet", "--columns", "i,nope"], "--columns names 'nope'"),
        (["in.parquet", "no/such/dir/o.parquet"], "is not a directory"),
        (["in.parquet", "in.parquet"], "is the input"),
        (
            ["in.parquet", "o.parquet", "--model", "some/new-model", "--budget", "1"],
            "needs a price",
        ),
        (["in.parquet", "o.parquet", "--score-scale", "1,x"], "--score-scale"),
        (["in.parquet", "o.parquet", "--score-labels", "yes"], "at least two labels"),
        (["in.parquet", "o.parquet", "--schema", "none.json"], "cannot read the schema file"),
        (["in.parquet", "o.parquet", "--template", "@none.txt"], "cannot read the template"),
        (["in.parquet", "o.parquet", "--mode", "batch", "--completion-window", "asap"], "Batch"),
        (["in.parquet", "o.parquet", "--dry-run", "--estimate"], "not both"),
    ],
)
def test_errors_exit_2_before_any_request(env, tmp_path, monkeypatch, capsys, argv, message):
    _bad_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    template = [] if "--template" in argv else ["--template", TEMPLATE]
    model = [] if "--model" in argv else ["--model", MODEL]
    assert main(["run", *argv, *template, *model, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert env.stats.total_requests == 0
    assert not (tmp_path / "o.parquet").exists() and not list(tmp_path.glob(".*tmp"))


def test_bad_numbers_are_usage_errors(env, tmp_path, capsys):
    _bad_inputs(tmp_path)
    for option, value in (("--max-rps", "0"), ("--concurrency", "-1"), ("--budget", "inf")):
        argv = [str(tmp_path / "in.parquet"), str(tmp_path / "o.parquet"), option, value]
        with pytest.raises(SystemExit) as exit_info:
            main(["run", *argv, "--template", TEMPLATE, "--model", MODEL])
        assert exit_info.value.code == 2
        assert f"{value!r} must be" in capsys.readouterr().err
    assert env.stats.total_requests == 0


def test_a_row_that_cannot_be_rendered_is_named_by_its_place_in_the_file():
    job = StreamSettings(
        "price {price:.2f}", {"model": MODEL}, None, None, ("price",), ("price",), 5
    )
    table = pa.table({"price": ["n/a", "2.5"]})  # text: ':.2f' cannot format it
    with pytest.raises(ConfigError, match=r"row 0 \(index 10\)"):
        prepare_window(job, 2, table)  # the third window: rows 10 to 14 of the file


def test_no_key_is_an_error_before_anything_and_the_key_never_shows(
    serve, tmp_path, monkeypatch, capsys
):
    secret = "sk-very-secret-value-123"
    _, client = serve(api_key=secret, latency=Latency(median=0.05))
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    words(5).to_parquet(tmp_path / "in.parquet")
    argv = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "o.parquet"), *RUN]
    assert main(argv) == 2
    assert "VALAR_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("VALAR_API_KEY", "sk-wrong-key-456")
    assert main(argv) == 2  # the server refuses the key: the run stops as a whole
    err = capsys.readouterr().err
    assert "sk-wrong-key-456" not in err
    assert "401" in err or "reject" in err.lower(), err
    monkeypatch.setenv("VALAR_API_KEY", secret)
    assert main([*argv[:-1], "--json"]) == 0
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("INPUT", "OUTPUT", "--template", "--score-labels", "--estimate", "exit codes"):
        assert needle in text
    assert "re-run the same command" in text.lower()


# -- crashes and Ctrl-C, in a real process ---------------------------------------------------

CHILD = [sys.executable, "-m", "valar_pandas", "run"]


def _done(path):
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM requests WHERE state = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _child_env(client, store):
    return {
        **os.environ,
        "VALAR_API_KEY": client.api_key.reveal(),
        "VALAR_BASE_URL": client.base_url,
        "VALAR_PANDAS_STORE": str(store),
    }


def _wait_for_rows(proc, store, rows):
    deadline = time.monotonic() + 60
    while _done(store) < rows and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"


def test_sigkill_mid_run_then_the_same_command_gives_the_same_file(
    serve, tmp_path, monkeypatch, capsys
):
    """Killed at an arbitrary moment; the same command again: identical output, no extra bill."""
    emulator, client = serve(latency=Latency(median=0.6, sigma=0.6), seed=5)
    df = frame(300)
    df.to_parquet(tmp_path / "in.parquet")
    args = [str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), *RUN, "--window-rows",
            "60", "--concurrency", "30"]  # fmt: skip
    store = tmp_path / "store.sqlite3"
    proc = subprocess.Popen([*CHILD, *args], env=_child_env(client, store), stderr=subprocess.PIPE)
    _wait_for_rows(proc, store, 60)
    proc.kill()
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, stderr
    assert not (tmp_path / "out.parquet").exists()  # only a hidden temporary file, if any
    done = _done(store)
    assert 60 <= done < 300

    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    monkeypatch.setenv("VALAR_PANDAS_STORE", str(store))
    assert main(["run", *args, "--json"]) == 0  # the same command again
    summary = json.loads(capsys.readouterr().out)
    assert summary["cached"] >= done and summary["failed"] == 0
    assert emulator.stats.inferences == 300  # nothing paid for twice
    assert set(emulator.stats.inferences_by_body.values()) == {1}
    assert not list(tmp_path.glob(".*tmp"))  # the killed run's temporary file is swept

    _, reference = serve(latency=Latency(median=0.05), seed=5)
    monkeypatch.setenv("VALAR_BASE_URL", reference.base_url)
    monkeypatch.setenv("VALAR_PANDAS_STORE", str(tmp_path / "reference.sqlite3"))
    uninterrupted = [str(tmp_path / "in.parquet"), str(tmp_path / "ref.parquet"), *args[2:]]
    assert main(["run", *uninterrupted]) == 0
    assert pq.read_table(tmp_path / "out.parquet").equals(pq.read_table(tmp_path / "ref.parquet"))


CTRL_C = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # background shells ignore it
    "from valar_pandas._cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(serve, tmp_path, monkeypatch):
    emulator, client = serve(latency=Latency(median=1.0, sigma=0.3))
    words(150).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in.parquet"), str(out), *RUN, "--window-rows", "50"]
    store = tmp_path / "store.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, *args],
        env=_child_env(client, store), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_rows(proc, store, 10)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "re-run the same command to resume" in stderr
    assert "Traceback" not in stderr and "Unclosed" not in stderr, stderr
    assert not (out / MANIFEST).exists()  # an incomplete directory says so
    billed = emulator.stats.inferences
    for name, value in _child_env(client, store).items():
        if name.startswith("VALAR"):
            monkeypatch.setenv(name, value)
    assert main(args) == 0
    assert (out / MANIFEST).exists()
    assert pd.read_parquet(out)["output"].tolist() == echo(words(150))
    assert emulator.stats.inferences == 150 >= billed


def test_sigterm_ends_the_run_cleanly_and_the_same_command_pays_for_no_row_twice(
    serve, tmp_path, monkeypatch
):
    """A service manager's SIGTERM takes Ctrl-C's path: ids written, nothing cancelled."""
    emulator, client = serve(latency=Latency(median=1.0, sigma=0.3))
    words(150).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in.parquet"), str(out), *RUN, "--window-rows", "50"]
    store = tmp_path / "store.sqlite3"
    proc = subprocess.Popen(
        [*CHILD, *args[1:]], env=_child_env(client, store), stderr=subprocess.PIPE, text=True
    )
    _wait_for_rows(proc, store, 10)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "re-run the same command to resume" in stderr
    assert "Traceback" not in stderr and "Unclosed" not in stderr, stderr
    assert not (out / MANIFEST).exists()
    assert emulator.stats.requests["POST /v1/responses/{id}/cancel"] == 0
    with sqlite3.connect(store) as db:
        planned = db.execute("SELECT COUNT(*) FROM requests WHERE state = 'planned'").fetchone()[0]
    posts = emulator.stats.requests["POST /v1/responses"]
    for name, value in _child_env(client, store).items():
        if name.startswith("VALAR"):
            monkeypatch.setenv(name, value)
    assert main(args) == 0
    assert pd.read_parquet(out)["output"].tolist() == echo(words(150))
    assert emulator.stats.inferences == 150 == len(emulator.stats.inferences_by_body)
    # Every id the stopped run received was written: those rows were polled, not created.
    assert emulator.stats.requests["POST /v1/responses"] - posts <= planned
