"""Input files are read as pandas reads them, at any size, by ``valar-pandas run``."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import MODEL
from pandas._libs.parsers import STR_NA_VALUES

from valar_pandas import ConfigError
from valar_pandas._cli.main import main
from valar_pandas._cli.stream import to_frame
from valar_pandas._files import NA_MARKERS, open_input
from valar_pandas.emulator import Latency

FAST = ["--model", MODEL, "--completion-window", "asap", "--quiet", "--max-rps", "500"]
BLOCK = 1 << 22  # the readers' block: what pyarrow's streaming readers see at once


@pytest.fixture
def env(serve_cli):
    """An emulator, with the command's environment pointing at it."""
    return serve_cli(latency=Latency(median=0.02, sigma=0.2))


def read(path) -> pd.DataFrame:
    """The whole input as the command reads it, window conversion included."""
    source = open_input(path)
    return to_frame(pa.Table.from_batches(source.batches(source.schema.names), source.schema))


def cells(frame: pd.DataFrame) -> list[list[object]]:
    """Every value as a row would render it: missing values as None, numbers as numbers."""
    return frame.astype(object).where(frame.notna(), None).values.tolist()


def test_the_missing_value_markers_are_pandas_own():
    assert set(NA_MARKERS) == set(STR_NA_VALUES)


def test_csv_missing_markers_are_missing_in_text_columns_too(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('name,n\nann,1\nNA,2\nnull,\n"",4\nNone,5\nNAB,6\n', encoding="utf-8")
    expected = pd.read_csv(source, dtype_backend="numpy_nullable")
    got = read(source)
    assert cells(got) == cells(expected)
    assert cells(got) == [["ann", 1], [None, 2], [None, None], [None, 4], [None, 5], ["NAB", 6]]


def test_a_large_csv_with_quoted_newlines_and_missing_markers(env, tmp_path, capsys):
    n = 40_000  # about 5.5 MB: the quoted newlines run past the first block
    markers = ["NA", "null", "", "None", "<NA>", "n/a", "NULL", "nan"]
    frame = pd.DataFrame(
        {
            "i": range(n),
            "text": [f'line one of {i}\nline two, "quoted"\n{"x" * 80}' for i in range(n)],
            "note": [markers[i % 10] if i % 10 < len(markers) else f"note {i}" for i in range(n)],
            "qty": pd.array([None if i % 7 == 0 else i for i in range(n)], dtype="Int64"),
        }
    )
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False, na_rep="")
    assert source.stat().st_size > BLOCK
    expected = pd.read_csv(source, dtype_backend="numpy_nullable")
    got = read(source)
    assert list(got.columns) == list(expected.columns)
    assert cells(got) == cells(expected)
    assert got["note"].isna().sum() == n * len(markers) // 10
    out = tmp_path / "out.parquet"
    args = ["run", str(source), str(out), "--template", "{i} {note} {qty}", *FAST, "--limit", "20"]
    assert main(args) == 0, capsys.readouterr().err
    answers = pd.read_parquet(out)["output"].tolist()
    assert answers[:3] == ["Echo: 0", "Echo: 1 1", "Echo: 2 2"]  # integers stay integers
    assert answers[8] == "Echo: 8 note 8 8"


def test_a_csv_column_whose_later_values_do_not_fit_its_first_type_is_text(tmp_path):
    n = 300_000
    values = [str(i) for i in range(n)] + ["n/a", "12abc"]
    pd.DataFrame({"code": values, "when": "2024-01-01T10:00:00"}).to_csv(
        tmp_path / "in.csv", index=False
    )
    got = read(tmp_path / "in.csv")
    expected = pd.read_csv(tmp_path / "in.csv", low_memory=False)
    assert [str(v) for v in expected["code"].tolist()] == [
        "nan" if v is None else v for v in cells(got[["code"]]) for v in v
    ]  # pandas reads the numbers as numbers, then text: each renders as written
    assert cells(got[["code"]])[-3:] == [[str(n - 1)], [None], ["12abc"]]
    # Dates stay text, as pandas reads them, so they are sent as written.
    assert got["when"].tolist()[0] == expected["when"].tolist()[0] == "2024-01-01T10:00:00"


