"""A run always returns: its own exceptions are raised, never taken for the loop's waits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import pytest
from helpers import FAST, MODEL, TEMPLATE, words

from valar_pandas._run.loop import run_sync

HANG = 60  # seconds after which a call that should return at once is taken as hung


async def _times_out() -> int:
    await asyncio.sleep(0.05)
    raise TimeoutError("the network mount timed out")


def test_a_timeout_error_of_the_run_is_raised_by_run_sync():
    raised: list[BaseException] = []

    def call() -> None:
        try:
            run_sync(_times_out())
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=call, daemon=True)
    waiter.start()
    waiter.join(HANG)
    assert not waiter.is_alive(), "run_sync() never returned"
    assert isinstance(raised[0], TimeoutError) and "network mount" in str(raised[0])


def test_a_timeout_error_of_the_run_is_raised_by_job_result(serve, monkeypatch):
    _, client = serve()
    from valar_pandas import _accessor

    async def failing(*args: object, **kwargs: object) -> object:
        raise TimeoutError("the network mount timed out")

    monkeypatch.setattr(_accessor, "run_plan", failing)
    job = words(3).valar.submit(TEMPLATE, client=client, **FAST)
    with pytest.raises(TimeoutError, match="network mount"):
        job.result(timeout=HANG)
    assert job.status()["state"] == "error"


def test_an_output_write_timing_out_ends_the_command(serve, tmp_path):
    """A write that fails with ETIMEDOUT (a network mount) ends the command with an error."""
    _, client = serve()
    words(20).to_parquet(tmp_path / "in.parquet")
    script = textwrap.dedent(
        """
        import errno, sys
        from valar_pandas._files import output as _files
        from valar_pandas._cli.main import main

        def write(self, table):
            raise OSError(errno.ETIMEDOUT, "Connection timed out")

        _files._FileOutput.write = write
        sys.exit(main(sys.argv[1:]))
        """
    )
    env = {
        **os.environ,
        "VALAR_API_KEY": client.api_key.reveal(),
        "VALAR_BASE_URL": client.base_url,
    }
    argv = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet")]
    argv += ["--model", MODEL, "--template", TEMPLATE, "--completion-window", "asap", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True, timeout=HANG
    )
    assert done.returncode != 0
    assert "Connection timed out" in done.stderr
    assert not (tmp_path / "out.parquet").exists()
