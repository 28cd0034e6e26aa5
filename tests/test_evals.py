"""compare(): metrics checked against hand-computed values, error accounting, text and HTML."""

from __future__ import annotations

import base64
import math
import sys
import types
from typing import Any

import pandas as pd
import pytest

from valar_pandas import ConfigError
from valar_pandas.evals import EvalReport, compare


def _frame() -> pd.DataFrame:
    """Ten rows: eight scored, one failed (in the error column), one without truth.

    Scored pairs (truth → pred): pos→pos ×2, pos→neg, neg→neg ×2, neg→pos, neu→neu, neu→pos.
    """
    return pd.DataFrame(
        {
            "truth": ["pos", "pos", "pos", "neg", "neg", "neu", "neu", "pos", None, "neg"],
            "pred": ["pos", "pos", "neg", "neg", "pos", "neu", "pos", None, "pos", "neg"],
            "pred_error": [None] * 7 + ["failed: boom", None, None],
        }
    )


def test_hand_computed_metrics() -> None:
    report = compare(_frame(), "pred", "truth", labels=["pos", "neg", "neu"])
    assert (report.n_scored, report.n_errors, report.n_missing_truth) == (8, 1, 1)
    assert report.accuracy == pytest.approx(5 / 8)
    # confusion, rows truth, columns pred:  pos [2 1 0]  neg [1 2 0]  neu [1 0 1]
    assert report.confusion.to_numpy().tolist() == [[2, 1, 0], [1, 2, 0], [1, 0, 1]]
    assert report.confusion.index.name == "truth" and report.confusion.columns.name == "pred"
    assert report.labels == ["pos", "neg", "neu"]
    per = report.per_class
    assert per.index.tolist() == ["pos", "neg", "neu"] and per.index.name == "label"
    assert per["precision"].tolist() == pytest.approx([2 / 4, 2 / 3, 1 / 1])
    assert per["recall"].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 2])
    f1 = [4 / 7, 2 / 3, 2 / 3]  # 2PR/(P+R): pos 2·½·⅔/(½+⅔) = 4/7
    assert per["f1"].tolist() == pytest.approx(f1)
    assert per["support"].tolist() == [3, 3, 2]
    assert report.macro_f1 == pytest.approx(sum(f1) / 3)
    assert report.weighted_f1 == pytest.approx((3 * f1[0] + 3 * f1[1] + 2 * f1[2]) / 8)
    # kappa: p_o = 5/8; p_e = (3·4 + 3·3 + 2·1)/8² = 23/64
    assert report.kappa == pytest.approx((5 / 8 - 23 / 64) / (1 - 23 / 64))


def test_kappa_textbook_example() -> None:
    # The classic 2×2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no → κ = 0.4.
    truth = ["yes"] * 25 + ["no"] * 25
    pred = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    report = compare(pd.DataFrame({"t": truth, "p": pred}), "p", "t", labels=["yes", "no"])
    assert report.accuracy == pytest.approx(0.7)
    assert report.kappa == pytest.approx(0.4)
    assert report.per_class.loc["yes", "precision"] == pytest.approx(20 / 30)
    assert report.per_class.loc["no", "recall"] == pytest.approx(15 / 25)


def test_perfect_and_degenerate_agreement() -> None:
    perfect = compare(pd.DataFrame({"t": list("abab"), "p": list("abab")}), "p", "t")
    assert (perfect.accuracy, perfect.macro_f1, perfect.kappa) == (1.0, 1.0, 1.0)
    single = compare(pd.DataFrame({"t": list("aaa"), "p": list("aaa")}), "p", "t")
    assert single.accuracy == 1.0 and math.isnan(single.kappa)  # chance agreement is 1
    opposite = compare(pd.DataFrame({"t": list("abab"), "p": list("baba")}), "p", "t")
    assert opposite.accuracy == 0.0 and opposite.kappa == pytest.approx(-1.0)
    assert opposite.per_class["f1"].tolist() == [0.0, 0.0]


def test_errors_are_counted_not_dropped() -> None:
    frame = pd.DataFrame(
        {
            "label": ["a", "b", "a", None, "b", None],
            "guess": ["a", None, "b", "a", "b", None],
            # an error with a prediction still present counts as an error
            "guess_error": [None, "failed: x", None, None, "unreadable reply", None],
        }
    )
    report = compare(frame, "guess", "label")
    assert (report.n_scored, report.n_errors, report.n_missing_truth) == (2, 2, 2)
    assert report.n_scored + report.n_errors + report.n_missing_truth == len(frame)
    assert report.accuracy == 0.5
    assert report.confusion.to_numpy().sum() == 2


def test_missing_predictions_without_error_column() -> None:
    frame = pd.DataFrame({"t": ["a", "b", "b"], "p": pd.array(["a", pd.NA, "b"], dtype="str")})
    report = compare(frame, "p", "t")
    assert (report.n_scored, report.n_errors, report.n_missing_truth) == (2, 1, 0)
    assert report.accuracy == 1.0


