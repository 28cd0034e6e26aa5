"""evals.sweep(): prompt × model sweeps against the emulator, whose labels are deterministic.

The expected figures are computed here from the emulator's own prediction of each request
(``Emulator.expected_outcome`` on the bodies ``df.valar.requests`` shows), not from the
sweep's frame, so a sweep that scored the wrong rows or mixed up its pairs fails.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from valar_pandas import BudgetWarning, ConfigError
from valar_pandas._cli.reviews import make_reviews
from valar_pandas._core.prices import resolve_price
from valar_pandas.emulator import Latency
from valar_pandas.evals import SweepResult, compare, fleiss_kappa, mcnemar, sweep
from valar_pandas.evals._board import pareto

LABELS = ["positive", "negative", "neutral"]
GOOD, WEAK = "zai-org/GLM-5.1-FP8", "google/gemma-4-31B-it"
TEMPLATES = {
    "plain": "Classify the sentiment of this product review.\n\nReview: {review}",
    "terse": "Sentiment? Review: {review}",
}
ASK: dict[str, Any] = {"max_output_tokens": 16, "completion_window": "asap", "progress": None}


def _expected(emulator: Any, df: pd.DataFrame, template: str, model: str) -> list[str]:
    """The label the emulator will give each row, read from the request it will receive."""
    bodies = df.valar.requests(
        template, model=model, labels=LABELS, n=None,
        max_output_tokens=16, completion_window="asap",
    )["body"]  # fmt: skip
    out = []
    for body in bodies:
        status, text = emulator.expected_outcome(body)
        assert status == "completed"
        out.append(json.loads(text)["label"])
    return out


def _kappa(truth: list[str], pred: list[str]) -> float:
    n = len(truth)
    observed = sum(t == p for t, p in zip(truth, pred, strict=True)) / n
    chance = sum((truth.count(c) / n) * (pred.count(c) / n) for c in LABELS)
    return (observed - chance) / (1 - chance)


def test_leaderboard_figures_are_exact(serve: Any, tmp_path: Any) -> None:
    emulator, client = serve(model_errors={WEAK: 0.3})
    df = make_reviews(80)
    result = sweep(
        df, TEMPLATES, [GOOD, WEAK], labels=LABELS, truth="label",
        client=client, store=tmp_path / "store.sqlite", **ASK,
    )  # fmt: skip
    assert isinstance(result, SweepResult)
    board = result.leaderboard.set_index(["prompt", "model"])
    truth = df["label"].tolist()
    accuracies = {}
    for prompt, template in TEMPLATES.items():
        for model in (GOOD, WEAK):
            expected = _expected(emulator, df, template, model)
            mine = result.results[
                (result.results["prompt"] == prompt) & (result.results["model"] == model)
            ]
            assert mine["row"].tolist() == df.index.tolist()
            assert mine["prediction"].astype(str).tolist() == expected
            assert mine["truth"].tolist() == truth
            row = board.loc[(prompt, model)]
            accuracy = sum(t == p for t, p in zip(truth, expected, strict=True)) / len(truth)
            accuracies[(prompt, model)] = accuracy
            assert row["accuracy"] == pytest.approx(accuracy, abs=1e-12)
            assert row["kappa"] == pytest.approx(_kappa(truth, expected), abs=1e-12)
            hand = compare(pd.DataFrame({"p": expected, "t": truth}), "p", "t", labels=LABELS)
            assert row["macro_f1"] == pytest.approx(hand.macro_f1, abs=1e-12)
            assert (row["rows"], row["scored"], row["errors"], row["error_rate"]) == (80, 80, 0, 0)
            assert result.confusions[(prompt, model)].to_numpy().tolist() == (
                hand.confusion.to_numpy().tolist()
            )
            price = resolve_price(model, "asap", None)
            assert price is not None
            costs = mine["cost_usd"].astype(float)
            assert row["cost_per_1k_usd"] == pytest.approx(costs.mean() * 1000, rel=1e-12)
            assert row["paid_usd"] == pytest.approx(costs.sum(), rel=1e-9)  # all paid now
    # The weak model's mistakes are real: it scores below the good one under each prompt.
    for prompt in TEMPLATES:
        assert accuracies[(prompt, WEAK)] < accuracies[(prompt, GOOD)]
    # Best first; each pair was asked once per row and nothing more.
    ranked = result.leaderboard["accuracy"].tolist()
    assert ranked == sorted(ranked, reverse=True)
    assert emulator.stats.inferences == 4 * 80
    assert emulator.stats.requests["POST /v1/responses"] == 4 * 80


def test_significance_counts_the_discordant_rows(serve: Any, tmp_path: Any) -> None:
    emulator, client = serve(model_errors={WEAK: 0.3})
    df = make_reviews(60)
    template = TEMPLATES["plain"]
    result = sweep(
        df, {"plain": template}, [GOOD, WEAK], labels=LABELS, truth="label",
        client=client, store=False, **ASK,
    )  # fmt: skip
    truth = df["label"].tolist()
    good = [p == t for p, t in zip(_expected(emulator, df, template, GOOD), truth, strict=True)]
    weak = [p == t for p, t in zip(_expected(emulator, df, template, WEAK), truth, strict=True)]
    b = sum(g and not w for g, w in zip(good, weak, strict=True))
    c = sum(w and not g for g, w in zip(good, weak, strict=True))
    (row,) = result.significance.to_dict("records")
    assert row["first"] == f"plain · {GOOD}" and row["second"] == f"plain · {WEAK}"
    assert (row["rows"], row["only_first"], row["only_second"]) == (60, b, c)
    assert row["p_value"] == pytest.approx(mcnemar(b, c))
    assert "exact McNemar" in result.note and f"plain · {WEAK}" in result.note


def test_mcnemar_on_hand_checked_tables() -> None:
    # b = 10, c = 2: P(X ≤ 2) for X ~ Bin(12, ½) is (1 + 12 + 66) / 4096; doubled.
    assert mcnemar(10, 2) == pytest.approx(2 * 79 / 4096, rel=1e-15)
    assert mcnemar(2, 10) == mcnemar(10, 2)
    assert mcnemar(0, 0) == 1.0 and mcnemar(5, 5) == 1.0  # capped at 1
    assert mcnemar(6, 0) == pytest.approx(2 / 64)
    # Large tables stay exact and finite (no float overflow in 2**n).
    assert 0.0 < mcnemar(3000, 2900) < 1.0
    with pytest.raises(ValueError):
        mcnemar(-1, 2)


def test_fleiss_kappa_textbook_example() -> None:
    # Fleiss (1971) as tabulated on Wikipedia: 10 items, 14 raters, 5 categories → 0.210.
    ratings = np.array(
        [
            [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
        ]
    )  # fmt: skip
    assert fleiss_kappa(ratings) == pytest.approx(0.20993, abs=1e-5)
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[1, 1], [2, 1]]))


def test_pareto_front() -> None:
    quality = np.array([0.9, 0.8, 0.8, 0.7, 0.95, np.nan])
    cost = np.array([1.0, 0.5, 0.7, 0.6, 3.0, 0.1])
    # 0.8 @ 0.7 is dominated by 0.8 @ 0.5; 0.7 @ 0.6 by 0.8 @ 0.5; no quality: never on it.
    assert pareto(quality, cost).tolist() == [True, True, False, False, True, False]


def test_intervals_contain_the_estimate_and_narrow_with_rows(serve: Any) -> None:
    _, client = serve(model_errors={WEAK: 0.3})
    widths = []
    for rows in (40, 400):
        result = sweep(
            make_reviews(rows), {"plain": TEMPLATES["plain"]}, [WEAK], labels=LABELS,
            truth="label", client=client, store=False, seed=3, **ASK,
        )  # fmt: skip
        (row,) = result.leaderboard.to_dict("records")
        for name in ("accuracy", "macro_f1", "kappa"):
            assert row[f"{name}_low"] <= row[name] <= row[f"{name}_high"], (rows, name)
        widths.append(row["accuracy_high"] - row["accuracy_low"])
        # Seeded: the same rows and seed give the same interval.
        again = sweep(
            make_reviews(rows), {"plain": TEMPLATES["plain"]}, [WEAK], labels=LABELS,
            truth="label", client=client, store=False, seed=3, **ASK,
        )  # fmt: skip
        pd.testing.assert_frame_equal(
            again.leaderboard.drop(columns=["seconds", "paid_usd"]),
            result.leaderboard.drop(columns=["seconds", "paid_usd"]),
        )
    assert widths[1] < widths[0] / 2  # ten times the rows: about a third of the width


def test_one_more_model_pays_only_for_its_rows(serve: Any, tmp_path: Any) -> None:
    emulator, client = serve(model_errors={WEAK: 0.3})
    df = make_reviews(50)
    store = tmp_path / "store.sqlite"
    kwargs: dict[str, Any] = {"labels": LABELS, "truth": "label", "client": client, **ASK}
    first = sweep(df, {"plain": TEMPLATES["plain"]}, [GOOD, WEAK], store=store, **kwargs)
    assert emulator.stats.requests["POST /v1/responses"] == 100
    third = "moonshotai/Kimi-K2.6"
    second = sweep(df, {"plain": TEMPLATES["plain"]}, [GOOD, WEAK, third], store=store, **kwargs)
    # Only the new model's 50 rows were created and billed.
    assert emulator.stats.requests["POST /v1/responses"] == 150
    assert emulator.stats.inferences == 150
    estimate = second.estimate.set_index("model")
    assert estimate.loc[[GOOD, WEAK], "cache_hits"].tolist() == [50, 50]
    assert estimate.loc[[GOOD, WEAK], "to_send"].tolist() == [0, 0]
    assert estimate.loc[third, "to_send"] == 50
    board = second.leaderboard.set_index("model")
    assert board.loc[[GOOD, WEAK], "paid_usd"].tolist() == [0.0, 0.0]
    assert board.loc[third, "paid_usd"] > 0
    # What 1,000 rows cost is the answers' price, paid now or earlier: unchanged.
    before = first.leaderboard.set_index("model")
    for model in (GOOD, WEAK):
        assert board.loc[model, "cost_per_1k_usd"] == pytest.approx(
            before.loc[model, "cost_per_1k_usd"]
        )
        assert board.loc[model, "accuracy"] == before.loc[model, "accuracy"]


def test_a_budget_the_estimate_passes_is_refused_before_sending(serve: Any) -> None:
    emulator, client = serve()
    df = make_reviews(30)
    with pytest.raises(ConfigError, match=r"estimated at \$.*more than its budget"):
        sweep(
            df, TEMPLATES, [GOOD, WEAK], labels=LABELS, client=client, store=False,
            budget=0.0001, **ASK,
        )  # fmt: skip
    assert emulator.stats.total_requests == 0
    # A budget the estimate fits runs, and without max_output_tokens it says it is no cap.
    with pytest.warns(BudgetWarning, match="not a hard cap"):
        result = sweep(
            df, {"plain": TEMPLATES["plain"]}, [GOOD], labels=LABELS, client=client,
            store=False, budget=1.0, completion_window="asap", progress=None,
        )  # fmt: skip
    assert result.leaderboard["errors"].tolist() == [0]


def test_sample_scores_the_same_rows_for_every_pair(serve: Any) -> None:
    emulator, client = serve()
    df = make_reviews(100)
    result = sweep(
        df, TEMPLATES, [GOOD], labels=LABELS, truth="label", sample=12, seed=5,
        client=client, store=False, **ASK,
    )  # fmt: skip
    rows = [sorted(g["row"].tolist()) for _, g in result.results.groupby("prompt", observed=True)]
    assert rows[0] == rows[1] and len(rows[0]) == 12 and len(set(rows[0])) == 12
    assert emulator.stats.inferences == 24
    assert result.leaderboard["rows"].tolist() == [12, 12]


def test_agreement_without_truth(serve: Any) -> None:
    emulator, client = serve(model_errors={WEAK: 0.4})
    df = make_reviews(50)
    template = TEMPLATES["plain"]
    result = sweep(
        df, {"plain": template}, [GOOD, WEAK], labels=LABELS, client=client, store=False, **ASK
    )
    assert result.quality == "agreement" and "accuracy" not in result.leaderboard
    good = _expected(emulator, df, template, GOOD)
    weak = _expected(emulator, df, template, WEAK)
    shared = sum(a == b for a, b in zip(good, weak, strict=True)) / len(df)
    # With two pairs, each one's reference is the other's answer.
    assert result.leaderboard["agreement"].tolist() == pytest.approx([shared, shared])
    kappa = result.agreement.loc[f"plain · {GOOD}", f"plain · {WEAK}"]
    assert kappa == pytest.approx(_kappa(good, weak))
    assert result.significance.empty and "needs a truth column" in result.note


def test_bad_arguments_are_refused_before_any_request(serve: Any) -> None:
    emulator, client = serve()
    df = make_reviews(5)
    base: dict[str, Any] = {"client": client, "store": False, "progress": None}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"templates": TEMPLATES, "models": [GOOD], "labels": LABELS, "model": GOOD}, "model"),
        ({"templates": TEMPLATES, "models": [], "labels": LABELS}, "models"),
        ({"templates": TEMPLATES, "models": [GOOD, GOOD], "labels": LABELS}, "repeats"),
        ({"templates": {}, "models": [GOOD], "labels": LABELS}, "templates"),
        ({"templates": TEMPLATES, "models": [GOOD], "labels": LABELS, "truth": "x"}, "'x'"),
        ({"templates": TEMPLATES, "models": [GOOD]}, "labels"),
        ({"templates": {"a": "{nope}"}, "models": [GOOD], "labels": LABELS}, "nope"),
        ({"templates": TEMPLATES, "models": [GOOD], "labels": LABELS, "sample": 0}, "sample"),
        (
            {"templates": TEMPLATES, "models": [GOOD], "schema": {"type": "object",
             "properties": {"x": {"type": "string"}}}},
            "field=",
        ),
    ]  # fmt: skip
    for kwargs, said in cases:
        with pytest.raises(ConfigError, match=said):
            sweep(df, **{**base, **kwargs})
    # Rows are named by index label: a repeated label is refused before anything is paid.
    doubled = pd.concat([df, df])
    with pytest.raises(ConfigError, match="index repeats labels"):
        sweep(doubled, TEMPLATES, [GOOD], labels=LABELS, truth="label", **base)
    assert emulator.stats.total_requests == 0


def test_schema_sweeps_compare_one_field(serve: Any) -> None:
    _, client = serve()
    df = make_reviews(20)
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": LABELS}},
        "required": ["sentiment"],
    }
    result = sweep(
        df, {"plain": TEMPLATES["plain"]}, [GOOD], schema=schema, field="sentiment",
        truth="label", client=client, store=False, **ASK,
    )  # fmt: skip
    plain = sweep(
        df, {"plain": TEMPLATES["plain"]}, [GOOD], labels=LABELS, truth="label",
        client=client, store=False, **ASK,
    )  # fmt: skip
    # The emulator reads the same sentiment whichever way the label is asked for.
    assert result.leaderboard["accuracy"].tolist() == plain.leaderboard["accuracy"].tolist()


def _small(serve: Any) -> SweepResult:
    _, client = serve(model_errors={WEAK: 0.3})
    return sweep(
        make_reviews(30), TEMPLATES, [GOOD, WEAK], labels=LABELS, truth="label",
        client=client, store=False, **ASK,
    )  # fmt: skip


def test_report_html_with_matplotlib(serve: Any, tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    result = _small(serve)
    page = result._repr_html_()
    assert page.count("<svg") == 3  # the scatter, the heatmaps, the bars
    assert "Pareto front" in page and "exact McNemar" in page
    path = result.to_html(tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") == 3
    # Self-contained: nothing to run and nothing fetched.
    assert "<script" not in text and "<link" not in text and "src=" not in text
    assert 'href="http' not in text


def test_report_html_without_matplotlib(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _small(serve)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    page = result._repr_html_()
    assert "<svg" not in page
    assert page.count("class='valar-confusion'") == 4  # one table per pair
    assert "on the Pareto front" in page and "valar-leaderboard" in page


def test_repr_prints_the_leaderboard(serve: Any) -> None:
    result = _small(serve)
    text = repr(result)
    assert text.startswith("SweepResult: 4 prompt × model pairs over 30 rows, against 'label'")
    assert "accuracy" in text and "$/1k rows" in text and "best: " in text
    assert not math.isnan(result.fleiss_kappa)


def test_the_emulators_model_errors_are_deterministic(serve: Any) -> None:
    from valar_pandas.emulator import Emulator, EmulatorConfig

    with pytest.raises(ValueError, match="model_errors"):
        EmulatorConfig(model_errors={GOOD: 1.5})
    df = make_reviews(40)
    plain = Emulator(EmulatorConfig())
    always = Emulator(EmulatorConfig(model_errors={WEAK: 1.0}))
    right = _expected(plain, df, TEMPLATES["plain"], WEAK)
    wrong = _expected(always, df, TEMPLATES["plain"], WEAK)
    # Every answer moves to the next label; another model is untouched.
    assert wrong == [LABELS[(LABELS.index(r) + 1) % 3] for r in right]
    assert _expected(always, df, TEMPLATES["plain"], GOOD) == right
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _expected(Emulator(EmulatorConfig(model_errors={WEAK: 1.0})), df,
                          TEMPLATES["plain"], WEAK)  # fmt: skip
    assert again == wrong


def test_a_failing_display_leaves_the_spend_counted(serve: Any, monkeypatch: Any) -> None:
    """The sweep's display raising mid-run is dropped with one warning; each pair's spend,
    read from its own count, stays whole."""
    from valar_pandas._display.tally import Tally
    from valar_pandas.evals import _sweep

    class Raising:
        def __init__(self) -> None:
            self.tally = Tally()
            self.calls = 0

        def __call__(self, event: Any) -> None:
            self.calls += 1
            if self.calls >= 3:
                raise BrokenPipeError(32, "Broken pipe")

        def close(self) -> None:
            return None

    shown = Raising()
    monkeypatch.setattr(_sweep, "make_display", lambda *args, **kwargs: shown)
    _, client = serve()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sweep(
            make_reviews(30), {"plain": TEMPLATES["plain"]}, [GOOD, WEAK], labels=LABELS,
            truth="label", client=client, store=False, **{**ASK, "progress": "tqdm"},
        )  # fmt: skip
    dropped = [w for w in caught if "progress display" in str(w.message)]
    assert len(dropped) == 1 and shown.calls == 3
    costs = result.results.groupby("model", observed=True)["cost_usd"].sum()
    board = result.leaderboard.set_index("model")
    for model in (GOOD, WEAK):
        assert board.loc[model, "paid_usd"] == pytest.approx(float(costs[model]), rel=1e-9)


def test_bootstrap_draws_in_chunks_with_the_same_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resamples of many rows are drawn a chunk at a time: same figures, bounded memory."""
    import tracemalloc

    from valar_pandas.evals import _stats

    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 50_000)
    pred = np.where(rng.random(50_000) < 0.8, truth, rng.integers(0, 3, 50_000))
    whole = _stats.bootstrap(truth[:500], pred[:500], 3, resamples=200, seed=1)
    monkeypatch.setattr(_stats, "_DRAWS", 1_000, raising=False)
    assert _stats.bootstrap(truth[:500], pred[:500], 3, resamples=200, seed=1) == whole
    monkeypatch.setattr(_stats, "_DRAWS", 200_000, raising=False)
    tracemalloc.start()
    try:
        _stats.bootstrap(truth, pred, 3, resamples=200, seed=1)
        _stats.bootstrap_mean(pred.astype(float), resamples=200, seed=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 200 resamples × 50,000 rows at once is 80 MB of int64 draws alone.
    assert peak < 20_000_000


# -- pairs at once ---------------------------------------------------------------------------

FOUR = [
    "zai-org/GLM-5.1-FP8",
    "google/gemma-4-31B-it",
    "moonshotai/Kimi-K2.6",
    "openai/gpt-oss-120b",
]


def _spans(emulator: Any) -> dict[str, list[tuple[float, float]]]:
    """Model → (created, finished) on the emulator's clock, of every response it made."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for record in emulator.store.records.values():
        spans.setdefault(record.model, []).append((record.t0, record.t0 + record.latency))
    return spans


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (one ending as another starts: not both)."""
    edges = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_the_pairs_run_at_once(serve: Any) -> None:
    """Every pair is created before any pair has all its answers: they do not queue."""
    emulator, client = serve(latency=Latency(median=1.0, sigma=0.0))
    began = time.monotonic()
    result = sweep(
        make_reviews(6), {"plain": TEMPLATES["plain"]}, FOUR, labels=LABELS, truth="label",
        client=client, store=False, **ASK,
    )  # fmt: skip
    wall = time.monotonic() - began
    assert result.leaderboard["errors"].tolist() == [0, 0, 0, 0]
    spans = _spans(emulator)
    assert sorted(spans) == sorted(FOUR) and all(len(s) == 6 for s in spans.values())
    last_created = max(min(start for start, _ in s) for s in spans.values())
    first_done = min(max(end for _, end in s) for s in spans.values())
    assert last_created < first_done
    # Each pair's seconds are its own wall time, at least its answers' latency and within
    # the sweep's; together they overlap, so they add up to more than the sweep took.
    seconds = result.leaderboard["seconds"]
    assert all(1.0 <= s <= wall for s in seconds) and seconds.sum() > wall


def test_requests_in_flight_across_the_sweep_stay_within_concurrency(serve: Any) -> None:
    """``concurrency`` is the sweep's total: the server never holds more requests at once."""
    emulator, client = serve(latency=Latency(median=0.3, sigma=0.0))
    result = sweep(
        make_reviews(8), {"plain": TEMPLATES["plain"]}, FOUR, labels=LABELS, client=client,
        store=False, mode="realtime", concurrency=4, **ASK,
    )  # fmt: skip
    assert result.leaderboard["errors"].tolist() == [0, 0, 0, 0]
    spans = _spans(emulator)
    every = [span for s in spans.values() for span in s]
    assert len(every) == 32
    assert _most_at_once(every) <= 4
    assert _most_at_once([min(s) for s in spans.values()]) >= 2  # and the pairs overlapped


@pytest.mark.parametrize(
    ("concurrency", "max_rps", "pairs", "expected"),
    [
        (200, 2000.0, 6, [(34, 2000 / 6)] * 2 + [(33, 2000 / 6)] * 4),
        (4, None, 4, [(1, None)] * 4),
        (10, 5.0, 4, [(3, 1.25), (3, 1.25), (2, 1.25), (2, 1.25)]),
        (3, None, 8, [(1, None)] * 3),  # more pairs than slots: three lanes, in turn
        (8, 0.2, 8, [(4, 0.1), (4, 0.1)]),  # no lane under the least rate
        (8, 0.1, 8, [(8, 0.1)]),
        (1, 2000.0, 1, [(1, 2000.0)]),
    ],
)
def test_lanes_split_the_limits_without_passing_them(
    concurrency: int, max_rps: float | None, pairs: int, expected: list[tuple[int, Any]]
) -> None:
    from valar_pandas._core.options import MIN_MAX_RPS
    from valar_pandas.evals._sweep import lanes

    got = lanes(concurrency, max_rps, pairs)
    assert [(lane.concurrency, lane.max_rps) for lane in got] == [
        (c, pytest.approx(r) if r is not None else None) for c, r in expected
    ]
    assert sum(lane.concurrency for lane in got) == concurrency
    assert all(lane.concurrency >= 1 for lane in got) and 1 <= len(got) <= pairs
    if max_rps is not None:
        assert sum(lane.max_rps or 0.0 for lane in got) == pytest.approx(max_rps)
        assert all((lane.max_rps or 0.0) >= MIN_MAX_RPS - 1e-12 for lane in got)


def test_budgets_sharing_a_pool_admit_against_the_total() -> None:
    """Two runs with their own prices reserve from one pool; each settles its own cost."""
    from valar_pandas._core.budget import Budget, SpendPool
    from valar_pandas._core.models import Finished, Outcome, Request
    from valar_pandas._core.prices import Price

    def request(name: str) -> Request:
        body = {"model": "m", "input": "x" * 40, "max_output_tokens": 100}
        return Request(name, name, body, b"")

    cheap, dear = Price(input=0.0, output=10.0), Price(input=0.0, output=30.0)
    pool = SpendPool(0.005)  # 100 output tokens: $0.001 cheap, $0.003 dear
    one, two = Budget(0.005, cheap, pool), Budget(0.005, dear, pool)
    assert one.admit(request("a")) is None and two.admit(request("b")) is None
    assert pool.in_flight == pytest.approx(0.004)
    refused = one.admit(request("c")) or ""  # 0.004 + 0.001 fits; then nothing does
    assert refused == "" and pool.in_flight == pytest.approx(0.005)
    said = two.admit(request("d"))
    assert said is not None and said.startswith("not sent: the budget of $0.0050")
    assert one.admit(request("e")) is not None
    # Settling: each run's own price, into the pool; the freed room admits again.
    two(Finished("b", Outcome("completed", input_tokens=0, output_tokens=10), 1))
    assert two.spent == pytest.approx(0.0003) and two.in_flight == 0.0
    assert pool.spent == pytest.approx(0.0003) and pool.in_flight == pytest.approx(0.002)
    assert one.admit(request("f")) is None
    assert pool.spent + pool.in_flight <= pool.limit + 1e-15
    assert one.overspent == two.overspent == 0.0
    with pytest.raises(ValueError, match="pool's limit"):
        Budget(1.0, cheap, pool)


def test_one_budget_spans_the_pairs_running_at_once(serve: Any) -> None:
    """Unreadable replies are re-asked past what the estimate held; the pairs, all running,
    share one budget: what the server billed never passes it, and the rows past it end
    ``not sent``."""
    from valar_pandas.emulator import Faults

    emulator, client = serve(faults=Faults(invalid_structured=1.0))
    df = make_reviews(10)
    template = TEMPLATES["plain"]
    ask = {"labels": LABELS, "max_output_tokens": 16, "completion_window": "asap"}
    estimated = sum(df.valar.estimate(template, model=m, **ask).cost_usd or 0.0 for m in FOUR)
    budget = 1.8 * estimated
    result = sweep(
        df, {"plain": template}, FOUR, client=client, store=False, budget=budget,
        retries_on_invalid=5, progress=None, **ask,
    )  # fmt: skip
    billed = 0.0
    for record in emulator.store.records.values():
        price = resolve_price(record.model, "asap", None)
        assert price is not None
        billed += price.cost(record.input_tokens, record.output_tokens, record.cached_tokens)
    assert estimated < billed <= budget
    assert result.leaderboard["paid_usd"].sum() == pytest.approx(billed, rel=1e-9)
    errors = result.results["error"].dropna().astype(str)
    past = errors[errors.str.startswith(f"not sent: the budget of ${budget:,.4f}")]
    assert 0 < len(past) < len(errors) == 40
    # Every pair ran its re-asks while the others did: each was refused some.
    assert result.results.loc[past.index, "model"].nunique() == 4


def test_ctrl_c_returns_what_every_pair_answered(serve: Any, tmp_path: Any) -> None:
    """An interrupt mid-sweep stops every pair at once: each keeps the rows it was answered,
    the rest end ``interrupted``, and the same sweep again pays for no row twice."""
    import _thread
    import threading

    emulator, client = serve(latency=Latency(median=1.5, sigma=0.6, minimum=0.05))
    df = make_reviews(20)
    kwargs: dict[str, Any] = {
        "labels": LABELS, "client": client, "store": tmp_path / "store.sqlite", **ASK,
    }  # fmt: skip
    timer = threading.Timer(3.0, _thread.interrupt_main)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        timer.start()
        try:
            result = sweep(df, {"plain": TEMPLATES["plain"]}, FOUR, **kwargs)
        finally:
            timer.cancel()
    assert any("interrupted" in str(w.message) for w in caught)
    rows = result.results
    answered = rows["error"].isna()
    cut = rows["error"].astype(str).str.startswith("interrupted")
    assert (answered | cut).all() and cut.any()
    assert rows.loc[answered, "model"].nunique() == 4  # every pair was running, not one
    again = sweep(df, {"plain": TEMPLATES["plain"]}, FOUR, **kwargs)
    assert again.results["error"].isna().all()
    assert not any(n > 1 for n in emulator.stats.inferences_by_body.values())
    assert emulator.stats.inferences == 80


def test_retries_on_invalid_re_asks_the_unreadable_rows(serve: Any) -> None:
    """``retries_on_invalid=`` reaches every pair: unreadable replies are asked again."""
    from valar_pandas.emulator import Faults

    emulator, client = serve(faults=Faults(invalid_structured=1.0))
    result = sweep(
        make_reviews(5), {"plain": TEMPLATES["plain"]}, [GOOD, WEAK], labels=LABELS,
        client=client, store=False, retries_on_invalid=2, **ASK,
    )  # fmt: skip
    # Every reply is unreadable: each row is asked once and then twice more.
    assert emulator.stats.inferences == 2 * 5 * 3
    assert result.leaderboard["errors"].tolist() == [5, 5]


def test_one_display_counts_every_pair_once(serve: Any, monkeypatch: Any) -> None:
    """The pairs run at once into one display: its rows done add up to the sweep's rows,
    re-asks not counted again."""
    from valar_pandas._display.tally import Tally
    from valar_pandas.emulator import Faults
    from valar_pandas.evals import _sweep

    class Recording:
        def __init__(self, total: int) -> None:
            self.tally = Tally()
            self.total = total

        def __call__(self, event: Any) -> None:
            self.tally.add(event)

        def close(self) -> None:
            return None

    shown: list[Recording] = []

    def make(*args: Any, total: int, **kwargs: Any) -> Recording:
        shown.append(Recording(total))
        return shown[-1]

    monkeypatch.setattr(_sweep, "make_display", make)
    emulator, client = serve(faults=Faults(invalid_structured=0.3))
    models = [GOOD, "deepseek-ai/DeepSeek-V4-Flash"]
    result = sweep(
        make_reviews(12), TEMPLATES, models, labels=LABELS, client=client, store=False,
        retries_on_invalid=1, **{**ASK, "progress": "tqdm"},
    )  # fmt: skip
    (display,) = shown
    assert display.total == display.tally.done == 4 * 12 == display.tally.submitted
    assert emulator.stats.inferences > 4 * 12  # re-asks were sent, and not drawn
    assert display.tally.cancelled == 0
    assert len(result.results) == 48


def test_truth_outside_the_labels_or_missing_is_refused_or_left_out_before_sending(
    serve: Any,
) -> None:
    """A truth column that could never match a label is refused, not paid for and scored 0;
    rows without truth are not sent (they could not be scored)."""
    emulator, client = serve()
    df = make_reviews(12)
    kwargs: dict[str, Any] = {"labels": LABELS, "client": client, "store": False, **ASK}
    numbers = df.assign(label=[0, 1, 2] * 4)
    with pytest.raises(ConfigError, match=r"not among the labels \(0, 1, 2\)"):
        sweep(numbers, {"plain": TEMPLATES["plain"]}, [GOOD], truth="label", **kwargs)
    shouted = df.assign(label=df["label"].str.upper())
    with pytest.raises(ConfigError, match="not among the labels"):
        sweep(shouted, {"plain": TEMPLATES["plain"]}, [GOOD], truth="label", **kwargs)
    with pytest.raises(ConfigError, match="has no values"):
        sweep(df.assign(label=None), {"plain": TEMPLATES["plain"]}, [GOOD], truth="label", **kwargs)
    assert emulator.stats.requests["POST /v1/responses"] == 0
    some = df.assign(label=df["label"].where(df.index % 3 != 0))
    result = sweep(some, {"plain": TEMPLATES["plain"]}, [GOOD], truth="label", **kwargs)
    assert emulator.stats.requests["POST /v1/responses"] == 8
    assert result.leaderboard["rows"].tolist() == [8]


def test_cost_per_thousand_rows_counts_only_rows_that_reported_usage(serve: Any) -> None:
    """A pair whose rows failed before any usage does not look cheaper than it is."""
    from valar_pandas.emulator import Faults

    kwargs: dict[str, Any] = {"labels": LABELS, "store": False, **ASK}
    df = make_reviews(40)
    _, client = serve()
    clean = sweep(df, {"plain": TEMPLATES["plain"]}, [GOOD], client=client, **kwargs)
    _, faulty = serve(faults=Faults(failed=0.5), seed=3)
    cut = sweep(df, {"plain": TEMPLATES["plain"]}, [GOOD], client=faulty, **kwargs)
    assert cut.leaderboard["errors"].iloc[0] > 0
    assert cut.results.loc[cut.results["error"].notna(), "cost_usd"].isna().all()
    per_1k = cut.leaderboard["cost_per_1k_usd"].iloc[0]
    assert per_1k == pytest.approx(clean.leaderboard["cost_per_1k_usd"].iloc[0], rel=0.05)


def test_after_ctrl_c_no_pair_that_had_not_begun_sends_anything(serve: Any, tmp_path: Any) -> None:
    """Interrupted while the first pair runs (one lane: the pairs one after another), the
    pairs still waiting end ``interrupted`` without a single create: nothing is paid for
    after the user stopped the sweep."""
    import _thread
    import threading
    from collections import Counter

    emulator, client = serve(latency=Latency(median=3.0, sigma=0.1, minimum=2.5))
    three = [GOOD, "moonshotai/Kimi-K2.6", WEAK]
    timer = threading.Timer(1.5, _thread.interrupt_main)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        timer.start()
        try:
            result = sweep(
                make_reviews(6), {"plain": TEMPLATES["plain"]}, three, labels=LABELS,
                client=client, store=tmp_path / "s.sqlite3", concurrency=1, **ASK,
            )  # fmt: skip
        finally:
            timer.cancel()
    created = Counter(record.model for record in emulator.store.records.values())
    assert set(created) == {GOOD}
    errors = result.results["error"].astype(str)
    assert errors.str.startswith("interrupted").all()


def test_a_larger_sample_holds_the_smaller_one() -> None:
    """Raising ``sample=`` with the same seed adds rows; it does not draw a new set."""
    from valar_pandas.evals._sweep import sample_rows

    df = make_reviews(500)
    small = sample_rows(df, 100, seed=4).index
    large = sample_rows(df, 200, seed=4).index
    assert set(small) <= set(large) and len(large) == 200
