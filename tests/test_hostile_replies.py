"""Hostile replies are one row's error, or an answer kept escaped: never the run's end."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from helpers import FAST, TEMPLATE, echo, words
from test_conn import _answer_once, serving

from valar_pandas._core.wire import decode_json
from valar_pandas._policy import parse_retry_after
from valar_pandas._store import records
from valar_pandas._transport.conn import MAX_HEADER_BYTES, ConnectionFailed, Pool
from valar_pandas.emulator import EmulatorConfig, Faults, Latency

QUICK = Latency(median=0.02, sigma=0.1)
FAR = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"


def escaped(frame) -> list[str]:  # type: ignore[no-untyped-def]
    """The emulator's answers with half an emoji, as the library keeps them: escaped."""
    return [f"{text}\\ud83d" for text in echo(frame)]


# -- text that cannot be encoded ---------------------------------------------------------


def test_an_answer_with_a_lone_surrogate_is_kept_escaped_and_stored(serve, tmp_path):
    emulator, client = serve(latency=QUICK, faults=Faults(hostile="surrogate_text"))
    store = tmp_path / "runs.sqlite3"
    df = words(6)
    out = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert out["output"].tolist() == escaped(df)
    assert out["output_error"].isna().all()
    with sqlite3.connect(store) as db:  # the store holds the same text: nothing lost
        texts = sorted(t for (t,) in db.execute("SELECT text FROM requests"))
    assert texts == sorted(escaped(df))
    again = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert again["output"].tolist() == escaped(df)
    assert emulator.stats.inferences == 6


def test_an_answer_with_a_lone_surrogate_reaches_the_command_output(serve, tmp_path):
    import pandas as pd

    from valar_pandas._cli.main import main

    _, client = serve(latency=QUICK, faults=Faults(hostile="surrogate_text"))
    words(8).to_parquet(tmp_path / "in.parquet")
    env = {"VALAR_API_KEY": client.api_key.reveal(), "VALAR_BASE_URL": client.base_url}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        code = main(["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"),
                     "--model", FAST["model"], "--template", TEMPLATE,
                     "--completion-window", "asap", "--quiet"])  # fmt: skip
    assert code == 0
    assert pd.read_parquet(tmp_path / "out.parquet")["output"].tolist() == escaped(words(8))


def test_a_response_id_with_a_lone_surrogate_keeps_the_answer(serve, tmp_path):
    emulator, client = serve(latency=QUICK, faults=Faults(hostile="surrogate_id"))
    store = tmp_path / "runs.sqlite3"
    df = words(6)
    out = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert out["output"].tolist() == echo(df)
    again = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert again["output"].tolist() == echo(df) and emulator.stats.inferences == 6


def test_a_batch_id_with_a_lone_surrogate_is_a_row_error_not_a_crash(serve, tmp_path):
    """A batch id that cannot go into a path or the store: the batch's rows fail, said so."""
    _, client = serve(latency=QUICK, faults=Faults(hostile="surrogate_id"), batch_api=True)
    df = words(6)
    ask = {**FAST, "completion_window": "standard", "mode": "batch"}
    out = df.valar.run(TEMPLATE, client=client, store=tmp_path / "s.sqlite3", **ask)
    assert out["output"].isna().all()
    assert out["output_error"].str.contains("batch id").all(), out["output_error"].tolist()


def test_a_store_an_earlier_version_left_unfinished_completes(serve, tmp_path, monkeypatch):
    """An earlier version planned the rows, sent them, and could not record the answers."""
    emulator, client = serve(latency=QUICK, faults=Faults(hostile="surrogate_text"))
    store = tmp_path / "runs.sqlite3"
    df = words(6)

    def unencodable(*args: object, **kwargs: object) -> None:
        "\ud83d".encode()

    with monkeypatch.context() as patch:  # as every write of an answer failed before
        patch.setattr(records, "record", unencodable)
        with pytest.warns(Warning, match="could not be written"):
            first = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert first["output"].tolist() == escaped(df)
    with sqlite3.connect(store) as db:
        assert {s for (s,) in db.execute("SELECT state FROM requests")} == {"planned"}
    again = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert again["output"].tolist() == escaped(df)
    assert emulator.stats.inferences == 6  # the same keys: the server replayed its answers
    third = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert third["output"].tolist() == escaped(df)


