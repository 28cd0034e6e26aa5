"""The statistics of an evaluation, numpy only: agreement, bootstrap intervals, exact tests.

Owns the figures a sweep and a judge report: accuracy, macro-F1 and Cohen's kappa from
paired labels (:func:`quality`), their seeded percentile bootstrap intervals
(:func:`bootstrap`, every resample's confusion counts built at once with ``bincount``),
the exact two-sided McNemar test for two classifiers on the same rows (:func:`mcnemar`,
binomial tail through :func:`math.comb`, no scipy), and Fleiss' kappa for many raters
(:func:`fleiss_kappa`). Pure: no I/O, no clock, no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "Interval",
    "bootstrap",
    "bootstrap_mean",
    "codes",
    "fleiss_kappa",
    "mcnemar",
    "quality",
]

#: The quality figures, in the order every table shows them.
FIGURES = ("accuracy", "macro_f1", "kappa")


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval.

    Attributes:
        value: The figure on the rows as they are.
        low: The interval's lower end (NaN when there are no rows).
        high: The interval's upper end.
    """

    value: float
    low: float
    high: float


def codes(
    truth: Sequence[Any], pred: Sequence[Any], classes: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as integer codes into ``classes`` (every value must be among them)."""
    position = {c: i for i, c in enumerate(classes)}
    return (
        np.array([position[t] for t in truth], dtype=np.int64),
        np.array([position[p] for p in pred], dtype=np.int64),
    )


def _figures(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and kappa of a stack of confusion matrices (``B × k × k``).

    Per-class figures that are undefined (no support, nothing predicted) count 0, as
    scikit-learn and :func:`~valar_pandas.evals.compare` do; the macro mean runs over every
    class given.
    """
    n = counts.sum(axis=(1, 2)).astype(float)
    hits = np.diagonal(counts, axis1=1, axis2=2).astype(float)
    support = counts.sum(axis=2).astype(float)
    called = counts.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(called > 0, hits / called, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        total = precision + recall
        f1 = np.where(total > 0, 2 * precision * recall / total, 0.0)
        observed = hits.sum(axis=1) / n
        chance = (support * called).sum(axis=1) / n**2
        kappa = np.where(chance < 1.0, (observed - chance) / (1.0 - chance), np.nan)
    return {"accuracy": observed, "macro_f1": f1.mean(axis=1), "kappa": kappa}


def _counts(truth: np.ndarray, pred: np.ndarray, k: int, draws: np.ndarray | None) -> np.ndarray:
    cells = truth * k + pred
    if draws is None:
        return np.bincount(cells, minlength=k * k).reshape(1, k, k)
    stacked = cells[draws] + (np.arange(len(draws))[:, None] * k * k)
    return np.bincount(stacked.ravel(), minlength=len(draws) * k * k).reshape(len(draws), k, k)


def quality(truth: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    """Accuracy, macro-F1 and Cohen's kappa of paired codes (NaN each when no rows)."""
    if len(truth) == 0:
        return dict.fromkeys(FIGURES, math.nan)
    return {name: float(v[0]) for name, v in _figures(_counts(truth, pred, k, None)).items()}


def bootstrap(
    truth: np.ndarray,
    pred: np.ndarray,
    k: int,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Each quality figure with its percentile bootstrap interval over the rows.

    Rows are drawn with replacement ``resamples`` times from a generator seeded with
    ``seed``, so the same rows and seed give the same interval. A resample whose kappa is
    undefined (one class on both sides) is left out of kappa's percentiles.

    Args:
        truth: The reference's codes.
        pred: The prediction's codes, row for row.
        k: How many classes the codes index.
        resamples: How many resamples.
        level: The interval's coverage, e.g. 0.95.
        seed: The generator's seed.

    Returns:
        Figure name → :class:`Interval` (NaN ends when there are no rows).
    """
    point = quality(truth, pred, k)
    n = len(truth)
    if n == 0:
        return {name: Interval(point[name], math.nan, math.nan) for name in FIGURES}
    rng = np.random.default_rng(seed)
    parts = [
        _figures(_counts(truth, pred, k, rng.integers(0, n, size=(size, n))))
        for size in _chunks(resamples, n)
    ]
    figures = {name: np.concatenate([p[name] for p in parts]) for name in FIGURES}
    tail = (1.0 - level) / 2.0 * 100.0
    out: dict[str, Interval] = {}
    for name in FIGURES:
        values = figures[name][~np.isnan(figures[name])]
        if len(values) == 0:
            out[name] = Interval(point[name], math.nan, math.nan)
            continue
        low, high = np.percentile(values, [tail, 100.0 - tail])
        out[name] = Interval(point[name], float(low), float(high))
    return out


def bootstrap_mean(
    values: np.ndarray, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> Interval:
    """The mean of ``values`` with its seeded percentile bootstrap interval (NaN when empty)."""
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    means = np.concatenate(
        [data[rng.integers(0, n, size=(size, n))].mean(axis=1) for size in _chunks(resamples, n)]
    )
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Interval(float(np.mean(values)), float(low), float(high))


#: The most row draws held at once (int64 each): resamples are drawn in chunks of this many
#: cells, so a sweep of 100,000 rows needs tens of megabytes, not a gigabyte.
_DRAWS = 4_000_000


def _chunks(resamples: int, n: int) -> list[int]:
    """Resample counts per chunk so one chunk holds at most ``_DRAWS`` draws (≥ 1 each)."""
    step = max(1, _DRAWS // max(n, 1))
    return [min(step, resamples - start) for start in range(0, resamples, step)]


def mcnemar(only_first: int, only_second: int) -> float:
    """The exact two-sided McNemar p-value for two classifiers scored on the same rows.

    Only the discordant rows count: under the null hypothesis (equal accuracy) a row that
    one classifier gets right and the other wrong is equally likely either way, so
    ``only_first`` is Binomial(b + c, ½); the p-value doubles the smaller tail, at most 1.

    Args:
        only_first: Rows the first got right and the second wrong (``b``).
        only_second: Rows the second got right and the first wrong (``c``).

    Returns:
        The p-value; 1.0 when no row is discordant.
    """
    if only_first < 0 or only_second < 0:
        raise ValueError("counts must be 0 or more")
    n = only_first + only_second
    if n == 0:
        return 1.0
    smaller = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(smaller + 1))
    return min(1.0, float(Fraction(2 * tail, 1 << n)))  # exact, whatever the size of n


def fleiss_kappa(ratings: np.ndarray) -> float:
    """Fleiss' kappa of an items × categories table of how many raters chose each.

    Every item must have the same number of raters (at least two).

    Args:
        ratings: Counts, one row per item, one column per category.

    Returns:
        Kappa; NaN when there are no items or chance agreement is 1.
    """
    table = np.asarray(ratings, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return math.nan
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("every item needs the same number of raters, at least two")
    m = raters[0]
    agreement = float(((table * (table - 1)).sum(axis=1) / (m * (m - 1))).mean())
    shares = table.sum(axis=0) / table.sum()
    chance = float((shares**2).sum())
    if chance >= 1.0:
        return math.nan
    return float((agreement - chance) / (1.0 - chance))
