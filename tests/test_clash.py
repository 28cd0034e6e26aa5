"""Output columns never land on the wrong rows nor over other answers: clashes are refused
before any request, and every other label shape keeps each answer on its own row."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from helpers import FAST

from valar_pandas import ConfigError
from valar_pandas._frame.merge import attach, check_columns, planned_columns

STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["open", "closed"]},
        "input_tokens": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["status", "input_tokens"],
}


def test_a_repeated_output_label_is_refused_before_any_request(serve):
    emulator, client = serve()
    df = pd.DataFrame(
        [["alpha", "y", "z"], ["beta", "q", "r"]], columns=["review", "output", "output"]
    )
    with pytest.raises(ConfigError, match=r"2 columns named 'output'.*into="):
        df.valar.run("R: {review}", client=client, **FAST)
    assert emulator.stats.total_requests == 0
    out = df.valar.run("R: {review}", into="answer", client=client, **FAST)
    assert out["answer"].tolist() == ["Echo: R: alpha", "Echo: R: beta"]
    assert out.iloc[:, 1:3].values.tolist() == [["y", "z"], ["q", "r"]]  # untouched


@pytest.mark.parametrize("rows", [2, 3])
def test_repeated_labels_that_do_not_clash_keep_every_answer_on_its_row(serve, rows):
    _, client = serve()
    names = ["alpha", "beta", "gamma"][:rows]
    df = pd.DataFrame([[n, "x", "y"] for n in names], columns=["review", "note", "note"])
    out = df.valar.run("R: {review}", client=client, **FAST)
    assert out["output"].tolist() == [f"Echo: R: {n}" for n in names]
    assert list(out.columns) == ["review", "note", "note", "output", "output_error"]


def test_rerunning_on_its_own_output_replaces_in_place(serve):
    _, client = serve()
    df = pd.DataFrame({"review": ["alpha", "beta"]})
    first = df.valar.run("R: {review}", client=client, **FAST)
    again = first.assign(review=["gamma", "delta"]).valar.run("R: {review}", client=client, **FAST)
    assert list(again.columns) == ["review", "output", "output_error"]
    assert again["output"].tolist() == ["Echo: R: gamma", "Echo: R: delta"]


def test_multiindex_columns_get_full_keys_and_rerun_in_place(serve):
    _, client = serve()
    columns = pd.MultiIndex.from_tuples([("in", "review"), ("in", "n")])
    df = pd.DataFrame([["alpha", 1], ["beta", 2]], columns=columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas deprecates partial keys on MultiIndex columns
        out = df.valar.run(lambda r: f"R: {r[('in', 'review')]}", client=client, **FAST)
        again = out.valar.run(lambda r: f"S: {r[('in', 'review')]}", client=client, **FAST)
    assert list(again.columns) == [*columns, ("output", ""), ("output_error", "")]
    assert again[("output", "")].tolist() == ["Echo: S: alpha", "Echo: S: beta"]


def test_multiindex_columns_under_the_output_name_are_refused(serve):
    emulator, client = serve()
    columns = pd.MultiIndex.from_tuples([("in", "review"), ("output", "a"), ("output", "b")])
    df = pd.DataFrame([["alpha", 1, 2], ["beta", 3, 4]], columns=columns)
    with pytest.raises(ConfigError, match=r"columns under 'output' \(\('output', 'a'\)"):
        df.valar.run(lambda r: f"R: {r[('in', 'review')]}", client=client, **FAST)
    assert emulator.stats.total_requests == 0


@pytest.mark.parametrize("prop", ["response_id", "status", "input_tokens", "output_tokens"])
def test_schema_property_clashing_with_a_detail_column_is_refused(serve, prop):
    emulator, client = serve()
    df = pd.DataFrame({"review": ["fine", "bad"]})
    schema = {
        "type": "object",
        "properties": {prop: {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": [prop],
    }
    with pytest.raises(
        ConfigError,
        match=rf"schema property '{prop}' and details=True's {prop} column would both be "
        rf"written to 'f_{prop}'; rename the property, or leave details=False",
    ):
        df.valar.score("R: {review}", schema=schema, into="f", details=True, client=client, **FAST)
    assert emulator.stats.total_requests == 0
    out = df.valar.score("R: {review}", schema=schema, into="f", client=client, **FAST)
    assert out[f"f_{prop}"].between(0, 9).all()  # the model's answers


def test_score_value_columns_are_checked_against_the_frame(serve):
    emulator, client = serve()
    df = pd.DataFrame([["fine", 1, 2]], columns=["review", "f_status", "f_status"])
    with pytest.raises(ConfigError, match=r"2 columns named 'f_status'.*schema property 'status'"):
        df.valar.score("R: {review}", schema=STATUS_SCHEMA, into="f", client=client, **FAST)
    assert emulator.stats.total_requests == 0


def test_previews_do_not_check_outputs():
    df = pd.DataFrame([["alpha", "y", "z"]], columns=["review", "output", "output"])
    assert len(df.valar.requests("R: {review}", model=FAST["model"])) == 1


def test_check_columns_names_both_sides_in_either_language():
    with pytest.raises(ConfigError) as raised:
        check_columns(pd.Index(["x", "x"]), planned_columns("x", False), frame="in.csv")
    assert str(raised.value).startswith("in.csv has 2 columns named 'x'")
    assert "--into" in str(raised.value.command) and "into=" not in str(raised.value.command)


def test_attach_never_broadcasts_over_repeated_labels():
    df = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    with pytest.raises(ValueError, match="2 columns named 'a'"):
        attach(df, {"a": pd.array(["p", "q"], dtype="str")})
