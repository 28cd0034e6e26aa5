"""The demo's synthetic reviews: deterministic, well-formed and realistic enough."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from valar_pandas._cli import reviews as _reviews
from valar_pandas._cli.reviews import make_reviews

COLUMNS = ["review_id", "product", "category", "stars", "review", "label"]


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return make_reviews()


def _digest(df: pd.DataFrame) -> str:
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def test_same_seed_gives_identical_frame(reviews):
    pd.testing.assert_frame_equal(make_reviews(), reviews)
    pd.testing.assert_frame_equal(make_reviews(300, seed=3), make_reviews(300, seed=3))


def test_different_seed_gives_different_frame(reviews):
    other = make_reviews(seed=8)
    assert (other["review"] != reviews["review"]).mean() > 0.9


def test_deterministic_across_processes_and_hash_seeds():
    code = (
        "import hashlib; from valar_pandas._cli.reviews import make_reviews; "
        "print(hashlib.sha256(make_reviews(200, seed=5).to_csv(index=False).encode()).hexdigest())"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digests = set()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": root}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert digests == {_digest(make_reviews(200, seed=5))}


def test_schema_and_dtypes(reviews):
    assert list(reviews.columns) == COLUMNS
    assert isinstance(reviews.index, pd.RangeIndex)
    assert reviews.index.equals(pd.RangeIndex(2000))
    assert reviews["stars"].dtype == "int64"
    for col in ("review_id", "product", "category", "review", "label"):
        assert pd.api.types.is_string_dtype(reviews[col]), col
    assert reviews.notna().all().all()
    assert reviews["review_id"].is_unique
    assert reviews["review_id"].iloc[0] == "R-000001"
    assert reviews["review_id"].str.fullmatch(r"R-\d{6}").all()


def test_products_and_categories(reviews):
    assert 6 <= reviews["category"].nunique() <= 10
    assert 40 <= reviews["product"].nunique() <= 60
    assert (reviews.groupby("product")["category"].nunique() == 1).all()


def test_label_mix(reviews):
    share = reviews["label"].value_counts(normalize=True)
    assert set(share.index) == {"positive", "negative", "neutral"}
    assert share["positive"] == pytest.approx(0.5, abs=0.05)
    assert share["negative"] == pytest.approx(0.3, abs=0.05)
    assert share["neutral"] == pytest.approx(0.2, abs=0.05)


def test_stars_in_range_and_consistent_with_label(reviews):
    assert reviews["stars"].between(1, 5).all()
    mean = reviews.groupby("label")["stars"].mean()
    assert mean["negative"] < mean["neutral"] < mean["positive"]
    positive = reviews.loc[reviews["label"] == "positive", "stars"]
    negative = reviews.loc[reviews["label"] == "negative", "stars"]
    assert positive.min() >= 3 and (positive >= 4).mean() > 0.85
    assert negative.max() <= 4 and (negative <= 2).mean() > 0.8
    # Realistic noise: some disagreement between the stars and the label.
    assert (positive == 3).any()
    assert (reviews.loc[reviews["label"] == "neutral", "stars"] != 3).any()


def test_texts_mostly_unique(reviews):
    assert reviews["review"].nunique() / len(reviews) >= 0.97


def test_length_distribution(reviews):
    words = reviews["review"].str.split().str.len()
    assert words.min() >= 1
    assert words.max() <= 90
    assert 12 <= words.median() <= 40
    assert (words <= 5).mean() > 0.01  # some very short reviews
    assert (words >= 45).mean() > 0.02  # and some long ones
    assert reviews["review"].str.strip().eq(reviews["review"]).all()
    assert not reviews["review"].str.contains(r"[{}@|]|\s{2}", regex=True).any()


def test_texture(reviews):
    text = reviews["review"]
    assert text.str.contains(r"\b(?:but|though|however)\b").mean() > 0.1  # mixed reviews
    assert text.str.contains("!").any()
    assert text.str.contains(r"\b[A-Z]{4,}\b").any()  # a few ALL-CAPS words
    assert text.str.contains(r"refund|Returning|Returned|sent it back").any()
    assert text.str.contains(r"gift").any()


def test_every_product_has_fitting_clauses():
    for category, products in _reviews._PRODUCTS.items():
        nouns = {noun for _, noun in products}
        for bank in _reviews._CATALOG[category][1:]:
            for clause in bank:
                tags = clause.rpartition("@")[0].lstrip("!")
                assert not tags or set(tags.split("/")) <= nouns, (category, clause)
        for noun in nouns:
            for tone in range(3):
                assert len(_reviews._fitting(category, noun, tone)) >= 2, (category, noun, tone)


def test_small_n():
    empty = make_reviews(0)
    assert list(empty.columns) == COLUMNS
    assert len(empty) == 0
    assert empty["stars"].dtype == "int64"
    one = make_reviews(1)
    assert len(one) == 1
    assert one["review_id"].tolist() == ["R-000001"]
    assert one["review"].iloc[0]


def test_negative_n_raises():
    with pytest.raises(ValueError, match="n must be >= 0"):
        make_reviews(-1)


def test_fast():
    start = time.perf_counter()
    make_reviews(2000, seed=123)
    assert time.perf_counter() - start < 1.0  # typically ~0.1 s; slack for busy CI