# -- replies that cannot be read -----------------------------------------------------------


def test_deeply_nested_json_is_a_row_error(serve):
    _, client = serve(latency=QUICK, faults=Faults(hostile="nested_json"))
    out = words(3).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert out["output"].isna().all()
    assert out["output_error"].str.contains("unreadable body: JSON nested deeper than 64").all()


def test_decode_json_bounds_nesting_and_reads_brackets_in_text():
    assert decode_json(b'{"a": "[[[[' + b"[" * 10_000 + b'"}') == {"a": "[" * 10_004}
    assert decode_json(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(ValueError, match="nested deeper than 64"):
        decode_json(b"[" * 65 + b"]" * 65)
    with pytest.raises(ValueError, match="nested deeper"):
        decode_json(b"[" * 200_000)


def test_a_retry_after_date_past_any_calendar_is_ignored(serve):
    emulator, client = serve(latency=QUICK, faults=Faults(hostile="retry_after_date"))
    df = words(4)
    out = df.valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert out["output"].tolist() == echo(df)
    assert emulator.stats.faults["retry_after_date"] >= 8


@pytest.mark.parametrize(
    "value", [FAR, "Mon, 01 Jan 9999 00:00:00 GMT", "1" * 100, "1e400", "Fri, 31 Dec 0 0:0:0"]
)
def test_retry_after_values_past_the_limits_are_never_an_exception(value):
    got = parse_retry_after(value, now=0.0)
    assert got is None or 0.0 <= got < float("inf")


def test_headers_without_end_are_refused_once_past_the_bound():
    script = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (MAX_HEADER_BYTES * 4) + b"\r\n\r\n"

    async def work(pool: Pool) -> None:
        with pytest.raises(ConnectionFailed, match="headers exceed") as caught:
            await pool.request(b"GET", "/x", None, b"", 5.0, 1 << 20)
        assert caught.value.fault == "too_large"

    asyncio.run(serving(_answer_once(script), work))


def test_a_raw_1_gib_answer_is_a_row_error_read_no_further_than_the_cap(serve, tmp_path):
    """An uncompressed 1 GiB body: stopped at the 8 MiB cap while it arrives."""
    _, client = serve(latency=QUICK, faults=Faults(hostile="raw_body"))
    script = textwrap.dedent(
        """
        import resource, sys
        import valar_pandas
        from helpers import FAST, TEMPLATE, words
        out = words(2).valar.run(TEMPLATE, store=False, **FAST)
        print(out["output_error"].tolist())
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """
    )
    env = {
        **os.environ,
        "VALAR_API_KEY": client.api_key.reveal(),
        "VALAR_BASE_URL": client.base_url,
        "PYTHONPATH": os.pathsep.join(
            [os.environ.get("PYTHONPATH", ""), os.path.dirname(__file__)]
        ),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    errors, peak_mib = done.stdout.strip().splitlines()
    assert errors.count("exceeds the 8,388,608-byte cap") == 2
    assert int(peak_mib) < 512  # far from the 1 GiB sent, let alone 3 GiB


def test_the_emulator_refuses_an_unknown_hostile_reply():
    with pytest.raises(ValueError, match=r"Faults\.hostile"):
        EmulatorConfig(faults=Faults(hostile="friendly"))


@pytest.mark.parametrize(
    "spec",
    [
        {"labels": ["yes", "no"]},
        {"scale": (1, 5)},
        {"schema": {"type": "object", "properties": {"x": {"type": "integer"}}}},
    ],
)
def test_a_scoring_answer_nested_past_the_stack_is_that_rows_error(spec):
    from valar_pandas._scoring import make_spec, parse

    for text in ("{" + "[" * 200_000 + "}", '{"x": ' + "[" * 5_000 + "]" * 5_000 + "}"):
        assert parse(make_spec(**spec), text).error is not None
