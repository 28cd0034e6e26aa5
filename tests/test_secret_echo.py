"""A server that echoes the key, and terminal escapes in its words: neither goes anywhere.

The emulator's ``echo_key`` fault answers every create 400 with a message that quotes the
bearer key and holds escape sequences. The key must then be in no exception, frame column,
parquet file, run store file or command output; the escapes must reach no terminal raw.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import FAST, MODEL, TEMPLATE, words

from valar_pandas._core.scrub import MASK, printable, scrub_body, scrub_text
from valar_pandas._core.secret import Secret
from valar_pandas._core.wire import error_summary, parse_response
from valar_pandas.emulator import Faults

KEY = "sk-echoed-4f2a9c71e0b3"
ESC = "\x1b"


def _store_bytes(store: Path) -> bytes:
    """The store file and its journal files, as they lie on disk."""
    return b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))


def test_the_key_a_server_echoes_is_masked_in_the_frame_parquet_and_store(
    serve, tmp_path: Path
) -> None:
    emulator, client = serve(api_key=KEY, faults=Faults(echo_key=True))
    store = Path(os.environ["VALAR_PANDAS_STORE"])
    out = words(3).valar.run(TEMPLATE, into="answer", client=client, **FAST)
    errors = out["answer_error"].tolist()
    assert all(isinstance(e, str) and MASK in e for e in errors), errors
    assert not any(KEY in e or ESC in e for e in errors), errors
    out.to_parquet(tmp_path / "out.parquet")
    assert KEY.encode() not in (tmp_path / "out.parquet").read_bytes()
    assert KEY.encode() not in _store_bytes(store)
    assert emulator.stats.total_requests >= 3


def test_the_echoed_key_is_not_in_a_raised_exception(serve) -> None:
    _, client = serve(api_key=KEY, faults=Faults(echo_key=True))
    with pytest.raises(Exception) as caught:  # any error: its text is the point
        words(2).valar.run(TEMPLATE, into="answer", client=client, errors="raise", **FAST)
    shown = "".join(
        str(e) + repr(e) for e in (caught.value, caught.value.__cause__, caught.value.__context__)
    )
    assert KEY not in shown and ESC not in shown


def test_the_command_shows_neither_the_key_nor_raw_escapes(serve, tmp_path: Path) -> None:
    _, client = serve(api_key=KEY, faults=Faults(echo_key=True))
    words(4).to_parquet(tmp_path / "in.parquet")
    store = tmp_path / "store.sqlite3"
    env = {
        **os.environ,
        "VALAR_API_KEY": KEY,
        "VALAR_BASE_URL": client.base_url,
        "VALAR_PANDAS_STORE": str(store),
    }
    run = subprocess.run(
        [sys.executable, "-m", "valar_pandas", "run", str(tmp_path / "in.parquet"),
         str(tmp_path / "out.parquet"), "--model", MODEL, "--template", TEMPLATE,
         "--completion-window", "asap"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert b"First error:" in run.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "valar_pandas", "store", "list", "--store", str(store)],
        env=env, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert listed.stdout.strip()
    for output in (run.stdout, run.stderr, listed.stdout, listed.stderr):
        assert KEY.encode() not in output
        assert ESC.encode() not in output and b"\x07" not in output
    assert KEY.encode() not in (tmp_path / "out.parquet").read_bytes()
    assert KEY.encode() not in _store_bytes(store)


def test_store_list_escapes_controls_a_store_already_holds(serve, tmp_path: Path) -> None:
    """Answers written before (or by another tool) are shown escaped, not obeyed."""
    _, client = serve()
    store = Path(os.environ["VALAR_PANDAS_STORE"])
    frame = pd.DataFrame({"i": [1], "word": ["x"]})
    frame.valar.run(TEMPLATE, into="answer", client=client, **FAST)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE requests SET text = ?", (f"hi {ESC}]0;pwned\x07{ESC}[2J there",))
    listed = subprocess.run(
        [sys.executable, "-m", "valar_pandas", "store", "list", "--store", str(store)],
        env=dict(os.environ), capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert b"hi \\x1b]0;pwned\\x07\\x1b[2J there" in listed.stdout
    assert ESC.encode() not in listed.stdout


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": {"message": "bad key sk-echoed-4f2a9c71e0b3"}}',
        b'{"error": {"message": "bad key \\u0073k-echoed-4f2a9c71e0b3"}}',
        b'{"error": {"message": "bad key sk-echoed\\u002d4f2a9c71e0b3"}}',
        b'{"error": {"sk-echoed-4f2a9c71e0b3": 1}}',
        b"<html>sk-echoed-4f2a9c71e0b3</html>",
    ],
)
def test_scrub_body_masks_the_key_however_json_spells_it(body: bytes) -> None:
    cleaned = scrub_body(body, Secret(KEY))
    assert KEY.encode() not in cleaned
    decoded = cleaned.decode("unicode_escape")
    assert KEY not in decoded


def test_scrub_leaves_other_text_alone() -> None:
    body = b'{"output_text": "caf\\u00e9 \\"ok\\" \\n"}'
    assert scrub_body(body, Secret(KEY)) is body
    assert scrub_text("no key here", Secret(KEY)) == "no key here"
    assert printable("Grüße 👋 naïve") == "Grüße 👋 naïve"
    assert printable(f"a{ESC}[31mb\u202ec\x00") == "a\\x1b[31mb\\u202ec\\x00"


def test_a_key_too_short_to_be_real_does_not_mangle_answers() -> None:
    assert scrub_body(b'{"output_text": "ok"}', Secret("k")) == b'{"output_text": "ok"}'
    assert scrub_text("ok", Secret("k")) == "ok"


def test_server_words_in_a_row_error_carry_no_terminal_controls() -> None:
    _, message = error_summary(400, b'{"error": {"message": "bad \\u001b[2J\\u001b]0;x\\u0007"}}')
    assert ESC not in message and "\x07" not in message and "\\x1b[2J" in message
    incomplete = {"id": "r", "status": "incomplete", "incomplete_details": {"reason": f"{ESC}[31m"}}
    outcome = parse_response(incomplete).outcome
    assert outcome is not None and outcome.error is not None and ESC not in outcome.error
