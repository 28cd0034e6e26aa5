"""Where ``valar-pandas run`` writes: only its own files, never inside its own input."""

from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow as pa
import pytest
from helpers import MODEL, TEMPLATE, echo, words

from valar_pandas import ConfigError
from valar_pandas._cli.main import main
from valar_pandas._files import MANIFEST, open_output
from valar_pandas.emulator import Latency

RUN = ["--model", MODEL, "--template", TEMPLATE, "--completion-window", "asap", "--quiet"]


@pytest.fixture
def env(serve_cli):
    """An emulator, with the command's environment pointing at it."""
    return serve_cli(latency=Latency(median=0.02, sigma=0.3))


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_folder_of_another_tools_parts_is_refused_and_left_alone(env, tmp_path, capsys):
    words(10).to_parquet(tmp_path / "in.parquet")
    spark = tmp_path / "sparkout"
    spark.mkdir()
    pd.DataFrame({"x": [1, 2]}).to_parquet(spark / "part-00000.parquet")
    pd.DataFrame({"x": [3]}).to_parquet(spark / "part-00007.parquet")
    (spark / "_SUCCESS").write_bytes(b"")
    before = _snapshot(spark)
    for _ in range(2):  # and the same again: nothing changes in between
        assert main(["run", str(tmp_path / "in.parquet"), str(spark), *RUN]) == 2
        err = capsys.readouterr().err
        for name in ("part-00000.parquet", "part-00007.parquet", "_SUCCESS"):
            assert name in err, err
        assert "not written by valar-pandas" in err, err
        assert _snapshot(spark) == before
    assert env.stats.total_requests == 0


def test_a_manifest_of_another_shape_is_not_ours(env, tmp_path, capsys):
    words(4).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text('{"files": ["a.csv"]}')
    assert main(["run", str(tmp_path / "in.parquet"), str(out), *RUN]) == 2
    assert MANIFEST in capsys.readouterr().err
    assert (out / MANIFEST).read_text() == '{"files": ["a.csv"]}'
    assert env.stats.total_requests == 0


def test_our_own_folder_is_reused_and_only_our_parts_are_replaced(env, tmp_path):
    df = words(20)
    df.to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), *RUN]
    assert main([*argv, "--window-rows", "5"]) == 0
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-{i:05d}.parquet" for i in range(4)]
    # Files someone else put beside ours, one of them named like a part we never wrote.
    (out / "notes.txt").write_text("mine")
    pd.DataFrame({"x": [1]}).to_parquet(out / "part-00009.parquet")
    theirs = (out / "part-00009.parquet").read_bytes()
    assert main([*argv, "--window-rows", "10"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [MANIFEST, "notes.txt", "part-00000.parquet", "part-00001.parquet",
                     "part-00009.parquet"]  # fmt: skip
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "part-00009.parquet").read_bytes() == theirs
    manifest = json.loads((out / MANIFEST).read_text())
    assert [p["file"] for p in manifest["parts"]] == ["part-00000.parquet", "part-00001.parquet"]
    parts = [pd.read_parquet(out / p["file"]) for p in manifest["parts"]]
    assert pd.concat(parts)["output"].tolist() == echo(df)


def test_a_run_that_stops_before_writing_leaves_the_previous_result_whole(env, tmp_path, capsys):
    words(6).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL, "--quiet"]
    assert main([*argv, "--template", TEMPLATE]) == 0
    before = _snapshot(out)
    sent = env.stats.total_requests
    # The first window cannot be rendered ('apple' has no '.2f' format): exit 2.
    assert main([*argv, "--template", "item {word:.2f}"]) == 2
    assert "cannot format" in capsys.readouterr().err
    assert _snapshot(out) == before and env.stats.total_requests == sent


def test_an_unfinished_folder_of_ours_is_taken_up_again(tmp_path):
    out = tmp_path / "out"
    table = pa.table({"x": [1, 2, 3]})
    first = open_output(out, tmp_path / "in.parquet")
    first.write(table)
    first.write(table)
    first.abort()  # as a killed or interrupted run leaves it: parts, no manifest
    assert not (out / MANIFEST).exists() and (out / "part-00001.parquet").exists()
    second = open_output(out, tmp_path / "in.parquet")
    second.write(table)
    second.commit()
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.parquet"]
    assert json.loads((out / MANIFEST).read_text())["rows"] == 3


def test_checking_a_folder_output_changes_nothing_until_the_first_write(tmp_path):
    out = tmp_path / "new" / "out"
    output = open_output(out, tmp_path / "in.parquet")
    output.abort()
    assert not (tmp_path / "new").exists()  # the folders it made for nothing are gone again


def test_temporary_files_of_others_are_never_swept(env, tmp_path):
    words(5).to_parquet(tmp_path / "in.parquet")
    # Named like a temporary file of ours, from a process that is gone, but not ours.
    lookalike = tmp_path / ".out.parquet.99999999.tmp"
    lookalike.write_text("someone else's")
    assert main(["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), *RUN]) == 0
    assert lookalike.read_text() == "someone else's"
    assert pd.read_parquet(tmp_path / "out.parquet")["output"].tolist() == echo(words(5))


def test_an_existing_single_file_output_is_replaced_when_complete(env, tmp_path):
    words(5).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"an older result")
    assert main(["run", str(tmp_path / "in.parquet"), str(out), *RUN]) == 0
    assert pd.read_parquet(out)["output"].tolist() == echo(words(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet"]


@pytest.mark.parametrize("name", ["scored", "scored.parquet", "deeper/scored"])
def test_an_output_inside_the_input_folder_is_refused_every_time(env, tmp_path, capsys, name):
    data = tmp_path / "data"
    data.mkdir()
    words(8).to_parquet(data / "a.parquet")
    before = _snapshot(data)
    for _ in range(2):  # the second identical run behaves exactly like the first
        code = main(["run", str(data), str(data / name), *RUN])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "inside the input directory" in err, err
        assert _snapshot(data) == before
    assert env.stats.total_requests == 0


def test_an_output_inside_the_input_folder_is_refused_from_python(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ConfigError, match="inside the input directory"):
        open_output(data / "out", data)
    link = tmp_path / "alias"
    os.symlink(data, link)
    with pytest.raises(ConfigError, match="inside the input directory"):
        open_output(link / "out.parquet", data)


def test_an_input_inside_the_output_folder_is_refused(env, tmp_path, capsys):
    words(6).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "in.parquet"), str(out), *RUN]) == 0
    before = _snapshot(out)
    # One of our own parts as the input of a run into the same folder: it would be replaced.
    assert main(["run", str(out / "part-00000.parquet"), str(out), *RUN]) == 2
    assert "inside the output directory" in capsys.readouterr().err
    assert _snapshot(out) == before
