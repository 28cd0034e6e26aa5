"""A sweep's report to look at: pictures as inline SVG, and the HTML around them.

Owns :func:`sweep_html`: the leaderboard, the note on significance, and three pictures — a
quality-vs-cost scatter with each pair's interval and the Pareto front marked (no other pair
is both better and cheaper), the confusion matrices side by side, and a per-class F1 bar
chart. The pictures are SVG drawn by matplotlib when it is installed (the ``evals`` extra);
without it each picture falls back to a table, so the report always renders. The same HTML
serves a notebook (``_repr_html_``) and a self-contained file (``to_html``: no script, no
link, nothing fetched).
"""

from __future__ import annotations

import html
import importlib
import io
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._compare import _heatmap_table
from ._keys import keys_of, name_of

if TYPE_CHECKING:
    from ._board import SweepResult

__all__ = ["sweep_html"]

_MAX_HEATMAPS = 12
_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222}"
    ".valar-sweep table{border-collapse:collapse;font-size:13px}"
    ".valar-sweep th,.valar-sweep td{padding:3px 10px;border-bottom:1px solid #e4e4e4;"
    "text-align:right}"
    ".valar-sweep td:first-child,.valar-sweep td:nth-child(2){text-align:left}"
    ".valar-sweep h3{margin:18px 0 6px}"
    ".valar-sweep .front{font-weight:600;background:#eef6ee}"
    ".valar-pictures{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}"
)


def sweep_html(result: SweepResult, standalone: bool) -> str:
    """The report as HTML: a fragment for a notebook, or a whole page (``standalone``)."""
    figure = _figure_module()
    body = (
        "<div class='valar-sweep'>"
        f"<p>{html.escape(_headline(result))}</p>"
        f"{_leaderboard_html(result)}"
        f"<p><b>{html.escape(result.note)}</b></p>"
        "<h3>Quality against cost</h3>"
        f"{_picture(figure, _scatter, result) or _scatter_table(result)}"
        "<h3>Confusion matrices</h3>"
        f"{_heatmaps(figure, result)}"
        "<h3>Per-class F1</h3>"
        f"{_picture(figure, _bars, result) or _bars_table(result)}"
        f"{_agreement_html(result)}"
        "</div>"
    )
    if not standalone:
        return f"<style>{_STYLE.replace('body{', '.valar-sweep{')}</style>{body}"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>valar_pandas sweep report</title>"
        f"<style>{_STYLE}</style></head><body><h2>Prompt × model sweep</h2>{body}</body></html>"
    )


def _headline(result: SweepResult) -> str:
    rows = int(result.leaderboard["rows"].max()) if len(result.leaderboard) else 0
    against = f"against {result.truth!r}" if result.truth else "by agreement with the other pairs"
    return (
        f"{len(result.leaderboard)} prompt × model pairs over {rows} rows, {result.quality} "
        f"{against}; intervals are {result.level:.0%} bootstrap intervals. Highlighted pairs "
        "are on the Pareto front: no other pair is both better and cheaper."
    )


def _leaderboard_html(result: SweepResult) -> str:
    table = result.table()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for (_, shown), front in zip(table.iterrows(), result.leaderboard["pareto"], strict=True):
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in shown)
        rows.append(f"<tr class='{'front' if front else ''}'>{cells}</tr>")
    return f"<table class='valar-leaderboard'><tr>{head}</tr>{''.join(rows)}</table>"


def _agreement_html(result: SweepResult) -> str:
    if len(result.agreement) < 2:
        return ""
    table = result.agreement.to_html(float_format=lambda v: f"{v:.3f}", border=0, na_rep="n/a")
    fleiss = "n/a" if math.isnan(result.fleiss_kappa) else f"{result.fleiss_kappa:.3f}"
    return (
        "<h3>Agreement between pairs</h3>"
        f"<p>Cohen's kappa between every two pairs; Fleiss' kappa across all: {fleiss}</p>"
        f"{table}"
    )


def _figure_module() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module("matplotlib.figure")
    except ImportError:
        return None


def _picture(figure: Any, draw: Callable[[Any, SweepResult], Any], result: SweepResult) -> str:
    """One picture as inline SVG, or '' when matplotlib is missing or drawing failed."""
    if figure is None:
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            matplotlib = importlib.import_module("matplotlib")
            with matplotlib.rc_context({"svg.hashsalt": f"valar-{draw.__name__}"}):
                drawn = draw(figure, result)
                buffer = io.StringIO()
                drawn.savefig(buffer, format="svg", bbox_inches="tight")
    except Exception:  # a report must render: fall back to the table
        return ""
    svg = buffer.getvalue()
    start = svg.find("<svg")
    return f"<div class='valar-picture'>{svg[start:]}</div>" if start >= 0 else ""


