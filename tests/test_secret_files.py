"""Files and stored values an attacker could plant: links, modes, crafted store rows, cassettes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cassette import Cassette
from cassette import serve as serve_cassette
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas import ValarClient
from valar_pandas._cli.main import main
from valar_pandas._files import MANIFEST, PARTIAL, WRITER
from valar_pandas._transport.http import Http
from valar_pandas.emulator import Latency

RUN = ["--model", MODEL, "--template", TEMPLATE, "--completion-window", "asap", "--quiet"]
KEY = "sk-cassette-9d8e7f6a5b4c"


@pytest.fixture
def env(serve, monkeypatch):
    emulator, client = serve(latency=Latency(median=0.02, sigma=0.2))
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    return emulator


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _plant(folder: Path, names: list[str], victim: Path) -> None:
    """Links named as this process's temporary files used to be, pointing at ``victim``."""
    for name in names:
        (folder / f".{name}.{WRITER}-{os.getpid()}.tmp").symlink_to(victim)


def test_a_planted_link_at_a_temporary_name_is_never_followed(env, tmp_path: Path) -> None:
    words(6).to_parquet(tmp_path / "in.parquet")
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    _plant(tmp_path, ["out.parquet"], victim)
    assert main(["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), *RUN]) == 0
    assert victim.read_text() == "not yours"
    assert not (tmp_path / "out.parquet").is_symlink()
    assert pd.read_parquet(tmp_path / "out.parquet")["output"].tolist() == echo(words(6))


def test_planted_links_in_a_folder_output_are_never_followed(env, tmp_path: Path) -> None:
    words(6).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    # A folder holding only our temporary names counts as empty; the links are left alone.
    _plant(out, ["probe", "part-00000.parquet", "part-00001.parquet", PARTIAL, MANIFEST], victim)
    code = main(["run", str(tmp_path / "in.parquet"), str(out), *RUN, "--window-rows", "3"])
    assert code == 0
    assert victim.read_text() == "not yours"
    assert pd.read_parquet(out)["output"].tolist() == echo(words(6))
    assert not any(p.is_symlink() for p in out.iterdir() if not p.name.startswith("."))


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("folder", [False, True])
def test_an_output_is_no_more_readable_than_its_input(env, tmp_path: Path, folder: bool) -> None:
    source = tmp_path / "in.parquet"
    words(4).to_parquet(source)
    source.chmod(0o600)
    out = tmp_path / ("out" if folder else "out.parquet")
    assert main(["run", str(source), str(out), *RUN, "--window-rows", "2"]) == 0
    files = list(out.iterdir()) if folder else [out]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    if folder:
        assert stat.S_IMODE(out.stat().st_mode) & 0o077 == 0


def test_an_output_follows_the_umask_too(env, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    words(3).to_parquet(source)
    source.chmod(0o644)
    old = os.umask(0o077)
    try:
        assert main(["run", str(source), str(tmp_path / "out.parquet"), *RUN]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.parquet").stat().st_mode) == 0o600


def test_a_crafted_store_cannot_add_header_lines(serve) -> None:
    """A stored Idempotency-Key holding CR/LF is never sent: the row is asked afresh."""
    emulator, client = serve()
    store = Path(os.environ["VALAR_PANDAS_STORE"])
    frame = pd.DataFrame({"i": [1], "word": ["fig"]})
    frame.valar.run(TEMPLATE, into="answer", client=client, **FAST)
    with sqlite3.connect(store) as db:
        (fingerprint,) = db.execute("SELECT fingerprint FROM requests").fetchone()
        db.execute(
            "UPDATE requests SET state = 'planned', response_id = NULL, status = NULL,"
            " text = NULL, error = NULL, idempotency_key = ?",
            ("vp1-x\r\nX-Injected: 1",),
        )
    emulator.store.reservations.clear()
    out = frame.valar.run(TEMPLATE, into="answer", client=client, **FAST)
    assert out["answer"].tolist() == echo(frame)
    sent = [key for _, key in emulator.store.reservations]
    assert sent == [f"vp1-{fingerprint}"], sent


def test_the_transport_refuses_a_key_that_would_add_header_lines() -> None:
    async def work() -> None:
        http = Http(ValarClient(api_key=KEY, base_url="http://127.0.0.1:9/v1"), connections=1)
        try:
            with pytest.raises(ValueError, match="Idempotency-Key"):
                await http.request("POST", "/responses", payload=b"{}", idempotency_key="a\r\nb: c")
            assert http.sent == 0
        finally:
            await http.close()

    asyncio.run(work())


def test_the_cassette_holds_no_raw_authorization_in_memory(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "c.json")

    async def ask(origin: str) -> None:
        http = Http(ValarClient(api_key=KEY, base_url=f"{origin}/v1"), connections=1)
        try:
            await http.request("GET", "/responses/resp_1")
        finally:
            await http.close()

    with serve_cassette(cassette) as origin:
        asyncio.run(ask(origin))
    assert cassette.seen, "the request reached the cassette server"
    assert cassette.seen[0]["headers"]["Authorization"] == "Bearer REDACTED"
    assert KEY not in repr(cassette)
