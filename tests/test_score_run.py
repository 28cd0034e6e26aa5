"""df.valar.score end to end against the emulator: typed columns and the invalid-answer paths."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import FAST

from valar_pandas import ConfigError, RowErrors
from valar_pandas._cli.reviews import make_reviews
from valar_pandas.emulator import Faults

SENTIMENT = "Classify the sentiment of this product review.\n\nReview: {review}"
LABELS = ["positive", "negative", "neutral"]


def test_labels_become_a_category_column(serve):
    _, client = serve()
    df = make_reviews(40)
    out = df.valar.score(SENTIMENT, labels=LABELS, into="sentiment", client=client, **FAST)
    assert isinstance(out["sentiment"].dtype, pd.CategoricalDtype)
    assert list(out["sentiment"].cat.categories) == LABELS
    assert out["sentiment"].notna().all() and out["sentiment_error"].isna().all()
    assert (out["sentiment"].astype(str) == out["label"]).mean() > 0.6


def test_invalid_answers_are_errors_quoting_the_reply(serve):
    _, client = serve(faults=Faults(invalid_structured=0.3), seed=1)
    df = make_reviews(80)
    out = df.valar.score(SENTIMENT, labels=LABELS, into="s", client=client, **FAST)
    bad = out["s_error"].notna()
    assert 10 <= bad.sum() <= 40
    assert out.loc[bad, "s"].isna().all() and out.loc[~bad, "s"].notna().all()
    assert out.loc[bad, "s_error"].str.contains("not valid JSON|is not one of|outside").all()
    assert out.attrs["valar"]["failed"] == bad.sum()


def test_scale_is_typed_and_never_clipped(serve):
    _, client = serve(faults=Faults(invalid_structured=0.3), seed=2)
    out = make_reviews(60).valar.score(
        "How positive is this review?\n\nReview: {review}", scale=(1, 5), into="stars",
        client=client, **FAST,
    )  # fmt: skip
    assert str(out["stars"].dtype) == "Int64"
    assert out["stars"].dropna().between(1, 5).all()
    assert out["stars_error"].dropna().str.contains("outside|not valid JSON|number").all()


def test_schema_gives_one_typed_column_per_property(serve):
    _, client = serve()
    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": LABELS},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "recommend": {"type": "boolean"},
        },
        "required": ["sentiment", "stars", "recommend"],
    }
    out = make_reviews(20).valar.score(SENTIMENT, schema=schema, into="f", client=client, **FAST)
    assert str(out["f_stars"].dtype) == "Int64" and str(out["f_recommend"].dtype) == "boolean"
    assert out["f_sentiment"].isin(LABELS).all() and out["f_error"].isna().all()


def test_reasons_column(serve):
    _, client = serve()
    out = make_reviews(5).valar.score(
        SENTIMENT, labels=LABELS, reasons=True, into="s", client=client, **FAST
    )
    assert out["s_reason"].notna().all()


def test_retries_on_invalid_reask_under_a_fresh_salt(serve):
    emulator, client = serve(faults=Faults(invalid_structured=0.3), seed=1)
    df = make_reviews(50)
    first = df.valar.score(SENTIMENT, labels=LABELS, into="s", client=client, **FAST)
    invalid = int(first["s_error"].notna().sum())
    before = emulator.stats.inferences
    again = df.valar.score(
        SENTIMENT, labels=LABELS, into="s", client=client, retries_on_invalid=1, **FAST
    )
    assert again.attrs["valar"]["invalid_retries"] == invalid
    assert emulator.stats.inferences == before + invalid  # only the invalid rows were re-asked


def test_re_asks_can_succeed_and_are_billed(serve):
    emulator, client = serve(faults=Faults(invalid_structured=0.3), seed=1)
    df = make_reviews(60)
    first = df.valar.score(SENTIMENT, labels=LABELS, into="s", client=client, **FAST)
    invalid = int(first["s_error"].notna().sum())
    before = emulator.stats.inferences
    out = df.valar.score(
        SENTIMENT, labels=LABELS, into="s", client=client, retries_on_invalid=3, **FAST
    )
    asked_again = out.attrs["valar"]["invalid_retries"]
    assert emulator.stats.inferences == before + asked_again  # every re-ask is billed
    still = int(out["s_error"].notna().sum())
    assert invalid > 0 and still < invalid  # some re-asks came back readable
    assert out.attrs["valar"]["failed"] == still and out["s"].notna().sum() == 60 - still


def test_a_rerun_reuses_stored_replies(serve):
    emulator, client = serve()
    df = make_reviews(30)
    first = df.valar.score(SENTIMENT, labels=LABELS, into="s", client=client, **FAST)
    sent = emulator.stats.total_requests
    second = df.valar.score(SENTIMENT, labels=LABELS, into="s", client=client, **FAST)
    assert emulator.stats.total_requests == sent
    pd.testing.assert_frame_equal(first, second)


def test_realtime_mode(serve):
    _, client = serve()
    out = make_reviews(5).valar.score(
        SENTIMENT,
        labels=LABELS,
        into="s",
        client=client,
        mode="realtime",
        model=FAST["model"],
        progress=None,
    )
    assert out["s"].notna().all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"labels": LABELS, "scale": (1, 5)}, "exactly one"),
        ({"labels": ["only"]}, "at least two"),
        ({"scale": (5, 1)}, "lo < hi"),
        ({"labels": LABELS, "retries_on_invalid": -1}, "retries_on_invalid"),
    ],
)
def test_bad_specs_fail_before_any_request(serve, kwargs, message):
    emulator, client = serve()
    with pytest.raises(ConfigError) as info:
        make_reviews(3).valar.score(SENTIMENT, client=client, **kwargs, **FAST)
    assert message in str(info.value)
    assert emulator.stats.total_requests == 0


def test_errors_raise_counts_unreadable_replies(serve):
    _, client = serve(faults=Faults(invalid_structured=0.5), seed=3)
    with pytest.raises(RowErrors) as info:
        make_reviews(20).valar.score(
            SENTIMENT, labels=LABELS, into="s", client=client, errors="raise", **FAST
        )
    assert info.value.failed > 0 and len(info.value.frame) == 20
