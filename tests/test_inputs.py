"""Inputs a user can get wrong: each is a ConfigError before any request, and nothing leaks."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sqlite3

import numpy as np
import pytest
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas import ConfigError, ValarClient
from valar_pandas._accessor import ValarAccessor
from valar_pandas._cli.main import main

PUBLIC = ("run", "arun", "submit", "score", "requests", "estimate")


def _call(method: str, client: ValarClient, **kwargs: object) -> object:
    """Call one public accessor method the way a user would; arun is awaited."""
    df = words(3)
    if method in ("requests", "estimate"):
        kwargs.pop("client", None)
        kwargs.pop("progress", None)
        kwargs.setdefault("completion_window", "asap")
    else:
        kwargs = {"client": client, "progress": None, "completion_window": "asap", **kwargs}
    if method == "score":
        kwargs["labels"] = ["pear", "plum"]
    if method == "arun":
        return asyncio.run(df.valar.arun(TEMPLATE, **kwargs))  # type: ignore[arg-type]
    return getattr(df.valar, method)(TEMPLATE, **kwargs)


@pytest.mark.parametrize("method", PUBLIC)
def test_an_unknown_option_names_its_close_match_before_any_request(serve, method):
    emulator, client = serve()
    with pytest.raises(ConfigError) as info:
        _call(method, client, model=MODEL, temprature=0.2)
    assert f"{method}() has no option 'temprature' (did you mean 'temperature'?)" in str(info.value)
    assert not isinstance(info.value, TypeError)
    assert emulator.stats.total_requests == 0


@pytest.mark.parametrize("method", PUBLIC)
def test_a_missing_model_is_a_config_error(serve, method):
    emulator, client = serve()
    with pytest.raises(ConfigError, match=rf"{method}\(\) is missing the required option 'model'"):
        _call(method, client)
    assert emulator.stats.total_requests == 0


def test_an_unknown_option_with_no_close_match_lists_the_options(serve):
    emulator, client = serve()
    with pytest.raises(ConfigError) as info:
        words(2).valar.run(TEMPLATE, client=client, colour="blue", **FAST)
    message = str(info.value)
    assert "run() has no option 'colour' (the options are template, model, into," in message
    assert emulator.stats.total_requests == 0


def test_options_given_by_position_or_twice_are_config_errors():
    df = words(2)
    with pytest.raises(ConfigError, match=r"takes only template by position.*model=\.\.\."):
        df.valar.requests(TEMPLATE, MODEL)  # type: ignore[misc]
    with pytest.raises(ConfigError, match="got 'template' twice"):
        df.valar.requests(TEMPLATE, template=TEMPLATE, model=MODEL)  # type: ignore[misc]
    with pytest.raises(ConfigError, match="is missing the required argument 'template'"):
        df.valar.requests(model=MODEL)  # type: ignore[call-arg]


def test_the_check_keeps_signatures_and_leaves_errors_inside_alone():
    assert "temperature" in inspect.signature(ValarAccessor.run).parameters
    assert inspect.iscoroutinefunction(ValarAccessor.arun)
    # A callable template that raises TypeError is the template's fault, reported as such.
    with pytest.raises(ConfigError, match="raised on row 0"):
        words(1).valar.requests(lambda row: len(None), model=MODEL)  # type: ignore[arg-type]


def test_a_misspelt_client_argument_is_a_config_error():
    with pytest.raises(ConfigError, match=r"ValarClient\(\) has no option 'apikey' \(did you"):
        ValarClient(apikey="sk-x")  # type: ignore[call-arg]


def test_numpy_integers_are_taken_wherever_integers_are(serve):
    _, client = serve()
    df = words(4)
    sent = df.valar.requests(TEMPLATE, model=MODEL, max_output_tokens=np.int64(16))
    assert sent["body"][0]["max_output_tokens"] == 16
    out = df.valar.run(
        TEMPLATE,
        client=client,
        max_output_tokens=np.int64(64),
        concurrency=np.int64(2),
        temperature=np.float32(0.5),
        max_rps=np.int64(500),
        **FAST,
    )
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    scored = df.valar.score(
        TEMPLATE,
        client=client,
        scale=(np.int64(1), np.int64(5)),
        retries_on_invalid=np.int64(1),
        **FAST,
    )
    assert scored["score"].between(1, 5).all() and scored["score_error"].isna().all()


def test_a_request_budget_that_would_never_end_is_refused_before_any_request(serve):
    emulator, client = serve()
    with pytest.raises(ConfigError, match=r"max_rps .* at least 0\.1"):
        words(1).valar.run(TEMPLATE, client=client, mode="realtime", max_rps=1e-6, **FAST)
    assert emulator.stats.total_requests == 0


def _with_password(url: str, userinfo: str = "user:pw-secret-123") -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


def _endpoints() -> set[str]:
    with contextlib.closing(sqlite3.connect(os.environ["VALAR_PANDAS_STORE"])) as db:
        return {row[0] for row in db.execute("SELECT DISTINCT endpoint FROM requests")}


@pytest.mark.parametrize("userinfo", ["user:pw-secret-123", "pw-secret-123", "user:pw-secret-123:"])
def test_credentials_in_the_base_url_are_refused_and_never_shown(serve, monkeypatch, userinfo):
    emulator, client = serve()
    url = _with_password(client.base_url, userinfo)
    with pytest.raises(ConfigError) as info:
        ValarClient(api_key="sk-k", base_url=url)
    assert "user name or password" in str(info.value)
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", url)
    with pytest.raises(ConfigError) as from_env:
        words(3).valar.run(TEMPLATE, **FAST)
    assert "VALAR_BASE_URL" in str(from_env.value)
    monkeypatch.delenv("VALAR_BASE_URL")
    with pytest.raises(ConfigError) as estimated:
        words(3).valar.estimate(TEMPLATE, model=MODEL, base_url=url)
    for error in (info.value, from_env.value, estimated.value):
        assert "pw-secret-123" not in str(error) and "pw-secret-123" not in repr(error)
        assert "127.0.0.1" not in str(error)  # the URL is not quoted at all
    assert emulator.stats.total_requests == 0


def test_a_query_or_fragment_in_the_base_url_is_refused_unquoted(serve):
    _, client = serve()
    for tail in ("?api_key=sk-in-query", "#sk-in-fragment", "/?"):
        with pytest.raises(ConfigError, match="query") as info:
            ValarClient(api_key="sk-k", base_url=client.base_url + tail)
        assert "sk-in" not in str(info.value)
    with pytest.raises(ConfigError, match="spaces or control characters"):
        ValarClient(api_key="sk-k", base_url=client.base_url.replace("/v1", "/v 1"))


def test_the_store_files_rows_under_one_name_for_one_base_url(serve):
    """Whitespace or a slash around the base URL (an env file's newline) must not pay again."""
    emulator, client = serve()
    df = words(3)
    df.valar.run(TEMPLATE, client=client, **FAST)
    paid = emulator.stats.inferences
    padded = ValarClient(api_key=client.api_key, base_url=f" {client.base_url}/\n")
    assert padded.base_url == client.base_url
    again = df.valar.run(TEMPLATE, client=padded, **FAST)
    assert again.attrs["valar"]["cached"] == 3 and emulator.stats.inferences == paid
    assert _endpoints() == {client.base_url}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "5", True, 0, -1.0])
