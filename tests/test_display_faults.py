"""A display that raises is dropped with one warning; the run, its store and its output go on."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pandas as pd
import pytest
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas._core.models import Event
from valar_pandas._display.tally import Tally
from valar_pandas.emulator import Latency

HANG = 120  # seconds after which a command that should end is taken as hung


class Raising:
    """A display whose drawing fails (a terminal gone) from its third event on."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.calls = 0
        self.closed = 0

    def __call__(self, event: Event) -> None:
        self.tally.add(event)
        self.calls += 1
        if self.calls >= 3:
            raise BrokenPipeError(32, "Broken pipe")

    def close(self) -> None:
        self.closed += 1
        raise BrokenPipeError(32, "Broken pipe")


def test_a_display_that_raises_is_dropped_and_every_answer_is_kept(serve, monkeypatch, tmp_path):
    emulator, client = serve(latency=Latency(median=0.05, sigma=0.3))
    shown = Raising()
    from valar_pandas._service import call as _service

    monkeypatch.setattr(_service, "make_display", lambda *args, **kwargs: shown)
    df = words(12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = df.valar.run(TEMPLATE, client=client, **{**FAST, "progress": "tqdm"})
    assert out["output"].tolist() == echo(df)
    dropped = [w for w in caught if "progress display" in str(w.message)]
    assert len(dropped) == 1 and "Broken pipe" in str(dropped[0].message)
    assert shown.calls == 3  # dropped at its first failure: no more events reach it
    # Every answer was recorded, the one in the failing event too: a re-run is free.
    before = emulator.stats.inferences
    again = df.valar.run(TEMPLATE, client=client, **FAST)
    assert again["output"].tolist() == echo(df) and emulator.stats.inferences == before == 12


def test_the_command_drawing_to_a_closed_pipe_ends_with_its_output(serve, tmp_path):
    emulator, client = serve(latency=Latency(median=0.3, sigma=0.2))
    words(30).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    env = {
        **os.environ,
        "VALAR_API_KEY": client.api_key.reveal(),
        "VALAR_BASE_URL": client.base_url,
        "VALAR_PANDAS_STORE": str(tmp_path / "runs.sqlite"),
    }
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL]
    argv += ["--template", TEMPLATE, "--completion-window", "asap", "--window-rows", "10"]
    command = [sys.executable, "-m", "valar_pandas", *argv]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stderr is not None and p.stdout is not None
        p.stderr.read(1)  # the bar has started drawing: now its reader goes away
        p.stderr.close()
        try:
            p.wait(HANG)
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail("the command never exited after its progress bar's pipe closed")
        summary = p.stdout.read().decode()
    assert p.returncode == 0, summary
    assert pd.read_parquet(out)["output"].tolist() == echo(words(30))
    assert emulator.stats.inferences == 30
