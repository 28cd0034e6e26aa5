"""Recorded HTTP exchanges pin the wire format: bodies, headers, paths and parsing.

By default the cassettes in ``tests/cassettes/`` are replayed with no server: if the request
bodies the library sends ever change, replay finds no match and the test fails. To re-record:

- against the built-in emulator: ``VALAR_RECORD=emulator python -m pytest tests/test_cassettes.py``
- against the real API: ``VALAR_RECORD=live VALAR_API_KEY=... python -m pytest
  tests/test_cassettes.py`` (``VALAR_BASE_URL`` optional).

The ``Authorization`` header is replaced with ``REDACTED`` before anything is written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import vcr

from valar_pandas import ValarClient
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

CASSETTES = Path(__file__).parent / "cassettes"
MODE = os.environ.get("VALAR_RECORD", "replay")
LIVE_KEY = os.environ.get("VALAR_API_KEY", "")
LIVE_URL = os.environ.get("VALAR_BASE_URL")
SECRET_HEADERS = ["authorization", "x-api-key", "cookie"]


def _scrub_response(response: dict) -> dict:
    response["headers"].pop("Set-Cookie", None)
    response["headers"].pop("set-cookie", None)
    return response


RECORDER = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    match_on=["method", "path", "query", "body"],
    filter_headers=[(name, "REDACTED") for name in SECRET_HEADERS],
    before_record_response=_scrub_response,
    record_mode="none" if MODE == "replay" else "all",
    decode_compressed_response=True,
)


@contextlib.contextmanager
def _client() -> Iterator[ValarClient]:
    if MODE == "replay":
        yield ValarClient(api_key="sk-replay-placeholder", base_url="http://127.0.0.1:9/v1")
    elif MODE == "live":
        if not LIVE_KEY:
            pytest.skip("VALAR_RECORD=live needs VALAR_API_KEY")
        yield ValarClient(api_key=LIVE_KEY, base_url=LIVE_URL)
    else:
        emulator = Emulator(EmulatorConfig(latency=Latency(median=0.5, sigma=0.2)))
        with emulator.run_in_thread(host="127.0.0.1", port=0) as url:
            yield ValarClient(api_key=emulator.config.api_key, base_url=url)


FRAME = pd.DataFrame({"review": ["Love it, works perfectly.", "Broke after two days."]})
TEMPLATE = (
    "Classify the sentiment of this product review as positive, negative, or neutral. "
    "Reply with one word.\n\nReview: {review}"
)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("background_standard", {"completion_window": "standard"}),
        ("realtime_asap", {"mode": "realtime"}),
    ],
)
def test_cassette(name, options):
    with _client() as client, RECORDER.use_cassette(f"{name}.yaml") as cassette:
        out = FRAME.valar.run(
            TEMPLATE,
            model="zai-org/GLM-5.1-FP8",
            into="sentiment",
            max_output_tokens=16,
            progress=None,
            client=client,
            **options,
        )
    assert out["sentiment_error"].isna().all(), out["sentiment_error"].tolist()
    assert out["sentiment"].str.strip().str.lower().isin(["positive", "negative", "neutral"]).all()
    posts = [r for r in cassette.requests if r.method == "POST"]
    assert len(posts) == len(FRAME)
    assert all(r.headers["Idempotency-Key"].startswith("vp1-") for r in posts)
    if MODE == "replay":
        assert cassette.all_played
    text = (CASSETTES / f"{name}.yaml").read_text()
    assert "REDACTED" in text
    for secret in (LIVE_KEY, "sk-emulator", "sk-replay-placeholder"):
        assert not secret or secret not in text
