"""Shared fixtures: an emulator served over real loopback sockets, and a client for it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

import valar_pandas  # noqa: F401  (registers df.valar)
from valar_pandas import ValarClient
from valar_pandas._run.cancel import drain
from valar_pandas._run.loop import run_sync
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

Serve = Callable[..., tuple[Emulator, ValarClient]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start emulators on 127.0.0.1 with the given config; stopped after the test.

    The emulator answers with the fast profile unless the test passes ``latency``
    (``latency=None`` for the realistic profile by window).
    """
    stack = contextlib.ExitStack()

    def start(**config: object) -> tuple[Emulator, ValarClient]:
        config.setdefault("latency", Latency.fast())
        emulator = Emulator(EmulatorConfig(**config))  # type: ignore[arg-type]
        url = stack.enter_context(emulator.run_in_thread(host="127.0.0.1", port=0))
        return emulator, ValarClient(api_key=emulator.config.api_key, base_url=url)

    with stack:
        yield start
        # A cancelled job asks the server to cancel in the background; let those calls end
        # before their server stops, or it would be stopped while they still connect.
        run_sync(drain())


@pytest.fixture
def serve_cli(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Emulator]:
    """Start an emulator and point the command's environment (key, base URL) at it."""

    def start(**config: object) -> Emulator:
        emulator, client = serve(**config)
        monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
        monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
        return emulator

    return start


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never pick up a developer's key, base URL, proxy or run store, nor share a store."""
    monkeypatch.delenv("VALAR_API_KEY", raising=False)
    monkeypatch.delenv("VALAR_BASE_URL", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    store = tmp_path_factory.mktemp("store") / "store.sqlite3"
    monkeypatch.setenv("VALAR_PANDAS_STORE", str(store))