def test_predictions_outside_the_labels_are_wrong_not_ignored() -> None:
    frame = pd.DataFrame({"t": ["a", "b", "a"], "p": ["a", "b", "maybe"]})
    report = compare(frame, "p", "t", labels=["b", "a"])
    assert report.labels == ["b", "a", "maybe"]
    assert report.accuracy == pytest.approx(2 / 3)
    assert report.confusion.loc["a", "maybe"] == 1
    assert report.per_class.loc["maybe"].tolist() == [0.0, 0.0, 0.0, 0]


def test_categorical_columns_give_the_class_order() -> None:
    categories = pd.CategoricalDtype(["positive", "negative", "neutral"])
    frame = pd.DataFrame(
        {
            "truth": ["negative", "positive", "negative"],
            "mood": pd.Series(["negative", "positive", "positive"], dtype=categories),
        }
    )
    report = compare(frame, "mood", "truth")
    assert report.labels == ["positive", "negative", "neutral"]  # unused neutral kept
    assert report.per_class.loc["neutral", "support"] == 0
    assert report.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_numeric_labels() -> None:
    frame = pd.DataFrame({"t": [1, 2, 3, 3], "p": pd.array([1, 2, 3, None], dtype="Int64")})
    report = compare(frame, "p", "t")
    assert report.labels == [1, 2, 3] and report.accuracy == 1.0 and report.n_errors == 1


def test_nothing_scored() -> None:
    report = compare(pd.DataFrame({"t": ["a", None], "p": [None, "a"]}), "p", "t")
    assert (report.n_scored, report.n_errors, report.n_missing_truth) == (0, 1, 1)
    assert math.isnan(report.accuracy) and math.isnan(report.macro_f1)
    assert "n/a" in repr(report)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pred": "nope", "truth": "truth"}, "no column 'nope'"),
        ({"pred": "pred", "truth": "nope"}, "no column 'nope'"),
        ({"pred": "pred", "truth": "truth", "labels": ["a", "a"]}, "repeats a class"),
        ({"pred": "pred", "truth": "truth", "labels": "ab"}, "not a single string"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compare(_frame(), **kwargs)


def test_text_repr() -> None:
    text = repr(compare(_frame(), "pred", "truth", labels=["pos", "neg", "neu"]))
    lines = text.splitlines()
    assert lines[0] == "EvalReport: 'pred' against 'truth': 8 scored, 1 error, 1 without truth"
    assert lines[1] == ("accuracy 0.625   macro F1 0.635   weighted F1 0.631   Cohen's kappa 0.415")
    assert "precision" in text and "support" in text
    assert "confusion matrix (rows: truth, columns: pred)" in text


def _report() -> EvalReport:
    frame = _frame()
    frame.loc[0, ["truth", "pred"]] = "<b>pos</b>"
    return compare(frame, "pred", "truth")


def test_html_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    page = _report()._repr_html_()
    assert "<img" not in page
    assert "class='valar-confusion'" in page
    assert "background-color:rgba(31, 119, 180, 1.00)" in page  # the largest cell
    assert "background-color:rgba(31, 119, 180, 0.00)" in page  # an empty cell
    assert "&lt;b&gt;pos&lt;/b&gt;" in page and "<b>pos</b>" not in page
    assert "8 scored, 1 error, 1 without truth" in page and "accuracy <b>0.625</b>" in page


def _fake_matplotlib(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[str]:
    """Install a stand-in matplotlib.figure that records calls and 'saves' fixed bytes."""
    calls: list[str] = []

    class Axes:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: calls.append(name)

    class Figure:
        def __init__(self, **kwargs: Any) -> None:
            calls.append("Figure")

        def add_subplot(self) -> Axes:
            return Axes()

        def savefig(self, buffer: Any, **kwargs: Any) -> None:
            if fail:
                raise RuntimeError("no backend")
            calls.append(f"savefig:{kwargs['format']}")
            buffer.write(b"\x89PNG fake")

    package = types.ModuleType("matplotlib")
    module = types.ModuleType("matplotlib.figure")
    module.Figure = Figure  # type: ignore[attr-defined]
    package.figure = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "matplotlib", package)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", module)
    return calls


def test_html_embeds_a_matplotlib_png(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_matplotlib(monkeypatch)
    page = _report()._repr_html_()
    encoded = base64.b64encode(b"\x89PNG fake").decode()
    assert f"src='data:image/png;base64,{encoded}'" in page
    assert "valar-confusion" not in page
    assert calls[0] == "Figure" and "imshow" in calls and calls[-1] == "savefig:png"


def test_html_falls_back_when_matplotlib_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_matplotlib(monkeypatch, fail=True)
    page = _report()._repr_html_()
    assert "<img" not in page and "class='valar-confusion'" in page


def test_html_with_real_matplotlib() -> None:
    pytest.importorskip("matplotlib")
    page = _report()._repr_html_()
    start = page.index("base64,") + len("base64,")
    png = base64.b64decode(page[start : page.index("'", start)])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
