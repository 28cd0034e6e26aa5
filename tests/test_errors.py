"""Bad input fails before any request; bad responses become row errors; the key stays hidden."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
from helpers import FAST, TEMPLATE, words

from valar_pandas import APIError, AuthenticationError, ConfigError, RowErrors, ValarClient
from valar_pandas.emulator import Faults


@pytest.mark.parametrize(
    ("template", "kwargs", "message"),
    [
        ("item {wrod}", {}, "'wrod' (did you mean 'word'?)"),
        ("item {i", {}, "bad template"),
        (TEMPLATE, {"mode": "turbo"}, "unknown mode 'turbo'"),
        (TEMPLATE, {"concurrency": -1}, "concurrency"),
        (TEMPLATE, {"completion_window": "24h"}, "completion_window"),
        (TEMPLATE, {"client": "not a client"}, "client must be"),
        (lambda row: 42, {}, "returned int"),
        (lambda row: 1 / 0, {}, "raised on row 0"),
    ],
    ids=[
        "missing-column",
        "bad-template",
        "mode",
        "concurrency",
        "window",
        "client",
        "callable-type",
        "callable-raises",
    ],
)
def test_bad_calls_fail_before_any_request(serve, template, kwargs, message):
    emulator, client = serve()
    options = {**FAST, "client": client, **kwargs}
    with pytest.raises(ConfigError) as info:
        words(3).valar.run(template, **options)
    assert message in str(info.value)
    assert emulator.stats.total_requests == 0


def test_missing_key_is_a_clear_error():
    with pytest.raises(ConfigError, match="VALAR_API_KEY"):
        words(1).valar.run(TEMPLATE, **FAST)


def test_wrong_key_stops_the_run_without_showing_the_key(serve):
    emulator, good = serve()
    secret = "sk-wrong-and-secret-1234567890"
    bad = ValarClient(api_key=secret, base_url=good.base_url)
    with pytest.raises(AuthenticationError) as info:
        words(500).valar.run(TEMPLATE, client=bad, concurrency=20, **FAST)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert info.value.status_code == 401
    assert emulator.stats.total_requests <= 20  # stopped at the first answers
    assert emulator.stats.inferences == 0


def test_key_never_shows_in_reprs():
    secret = "sk-top-secret-value"
    client = ValarClient(api_key=secret, base_url="http://127.0.0.1:1/v1")
    for text in (
        repr(client),
        str(client),
        repr(client.api_key),
        str(client.api_key),
        f"{client}",
        f"{client!r}",
    ):
        assert secret not in text
    with pytest.raises(TypeError):
        pickle.dumps(client.api_key)


def test_unknown_model_stops_after_a_few_rejections(serve):
    emulator, client = serve()
    with pytest.raises(APIError, match="rejected") as info:
        words(400).valar.run(
            TEMPLATE,
            client=client,
            model="no/such-model",
            completion_window="asap",
            progress=None,
            concurrency=4,
        )
    assert info.value.status_code == 400
    assert emulator.stats.requests["POST /v1/responses"] <= 10


def test_errors_raise_carries_the_whole_frame(serve):
    _, client = serve(faults=Faults(failed=0.5), seed=5)
    with pytest.raises(RowErrors) as info:
        words(40).valar.run(TEMPLATE, client=client, errors="raise", **FAST)
    frame = info.value.frame
    assert isinstance(frame, pd.DataFrame) and len(frame) == 40
    assert info.value.failed == frame["output_error"].notna().sum() > 0
    assert frame["output"].notna().sum() == 40 - info.value.failed


def test_format_errors_name_the_row(serve):
    emulator, client = serve()
    df = pd.DataFrame({"price": [1.5, "n/a"]})
    with pytest.raises(ConfigError, match=r"row 1 \(index 1\): cannot format 'n/a'"):
        df.valar.run("costs {price:.2f}", client=client, **FAST)
    assert emulator.stats.total_requests == 0


def test_skipped_rows_do_not_count_as_failures_for_errors_raise(serve):
    _, client = serve()
    df = pd.DataFrame({"q": ["a", None]})
    out = df.valar.run("say {q}", client=client, on_missing="skip", errors="raise", **FAST)
    assert out["output"].notna().tolist() == [True, False]


def test_a_key_given_as_base_url_is_not_echoed():
    secret = "sk-live-SECRET123"
    with pytest.raises(ConfigError) as info:
        ValarClient("https://api.valarhq.ai/v1", secret)
    assert secret not in str(info.value)


def test_cancelling_arun_is_a_clean_cancellation(serve):
    """A caller's timeout around arun cancels it cleanly, not as an ExceptionGroup."""
    import asyncio

    from valar_pandas.emulator import Latency

    _, client = serve(latency=Latency(median=30.0, sigma=0.1))

    async def main():
        await asyncio.wait_for(words(300).valar.arun(TEMPLATE, client=client, **FAST), 1.0)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
