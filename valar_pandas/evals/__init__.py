"""Evaluations on a DataFrame: score one prediction column, or sweep prompts × models.

- :func:`compare` scores a predicted label column against a truth column
  (:class:`EvalReport`: accuracy, per-class precision/recall/F1, kappa, confusion matrix).
- :func:`sweep` runs every prompt with every model over the same rows through the run
  store and budget, and returns a :class:`SweepResult`: the long frame of answers, a
  leaderboard with bootstrap intervals and cost, the exact McNemar test between pairs,
  agreement between them, and a report to look at (inline in Jupyter, or
  :meth:`SweepResult.to_html`).
- :func:`judge` has models judge answer columns without a truth column: pairwise (each
  pair shown in both orders, ties allowed) or by a rubric, with the judges' agreement.
- :func:`mcnemar` and :func:`fleiss_kappa` are the statistics, for frames of your own.

Example:
    >>> from valar_pandas import evals
    >>> result = evals.sweep(df, templates={...}, models=[...], labels=[...])  # doctest: +SKIP
    >>> result.leaderboard  # doctest: +SKIP
"""

from __future__ import annotations

from ._board import SweepResult
from ._compare import EvalReport, compare
from ._judge import JudgeResult, judge
from ._stats import fleiss_kappa, mcnemar
from ._sweep import sweep

__all__ = [
    "EvalReport",
    "JudgeResult",
    "SweepResult",
    "compare",
    "fleiss_kappa",
    "judge",
    "mcnemar",
    "sweep",
]
