"""Recorded HTTP exchanges pin the wire format: bodies, headers, paths and parsing.

By default the cassettes in ``tests/cassettes/`` are replayed by a local server
(``tests/cassette.py``): if the request bodies the library sends ever change, the server finds
no recorded answer and the test fails. To re-record:

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
from urllib.parse import urlsplit

import pandas as pd
import pytest
from cassette import Cassette, serve

from valar_pandas import ValarClient
from valar_pandas._core.endpoint import DEFAULT_BASE_URL
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

CASSETTES = Path(__file__).parent / "cassettes"
MODE = os.environ.get("VALAR_RECORD", "replay")
LIVE_KEY = os.environ.get("VALAR_API_KEY", "")
LIVE_URL = os.environ.get("VALAR_BASE_URL", DEFAULT_BASE_URL)
REPLAY_KEY = "sk-replay-placeholder"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextlib.contextmanager
def _client(cassette: Cassette) -> Iterator[ValarClient]:
    """A client pointed at the cassette server, which replays or records from upstream."""
    if MODE == "replay":
        cassette.load()
        with serve(cassette) as origin:
            yield ValarClient(api_key=REPLAY_KEY, base_url=origin + "/v1")
        return
    if MODE == "live":
        if not LIVE_KEY:
            pytest.skip("VALAR_RECORD=live needs VALAR_API_KEY")
        with serve(cassette, upstream=_origin(LIVE_URL)) as origin:
            yield ValarClient(api_key=LIVE_KEY, base_url=origin + urlsplit(LIVE_URL).path)
    else:
        emulator = Emulator(EmulatorConfig(latency=Latency(median=0.5, sigma=0.2)))
        with (
            emulator.run_in_thread(host="127.0.0.1", port=0) as url,
            serve(cassette, upstream=_origin(url)) as origin,
        ):
            yield ValarClient(api_key=emulator.config.api_key, base_url=origin + "/v1")
    cassette.save()


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
    cassette = Cassette(CASSETTES / f"{name}.json")
    with _client(cassette) as client:
        out = FRAME.valar.run(
            TEMPLATE,
            model="zai-org/GLM-5.1-FP8",
            into="sentiment",
            max_output_tokens=16,
            progress=None,
            client=client,
            **options,
        )
    assert not cassette.unmatched, cassette.unmatched
    assert out["sentiment_error"].isna().all(), out["sentiment_error"].tolist()
    assert out["sentiment"].str.strip().str.lower().isin(["positive", "negative", "neutral"]).all()
    posts = [r for r in cassette.seen if r["method"] == "POST"]
    assert len(posts) == len(FRAME)
    for request in cassette.seen:
        assert request["headers"]["Authorization"].startswith("Bearer ")
        assert request["headers"]["User-Agent"] == "valar-pandas"
        assert request["path"].startswith("/v1/responses")
    for request in posts:
        assert request["headers"]["Idempotency-Key"].startswith("vp1-")
        assert request["headers"]["Content-Type"] == "application/json"
        assert int(request["headers"]["Content-Length"]) == len(request["body"].encode())
    if MODE == "replay":
        assert cassette.all_played
    text = cassette.path.read_text()
    assert "REDACTED" in text
    for secret in (LIVE_KEY, "sk-emulator", REPLAY_KEY):
        assert not secret or secret not in text