def test_timeouts_must_be_positive_finite_numbers(bad):
    with pytest.raises(ConfigError, match="timeouts must be positive, finite numbers"):
        ValarClient(api_key="sk-k", timeout=bad)
    with pytest.raises(ConfigError, match="timeouts must be positive, finite numbers"):
        ValarClient(api_key="sk-k", realtime_timeout=bad)
    client = ValarClient(api_key="sk-k", timeout=np.int64(30))
    assert client.timeout == 30.0 and type(client.timeout) is float


@pytest.fixture
def cli_env(serve, monkeypatch, tmp_path):
    """An emulator the CLI's environment points at, and a five-row parquet file."""
    emulator, client = serve()
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    monkeypatch.chdir(tmp_path)
    words(5).to_parquet(tmp_path / "in.parquet")
    return emulator, client


RUN = ["run", "in.parquet", "out.parquet", "--model", MODEL, "--template", TEMPLATE, "--quiet"]


@pytest.mark.parametrize("estimate", [True, False], ids=["estimate", "run"])
def test_the_cli_refuses_credentials_in_its_base_url(
    cli_env, monkeypatch, tmp_path, capsys, estimate
):
    emulator, client = cli_env
    monkeypatch.setenv("VALAR_BASE_URL", _with_password(client.base_url))
    assert main([*RUN, *(["--estimate"] if estimate else [])]) == 2
    captured = capsys.readouterr()
    assert "user name or password" in captured.err
    assert "pw-secret-123" not in captured.err + captured.out
    assert emulator.stats.total_requests == 0 and not (tmp_path / "out.parquet").exists()


def test_the_cli_refuses_a_request_budget_below_the_floor(cli_env, capsys):
    emulator, _ = cli_env
    with pytest.raises(SystemExit) as exit_info:
        main([*RUN, "--max-rps", "0.01"])
    assert exit_info.value.code == 2
    assert "'0.01' must be at least 0.1" in capsys.readouterr().err
    assert emulator.stats.total_requests == 0


def test_the_cli_splits_a_budget_at_the_floor_over_fewer_windows(cli_env, capsys):
    """--max-rps 0.1 over five one-row windows: one window at a time, at 0.1 a second."""
    assert main([*RUN, "--max-rps", "0.1", "--window-rows", "1", "--estimate"]) == 0
    assert "to send" in capsys.readouterr().out