def test_json_lines_take_their_columns_from_every_line(env, tmp_path, capsys):
    n = 100_000  # well past the first block
    lines = [{"i": i, "word": f"w{i}", "pad": "p" * 40} for i in range(n)]
    lines[-2]["late"] = "here"
    lines[-1]["score"] = 1.5
    lines[5]["score"] = 2
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert source.stat().st_size > BLOCK
    expected = pd.read_json(source, lines=True, dtype_backend="numpy_nullable")
    got = read(source)
    assert list(got.columns) == list(expected.columns) == ["i", "word", "pad", "score", "late"]
    assert cells(got) == cells(expected)
    out = tmp_path / "out.parquet"
    args = ["run", str(source), str(out), "--template", "{i} {late} {score}", *FAST, "--json"]
    assert main([*args, "--dry-run"]) == 0  # every window is read and rendered
    assert json.loads(capsys.readouterr().out)["rows"] == n
    assert main([*args, "--limit", "8"]) == 0
    assert pd.read_parquet(out)["output"].tolist()[4:7] == ["Echo: 4", "Echo: 5 2.0", "Echo: 6"]


def test_json_lines_name_the_line_that_does_not_read(tmp_path):
    source = tmp_path / "in.jsonl"
    body = "".join(json.dumps({"i": i}) + "\n" for i in range(100_000))
    source.write_text(body + '{"i": 1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 100001: JSON parse error"):
        open_input(source)
    source.write_text(body + '{"i": "one"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 100001: .*Column\(/i\) changed from number"):
        open_input(source)
    late = "".join(json.dumps({"j": "x" * 60}) + "\n" for i in range(100_000))
    source.write_text('{"i": 1}\n' + late + '{"i": "one"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lines \d+ to 100002: .*Field i has incompatible"):
        open_input(source)


def test_a_parquet_directory_with_pandas_index_in_some_parts(env, tmp_path):
    frame = pd.DataFrame({"i": range(12), "word": [f"w{i}" for i in range(12)]})
    parts = tmp_path / "parts"
    parts.mkdir()
    frame.iloc[:4].to_parquet(parts / "a.parquet")  # a range index: not stored as a column
    frame.iloc[4:8].set_axis([40, 50, 60, 70]).to_parquet(parts / "b.parquet", index=True)
    frame.iloc[8:].to_parquet(parts / "c.parquet")
    assert "__index_level_0__" in pq.read_schema(parts / "b.parquet").names
    out = tmp_path / "out.parquet"
    assert main(["run", str(parts), str(out), "--template", "{i} {word}", *FAST]) == 0
    got = pd.read_parquet(out)
    assert list(got.columns) == ["i", "word", "output", "output_error"]
    expected = pd.read_parquet(parts)
    assert cells(got[["i", "word"]]) == cells(expected[["i", "word"]])
    assert got["output"].tolist() == [f"Echo: {i} w{i}" for i in range(12)]


def test_parquet_parts_that_differ_read_as_one_table_or_name_the_column(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"i": [1, 2], "x": [1, 2]}), parts / "a.parquet")
    pq.write_table(pa.table({"i": [3], "x": [2.5], "y": ["new"]}), parts / "b.parquet")
    got = read(parts)
    assert cells(got) == [[1, 1.0, None], [2, 2.0, None], [3, 2.5, "new"]]
    pq.write_table(pa.table({"i": ["three"]}), parts / "c.parquet")
    with pytest.raises(
        ConfigError, match=r"c\.parquet cannot be read with the parts before it.*Field i has"
    ):
        open_input(parts)


def test_a_csv_column_of_integers_with_a_later_fraction_reads_as_floats(tmp_path):
    n = 600_000
    source = tmp_path / "in.csv"
    x = pd.Series([*range(n), 2.5], dtype=object)
    e = pd.array([*([None] * n), 7], dtype="Int64")
    pd.DataFrame({"x": x, "e": e}).to_csv(source, index=False)  # 0, 1, …, 2.5 and , , …, 7
    assert source.stat().st_size > BLOCK
    got = read(source)
    assert str(got["x"].dtype) == "float64" and got["x"].tolist()[-2:] == [n - 1.0, 2.5]
    assert got["e"].dtype == "Int64" and got["e"].tolist()[-1] == 7
    assert cells(got[["x"]]) == cells(pd.read_csv(source, dtype_backend="numpy_nullable")[["x"]])


def test_parquet_parts_whose_widened_type_cannot_hold_a_value_are_refused_up_front(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"x": pa.array([1], pa.int64())}), parts / "a.parquet")
    pq.write_table(pa.table({"x": pa.array([2**63 + 1], pa.uint64())}), parts / "b.parquet")
    with pytest.raises(ConfigError, match=r"column 'x' of b\.parquet cannot be read as int64"):
        open_input(parts)
