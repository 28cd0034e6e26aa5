"""ValarClient is the client: one pool, one budget and one limit for everything that uses it.

Connections are counted where the server sees them: every test's client reaches the emulator
through a TCP relay on 127.0.0.1 that counts the connections it accepts and how many are open
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import pandas as pd
import pytest
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas import ConfigError, ValarClient
from valar_pandas._cli.main import main
from valar_pandas._run.cancel import drain
from valar_pandas._run.loop import run_sync
from valar_pandas._transport.shared import default_client, shared
from valar_pandas.emulator import Latency

KEY = "sk-client-0123456789"


class Relay:
    """A TCP relay on 127.0.0.1 to ``port``, counting the connections it accepts.

    Attributes:
        accepted: Connections accepted so far.
        open: Connections open now.
        peak: The most connections open at once.
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.accepted = self.open = self.peak = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        ).result()
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.open -= 1
            writer.close()
            up_writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.05)  # the transports' own closing callbacks

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def relayed(serve):
    """Start an emulator and a relay to it; returns (emulator, relay, relay's base URL)."""
    relays: list[Relay] = []

    def start(**config: object) -> tuple[object, Relay, str]:
        emulator, direct = serve(**config)
        port = int(direct.base_url.rsplit(":", 1)[1].split("/")[0])
        relay = Relay(port)
        relays.append(relay)
        return emulator, relay, f"http://127.0.0.1:{relay.port}/v1"

    yield start
    run_sync(drain())
    for relay in relays:
        relay.close()


