"""Text is text: inputs decoded strictly, bytes cells never sent as a Python repr."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import MODEL

from valar_pandas import ConfigError
from valar_pandas._cli.main import main
from valar_pandas._files import open_input
from valar_pandas.emulator import Latency

RUN = ["--model", MODEL, "--template", "R: {t}", "--completion-window", "asap", "--quiet"]


@pytest.fixture
def env(serve_cli):
    """An emulator, with the command's environment pointing at it."""
    return serve_cli(latency=Latency(median=0.02, sigma=0.3))


def _csv(path, rows, bad_at):
    """A cp1252 CSV: plain ASCII rows, and 'café' (byte 0xE9) on row ``bad_at``."""
    lines = ["id,t"] + [f"{i},{'café' if i == bad_at else f'tea {i}'}" for i in range(rows)]
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    head = ("\n".join(lines[: bad_at + 1]) + "\n").encode("cp1252")
    return bad_at + 2, len(head) + len(f"{bad_at},caf")  # its line, and the bad byte's offset


def _jsonl(path, rows, bad_at):
    lines = [f'{{"id": {i}, "t": "{"café" if i == bad_at else f"tea {i}"}"}}' for i in range(rows)]
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    head = ("\n".join(lines[:bad_at]) + "\n").encode("cp1252")
    return bad_at + 1, len(head) + len(f'{{"id": {bad_at}, "t": "caf')


@pytest.mark.parametrize(("name", "write"), [("in.csv", _csv), ("in.jsonl", _jsonl)])
def test_a_cp1252_file_is_refused_before_any_request_then_read_with_encoding(
    env, tmp_path, capsys, name, write
):
    source = tmp_path / name
    line, offset = write(source, 3000, 2500)  # far past the first window
    out = tmp_path / "out.parquet"
    argv = ["run", str(source), str(out), *RUN, "--window-rows", "100"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(source) in err and f"line {line}" in err and f"byte {offset}" in err, err
    assert "not UTF-8" in err and "--encoding" in err, err
    assert env.stats.total_requests == 0 and not out.exists()

    assert main([*argv, "--encoding", "cp1252"]) == 0
    got = pd.read_parquet(out)
    assert got["t"].iloc[2500] == "café" and got["output"].iloc[2500] == "Echo: R: café"
    assert got["output"].iloc[7] == "Echo: R: tea 7" and len(got) == 3000


def test_the_check_is_a_config_error_from_python(tmp_path):
    source = tmp_path / "in.csv"
    line, offset = _csv(source, 5, 3)
    with pytest.raises(ConfigError, match=rf"{source}: line {line}, byte {offset}"):
        open_input(source)
    assert open_input(source, encoding="cp1252").rows == 5


def test_a_multibyte_character_split_across_reads_is_fine(tmp_path, monkeypatch):
    monkeypatch.setattr("valar_pandas._files.encoding._CHECK_BLOCK", 7)
    source = tmp_path / "in.csv"
    source.write_text("id,t\n" + "".join(f"{i},naïve café ☕\n" for i in range(50)), "utf-8")
    assert open_input(source).rows == 50


@pytest.mark.parametrize(
    ("encoding", "message"),
    [("klingon", "unknown encoding 'klingon'"), ("base64", "not a text encoding")],
)
def test_a_bad_encoding_name_is_a_usage_error(env, tmp_path, capsys, encoding, message):
    pd.DataFrame({"t": ["x"]}).to_csv(tmp_path / "in.csv", index=False)
    argv = ["run", str(tmp_path / "in.csv"), str(tmp_path / "o.parquet"), *RUN]
    assert main([*argv, "--encoding", encoding]) == 2
    assert message in capsys.readouterr().err
    assert env.stats.total_requests == 0


def test_encoding_is_refused_for_parquet(env, tmp_path, capsys):
    pd.DataFrame({"t": ["x"]}).to_parquet(tmp_path / "in.parquet")
    argv = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "o.parquet"), *RUN]
    assert main([*argv, "--encoding", "cp1252"]) == 2
    assert "--encoding applies to CSV and JSON Lines" in capsys.readouterr().err


def test_a_binary_parquet_column_is_text_or_refused(env, tmp_path, capsys):
    good = pa.table({"t": pa.array([b"tea", "café".encode()], type=pa.binary())})
    pq.write_table(good, tmp_path / "good.parquet")
    out = tmp_path / "out.parquet"
    assert main(["run", str(tmp_path / "good.parquet"), str(out), *RUN]) == 0
    assert pd.read_parquet(out)["output"].tolist() == ["Echo: R: tea", "Echo: R: café"]
    sent = env.stats.total_requests
    bad = pa.table({"t": pa.array([b"tea"] * 5 + [b"caf\xe9"], type=pa.large_binary())})
    pq.write_table(bad, tmp_path / "bad.parquet")
    argv = ["run", str(tmp_path / "bad.parquet"), str(tmp_path / "o.parquet"), *RUN]
    assert main([*argv, "--window-rows", "4"]) == 2
    err = capsys.readouterr().err
    assert "column 't', row 5:" in err and "not UTF-8" in err, err
    assert env.stats.total_requests == sent
