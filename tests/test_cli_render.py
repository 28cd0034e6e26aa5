"""``valar-pandas run``: one rendering of a row, whatever the window, shared with the accessor."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import MODEL

from valar_pandas._cli.main import main
from valar_pandas._store import RunStore
from valar_pandas.emulator import Latency

TEMPLATE = "r {id} {qty} {price} {name} {flag} {ts}"
FAST = ["--model", MODEL, "--completion-window", "asap", "--quiet", "--max-rps", "500"]
N = 20
BIG = 2**62 + 1  # far above 2**53: a float cannot hold it


@pytest.fixture
def env(serve_cli):
    """An emulator, with the command's environment pointing at it."""
    return serve_cli(latency=Latency(median=0.02, sigma=0.2))


def table() -> pa.Table:
    """Every kind of column, an int64 with nulls only in some windows of 7 (rows 9 and 15)."""
    start = dt.datetime(2024, 1, 1, 8, 30)
    return pa.table(
        {
            "id": pa.array([BIG + i for i in range(N)], pa.int64()),
            "qty": pa.array([None if i in (9, 15) else i for i in range(N)], pa.int64()),
            "price": pa.array([i + 0.25 for i in range(N)], pa.float64()),
            "name": pa.array([f"n{i}" for i in range(N)], pa.string()),
            "flag": pa.array([None if i == 11 else i % 2 == 0 for i in range(N)], pa.bool_()),
            "ts": pa.array([start + dt.timedelta(hours=i) for i in range(N)], pa.timestamp("us")),
        }
    )


def expected() -> list[str]:
    """What the emulator echoes for each row: integers as integers, nulls empty."""
    rows = table().to_pylist()
    return [
        " ".join(
            [
                "Echo: r",
                str(r["id"]),
                *([] if r["qty"] is None else [str(r["qty"])]),
                str(r["price"]),
                r["name"],
                *([] if r["flag"] is None else [str(r["flag"])]),
                str(r["ts"]),
            ]
        )
        for r in rows
    ]


def fingerprints(store) -> set[str]:
    with RunStore(store) as opened:
        return {str(row["fingerprint"]) for row in opened.rows(limit=None)}


def test_the_same_file_gives_the_same_requests_at_any_window_size(env, tmp_path, capsys):
    source = tmp_path / "in.parquet"
    pq.write_table(table(), source)  # no pandas metadata, as another tool writes it
    seen = {}
    for rows in (1, 2, 7, N):
        store = tmp_path / f"store-{rows}.sqlite3"
        out = tmp_path / f"out-{rows}.parquet"
        args = ["run", str(source), str(out), "--template", TEMPLATE, *FAST, "--json",
                "--window-rows", str(rows), "--store", str(store)]  # fmt: skip
        assert main(args) == 0, capsys.readouterr()
        assert json.loads(capsys.readouterr().out)["failed"] == 0
        assert pd.read_parquet(out)["output"].tolist() == expected()
        seen[rows] = fingerprints(store)
    assert len(seen[N]) == N
    assert all(found == seen[N] for found in seen.values())
    # Read by pandas with nullable types, the file gives the accessor the very same requests.
    frame = pd.read_parquet(source, dtype_backend="numpy_nullable")
    shared = tmp_path / "store-7.sqlite3"
    done = frame.valar.run(TEMPLATE, model=MODEL, completion_window="asap", progress=None,
                           store=shared)  # fmt: skip
    assert done.attrs["valar"]["cached"] == N and done.attrs["valar"]["http_requests"] == 0
    assert done["output"].tolist() == expected()


def test_a_file_pandas_wrote_shares_answers_with_plain_read_parquet(env, tmp_path, capsys):
    source = tmp_path / "in.parquet"
    table().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
                      .get).to_parquet(source)  # fmt: skip
    store = tmp_path / "store.sqlite3"
    args = ["run", str(source), str(tmp_path / "out.parquet"), "--template", TEMPLATE, *FAST,
            "--window-rows", "7", "--store", str(store)]  # fmt: skip
    assert main(args) == 0
    done = pd.read_parquet(source).valar.run(
        TEMPLATE, model=MODEL, completion_window="asap", progress=None, store=store
    )
    assert done.attrs["valar"]["cached"] == N and done.attrs["valar"]["http_requests"] == 0
    assert done["output"].tolist() == expected()
    # The accessor's run, in its turn, answers the command on the other file for free.
    again = tmp_path / "again.parquet"
    pq.write_table(table(), again)
    sent = env.stats.total_requests
    code = main(["run", str(again), str(tmp_path / "out2.parquet"), "--template", TEMPLATE,
                 *FAST, "--window-rows", "3", "--store", str(store), "--json"])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["cached"] == N
    assert env.stats.total_requests == sent


def test_nested_values_render_the_same_in_every_window(env, tmp_path):
    lists = pa.table({"tags": pa.array([[1, 2], [3, None], [4], None], pa.list_(pa.int64()))})
    source = tmp_path / "in.parquet"
    pq.write_table(lists, source)
    got = {}
    for rows in (1, 4):
        out = tmp_path / f"out-{rows}.parquet"
        args = ["run", str(source), str(out), "--template", "t {tags}", *FAST,
                "--window-rows", str(rows)]  # fmt: skip
        assert main(args) == 0
        got[rows] = pd.read_parquet(out)["output"].tolist()
    assert got[1] == got[4] == ["Echo: t [1, 2]", "Echo: t [3, None]", "Echo: t [4]", "Echo: t"]


def test_a_null_in_a_later_window_renders_as_empty_whatever_the_format(env, tmp_path, capsys):
    qty = [None if i == 25 else i for i in range(30)]
    pq.write_table(pa.table({"i": list(range(30)), "qty": pa.array(qty, pa.int64())}),
                   tmp_path / "in.parquet")  # fmt: skip
    out = tmp_path / "out.parquet"
    args = ["run", str(tmp_path / "in.parquet"), str(out), "--template", "Qty: {qty:05d} #{i}",
            *FAST, "--window-rows", "10", "--json"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 0
    got = pd.read_parquet(out)["output"].tolist()
    assert got[3] == "Echo: Qty: 00003 #3" and got[25] == "Echo: Qty: #25"


@pytest.mark.parametrize(
    ("column", "template", "message"),
    [
        (pa.array([None] * 25 + ["n/a"] * 5, pa.string()), "Code {v:>5d}", "Unknown format code"),
        (pa.array(list(range(25)) + [0x110000] * 5, pa.int64()), "Char {v:c}", "range"),
    ],
)
def test_a_value_no_window_but_a_later_one_can_render_stops_before_any_request(
    env, tmp_path, capsys, column, template, message
):
    pq.write_table(pa.table({"v": column, "i": list(range(30))}), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    args = ["run", str(tmp_path / "in.parquet"), str(out), "--template", template, *FAST,
            "--window-rows", "10"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "row 5 (index 25)" in err and "column 'v'" in err and message in err, err
    assert env.stats.total_requests == 0 and not out.exists()
