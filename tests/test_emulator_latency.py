"""The emulator's latency by completion window, its fast profile, and a server without replays."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from test_emulator import Clock, body, serve  # noqa: F401  (the fixture)

from valar_pandas.emulator import REALISTIC_LATENCY, Emulator, EmulatorConfig, Latency
from valar_pandas.emulator._cli import _config, _parser


def _medians(config: EmulatorConfig) -> dict[str, float]:
    emulator = Emulator(config)
    return {
        window: statistics.median(emulator.sample_latency(window) for _ in range(2001))
        for window in ("asap", "standard")
    }


def test_by_default_asap_takes_seconds_and_standard_minutes():
    medians = _medians(EmulatorConfig())
    assert 2.0 < medians["asap"] < 8.0
    assert 240.0 < medians["standard"] < 360.0  # "targets roughly five minutes per turn"


def test_one_latency_is_the_law_of_every_window():
    fast = EmulatorConfig(latency=Latency.fast())
    assert fast.latency_for("asap") == fast.latency_for("standard") == Latency(0.2, 0.5, 0.0)
    medians = _medians(fast)
    assert medians["asap"] < 0.3 and medians["standard"] < 0.3


def test_latency_by_window_changes_only_the_windows_it_names():
    config = EmulatorConfig(latency_by_window={"standard": Latency(median=20.0, sigma=0.0)})
    assert config.latency_for("standard") == Latency(median=20.0, sigma=0.0)
    assert config.latency_for("asap") == REALISTIC_LATENCY["asap"]
    assert config.latency_for("no-such-window") == config.latency_for("standard")


@pytest.mark.parametrize(
    "laws", [{"flex": Latency()}, {"asap": 3.0}, [("asap", Latency())]], ids=repr
)
def test_latency_by_window_refuses_unknown_windows_and_non_laws(laws: Any):
    with pytest.raises(ValueError, match="latency_by_window"):
        EmulatorConfig(latency_by_window=laws)


def test_a_response_runs_as_long_as_its_window_over_the_wire(serve):  # noqa: F811
    server = serve(latency=None, seed=3)
    clock = Clock()
    server.emulator.clock = clock
    standard = server.create(body("a", metadata={"completion_window": "standard"})).body["id"]
    unnamed = server.create(body("b")).body["id"]  # no window: the default, standard
    asap = server.create(body("c", metadata={"completion_window": "asap"})).body["id"]
    clock.now += 60.0
    status = {name: server.get(rid).body["status"] for name, rid in
              (("standard", standard), ("unnamed", unnamed), ("asap", asap))}  # fmt: skip
    assert status == {"standard": "running", "unnamed": "running", "asap": "completed"}
    clock.now += 3600.0
    assert server.get(standard).body["status"] == "completed"
    assert server.get(unnamed).body["status"] == "completed"


def test_ignored_idempotency_keys_make_a_new_billed_response_each_time(serve):  # noqa: F811
    server = serve(idempotency=False)
    first = server.create(body("same"), key="k-1").body["id"]
    second = server.create(body("same"), key="k-1").body["id"]
    assert first != second
    assert server.emulator.stats.inferences == 2
    other = server.create(body("another body"), key="k-1")  # no reservation to clash with
    assert other.status == 202


def test_idempotency_replays_by_default(serve):  # noqa: F811
    server = serve()
    assert server.create(body(), key="k").body["id"] == server.create(body(), key="k").body["id"]
    assert server.emulator.stats.inferences == 1


def _cli(*argv: str) -> EmulatorConfig:
    return _config(_parser("emulator").parse_args(list(argv)))


def test_cli_latency_profiles_and_switches():
    assert _cli().latency is None  # realistic by window
    assert dict(_cli().latency_by_window) == dict(REALISTIC_LATENCY)
    assert _cli("--latency-profile", "fast").latency == Latency.fast()
    # The one-law flags the benchmarks pass keep meaning one law for every window.
    one = _cli("--latency-median", "0.5", "--latency-sigma", "0.3", "--latency-min", "0.1")
    assert one.latency == Latency(median=0.5, sigma=0.3, minimum=0.1)
    assert _cli("--latency-median", "0").latency == Latency(median=0.0, sigma=0.5)
    windows = _cli("--standard-latency", "30", "--asap-latency", "2")
    assert windows.latency is None
    assert windows.latency_for("standard") == Latency(median=30.0, sigma=0.4, minimum=3.0)
    assert windows.latency_for("asap") == Latency(median=2.0, sigma=0.5, minimum=0.5)
    assert _cli().idempotency is True
    assert _cli("--ignore-idempotency").idempotency is False


def test_the_start_line_says_which_latency_is_in_force():
    from valar_pandas.emulator._cli import _pace

    assert _pace(_cli()) == "asap 4 s median, standard 300 s median"
    assert _pace(_cli("--latency-profile", "fast")) == "0.2 s median, every window"