def _scatter(figure: Any, result: SweepResult) -> Any:
    board = result.leaderboard
    name = result.quality
    fig = figure.Figure(figsize=(6.4, 4.2), dpi=100)
    axes = fig.add_subplot()
    cost = board["cost_per_1k_usd"].to_numpy(dtype=float)
    value = board[name].to_numpy(dtype=float)
    low = value - board[f"{name}_low"].to_numpy(dtype=float)
    high = board[f"{name}_high"].to_numpy(dtype=float) - value
    front = board["pareto"].to_numpy(dtype=bool)
    x = np.where(np.isnan(cost), 0.0, cost)
    axes.errorbar(
        x, value, yerr=np.nan_to_num(np.vstack([low, high])), fmt="none", ecolor="#999",
        capsize=3, zorder=1,
    )  # fmt: skip
    axes.scatter(x[~front], value[~front], color="#9ab", s=40, zorder=2, label="dominated")
    axes.scatter(x[front], value[front], color="#1f77b4", s=60, zorder=3, label="Pareto front")
    order = np.argsort(x[front])
    axes.step(x[front][order], value[front][order], where="post", color="#1f77b4", zorder=2)
    for xi, yi, (_, row) in zip(x, value, board.iterrows(), strict=True):
        axes.annotate(
            name_of((str(row["prompt"]), str(row["model"]))), (xi, yi), fontsize=7,
            xytext=(4, 4), textcoords="offset points",
        )  # fmt: skip
    axes.set_xlabel("USD per 1,000 rows")
    axes.set_ylabel(name)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    return fig


def _scatter_table(result: SweepResult) -> str:
    board = result.leaderboard
    table = pd.DataFrame(
        {
            "pair": [name_of(key) for key in keys_of(board)],
            result.quality: board[result.quality],
            "USD per 1,000 rows": board["cost_per_1k_usd"],
            "on the Pareto front": board["pareto"].map({True: "yes", False: ""}),
        }
    )
    return table.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, na_rep="n/a")


def _heatmaps(figure: Any, result: SweepResult) -> str:
    keys = keys_of(result.leaderboard)
    keys = keys[:_MAX_HEATMAPS]
    drawn = _picture(figure, lambda f, r: _heatmap_grid(f, r, keys), result)
    if drawn:
        return drawn
    cells = "".join(
        f"<div><p>{html.escape(name_of(key))}</p>{_heatmap_table(result.confusions[key])}</div>"
        for key in keys
    )
    return f"<div class='valar-pictures'>{cells}</div>"


def _heatmap_grid(figure: Any, result: SweepResult, keys: list[tuple[str, str]]) -> Any:
    columns = min(len(keys), 4)
    lines = math.ceil(len(keys) / columns)
    size = len(result.classes)
    side = 1.0 + 0.45 * max(size, 2)
    fig = figure.Figure(figsize=(side * columns + 0.5, side * lines + 0.6), dpi=100)
    top = max(int(max(result.confusions[k].to_numpy().max() for k in keys)), 1)
    labels = [str(c) for c in result.classes]
    for n, key in enumerate(keys):
        axes = fig.add_subplot(lines, columns, n + 1)
        counts = result.confusions[key].to_numpy()
        axes.imshow(counts, cmap="Blues", vmin=0, vmax=top)
        ticks = list(range(size))
        axes.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=7)
        axes.set_yticks(ticks, labels if n % columns == 0 else [""] * size, fontsize=7)
        axes.set_title(name_of(key), fontsize=8)
        for i in range(size):
            for j in range(size):
                shade = "white" if counts[i, j] > 0.6 * top else "black"
                axes.text(
                    j, i, str(counts[i, j]), ha="center", va="center", color=shade, fontsize=7
                )
    fig.supxlabel("prediction", fontsize=8)
    fig.supylabel(result.truth or "majority of the other pairs", fontsize=8)
    return fig


def _f1_table(result: SweepResult) -> pd.DataFrame:
    keys = keys_of(result.leaderboard)
    return pd.DataFrame(
        {name_of(key): result.per_class[key]["f1"] for key in keys},
        index=pd.Index(list(result.classes), name="label", dtype="object"),
    )


def _bars(figure: Any, result: SweepResult) -> Any:
    table = _f1_table(result)
    fig = figure.Figure(figsize=(6.4, 3.6), dpi=100)
    axes = fig.add_subplot()
    width = 0.8 / max(len(table.columns), 1)
    base = np.arange(len(table.index))
    for n, column in enumerate(table.columns):
        axes.bar(base + n * width, table[column].to_numpy(dtype=float), width, label=column)
    axes.set_xticks(base + width * (len(table.columns) - 1) / 2, [str(c) for c in table.index])
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("F1")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(axis="y", alpha=0.3)
    return fig


def _bars_table(result: SweepResult) -> str:
    return _f1_table(result).to_html(float_format=lambda v: f"{v:.3f}", border=0)
