"""evals.judge(): models judging answer columns without truth, against the emulator's judge.

The emulated judge (docs/emulator.md, "Judge prompts") prefers the answer naming the
review's lexicon sentiment, so which answer is "correct" is known here row by row.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from valar_pandas import ConfigError
from valar_pandas._cli.reviews import make_reviews
from valar_pandas.emulator._judge import read_judge
from valar_pandas.emulator._sentiment import classify_sentiment
from valar_pandas.evals import judge

GOOD, WEAK = "zai-org/GLM-5.1-FP8", "google/gemma-4-31B-it"
QUESTION = "Classify the sentiment of this product review.\n\nReview: {review}"
ASK: dict[str, Any] = {"max_output_tokens": 16, "completion_window": "asap", "progress": None}
_NEXT = {"positive": "negative", "negative": "neutral", "neutral": "positive"}


def _answers(n: int) -> pd.DataFrame:
    df = make_reviews(n)
    right = [classify_sentiment(r) for r in df["review"]]
    df["right"] = [f"The sentiment is {r}." for r in right]
    df["wrong"] = [f"The sentiment is {_NEXT[r]}." for r in right]
    return df


def test_the_judge_prefers_the_correct_answer(serve: Any) -> None:
    emulator, client = serve()
    df = _answers(40)
    result = judge(
        df, ["wrong", "right"], question=QUESTION, models=GOOD, client=client, store=False, **ASK
    )
    table = result.table.set_index("answer")
    assert table.loc["right", ["matches", "wins", "ties", "losses"]].tolist() == [40, 40, 0, 0]
    assert table.loc["wrong", ["wins", "losses"]].tolist() == [0, 40]
    assert table.loc["right", "win_rate"] == 1.0 and table.loc["wrong", "win_rate"] == 0.0
    assert result.consistency[GOOD] == 1.0
    assert (result.verdicts["winner"] == "right").all()
    # Each pair was shown in both orders: two requests a row, through the normal machinery.
    assert emulator.stats.inferences == 80
    assert set(result.results["prompt"].astype(str)) == {"wrong | right", "right | wrong"}


def test_position_swapping_cancels_a_lean_to_the_first_place(serve: Any) -> None:
    _, client = serve(judge_position_bias=0.5)
    df = _answers(60)
    result = judge(
        df, ["right", "wrong"], question=QUESTION, models=GOOD, client=client, store=False, **ASK
    )
    verdicts = result.verdicts
    # Shown in one order only, the lean would hand the wrong answer wins...
    assert (verdicts["second_shown_first"] == "wrong").sum() > 0
    # ...shown in both, it never wins: an order that follows the place is outvoted into a tie.
    assert not (verdicts["winner"] == "wrong").any()
    table = result.table.set_index("answer")
    assert table.loc["wrong", "wins"] == 0 and table.loc["right", "losses"] == 0
    assert table.loc["right", "wins"] > 0 and table.loc["right", "ties"] > 0
    inconsistent = ~verdicts["consistent"].astype(bool)
    assert result.consistency[GOOD] == pytest.approx(1 - inconsistent.mean())
    assert (verdicts.loc[inconsistent, "winner"] == "tie").all()
    low, high = table.loc["right", ["win_rate_low", "win_rate_high"]]
    assert low <= table.loc["right", "win_rate"] <= high


def test_rubric_scores_right_answers_high(serve: Any) -> None:
    _, client = serve()
    df = _answers(20)
    result = judge(
        df, ["right", "wrong"], question=QUESTION, models=GOOD, mode="rubric", scale=(1, 5),
        client=client, store=False, **ASK,
    )  # fmt: skip
    table = result.table.set_index("answer")
    assert table.loc["right", ["scored", "mean_score"]].tolist() == [20, 5.0]
    assert table.loc["wrong", ["scored", "mean_score"]].tolist() == [20, 1.0]
    assert result.consistency.empty


def test_agreement_between_judges(serve: Any) -> None:
    emulator, client = serve(model_errors={WEAK: 0.3})
    df = _answers(40)
    # Right on odd rows only: the winner varies (a tie where both are right), so kappa is
    # defined (one class on both sides would leave chance agreement at 1).
    df["half"] = df["right"].where(df.index % 2 == 1, df["wrong"])
    third = "moonshotai/Kimi-K2.6"
    result = judge(
        df, ["right", "half"], question=QUESTION, models=[GOOD, third, WEAK],
        client=client, store=False, **ASK,
    )  # fmt: skip
    agreement = result.agreement
    assert agreement.loc[GOOD, third] == pytest.approx(1.0)  # two judges without errors
    # Cohen's kappa, by hand, between the good judge and the weak one on the winners.
    wide = result.verdicts.pivot(index="row", columns="judge", values="winner")
    a, b = wide[GOOD].tolist(), wide[WEAK].tolist()
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    classes = ["right", "half", "tie"]
    chance = sum((a.count(c) / n) * (b.count(c) / n) for c in classes)
    expected = (observed - chance) / (1 - chance) if chance < 1 else float("nan")
    assert agreement.loc[GOOD, WEAK] == pytest.approx(expected)
    assert agreement.loc[GOOD, WEAK] < 1.0
    assert 0.0 < result.fleiss_kappa < 1.0
    assert "Fleiss' kappa between judges" in repr(result)
    # Where both answers are the same text, both orders make one body: the second create
    # replays under the same idempotency key and is not billed again.
    assert emulator.stats.requests["POST /v1/responses"] == 3 * 80
    assert emulator.stats.inferences == 3 * (80 - 20)


def test_judging_again_is_free_and_a_new_judge_pays_only_its_rows(
    serve: Any, tmp_path: Any
) -> None:
    emulator, client = serve()
    df = _answers(25)
    kwargs: dict[str, Any] = {
        "question": QUESTION, "client": client, "store": tmp_path / "s.sqlite", **ASK
    }  # fmt: skip
    judge(df, ["right", "wrong"], models=[GOOD], **kwargs)
    assert emulator.stats.requests["POST /v1/responses"] == 50
    again = judge(df, ["right", "wrong"], models=[GOOD, WEAK], **kwargs)
    assert emulator.stats.requests["POST /v1/responses"] == 100  # only the new judge's 50
    assert again.estimate.set_index("model").loc[GOOD, "to_send"].tolist() == [0, 0]


def test_judge_budget_and_bad_arguments_are_refused_before_any_request(serve: Any) -> None:
    emulator, client = serve()
    df = _answers(10)
    base: dict[str, Any] = {"question": QUESTION, "client": client, "store": False, **ASK}
    with pytest.raises(ConfigError, match="judge is estimated at"):
        judge(df, ["right", "wrong"], models=GOOD, budget=1e-6, **base)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"answers": ["right"], "models": GOOD}, "two answer columns"),
        ({"answers": ["right", "nope"], "models": GOOD}, "'nope'"),
        ({"answers": ["right", "wrong"], "models": []}, "models"),
        ({"answers": ["right", "wrong"], "models": GOOD, "mode": "vote"}, "mode"),
        ({"answers": ["right", "wrong"], "models": GOOD, "mode": "rubric", "scale": (5, 1)},
         "scale"),
        ({"answers": ["right", "wrong"], "models": GOOD, "question": "{nope}"}, "nope"),
    ]  # fmt: skip
    for kwargs, said in cases:
        with pytest.raises(ConfigError, match=said):
            judge(df, **{**base, **kwargs})
    assert emulator.stats.total_requests == 0


def test_a_missing_answer_is_not_judged(serve: Any) -> None:
    emulator, client = serve()
    df = _answers(6)
    df.loc[2, "wrong"] = None
    df.loc[4, "review"] = None  # nothing to ask: never rendered as "nan"
    result = judge(
        df, ["right", "wrong"], question=QUESTION, models=GOOD, client=client, store=False, **ASK
    )
    assert emulator.stats.inferences == 8  # the rows without an answer or review sent nothing
    verdicts = result.verdicts.set_index("row")
    for row in (2, 4):
        assert pd.isna(verdicts.loc[row, "winner"]) and pd.isna(verdicts.loc[row, "consistent"])
    assert result.table.set_index("answer").loc["right", "matches"] == 4


def test_the_emulators_judge_reading() -> None:
    pairwise = "Which?\n\nQuestion:\nReview: I love it, works great\n\nAnswer 1:\nnegative\n\n"
    reading = read_judge(pairwise + "Answer 2:\nIt is positive.")
    assert reading is not None and reading.pairwise and reading.right == (False, True)
    assert reading.verdict() == "second" and reading.verdict(first_bias=True) == "first"
    both = read_judge(pairwise.replace("negative", "positive") + "Answer 2:\npositive")
    assert both is not None and both.verdict() == "tie"
    rubric = read_judge("Score it.\nQuestion:\nReview: awful, broke at once\nAnswer:\nnegative")
    assert rubric is not None and not rubric.pairwise and rubric.right == (True,)
    assert read_judge("Review: I love it") is None
    # An answer naming every sentiment is not right: it hedges.
    hedged = read_judge("Question:\nReview: I love it\nAnswer:\npositive, negative or neutral")
    assert hedged is not None and hedged.right == (False,)
