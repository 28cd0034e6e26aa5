"""Judges without a truth column: a model compares answers (pairwise) or scores them (rubric).

Owns :func:`judge` and :class:`JudgeResult`. Every judgement is a scoring request sent
through the same machinery as a sweep (:func:`~._sweep.run_pairs`: the run store, the
idempotency keys, the budget estimated first, the runs at once within one ``concurrency``
and ``max_rps``, one progress display), so judging again is free and adding a judge model
pays only for its rows.

Pairwise judging shows each pair of answers twice, once in each order, and counts a win
only when both orders prefer the same answer; orders that disagree (the judge followed the
position, not the answer) count as a tie, so a judge's lean towards the first or the second
place cancels out instead of deciding. Rubric judging scores each answer on a scale. With
several judge models, their agreement (Cohen's kappa between every two, Fleiss' kappa across
all) says how far a verdict depends on who judged.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._core.prompt import Row, compile_template
from .._service.call import PriceArg, StoreArg, Template
from ._stats import bootstrap_mean, codes, fleiss_kappa, quality
from ._sweep import check_figures, run_pairs, sample_rows

__all__ = ["JudgeResult", "judge"]

_VERDICTS = ["1", "2", "tie"]
_PAIRWISE = (
    "Two answers to the same question follow. Decide which answer is better: correct, "
    "complete and to the point. The order they are shown in says nothing about them. "
    "Reply 1 for the first answer, 2 for the second, or tie when neither is better."
)
_RUBRIC = (
    "Score the answer to the question below from {lo} (wrong or useless) to {hi} "
    "(correct, complete and to the point)."
)
_QUESTION = "__valar_question"


@dataclass(frozen=True, eq=False)
class JudgeResult:
    """What the judges decided.

    Attributes:
        mode: ``"pairwise"`` or ``"rubric"``.
        verdicts: Pairwise: one row per frame row × judge × pair of answers: ``row``,
            ``judge``, ``first``, ``second`` (the answer columns), ``first_shown_first``
            and ``second_shown_first`` (the winner each order chose: an answer column,
            ``"tie"``, or missing when that judgement failed), ``winner`` (the column both
            orders chose, else ``"tie"``; missing when either failed) and ``consistent``
            (both orders agreed). Rubric: one row per frame row × judge × answer column:
            ``row``, ``judge``, ``answer``, ``score``.
        table: Per judge × answer column. Pairwise: ``matches``, ``wins``, ``ties``,
            ``losses``, ``win_rate`` (wins plus half the ties, over the matches judged)
            with ``win_rate_low``/``_high``. Rubric: ``scored``, ``mean_score`` with
            ``mean_score_low``/``_high``.
        consistency: Pairwise: per judge, the share of judgements whose two orders agreed
            (1.0 for a judge with no lean towards a position); empty for a rubric.
        agreement: Cohen's kappa between every two judges, on what both judged.
        fleiss_kappa: Fleiss' kappa across all judges (NaN with one judge).
        results: The raw judgements, one row per request (see ``SweepResult.results``;
            ``prompt`` names the order shown, ``"a | b"``, or the answer scored).
        estimate: The estimate per judgement kind and judge, made before anything was sent.
        level: The intervals' coverage.
    """

    mode: str
    verdicts: pd.DataFrame
    table: pd.DataFrame
    consistency: pd.Series
    agreement: pd.DataFrame
    fleiss_kappa: float
    results: pd.DataFrame
    estimate: pd.DataFrame
    level: float

    def __repr__(self) -> str:
        figure = "win_rate" if self.mode == "pairwise" else "mean_score"
        shown = self.table.copy()
        shown[figure] = [
            f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if not math.isnan(v) else "n/a"
            for v, lo, hi in zip(
                shown[figure], shown[f"{figure}_low"], shown[f"{figure}_high"], strict=True
            )
        ]
        shown = shown.drop(columns=[f"{figure}_low", f"{figure}_high"])
        lines = [
            f"JudgeResult ({self.mode}): {len(self.consistency) or len(self.agreement)} "
            f"judge(s); intervals {self.level:.0%} bootstrap",
            shown.to_string(index=False),
        ]
        if self.mode == "pairwise":
            said = ", ".join(f"{j} {v:.1%}" for j, v in self.consistency.items())
            lines.append(f"position consistency: {said}")
        if not math.isnan(self.fleiss_kappa):
            lines.append(f"Fleiss' kappa between judges: {self.fleiss_kappa:.3f}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        table = self.table.to_html(
            index=False, float_format=lambda v: f"{v:.3f}", border=0, na_rep="n/a"
        )
        parts = [f"<div class='valar-judge'><p><b>{html.escape(self.mode)} judging</b></p>{table}"]
        if self.mode == "pairwise":
            said = ", ".join(f"{html.escape(str(j))} {v:.1%}" for j, v in self.consistency.items())
            parts.append(f"<p>position consistency: {said}</p>")
        if len(self.agreement) > 1:
            parts.append(
                "<p>agreement between judges (Cohen's kappa)</p>"
                + self.agreement.to_html(float_format=lambda v: f"{v:.3f}", border=0)
            )
        return "".join(parts) + "</div>"


def judge(
    df: pd.DataFrame,
    answers: Sequence[str],
    *,
    question: Template,
    models: str | Sequence[str],
    mode: Literal["pairwise", "rubric"] = "pairwise",
    criteria: str | None = None,
    scale: tuple[int, int] = (1, 5),
    sample: int | None = None,
    seed: int = 0,
    budget: float | None = None,
    store: StoreArg = None,
    client: ValarClient | None = None,
    prices: Mapping[str, PriceArg] | None = None,
    progress: str | None = "auto",
    resamples: int = 1000,
    level: float = 0.95,
    **options: Any,
) -> JudgeResult:
    """Have one or more models judge answer columns, without a truth column.

    Each judgement is a request ``Question: ... Answer 1: ... Answer 2: ...`` (pairwise)
    or ``Question: ... Answer: ...`` (rubric), preceded by ``criteria``, answered as a
    label (``"1"``, ``"2"`` or ``"tie"``) or a score on ``scale``. Pairwise judging asks
    every pair of answer columns in both orders; a win needs both orders to agree.

    Args:
        df: The rows.
        answers: The columns holding the answers to judge (two or more for pairwise).
            A row whose answer is missing is not judged for it.
        question: What was asked, per row: a format string naming columns
            (``"Review: {review}"``; a row missing one of them is not judged) or a
            callable ``row -> str`` (None skips the row).
        models: The judge model, or several (their agreement is measured).
        mode: ``"pairwise"`` or ``"rubric"``.
        criteria: What the judge is told first; default: a neutral instruction for the
            mode (the rubric's names ``scale``'s ends).
        scale: A rubric's integer ``(lo, hi)``.
        sample: Judge a random sample of this many rows (drawn with ``seed``).
        seed: Seeds the sample and the bootstrap.
        budget: The most all the judgements may spend, USD; refused before anything is
            sent when the estimate exceeds it, and spanning every judgement while they run.
        store: The run store (default location; False for none).
        client: The client to send with.
        prices: Model id → price override.
        progress: One display for every judgement, as in :func:`sweep`.
        resamples: Bootstrap resamples for the intervals.
        level: The intervals' coverage.
        **options: Other options of ``df.valar.score`` (``max_output_tokens``,
            ``completion_window``, ``reasoning``, ``retries_on_invalid``, and
            ``concurrency`` and ``max_rps`` for all the judgements together, ...).

    Returns:
        The :class:`JudgeResult`.

    Raises:
        ConfigError: A bad argument, column, question or option, or a budget the estimate
            does not fit; raised before any request.

    Example:
        >>> verdict = judge(  # doctest: +SKIP
        ...     out, ["short", "long"], question="Summarise: {text}",
        ...     models=["zai-org/GLM-5.1-FP8", "google/gemma-4-31B-it"],
        ... )
        >>> verdict.table  # doctest: +SKIP
    """
    if mode not in ("pairwise", "rubric"):
        raise ConfigError(f"mode must be 'pairwise' or 'rubric', got {mode!r}")
    columns = _answers(df, answers, mode)
    judges = [models] if isinstance(models, str) else list(models)
    if not judges or not all(isinstance(m, str) and m for m in judges):
        raise ConfigError("models must be a judge model id or a non-empty list of them")
    if len(set(judges)) != len(judges):
        raise ConfigError(f"models repeats a model: {judges!r}")
    if criteria is not None and not isinstance(criteria, str):
        raise ConfigError("criteria must be a string")
    check_figures(resamples, level)
    rows = sample_rows(df, sample, seed)
    frame = _frame(rows, question, columns)
    common: dict[str, Any] = {
        "budget": budget, "store": store, "client": client, "prices": prices,
        "progress": progress, "options": options, "caller": "judge",
    }  # fmt: skip
    if mode == "pairwise":
        header = _PAIRWISE if criteria is None else criteria
        templates = {
            f"{a} | {b}": _pairwise_prompt(header, a, b)
            for x, y in itertools.combinations(columns, 2)
            for a, b in ((x, y), (y, x))
        }
        ran = run_pairs(frame, templates, judges, {"labels": _VERDICTS}, None, None, **common)
        verdicts = _pairwise_verdicts(ran.long, columns, judges)
        table = _pairwise_table(verdicts, columns, judges, resamples, level, seed)
        consistency = verdicts.groupby("judge", sort=False)["consistent"].mean().astype(float)
        key = ["row", "first", "second"]
        decided = "winner"
        classes: list[Hashable] = [*columns, "tie"]
    else:
        lo, hi = _scale(scale)
        header = _RUBRIC.format(lo=lo, hi=hi) if criteria is None else criteria
        templates = {c: _rubric_prompt(header, c) for c in columns}
        ran = run_pairs(frame, templates, judges, {"scale": (lo, hi)}, None, None, **common)
        verdicts = _rubric_scores(ran.long)
        table = _rubric_table(verdicts, columns, judges, resamples, level, seed)
        consistency = pd.Series(dtype=float)
        key = ["row", "answer"]
        decided = "score"
        classes = list(range(lo, hi + 1))
    agreement, fleiss = _agreement(verdicts, judges, key, decided, classes)
    return JudgeResult(
        mode=mode,
        verdicts=verdicts,
        table=table,
        consistency=consistency,
        agreement=agreement,
        fleiss_kappa=fleiss,
        results=ran.long,
        estimate=ran.estimate,
        level=level,
    )


def _answers(df: pd.DataFrame, answers: Sequence[str], mode: str) -> list[str]:
    columns = [answers] if isinstance(answers, str) else list(answers)
    for column in columns:
        if column not in df.columns:
            raise ConfigError(f"no column {column!r} in the frame; columns: {list(df.columns)}")
    if len(set(columns)) != len(columns):
        raise ConfigError(f"answers repeats a column: {columns!r}")
    if mode == "pairwise" and len(columns) < 2:
        raise ConfigError("pairwise judging needs two answer columns or more")
    if not columns:
        raise ConfigError("answers must name at least one column")
    for column in columns:
        if column == "tie":
            raise ConfigError("an answer column cannot be named 'tie': it is a verdict")
    return [str(c) for c in columns]


def _scale(scale: tuple[int, int]) -> tuple[int, int]:
    ok = isinstance(scale, tuple | list) and len(scale) == 2
    if ok:
        lo, hi = scale
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) and lo < hi
    if not ok:
        raise ConfigError(f"scale must be two whole numbers (lo, hi) with lo < hi, got {scale!r}")
    return int(scale[0]), int(scale[1])


def _frame(rows: pd.DataFrame, question: Template, columns: list[str]) -> pd.DataFrame:
    """The question rendered per row beside the answers: what the judge prompts read."""
    asked: list[str | None]
    if isinstance(question, str):
        compiled = compile_template(question, list(rows.columns))
        asked = []
        for i in range(len(rows)):
            values = {c: rows[c].iloc[i] for c in compiled.columns}
            # A question with a missing value is not asked: the row is not judged.
            missing = any(_missing(v) for v in values.values())
            asked.append(None if missing else compiled.render(values))
    elif callable(question):
        records = rows.to_dict("records")
        asked = [question(Row(record)) for record in records]
        if not all(a is None or isinstance(a, str) for a in asked):
            raise ConfigError("question must return a string (or None to skip) for every row")
    else:
        raise ConfigError("question must be a format string or a callable row -> str")
    frame = rows[columns].copy()
    frame[_QUESTION] = asked
    return frame


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _pairwise_prompt(header: str, first: str, second: str) -> Template:
    def prompt(row: Row) -> str | None:
        a, b = row[first], row[second]
        if _missing(a) or _missing(b) or _missing(row[_QUESTION]):
            return None
        return f"{header}\n\nQuestion:\n{row[_QUESTION]}\n\nAnswer 1:\n{a}\n\nAnswer 2:\n{b}"

    return prompt


def _rubric_prompt(header: str, column: str) -> Template:
    def prompt(row: Row) -> str | None:
        answer = row[column]
        if _missing(answer) or _missing(row[_QUESTION]):
            return None
        return f"{header}\n\nQuestion:\n{row[_QUESTION]}\n\nAnswer:\n{answer}"

    return prompt


def _pairwise_verdicts(long: pd.DataFrame, columns: list[str], judges: list[str]) -> pd.DataFrame:
    parts = []
    for model in judges:
        mine = long[long["model"] == model]
        for x, y in itertools.combinations(columns, 2):
            one = mine[mine["prompt"] == f"{x} | {y}"].set_index("row")
            two = mine[mine["prompt"] == f"{y} | {x}"].set_index("row").reindex(one.index)
            shown_first = one["prediction"].astype(object).map({"1": x, "2": y, "tie": "tie"})
            shown_second = two["prediction"].astype(object).map({"1": y, "2": x, "tie": "tie"})
            both = shown_first.notna() & shown_second.notna()
            agree = both & (shown_first == shown_second)
            winner = shown_first.where(agree, "tie").where(both, None)
            parts.append(
                pd.DataFrame(
                    {
                        "row": one.index,
                        "judge": model,
                        "first": x,
                        "second": y,
                        "first_shown_first": shown_first.to_numpy(dtype=object),
                        "second_shown_first": shown_second.to_numpy(dtype=object),
                        "winner": winner.to_numpy(dtype=object),
                        "consistent": agree.where(both, None).to_numpy(dtype=object),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def _pairwise_table(
    verdicts: pd.DataFrame,
    columns: list[str],
    judges: list[str],
    resamples: int,
    level: float,
    seed: int,
) -> pd.DataFrame:
    records = []
    for model in judges:
        mine = verdicts[(verdicts["judge"] == model) & verdicts["winner"].notna()]
        for column in columns:
            played = mine[(mine["first"] == column) | (mine["second"] == column)]
            wins = int((played["winner"] == column).sum())
            ties = int((played["winner"] == "tie").sum())
            points = np.where(played["winner"] == column, 1.0, 0.0)
            points = np.where(played["winner"] == "tie", 0.5, points)
            interval = bootstrap_mean(points, resamples=resamples, level=level, seed=seed)
            records.append(
                {
                    "judge": model,
                    "answer": column,
                    "matches": len(played),
                    "wins": wins,
                    "ties": ties,
                    "losses": len(played) - wins - ties,
                    "win_rate": interval.value,
                    "win_rate_low": interval.low,
                    "win_rate_high": interval.high,
                }
            )
    return pd.DataFrame.from_records(records)


def _rubric_scores(long: pd.DataFrame) -> pd.DataFrame:
    ok = long["error"].isna()
    score = long["prediction"].astype(object).where(ok, None)
    return pd.DataFrame(
        {
            "row": long["row"].to_numpy(),
            "judge": long["model"].astype(str).to_numpy(),
            "answer": long["prompt"].astype(str).to_numpy(),
            "score": pd.array(score.tolist(), dtype="Int64"),
        }
    )


def _rubric_table(
    scores: pd.DataFrame,
    columns: list[str],
    judges: list[str],
    resamples: int,
    level: float,
    seed: int,
) -> pd.DataFrame:
    records = []
    for model in judges:
        for column in columns:
            mine = scores[(scores["judge"] == model) & (scores["answer"] == column)]
            values = mine["score"].dropna().to_numpy(dtype=float)
            interval = bootstrap_mean(values, resamples=resamples, level=level, seed=seed)
            records.append(
                {
                    "judge": model,
                    "answer": column,
                    "scored": len(values),
                    "mean_score": interval.value,
                    "mean_score_low": interval.low,
                    "mean_score_high": interval.high,
                }
            )
    return pd.DataFrame.from_records(records)


def _agreement(
    verdicts: pd.DataFrame,
    judges: list[str],
    key: list[str],
    decided: str,
    classes: list[Hashable],
) -> tuple[pd.DataFrame, float]:
    """Cohen's kappa between every two judges, and Fleiss' kappa across all of them."""
    values = verdicts[decided].astype(object).where(verdicts[decided].notna(), None)
    wide = verdicts.assign(**{decided: values}).set_index([*key, "judge"])[decided].unstack("judge")
    wide = wide.reindex(columns=judges).astype(object)
    k = len(classes)
    matrix = pd.DataFrame(np.nan, index=judges, columns=judges, dtype=float)
    for a, b in itertools.combinations_with_replacement(judges, 2):
        left, right = wide[a], wide[b]
        both = left.notna() & right.notna()
        x, y = codes(left[both].tolist(), right[both].tolist(), classes)
        matrix.loc[a, b] = matrix.loc[b, a] = quality(x, y, k)["kappa"]
    complete = wide.dropna()
    if len(judges) < 2 or complete.empty:
        return matrix, math.nan
    position = {c: i for i, c in enumerate(classes)}
    ratings = np.zeros((len(complete), k), dtype=np.int64)
    for column in judges:
        ratings[np.arange(len(complete)), [position[v] for v in complete[column]]] += 1
    return matrix, fleiss_kappa(ratings)
