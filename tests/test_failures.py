"""Permanent failures stop a run at once with one clear error; answers are bounded.

Real parts only: the emulator over loopback (plain and TLS with a ``trustme`` CA), a closed
port, an unresolvable name, the command line in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trustme
from helpers import FAST, TEMPLATE, closed_port, echo, tls_emulator, words

from valar_pandas import APIError, AuthenticationError, EndpointError, ValarClient
from valar_pandas.emulator import EmulatorConfig, Faults, Latency

QUICK = Latency(median=0.02, sigma=0.0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_untrusted_certificate_stops_at_once_and_names_the_fix(ca, monkeypatch):
    hellos: list[int] = []
    with tls_emulator(ca, hellos, latency=0.02) as (emulator, url):
        client = ValarClient(api_key=emulator.config.api_key, base_url=url)
        with pytest.raises(EndpointError) as caught:
            words(1000).valar.run(TEMPLATE, client=client, store=False, **FAST)
        assert caught.value.cause == "certificate"
        assert "SSL_CERT_FILE" in str(caught.value) and "localhost" in str(caught.value)
        assert len(hellos) <= 20  # not one handshake per row (or per try)
        assert emulator.stats.total_requests == 0

        # The fix the message names works: trust the CA, and the same call succeeds.
        with ca.cert_pem.tempfile() as bundle:
            monkeypatch.setenv("SSL_CERT_FILE", bundle)
            df = words(20)
            out = df.valar.run(TEMPLATE, client=client, store=False, **FAST)
        assert out["output"].tolist() == echo(df)


def test_unresolvable_host_is_not_retried_per_row():
    client = ValarClient(api_key="sk-x", base_url="http://nonexistent.invalid/v1")
    with pytest.raises(EndpointError) as caught:
        words(300).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert caught.value.cause == "dns"
    assert "'nonexistent.invalid' could not be resolved" in str(caught.value)


def test_refused_on_every_try_is_one_error():
    client = ValarClient(api_key="sk-x", base_url=f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(EndpointError) as caught:
        words(300).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert caught.value.cause == "refused" and "refused" in str(caught.value)


def test_a_redirect_stops_the_run_and_shows_where_it_points(serve):
    emulator, client = serve(faults=Faults(redirect_to="https://api.example.test"))
    with pytest.raises(EndpointError) as caught:
        words(1000).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert caught.value.cause == "redirect"
    assert caught.value.location == "https://api.example.test/v1/responses"
    assert "base_url='https://api.example.test/v1'" in str(caught.value)
    assert emulator.stats.total_requests <= 5


def test_answers_that_are_not_the_api_stop_the_run(serve):
    emulator, client = serve(faults=Faults(not_json=True))
    with pytest.raises(EndpointError) as caught:
        words(1000).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert caught.value.cause == "not_api" and "/v1" in str(caught.value)
    assert emulator.stats.total_requests <= 5


def test_the_batch_path_classifies_the_same_way(serve):
    emulator, client = serve(faults=Faults(not_json=True))
    with pytest.raises(EndpointError) as caught:
        words(50).valar.run(TEMPLATE, client=client, store=False, mode="batch", progress=None,
                            model=FAST["model"])  # fmt: skip
    assert caught.value.cause == "not_api"
    assert emulator.stats.requests["POST /v1/batches"] == 3


@pytest.mark.parametrize("rows", [1, 200])
def test_a_server_that_never_answers_is_given_up_on_in_bounded_time(serve, rows):
    emulator, client = serve(faults=Faults(hang=True))
    client = ValarClient(api_key=client.api_key, base_url=client.base_url, timeout=0.3)
    with pytest.raises(EndpointError) as caught:
        words(rows).valar.run(TEMPLATE, client=client, store=False, concurrency=50, **FAST)
    assert caught.value.cause == "silent" and "ValarClient(timeout=...)" in str(caught.value)
    # Three silent tries prove it: the requests sent do not grow with the rows (five creates
    # are out before any is accepted; a retry may leave before the third timeout lands).
    assert emulator.stats.total_requests <= (3 if rows == 1 else 10)


def test_unknown_model_stops_after_five_creates_and_says_so_truly(serve):
    emulator, client = serve(latency=QUICK)
    with pytest.raises(APIError) as caught:
        words(1000).valar.run(TEMPLATE, client=client, store=False, model="no/such-model",
                              completion_window="asap", progress=None)  # fmt: skip
    sent = emulator.stats.requests["POST /v1/responses"]
    assert sent == 5
    assert str(caught.value).startswith("the first 5 requests were all rejected")
    assert not isinstance(caught.value, EndpointError)


def test_bad_key_sends_at_most_five_creates(serve):
    emulator, client = serve(latency=QUICK)
    bad = ValarClient(api_key="sk-wrong", base_url=client.base_url)
    with pytest.raises(AuthenticationError):
        words(1000).valar.run(TEMPLATE, client=bad, store=False, **FAST)
    assert emulator.stats.requests["POST /v1/responses"] <= 5


def test_cli_exits_2_on_an_untrusted_certificate(ca, tmp_path, monkeypatch):
    words(100).to_parquet(tmp_path / "in.parquet")
    hellos: list[int] = []
    with tls_emulator(ca, hellos, latency=0.02) as (emulator, url):
        env = {"VALAR_API_KEY": emulator.config.api_key, "VALAR_BASE_URL": url}
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        done = subprocess.run(
            [sys.executable, "-m", "valar_pandas", "run", str(tmp_path / "in.parquet"),
             str(tmp_path / "out.parquet"), "--model", FAST["model"], "--template", TEMPLATE,
             "--completion-window", "asap", "--quiet", "--store", str(tmp_path / "s.db")],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, **env},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "SSL_CERT_FILE" in done.stderr and "Traceback" not in done.stderr
    assert len(hellos) <= 20
    assert not (tmp_path / "out.parquet").exists()


# -- bounds ------------------------------------------------------------------------------


def test_an_answer_over_the_cap_is_a_row_error_fetched_once(serve):
    emulator, client = serve(latency=QUICK, faults=Faults(inflate_to=32 * 1024 * 1024))
    client = ValarClient(api_key=client.api_key, base_url=client.base_url,
                         max_response_bytes=1024 * 1024)  # fmt: skip
    out = words(3).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert out["output"].isna().all()
    assert out["output_error"].str.contains("exceeds the 1,048,576-byte cap").all()
    # Each row: one create (answered small: not finished yet), then polls until the one
    # finished (huge) answer, which is not asked for again.
    polls = emulator.stats.requests["GET /v1/responses/{id}"]
    assert emulator.stats.inferences == 3 and polls < 3 * 4


def test_the_default_cap_holds_a_gzip_bomb(serve):
    _, client = serve(latency=QUICK, faults=Faults(inflate_to=64 * 1024 * 1024))
    out = words(1).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert "exceeds the 8,388,608-byte cap" in out["output_error"].iloc[0]


def test_absurd_usage_is_a_row_error_and_a_rerun_recovers_it_for_free(serve, tmp_path):
    emulator, client = serve(latency=QUICK, faults=Faults(usage_tokens=10**30))
    store = tmp_path / "runs.sqlite3"
    df = words(4)
    first = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert first["output"].isna().all()
    assert first["output_error"].str.contains("impossible token count").all()
    again = df.valar.run(TEMPLATE, client=client, store=store, **FAST)  # no crash either
    assert again["output_error"].notna().all()
    # Once the server reports sane usage, a re-run collects the answers: no new inference.
    emulator.config = EmulatorConfig(latency=QUICK)
    third = df.valar.run(TEMPLATE, client=client, store=store, **FAST)
    assert third["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 4


@pytest.mark.parametrize("tokens", [-1, 2.5, "12", 10**10])
def test_other_absurd_usage_values_are_row_errors(serve, tokens):
    _, client = serve(latency=QUICK, faults=Faults(usage_tokens=tokens))
    out = words(2).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert out["output_error"].str.contains("usage.output_tokens").all()


def test_absurd_usage_in_a_batch_result_is_a_row_error(serve):
    _, client = serve(latency=QUICK, faults=Faults(usage_tokens=10**30), batch_api=True)
    out = words(5).valar.run(TEMPLATE, client=client, store=False, mode="batch",
                             model=FAST["model"], progress=None)  # fmt: skip
    assert out["output_error"].str.contains("impossible token count").all()


def test_a_batch_result_over_the_cap_is_a_row_error_fetched_once(serve):
    emulator, client = serve(
        latency=QUICK, faults=Faults(inflate_to=2 * 1024 * 1024), batch_api=True
    )
    client = ValarClient(api_key=client.api_key, base_url=client.base_url,
                         max_response_bytes=1024 * 1024)  # fmt: skip
    out = words(4).valar.run(TEMPLATE, client=client, store=False, mode="batch",
                             model=FAST["model"], progress=None)  # fmt: skip
    assert out["output_error"].str.contains("exceeds the 1,048,576-byte cap").all()
    fetches = sum(n for route, n in emulator.stats.requests.items() if route.count("/") == 4)
    assert fetches == 4, emulator.stats.requests
