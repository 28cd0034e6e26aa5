"""A sweep's result: the long frame, the leaderboard, significance and agreement.

Owns :class:`SweepResult` and :func:`build_result`, which turns the long frame (one row per
frame row × prompt × model) into the figures: per prompt × model the share of rows that
failed, accuracy (against ``truth``) or agreement (against the other pairs' majority
answer), macro-F1 and Cohen's kappa with seeded bootstrap intervals, the cost of 1,000 rows
and the seconds the pair took; the exact McNemar test between every two pairs scored on the
same rows; Cohen's kappa between every two pairs and Fleiss' kappa across all of them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._files.atomic import create_temp, discard, output_mode, settle
from ._keys import Key, name_of
from ._stats import FIGURES, bootstrap, codes, fleiss_kappa, mcnemar, quality

__all__ = ["SweepResult", "build_result"]


@dataclass(frozen=True, eq=False)
class SweepResult:
    """What a sweep found.

    Attributes:
        results: One row per frame row × prompt × model: ``row`` (the frame's index
            label), ``prompt``, ``model``, ``truth`` (with ``truth=``), ``prediction``,
            ``error``, ``input_tokens``, ``output_tokens`` and ``cost_usd`` (the answer's
            cost at the model's price, whether paid now or served from the store).
        leaderboard: One row per prompt × model, best first: ``rows``, ``scored``,
            ``errors``, ``error_rate``, the quality figure (``accuracy``, or ``agreement``
            without truth) with ``_low``/``_high`` bootstrap bounds, ``macro_f1`` and
            ``kappa`` with theirs, ``cost_per_1k_usd`` (what 1,000 such rows cost),
            ``paid_usd`` (what this call paid: 0 for a pair served from the store) and
            ``seconds`` (how long the pair took in this call), ``pareto`` (no other pair is
            at least as good and as cheap, and better or cheaper).
        significance: The exact McNemar test between every two pairs on the rows both
            scored (with truth only): ``first``, ``second``, ``rows``, ``only_first``
            (rows the first got right and the second wrong), ``only_second``, ``p_value``.
        agreement: Cohen's kappa between every two pairs, on the rows both answered.
        fleiss_kappa: Fleiss' kappa of all pairs on the rows every pair answered.
        confusions: Pair → confusion matrix (reference as rows, prediction as columns).
        per_class: Pair → per-class precision, recall, F1 and support.
        estimate: The sweep's estimate, per pair, made before anything was sent.
        truth: The truth column, or None.
        quality: ``"accuracy"`` or ``"agreement"``.
        level: The intervals' coverage.
    """

    results: pd.DataFrame
    leaderboard: pd.DataFrame
    significance: pd.DataFrame
    agreement: pd.DataFrame
    fleiss_kappa: float
    confusions: Mapping[Key, pd.DataFrame]
    per_class: Mapping[Key, pd.DataFrame]
    estimate: pd.DataFrame
    truth: str | None
    quality: str
    level: float
    classes: Sequence[Hashable] = field(default_factory=list)

    @property
    def note(self) -> str:
        """The best pair, and whether it beats the runner-up by more than chance."""
        board = self.leaderboard
        if board.empty or math.isnan(float(board.iloc[0][self.quality])):
            return "no pair was scored"
        best = board.iloc[0]
        head = (
            f"best: {best['prompt']} · {best['model']}, {self.quality} "
            f"{_interval(best, self.quality, self.level)}"
        )
        if len(board) < 2:
            return head
        second = board.iloc[1]
        if self.significance.empty:
            return f"{head}; significance needs a truth column (the exact McNemar test)"
        first_name, second_name = name_of(_key(best)), name_of(_key(second))
        match = self.significance[
            ((self.significance["first"] == first_name)
             & (self.significance["second"] == second_name))
            | ((self.significance["first"] == second_name)
               & (self.significance["second"] == first_name))
        ]  # fmt: skip
        row = match.iloc[0]
        b, c = int(row["only_first"]), int(row["only_second"])
        if row["first"] != first_name:
            b, c = c, b
        p = float(row["p_value"])
        verdict = "significant" if p < 0.05 else "not significant"
        return (
            f"{head}; against the runner-up {second_name}: right where it was wrong on {b} "
            f"rows, wrong where it was right on {c}; exact McNemar p = {p:.3g} "
            f"({verdict} at 5 %)"
        )

    def table(self) -> pd.DataFrame:
        """The leaderboard as printed: intervals as ``value [low, high]``, costs rounded."""
        board = self.leaderboard
        out = pd.DataFrame({"prompt": board["prompt"], "model": board["model"]})
        for name in (self.quality, "macro_f1", "kappa"):
            out[name] = [
                _interval(row, name, self.level, bounds=True) for _, row in board.iterrows()
            ]
        out["error_rate"] = board["error_rate"].map(lambda v: f"{v:.1%}")
        out["$/1k rows"] = board["cost_per_1k_usd"].map(_money)
        out["paid"] = board["paid_usd"].map(_money)
        out["seconds"] = board["seconds"].map(lambda v: f"{v:.1f}")
        return out

    def __repr__(self) -> str:
        rows = int(self.leaderboard["rows"].max()) if len(self.leaderboard) else 0
        against = f"against {self.truth!r}" if self.truth else "by agreement between pairs"
        return (
            f"SweepResult: {len(self.leaderboard)} prompt × model pairs over {rows} rows, "
            f"{against}; intervals {self.level:.0%} bootstrap\n"
            f"{self.table().to_string(index=False)}\n{self.note}"
        )

    def _repr_html_(self) -> str:
        from ._pictures import sweep_html

        return sweep_html(self, standalone=False)

    def to_html(self, path: str | Path) -> Path:
        """Write the report as one self-contained HTML file (pictures inline).

        Args:
            path: The file to write: written to a private temporary file beside it, then
                renamed over it, so a reader never sees half a report.

        Returns:
            The path written.
        """
        from ._pictures import sweep_html

        target = Path(path)
        page = sweep_html(self, standalone=True).encode("utf-8")
        file, temp = create_temp(target)  # written whole, then renamed over the target
        try:
            file.write(page)
            settle(file, temp, target, output_mode(target))
        except BaseException:
            discard(file, temp)
            raise
        return target


def _key(row: pd.Series) -> Key:
    return (str(row["prompt"]), str(row["model"]))


def _interval(row: pd.Series, name: str, level: float, bounds: bool = True) -> str:
    value = float(row[name])
    if math.isnan(value):
        return "n/a"
    low, high = float(row[f"{name}_low"]), float(row[f"{name}_high"])
    if not bounds or math.isnan(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _money(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"${value:,.4f}"


def _reference(long: pd.DataFrame, keys: list[Key], truth: str | None) -> dict[Key, pd.Series]:
    """Each pair's reference per row: the truth, or the other pairs' majority answer."""
    frames = {k: g.set_index("row") for k, g in long.groupby(["prompt", "model"], observed=True)}
    if truth is not None:
        return {k: frames[k]["truth"].astype(object) for k in keys}
    answers = pd.DataFrame({k: frames[k]["prediction"].astype(object) for k in keys})
    out: dict[Key, pd.Series] = {}
    for key in keys:
        others = answers.drop(columns=[key])
        out[key] = others.apply(_majority, axis=1).astype(object)
    return out


def _majority(values: pd.Series) -> Any:
    counts = Counter(v for v in values if v is not None and not pd.isna(v))
    if not counts:
        return None
    (top, n), *rest = counts.most_common()
    return None if rest and rest[0][1] == n else top


def build_result(
    long: pd.DataFrame,
    estimate: pd.DataFrame,
    *,
    classes: list[Hashable],
    truth: str | None,
    seconds: Mapping[Key, float],
    paid: Mapping[Key, float],
    priced: Mapping[Key, bool],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> SweepResult:
    """The figures of a sweep's long frame (see :class:`SweepResult`)."""
    keys: list[Key] = list(seconds)
    quality_name = "accuracy" if truth is not None else "agreement"
    references = _reference(long, keys, truth)
    k = len(classes)
    records: list[dict[str, Any]] = []
    confusions: dict[Key, pd.DataFrame] = {}
    per_class: dict[Key, pd.DataFrame] = {}
    correct: dict[Key, pd.Series] = {}
    answered: dict[Key, pd.Series] = {}
    for key in keys:
        group = long[(long["prompt"] == key[0]) & (long["model"] == key[1])].set_index("row")
        prediction = group["prediction"].astype(object)
        failed = prediction.isna() | group["error"].notna()
        reference = references[key].reindex(group.index)
        scored = ~failed & reference.notna()
        y_true, y_pred = codes(reference[scored].tolist(), prediction[scored].tolist(), classes)
        figures = bootstrap(y_true, y_pred, k, resamples=resamples, level=level, seed=seed)
        counts = np.zeros((k, k), dtype=np.int64)
        np.add.at(counts, (y_true, y_pred), 1)
        index = pd.Index(classes, dtype=object)
        confusions[key] = pd.DataFrame(
            counts,
            index=index.rename(truth or "majority"),
            columns=index.rename("prediction"),
        )
        per_class[key] = _per_class(counts, classes)
        answered[key] = prediction.where(~failed, None)
        correct[key] = (prediction == reference).where(scored)
        costs = group["cost_usd"].dropna()
        record: dict[str, Any] = {
            "prompt": key[0],
            "model": key[1],
            "rows": len(group),
            "scored": int(scored.sum()),
            "errors": int(failed.sum()),
            "error_rate": float(failed.mean()) if len(group) else math.nan,
        }
        for name in FIGURES:
            shown = quality_name if name == "accuracy" else name
            interval = figures[name]
            record[shown] = interval.value
            record[f"{shown}_low"] = interval.low
            record[f"{shown}_high"] = interval.high
        record["cost_per_1k_usd"] = (
            float(costs.mean()) * 1000 if priced[key] and len(costs) else math.nan
        )
        record["paid_usd"] = paid[key] if priced[key] else math.nan
        record["seconds"] = seconds[key]
        records.append(record)
    board = pd.DataFrame.from_records(records)
    board = board.sort_values(
        [quality_name, "cost_per_1k_usd"], ascending=[False, True], na_position="last",
        kind="stable",
    ).reset_index(drop=True)  # fmt: skip
    board["pareto"] = pareto(
        board[quality_name].to_numpy(dtype=float), board["cost_per_1k_usd"].to_numpy(dtype=float)
    )
    order = [_key(row) for _, row in board.iterrows()]
    significance = _significance(order, correct) if truth is not None else _no_significance()
    agreement, fleiss = _agreement(order, answered, classes)
    return SweepResult(
        results=long,
        leaderboard=board,
        significance=significance,
        agreement=agreement,
        fleiss_kappa=fleiss,
        confusions=confusions,
        per_class=per_class,
        estimate=estimate,
        truth=truth,
        quality=quality_name,
        level=level,
        classes=classes,
    )


def pareto(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Which points are on the Pareto front of quality (higher) against cost (lower).

    A point is on it when no other point is at least as good and as cheap, and better or
    cheaper. A point without a quality or a cost is never on it.
    """
    known = ~(np.isnan(quality) | np.isnan(cost))
    front = np.zeros(len(quality), dtype=bool)
    for i in np.flatnonzero(known):
        others = known & (quality >= quality[i]) & (cost <= cost[i])
        others &= (quality > quality[i]) | (cost < cost[i])
        front[i] = not others.any()
    return front


def _per_class(counts: np.ndarray, classes: list[Hashable]) -> pd.DataFrame:
    hits = np.diag(counts).astype(float)
    support = counts.sum(axis=1).astype(float)
    called = counts.sum(axis=0).astype(float)
    precision = np.divide(hits, called, out=np.zeros_like(hits), where=called > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)},
        index=pd.Index(classes, name="label", dtype=object),
    )


def _no_significance() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "first": pd.Series(dtype=object),
            "second": pd.Series(dtype=object),
            "rows": pd.Series(dtype="int64"),
            "only_first": pd.Series(dtype="int64"),
            "only_second": pd.Series(dtype="int64"),
            "p_value": pd.Series(dtype=float),
        }
    )


def _significance(order: list[Key], correct: Mapping[Key, pd.Series]) -> pd.DataFrame:
    records = []
    for i, first in enumerate(order):
        for second in order[i + 1 :]:
            a, b = correct[first], correct[second].reindex(correct[first].index)
            both = a.notna() & b.notna()
            right_a = a[both].astype(bool)
            right_b = b[both].astype(bool)
            only_first = int((right_a & ~right_b).sum())
            only_second = int((~right_a & right_b).sum())
            records.append(
                {
                    "first": name_of(first),
                    "second": name_of(second),
                    "rows": int(both.sum()),
                    "only_first": only_first,
                    "only_second": only_second,
                    "p_value": mcnemar(only_first, only_second),
                }
            )
    return pd.DataFrame.from_records(records) if records else _no_significance()


def _agreement(
    order: list[Key], answered: Mapping[Key, pd.Series], classes: list[Hashable]
) -> tuple[pd.DataFrame, float]:
    names = [name_of(key) for key in order]
    k = len(classes)
    matrix = pd.DataFrame(np.nan, index=names, columns=names, dtype=float)
    for i, first in enumerate(order):
        for j, second in enumerate(order):
            if j < i:
                continue
            a, b = answered[first], answered[second].reindex(answered[first].index)
            both = a.notna() & b.notna()
            x, y = codes(a[both].tolist(), b[both].tolist(), classes)
            kappa = quality(x, y, k)["kappa"]
            matrix.iloc[i, j] = matrix.iloc[j, i] = kappa
    table = pd.DataFrame({name_of(key): answered[key] for key in order})
    complete = table.dropna()
    if len(order) < 2 or complete.empty:
        return matrix, math.nan
    position = {c: i for i, c in enumerate(classes)}
    ratings = np.zeros((len(complete), k), dtype=np.int64)
    for col in complete.columns:
        ratings[np.arange(len(complete)), [position[v] for v in complete[col]]] += 1
    return matrix, fleiss_kappa(ratings)
