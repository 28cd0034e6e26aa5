"""Evaluate a predicted label column against a ground-truth column.

Owns :func:`compare` and the :class:`EvalReport` it returns: accuracy, per-class precision,
recall and F1, macro and weighted F1, Cohen's kappa and the confusion matrix, with rows that
have no prediction (failed rows) and rows that have no truth counted apart, never silently
dropped. The report prints as text and renders in a notebook as a compact HTML report whose
confusion matrix is a heatmap (a PNG when matplotlib is installed, else a coloured table).
numpy and pandas only.

Example:
    >>> from valar_pandas.evals import compare
    >>> report = compare(out, pred="sentiment", truth="label")  # doctest: +SKIP
    >>> report.accuracy, report.n_errors  # doctest: +SKIP
    (0.91, 3)
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._core.errors import ConfigError

__all__ = ["EvalReport", "compare"]

_HEAT_RGB = "31, 119, 180"


@dataclass(frozen=True, eq=False)
class EvalReport:
    """How well a prediction column agrees with a truth column.

    Rows are split three ways, and the three counts add up to the frame's length: a row with
    no truth is *missing truth* (whatever its prediction); otherwise a row with no prediction,
    or with an error in ``<pred>_error``, is an *error*; every other row is *scored*. All
    metrics are computed over the scored rows only.

    Attributes:
        pred: The prediction column.
        truth: The truth column.
        accuracy: Share of scored rows whose prediction equals the truth (NaN when none).
        per_class: One row per class (index ``label``): ``precision``, ``recall``, ``f1``
            (0.0 where undefined, as scikit-learn does) and ``support`` (scored rows whose
            truth is that class).
        macro_f1: Unweighted mean of the per-class F1.
        weighted_f1: Mean of the per-class F1 weighted by support.
        kappa: Cohen's kappa, agreement corrected for chance; NaN when chance agreement is 1
            (a single class on both sides).
        confusion: Counts, truth classes as rows × predicted classes as columns.
        n_scored: Rows with both a truth and a prediction.
        n_errors: Rows with a truth but no prediction (or an error).
        n_missing_truth: Rows with no truth.
    """

    pred: str
    truth: str
    accuracy: float
    per_class: pd.DataFrame
    macro_f1: float
    weighted_f1: float
    kappa: float
    confusion: pd.DataFrame
    n_scored: int
    n_errors: int
    n_missing_truth: int

    @property
    def labels(self) -> list[Hashable]:
        """The classes, in the order of the rows and columns of :attr:`confusion`."""
        return list(self.confusion.index)

    def _headline(self) -> str:
        return (
            f"{self.n_scored} scored, {_plural(self.n_errors, 'error')}, "
            f"{self.n_missing_truth} without truth"
        )

    def _metrics(self) -> list[tuple[str, float]]:
        return [
            ("accuracy", self.accuracy),
            ("macro F1", self.macro_f1),
            ("weighted F1", self.weighted_f1),
            ("Cohen's kappa", self.kappa),
        ]

    def __repr__(self) -> str:
        metrics = "   ".join(f"{name} {_number(value)}" for name, value in self._metrics())
        per_class = self.per_class.to_string(float_format=_number)
        confusion = self.confusion.to_string()
        return (
            f"EvalReport: {self.pred!r} against {self.truth!r}: {self._headline()}\n"
            f"{metrics}\n\n{per_class}\n\n"
            f"confusion matrix (rows: {self.truth}, columns: {self.pred})\n{confusion}"
        )

    def _repr_html_(self) -> str:
        metrics = "".join(
            f"<td style='padding:2px 12px 2px 0'>{html.escape(name)} <b>{_number(value)}</b></td>"
            for name, value in self._metrics()
        )
        per_class = self.per_class.to_html(float_format=_number, border=0)
        heatmap = _heatmap_png(self.confusion)
        if heatmap is not None:
            picture = f"<img alt='confusion matrix' src='data:image/png;base64,{heatmap}'/>"
        else:
            picture = _heatmap_table(self.confusion)
        return (
            "<div class='valar-eval'>"
            f"<p><b>{html.escape(self.pred)}</b> against <b>{html.escape(self.truth)}</b>: "
            f"{html.escape(self._headline())}</p>"
            f"<table><tr>{metrics}</tr></table>"
            "<div style='display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap'>"
            f"<div>{per_class}</div>"
            f"<div><p>confusion matrix (rows: {html.escape(self.truth)}, "
            f"columns: {html.escape(self.pred)})</p>{picture}</div>"
            "</div></div>"
        )


def compare(
    df: pd.DataFrame, pred: str, truth: str, labels: Sequence[Hashable] | None = None
) -> EvalReport:
    """Score a prediction column against a truth column.

    Values are compared exactly (``"Positive"`` is not ``"positive"``); a categorical column
    compares by its values. If the frame has a ``<pred>_error`` column, as a run or score
    adds, a row with an error there counts as an error even if it holds a prediction.

    Args:
        df: The frame.
        pred: The column of predictions, e.g. the ``into`` of a scoring run.
        truth: The column of true labels.
        labels: The classes, in the order wanted for the tables. Default: the categories of
            ``pred`` (then of ``truth``) when categorical, then every other value seen, sorted.
            Values seen that are not among ``labels`` are added after them, so a prediction
            outside the label set still counts as wrong.

    Returns:
        The report.

    Raises:
        ConfigError: A column is missing, or ``labels`` repeats a class.
    """
    for column in (pred, truth):
        if column not in df.columns:
            raise ConfigError(f"no column {column!r} in the frame; columns: {list(df.columns)}")
    if labels is not None:
        if isinstance(labels, str):
            raise ConfigError("labels must be a list of classes, not a single string")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"labels repeats a class: {list(labels)!r}")
    predicted, actual = df[pred], df[truth]
    no_truth = actual.isna().to_numpy(dtype=bool, copy=True)
    failed = predicted.isna().to_numpy(dtype=bool, copy=True)
    error_column = f"{pred}_error"
    if error_column in df.columns and error_column != truth:
        failed |= df[error_column].notna().to_numpy(dtype=bool, copy=True)
    failed &= ~no_truth
    scored = ~(no_truth | failed)
    y_pred = predicted.astype(object).to_numpy()[scored].tolist()
    y_true = actual.astype(object).to_numpy()[scored].tolist()
    classes = _classes(labels, predicted, actual, y_pred + y_true)
    counts = _confusion(y_true, y_pred, classes)
    report = _metrics(counts)
    index = pd.Index(classes, name="label", dtype=object)
    per_class = pd.DataFrame(
        {
            "precision": report["precision"],
            "recall": report["recall"],
            "f1": report["f1"],
            "support": counts.sum(axis=1),
        },
        index=index,
    )
    confusion = pd.DataFrame(
        counts,
        index=pd.Index(classes, name=truth, dtype=object),
        columns=pd.Index(classes, name=pred, dtype=object),
    )
    return EvalReport(
        pred=pred,
        truth=truth,
        accuracy=report["accuracy"],
        per_class=per_class,
        macro_f1=report["macro_f1"],
        weighted_f1=report["weighted_f1"],
        kappa=report["kappa"],
        confusion=confusion,
        n_scored=int(scored.sum()),
        n_errors=int(failed.sum()),
        n_missing_truth=int(no_truth.sum()),
    )


def _classes(
    labels: Sequence[Hashable] | None, predicted: pd.Series, actual: pd.Series, seen: list[Any]
) -> list[Hashable]:
    if labels is not None:
        ordered: list[Hashable] = list(labels)
    else:
        ordered = []
        for column in (predicted, actual):
            if isinstance(column.dtype, pd.CategoricalDtype):
                ordered += [c for c in column.cat.categories if c not in ordered]
    known = set(ordered)
    extra = sorted({v for v in seen if v not in known}, key=lambda v: (str(type(v)), str(v)))
    return ordered + extra


def _confusion(y_true: list[Any], y_pred: list[Any], classes: list[Hashable]) -> np.ndarray:
    position = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        counts[position[t], position[p]] += 1
    return counts


def _metrics(counts: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class P/R/F1, macro/weighted F1 and kappa from a confusion matrix."""
    n = int(counts.sum())
    hits = np.diag(counts).astype(float)
    support = counts.sum(axis=1).astype(float)
    called = counts.sum(axis=0).astype(float)
    precision = _ratio(hits, called)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    nan = float("nan")
    if n == 0:
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "accuracy": nan,
            "macro_f1": nan,
            "weighted_f1": nan,
            "kappa": nan,
        }
    observed = float(hits.sum()) / n
    chance = float((support * called).sum()) / n**2
    kappa = (observed - chance) / (1.0 - chance) if chance < 1.0 else nan
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": observed,
        "macro_f1": float(f1.mean()) if len(f1) else nan,
        "weighted_f1": float((f1 * support).sum()) / n,
        "kappa": kappa,
    }


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    out = np.zeros_like(top, dtype=float)
    np.divide(top, bottom, out=out, where=bottom > 0)
    return out


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _heatmap_png(confusion: pd.DataFrame) -> str | None:
    """The confusion matrix drawn by matplotlib, as base64 PNG; None without matplotlib."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            figure_module: Any = importlib.import_module("matplotlib.figure")
    except ImportError:
        return None
    counts = confusion.to_numpy()
    size = len(confusion)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            side = 1.2 + 0.6 * max(size, 2)
            figure = figure_module.Figure(figsize=(side + 1.0, side), dpi=100)
            axes = figure.add_subplot()
            axes.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
            ticks = list(range(size))
            axes.set_xticks(ticks, [str(c) for c in confusion.columns], rotation=45, ha="right")
            axes.set_yticks(ticks, [str(c) for c in confusion.index])
            axes.set_xlabel(f"predicted ({confusion.columns.name})")
            axes.set_ylabel(f"truth ({confusion.index.name})")
            top = counts.max()
            for i in range(size):
                for j in range(size):
                    shade = "white" if top and counts[i, j] > 0.6 * top else "black"
                    axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=shade)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
    except Exception:  # a repr must never raise: fall back to the table
        return None
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _heatmap_table(confusion: pd.DataFrame) -> str:
    """The confusion matrix as an HTML table shaded by count, with inline CSS only."""
    counts = confusion.to_numpy()
    top = int(counts.max()) if counts.size else 0
    cell = "padding:3px 8px;text-align:right;border:1px solid #ddd"
    head = "".join(f"<th style='{cell}'>{html.escape(str(c))}</th>" for c in confusion.columns)
    corner = (
        f"<th style='{cell}'>{html.escape(str(confusion.index.name))} \\ "
        f"{html.escape(str(confusion.columns.name))}</th>"
    )
    rows = []
    for label, line in zip(confusion.index, counts, strict=True):
        cells = []
        for count in line:
            share = count / top if top else 0.0
            colour = "white" if share > 0.6 else "black"
            cells.append(
                f"<td style='{cell};background-color:rgba({_HEAT_RGB}, {share:.2f});"
                f"color:{colour}'>{int(count)}</td>"
            )
        rows.append(f"<tr><th style='{cell}'>{html.escape(str(label))}</th>{''.join(cells)}</tr>")
    return (
        "<table class='valar-confusion' style='border-collapse:collapse'>"
        f"<tr>{corner}{head}</tr>{''.join(rows)}</table>"
    )