def wait_until(predicate, timeout: float = 10.0) -> None:
    """Poll a condition (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_two_runs_one_after_another_reuse_the_clients_connections(relayed):
    emulator, relay, url = relayed()
    client = ValarClient(api_key=emulator.config.api_key, base_url=url, concurrency=4)
    with contextlib.closing(client):
        first = words(20).valar.run(TEMPLATE, client=client, **FAST)
        opened = relay.accepted
        second = words(20).valar.run(TEMPLATE, client=client, salt="second", **FAST)
    assert first["output"].tolist() == second["output"].tolist() == echo(words(20))
    assert second.attrs["valar"]["http_requests"] > 0  # sent again, not from the store
    assert 1 <= opened <= 4
    assert relay.accepted == opened  # the second run opened no connection of its own


def test_runs_and_jobs_at_once_share_the_clients_limit_in_flight(relayed):
    emulator, relay, url = relayed(latency=Latency(median=0.2, sigma=0.3))
    client = ValarClient(api_key=emulator.config.api_key, base_url=url, concurrency=3)
    frames = [words(15).assign(i=range(k * 15, (k + 1) * 15)) for k in range(3)]
    jobs = [
        f.valar.submit(TEMPLATE, client=client, concurrency=8, **FAST) for f in frames[:2]
    ]  # each run's own limit is above the client's: the client's binds
    last = frames[2].valar.run(TEMPLATE, client=client, concurrency=8, **FAST)
    outputs = [job.result(timeout=60)["output"].tolist() for job in jobs]
    assert outputs == [echo(f) for f in frames[:2]] and last["output"].tolist() == echo(frames[2])
    assert relay.peak <= 3  # requests in flight never exceed the connections open
    assert relay.accepted <= 3  # and no run opened a pool of its own
    client.close()


def test_the_command_line_windows_share_one_limit_instead_of_dividing_it(
    relayed, tmp_path, monkeypatch
):
    emulator, relay, url = relayed(latency=Latency(median=0.3, sigma=0.2))
    monkeypatch.setenv("VALAR_API_KEY", emulator.config.api_key)
    monkeypatch.setenv("VALAR_BASE_URL", url)
    df = words(60)
    df.to_parquet(tmp_path / "in.parquet")
    run = ["--model", MODEL, "--template", TEMPLATE, "--completion-window", "asap", "--quiet"]
    args = [str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), *run]
    assert main(["run", *args, "--concurrency", "4", "--window-rows", "10"]) == 0
    assert pd.read_parquet(tmp_path / "out.parquet")["output"].tolist() == echo(df)
    # Three windows ran at once over one pool of four: all four used, never more. Divided,
    # each window would have had one connection (4 // 3), three in all.
    assert relay.peak == 4 and relay.accepted == 4


def test_the_command_gives_every_window_the_whole_budget_and_limit(monkeypatch, tmp_path):
    from valar_pandas._cli import run as command

    monkeypatch.setenv("VALAR_API_KEY", KEY)
    words(30).to_parquet(tmp_path / "in.parquet")
    parser_args = [
        "run", str(tmp_path / "in.parquet"), str(tmp_path / "o.parquet"), "--model", MODEL,
        "--template", TEMPLATE, "--concurrency", "9", "--max-rps", "0.3", "--window-rows", "10",
    ]  # fmt: skip
    from valar_pandas._cli.main import _parser

    setup = command._setup(_parser().parse_args(parser_args))
    assert setup.in_flight == 3
    assert setup.job.options["concurrency"] == 9 and setup.job.options["max_rps"] == 0.3


def test_a_cancel_on_the_server_goes_through_the_clients_pool(relayed):
    emulator, relay, url = relayed(latency=Latency(median=30.0, sigma=0.1), cancel_supported=True)
    client = ValarClient(api_key=emulator.config.api_key, base_url=url, concurrency=4)
    job = words(40).valar.submit(TEMPLATE, client=client, **FAST)
    wait_until(lambda: job.status()["submitted"] == 40)
    assert job.cancel(server=True)
    job.result(timeout=30)
    run_sync(drain())
    assert emulator.stats.requests["POST /v1/responses/{id}/cancel"] == 40
    assert relay.accepted <= 4  # the cancels opened no pool of their own
    client.close()


def test_closing_the_client_closes_its_connections_and_refuses_later_runs(relayed):
    emulator, relay, url = relayed()
    with ValarClient(api_key=emulator.config.api_key, base_url=url) as client:
        words(5).valar.run(TEMPLATE, client=client, **FAST)
        assert relay.open >= 1  # kept open between runs
    assert client.closed
    wait_until(lambda: relay.open == 0)
    with pytest.raises(ConfigError, match="ValarClient was closed"):
        words(5).valar.run(TEMPLATE, client=client, salt="after", **FAST)
    client.close()  # twice is harmless


def test_closing_the_client_under_a_running_job_ends_it_with_a_clear_error(relayed):
    emulator, _, url = relayed(latency=Latency(median=30.0, sigma=0.1))
    client = ValarClient(api_key=emulator.config.api_key, base_url=url)
    job = words(10).valar.submit(TEMPLATE, client=client, **FAST)
    wait_until(lambda: job.status()["submitted"] == 10)
    client.close()
    with pytest.raises(ConfigError, match="ValarClient was closed"):
        job.result(timeout=30)


def test_aclose_and_async_with_close_the_pool_of_the_callers_loop(relayed):
    emulator, relay, url = relayed()

    async def go() -> list[str]:
        async with ValarClient(api_key=emulator.config.api_key, base_url=url) as client:
            out = await words(6).valar.arun(TEMPLATE, client=client, **FAST)
            more = words(6).valar.submit(TEMPLATE, client=client, salt="job", **FAST)
            await asyncio.to_thread(more.result, 30)  # on the library's loop meanwhile
        return out["output"].tolist()

    assert asyncio.run(go()) == echo(words(6))
    wait_until(lambda: relay.open == 0)  # both loops' pools were closed


def test_a_client_left_open_is_closed_when_collected():
    client = ValarClient(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    live = shared(client)
    finalizer = next(f for f in weakref.finalize._registry.values() if f.func == live.close)
    assert finalizer.atexit  # also called when the interpreter exits
    del client
    gc.collect()
    assert live.closed


def test_at_exit_the_library_loop_closes_the_connections_cleanly(relayed, tmp_path):
    emulator, relay, url = relayed()
    script = textwrap.dedent(
        f"""
        import valar_pandas, pandas as pd
        from valar_pandas import ValarClient
        client = ValarClient(api_key={emulator.config.api_key!r}, base_url={url!r})
        out = pd.DataFrame({{"t": ["a", "b"]}}).valar.run(
            "say {{t}}", model={MODEL!r}, completion_window="asap", progress=None,
            store=None, client=client)
        assert out["output"].notna().all()
        print("open", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "open" and done.stderr == ""  # no unclosed transport
    wait_until(lambda: relay.open == 0)


def test_calls_without_a_client_share_one_default_client(relayed, monkeypatch):
    emulator, relay, url = relayed()
    monkeypatch.setenv("VALAR_API_KEY", emulator.config.api_key)
    monkeypatch.setenv("VALAR_BASE_URL", url)
    assert default_client() is default_client()
    # Two slots: a second run reusing the pool opens nothing new, however the load on the
    # machine spreads its requests in time (with more slots a busier run may need more).
    words(8).valar.run(TEMPLATE, concurrency=2, **FAST)
    opened = relay.accepted
    assert 1 <= opened <= 2
    words(8).valar.run(TEMPLATE, salt="again", concurrency=2, **FAST)
    assert relay.accepted == opened
    monkeypatch.setenv("VALAR_BASE_URL", "http://127.0.0.1:9/v1")
    assert default_client().base_url == "http://127.0.0.1:9/v1"  # another environment
    default_client().close()  # a closed default is replaced
    assert not default_client().closed


def test_the_client_checks_its_limits_and_keeps_the_key_out_of_its_repr():
    client = ValarClient(api_key=KEY, concurrency=7, max_rps=None)
    assert (client.concurrency, client.max_rps) == (7, None)
    assert KEY not in repr(client) and "concurrency=7" in repr(client)
    for bad in ({"concurrency": 0}, {"max_rps": 0.01}, {"transport": "nope"}):
        with pytest.raises(ConfigError):
            ValarClient(api_key=KEY, **bad)
