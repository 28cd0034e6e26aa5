"""The notebook widget display and its status line, driven by events outside a kernel."""

from __future__ import annotations

import asyncio

import pytest

from valar_pandas import ConfigError
from valar_pandas._core.models import Finished, Outcome, Retrying, Started, Stopped, Submitted
from valar_pandas._core.prices import Price
from valar_pandas._display.progress import in_kernel, make_display
from valar_pandas._display.tally import Tally, status_line
from valar_pandas._display.widget import WidgetDisplay

OK = Outcome("completed", "yes", input_tokens=1000, output_tokens=500)
BAD = Outcome("failed", error="model exploded")


def tally(*events, price=None, started_at=0.0) -> Tally:
    counts = Tally(price, started_at=started_at)
    for event in events:
        counts.add(event)
    return counts


@pytest.mark.parametrize(
    ("events", "now", "final", "expected"),
    [
        (
            [Started(10, 10)],
            2.0,
            False,
            "0/10 rows · submitted 0 · running 0 · elapsed 0:02 · ETA – · 0 tokens",
        ),
        (
            [Started(10, 10), *[Submitted(str(i), "r", 1) for i in range(10)],
             *[Finished(str(i), OK, 1) for i in range(4)], Retrying("HTTP 429", 1.0)],
            2.0,
            False,
            "4/10 rows · submitted 10 · running 6 · retries 1 · 2.0 rows/s · elapsed 0:02 "
            "· ETA 0:03 · 6.0k tokens",
        ),
        (
            [Started(3, 3), Finished("a", OK, 2), Finished("b", BAD, 1)],
            75.0,
            True,
            "1 of 3 rows failed; see the x_error column · 0.04 rows/s · elapsed 1:15 · 1.5k tokens",
        ),
        (
            [Started(5, 5), Finished("a", OK, 5, cached=True)],
            3725.0,
            True,
            "done: 5 rows · cached 5 · elapsed 1:02:05 · 0 tokens",
        ),
        (
            [Started(5, 5), Finished("a", OK, 2), Stopped(3, "cancelled")],
            4.0,
            True,
            "stopped: 2 of 5 rows done, 3 cancelled (run the same call again to resume) · "
            "0.50 rows/s · elapsed 0:04 · 1.5k tokens",
        ),
    ],
)  # fmt: skip
def test_status_line(events, now, final, expected):
    line = status_line(tally(*events), now, final=final, errors_hint="the x_error column")
    assert line == expected


def test_the_status_line_shows_spend_when_the_model_has_a_price():
    counts = tally(Started(1, 1), Finished("a", OK, 1), price=Price(input=1.0, output=2.0))
    assert status_line(counts, 1.0).endswith("1.5k tokens · $0.0020")


def widget_state(display: WidgetDisplay) -> tuple[int, int, str, str, tuple[str, ...]]:
    bar, text = display.box.children
    return bar.value, bar.max, bar.bar_style, text.value, tuple(display.box._dom_classes)


def test_the_widget_ends_green_when_every_row_succeeded(capsys):
    display = WidgetDisplay("valar", None)
    for event in [Started(3, 3), Finished("a", OK, 2), Finished("b", OK, 1)]:
        display(event)  # outside a loop every event draws at once
    assert widget_state(display)[:3] == (3, 3, "info")
    display.close()
    value, top, style, text, classes = widget_state(display)
    assert (value, top, style) == (3, 3, "success") and text.startswith("done: 3 rows")
    assert classes == ("valar-progress", "valar-done")


def test_the_widget_ends_red_with_the_failure_count_and_where_to_look(capsys):
    display = WidgetDisplay("valar", None, errors_hint="the <x>_error column")
    for event in [Started(2, 2), Finished("a", OK, 1), Finished("b", BAD, 1)]:
        display(event)
    assert widget_state(display)[2] == "warning"  # failures show while running
    display.close()
    _, _, style, text, _ = widget_state(display)
    assert style == "danger" and "1 of 2 rows failed; see the &lt;x&gt;_error column" in text


def test_a_stopped_run_leaves_the_widget_amber_not_green(capsys):
    display = WidgetDisplay("valar", None)
    for event in [Started(4, 4), Finished("a", OK, 1), Stopped(3, "interrupted")]:
        display(event)
    display.close()
    value, top, style, text, _ = widget_state(display)
    assert (value, top, style) == (1, 4, "warning") and text.startswith("stopped: 1 of 4")


def test_a_run_that_ended_without_its_rows_is_red_not_green(capsys):
    display = WidgetDisplay("valar", None)
    for event in [Started(4, 4), Finished("a", OK, 1)]:
        display(event)
    display.close()  # the run raised (a rejected key, say) with three rows outstanding
    _, _, style, text, _ = widget_state(display)
    assert style == "danger" and text.startswith("ended early: 1 of 4 rows done")


def test_on_a_loop_the_widget_redraws_on_a_timer_not_per_event(capsys):
    display = WidgetDisplay("valar", None)
    draws = []
    original = display._draw
    display._draw = lambda now: (draws.append(now), original(now))  # type: ignore[method-assign]

    async def burst() -> None:
        display(Started(500, 500))
        for i in range(500):
            display(Finished(str(i), OK, 1))
        await asyncio.sleep(0.25)

    asyncio.run(burst())
    display.close()
    assert 1 <= len(draws) <= 5  # 501 events, a handful of frames
    assert widget_state(display)[:3] == (500, 500, "success")


def test_widget_progress_outside_a_kernel_is_a_clear_error():
    assert not in_kernel()
    with pytest.raises(ConfigError, match="not a Jupyter kernel; use progress='auto' or 'tqdm'"):
        make_display("widget", None)
    assert type(make_display("auto", None)).__name__ == "_TqdmDisplay"
    assert type(make_display(None, None)).__name__ == "_Silent"


def test_a_tick_caught_mid_draw_cannot_overwrite_the_final_line(capsys):
    """The loop thread's tick and the caller's close() race; the final line must win."""
    import threading

    display = WidgetDisplay("valar", None)
    for event in [Started(2, 2), Finished("a", OK, 1), Finished("b", OK, 1)]:
        display.tally.add(event)
    display._loop = asyncio.new_event_loop()  # the tick believes it runs on the library loop
    entered, release = threading.Event(), threading.Event()

    class Text:  # the status line's widget, slow to take the tick's (soon stale) line
        value = ""

        def __setattr__(self, name: str, new: object) -> None:
            if threading.current_thread().name == "tick" and not entered.is_set():
                entered.set()
                release.wait(2)
            object.__setattr__(self, name, new)

        def send_state(self) -> None:
            return None

    display._text = Text()
    display._dirty = True
    tick = threading.Thread(target=display._tick, name="tick")
    tick.start()
    assert entered.wait(2)
    closer = threading.Thread(target=display.close)
    closer.start()
    closer.join(0.3)  # close() must wait for the tick, not draw under it
    release.set()
    tick.join(2)
    closer.join(2)
    display._loop.close()
    assert display._text.value.startswith("done: 2 rows"), display._text.value
