"""Every display counts a row without a usable answer as failed: unreadable score replies too."""

from __future__ import annotations

import json

import pytest
from helpers import FAST

import valar_pandas._display.progress as progress
import valar_pandas._service.call as service
import valar_pandas._service.score as service_score
from valar_pandas._cli.main import main
from valar_pandas._cli.reviews import make_reviews
from valar_pandas._core.models import Finished, Outcome, Started
from valar_pandas._display.progress import Judged
from valar_pandas._display.tally import Tally
from valar_pandas._display.widget import WidgetDisplay
from valar_pandas.emulator import Faults

SENTIMENT = "Classify the sentiment of this product review.\n\nReview: {review}"
LABELS = ["positive", "negative", "neutral"]


def recorded(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The displays the accessor makes, as made (before any wrapping)."""
    made: list[object] = []
    real = service.make_display

    def make(*args: object, **kwargs: object) -> object:
        display = real(*args, **kwargs)  # type: ignore[arg-type]
        made.append(display)
        return display

    monkeypatch.setattr(service, "make_display", make)
    monkeypatch.setattr(service_score, "make_display", make)
    return made


def test_judged_counts_unusable_answers_and_leaves_the_rest(capsys):
    seen: list[Finished] = []

    class Recorder:
        tally = Tally()

        def __call__(self, event: object) -> None:
            if isinstance(event, Finished):
                seen.append(event)
            self.tally.add(event)  # type: ignore[arg-type]

        def close(self) -> None:
            return None

    judged = Judged(Recorder(), lambda text: None if text == "good" else f"bad: {text}")
    good, bad = Outcome("completed", "good"), Outcome("completed", "nope")
    failed = Outcome("failed", error="boom")
    for event in [Started(4, 3), Finished("a", good, 1), Finished("b", bad, 2),
                  Finished("c", failed, 1)]:  # fmt: skip
        judged(event)
    assert judged.tally.failed == 3 and judged.tally.done == 4
    assert [e.outcome.error for e in seen] == [None, "bad: nope", "boom"]
    assert seen[1].outcome.text == "nope"  # the answer is kept, only judged


def test_score_widget_ends_red_when_replies_cannot_be_read(serve, monkeypatch, capsys):
    _, client = serve(faults=Faults(invalid_structured=0.3), seed=1)
    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.setattr(progress, "_widgets_available", lambda: True)
    made = recorded(monkeypatch)
    options = {**FAST, "progress": "widget"}
    out = make_reviews(80).valar.score(SENTIMENT, labels=LABELS, into="s", client=client, **options)
    failed = out.attrs["valar"]["failed"]
    assert failed == out["s_error"].notna().sum() > 0
    (widget,) = made
    assert isinstance(widget, WidgetDisplay)
    bar, text = widget.box.children
    assert bar.bar_style == "danger"
    assert text.value.startswith(f"{failed} of 80 rows failed; see the s_error column")
    assert widget.tally.failed == failed


def test_score_tqdm_bar_shows_the_failure_count(serve, monkeypatch, capsys):
    _, client = serve(faults=Faults(invalid_structured=0.3), seed=1)
    made = recorded(monkeypatch)
    options = {**FAST, "progress": "tqdm"}
    out = make_reviews(80).valar.score(SENTIMENT, labels=LABELS, into="s", client=client, **options)
    failed = out.attrs["valar"]["failed"]
    assert failed > 0 and made[0].tally.failed == failed  # type: ignore[attr-defined]
    assert f"failed={failed} " in capsys.readouterr().err


def test_score_re_ask_displays_count_what_is_still_unreadable(serve, monkeypatch, capsys):
    _, client = serve(faults=Faults(invalid_structured=1.0), seed=1)
    made = recorded(monkeypatch)
    out = make_reviews(10).valar.score(
        SENTIMENT, labels=LABELS, into="s", retries_on_invalid=1, client=client, **FAST
    )
    assert out.attrs["valar"]["failed"] == 10 and out.attrs["valar"]["invalid_retries"] == 10
    assert [d.tally.failed for d in made] == [10, 10]  # type: ignore[attr-defined]


def test_the_command_bar_and_summary_count_unreadable_replies(serve, tmp_path, monkeypatch, capsys):
    _, client = serve(faults=Faults(invalid_structured=0.3), seed=1)
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    make_reviews(60)[["review"]].to_parquet(tmp_path / "in.parquet")
    argv = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"),
            "--model", FAST["model"], "--template", SENTIMENT, "--completion-window", "asap",
            "--score-labels", ",".join(LABELS), "--json"]  # fmt: skip
    assert main(argv) == 1
    captured = capsys.readouterr()
    failed = json.loads(captured.out)["failed"]
    assert failed > 0 and f"failed={failed} " in captured.err
