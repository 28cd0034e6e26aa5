"""Merging outcomes into a new frame, and the progress tally. No I/O."""

import pandas as pd
import pytest

from valar_pandas._core.models import Finished, Outcome, Retrying, Started, Submitted
from valar_pandas._core.prices import Price
from valar_pandas._display.tally import Tally
from valar_pandas._frame.merge import merge

OK = Outcome("completed", text="yes", response_id="r1", input_tokens=10, output_tokens=1)
BAD = Outcome("failed", error="failed: boom", response_id="r2")


@pytest.mark.parametrize(
    "index",
    [
        pd.RangeIndex(2),
        pd.Index(["b", "a"]),
        pd.Index([7, 7]),
        pd.MultiIndex.from_tuples([("x", 1), ("x", 2)]),
        pd.Index([pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-01")]),
    ],
    ids=["range", "string", "duplicate", "multi", "datetime"],
)
def test_merge_keeps_index_and_order(index):
    df = pd.DataFrame({"q": ["one", "two"]}, index=index)
    out = merge(df, [OK, BAD], "ans", details=False)
    assert out.index.equals(df.index)
    assert list(out.columns) == ["q", "ans", "ans_error"]
    assert out["ans"].iloc[0] == "yes" and pd.isna(out["ans"].iloc[1])
    assert pd.isna(out["ans_error"].iloc[0]) and out["ans_error"].iloc[1] == "failed: boom"
    assert list(df.columns) == ["q"]  # input untouched


def test_merge_details_columns_and_dtypes():
    df = pd.DataFrame({"q": ["one", "two"]})
    out = merge(df, [OK, BAD], "ans", details=True)
    assert list(out.columns)[1:] == [
        "ans",
        "ans_error",
        "ans_response_id",
        "ans_status",
        "ans_input_tokens",
        "ans_output_tokens",
        "ans_reasoning_tokens",
        "ans_partial",
    ]
    assert str(out["ans_input_tokens"].dtype) == "Int64"
    assert out["ans_input_tokens"].tolist()[0] == 10 and pd.isna(out["ans_input_tokens"].iloc[1])
    assert out["ans_status"].tolist() == ["completed", "failed"]
    assert out["ans"].dtype == "str"


def test_merge_replaces_existing_output_columns_like_assign():
    df = pd.DataFrame({"q": ["one"], "ans": ["old"]})
    out = merge(df, [OK], "ans", details=False)
    assert out["ans"].tolist() == ["yes"] and df["ans"].tolist() == ["old"]


def test_merge_rejects_wrong_length():
    with pytest.raises(ValueError, match="1 outcomes for 2 rows"):
        merge(pd.DataFrame({"q": [1, 2]}), [OK], "a", details=False)


def test_tally_folds_events():
    t = Tally()
    for event in [
        Started(total=5, unique=3),
        Finished(None, Outcome("skipped", error="skipped: x"), 1),
        Submitted("a", "r1", 2),
        Submitted("b", "r2", 1),
        Submitted("c", "r3", 1),
        Retrying("HTTP 429", 1.0),
        Finished("a", OK, 2),
        Finished("b", BAD, 1),
    ]:
        t.add(event)
    assert (t.total, t.unique, t.submitted, t.done) == (5, 3, 4, 4)
    assert (t.failed, t.skipped, t.retries, t.running) == (1, 1, 1, 1)
    assert (t.input_tokens, t.output_tokens) == (10, 1)
    assert t.summary() == "running=1 failed=1 skipped=1 retries=1 tokens=11"


def test_tally_prices_spend_and_leaves_cached_rows_free():
    t = Tally(price=Price(input=1.0, output=10.0))
    t.add(Started(total=3, unique=2))
    t.add(Finished("a", OK, 2, cached=True))
    t.add(Submitted("b", "r2", 1))
    t.add(Finished("b", OK, 1))
    assert (t.cached, t.done, t.running) == (2, 3, 0)
    assert t.spent == pytest.approx((10 * 1.0 + 1 * 10.0) / 1e6)
    assert t.summary().endswith("cached=2 tokens=11 spent=$0.0000")
