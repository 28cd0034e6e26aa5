"""Requests through a real HTTP proxy (proxy.py on 127.0.0.1) to the emulator, plain and TLS.

The TLS emulator's certificate comes from a ``trustme`` CA, trusted by ``verify=`` or by
``SSL_CERT_FILE``; the HTTPS requests go through ``CONNECT`` tunnels, so the proxy sees only
``CONNECT localhost:port`` and encrypted bytes.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator

import pytest
import trustme
from helpers import FAST, TEMPLATE, closed_port, echo, tls_emulator, words
from proxies import RunningProxy, running_proxy

from valar_pandas import ConfigError, EndpointError, ValarClient
from valar_pandas._core.endpoint import Endpoint
from valar_pandas._core.proxy import choose_proxy, parse_proxy
from valar_pandas._transport.http import Http
from valar_pandas._transport.network import network
from valar_pandas.emulator import Latency

QUICK = Latency(median=0.01, sigma=0.0)
PASSWORD = "s3cr:t@pw"  # percent-encoded in the URL: s3cr%3At%40pw
LOGIN = "alice:s3cr%3At%40pw"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    with running_proxy(tmp_path_factory.mktemp("proxy")) as running:
        yield running


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    """A proxy that asks for a user name and password (407 without them)."""
    folder = tmp_path_factory.mktemp("guarded")
    with running_proxy(folder, "--basic-auth", f"alice:{PASSWORD}") as running:
        yield running


@pytest.fixture(scope="module")
def tls_proxy(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProxy]:
    """An https:// proxy: clients speak TLS to it, its certificate from ``ca``."""
    folder = tmp_path_factory.mktemp("tls_proxy")
    issued = ca.issue_cert("127.0.0.1")
    issued.private_key_pem.write_to_path(str(folder / "key.pem"))
    issued.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    certificate = ["--cert-file", str(folder / "cert.pem"), "--key-file", str(folder / "key.pem")]
    with running_proxy(folder, *certificate) as running:
        yield running


def test_plain_http_goes_through_the_environments_proxy(serve, proxy, monkeypatch):
    emulator, client = serve(latency=QUICK)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    before = proxy.mark()
    df = words(30)
    out = df.valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert out["output"].tolist() == echo(df)
    port = client.base_url.split(":")[2].split("/")[0]
    client.close()  # the proxy logs a connection when it ends; the client keeps it open
    lines = proxy.seen()[before:]
    assert lines and all(f"127.0.0.1:{port}/v1/responses" in line for line in lines)
    assert emulator.stats.total_requests >= 30


def test_a_proxy_set_after_a_run_is_used_by_the_same_clients_next_run(serve, proxy, monkeypatch):
    _, client = serve(latency=QUICK)
    df = words(10)
    assert df.valar.run(TEMPLATE, client=client, store=False, **FAST)["output"].tolist() == echo(
        df
    )  # the client's pool is open and kept
    before = proxy.mark()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)  # as a notebook cell would, between runs
    again = words(12)
    out = again.valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert out["output"].tolist() == echo(again)
    client.close()  # the proxy logs a connection when it ends
    assert len(proxy.seen()[before:]) >= 1


def test_https_goes_through_a_connect_tunnel_with_verify(ca, proxy, tmp_path):
    with tls_emulator(ca) as (emulator, url):
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        client = ValarClient(
            api_key=emulator.config.api_key,
            base_url=url,
            proxy=proxy.url,
            verify=str(tmp_path / "ca.pem"),
        )
        before = proxy.mark()
        df = words(40)
        out = df.valar.run(TEMPLATE, client=client, store=False, **FAST)
        assert out["output"].tolist() == echo(df)
        proxy.settle()
    port = url.split(":")[2].split("/")[0]
    lines = proxy.seen()[before:]
    assert lines and all(f"CONNECT localhost:{port}" in line for line in lines)


def test_https_through_the_proxy_trusts_ssl_cert_file(ca, proxy, monkeypatch):
    with tls_emulator(ca) as (emulator, url), ca.cert_pem.tempfile() as bundle:
        monkeypatch.setenv("SSL_CERT_FILE", bundle)
        monkeypatch.setenv("https_proxy", proxy.url)  # lower case is read too
        client = ValarClient(api_key=emulator.config.api_key, base_url=url)
        before = proxy.mark()
        df = words(10)
        assert df.valar.run(TEMPLATE, client=client, store=False, **FAST)[
            "output"
        ].tolist() == echo(df)
        proxy.settle()
    assert any("CONNECT localhost:" in line for line in proxy.seen()[before:])


def test_no_proxy_and_trust_env_false_connect_directly(serve, monkeypatch):
    # The environment's proxy is a closed port: any request through it would fail.
    _, client = serve(latency=QUICK)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
    df = words(10)
    assert df.valar.run(TEMPLATE, client=client, store=False, **FAST)["output"].tolist() == echo(df)
    monkeypatch.delenv("NO_PROXY")
    direct = ValarClient(api_key=client.api_key, base_url=client.base_url, trust_env=False)
    assert df.valar.run(TEMPLATE, client=direct, store=False, **FAST)["output"].tolist() == echo(df)


def test_no_proxy_leaves_the_proxy_unused(serve, proxy, monkeypatch):
    _, client = serve(latency=QUICK)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    before = proxy.mark()
    words(10).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert proxy.seen()[before:] == []


def test_proxy_credentials_are_sent_and_never_shown(ca, guarded, caplog):
    caplog.set_level(logging.DEBUG)
    with tls_emulator(ca) as (emulator, url), ca.cert_pem.tempfile() as bundle:
        client = ValarClient(
            api_key=emulator.config.api_key,
            base_url=url,
            proxy=f"http://{LOGIN}@127.0.0.1:{guarded.port}",
            verify=bundle,
        )
        df = words(20)
        out = df.valar.run(TEMPLATE, client=client, store=False, **FAST)
        assert out["output"].tolist() == echo(df)
        guarded.settle()
        http = Http(client, 4)
        shown = [repr(client), repr(client.proxy), repr(network(client)), repr(http), caplog.text]
        client.close()  # its tunnel ends here, not when it is collected during a later test
    for text in shown:
        assert PASSWORD not in text and "s3cr%3At%40pw" not in text and "czNjcj" not in text
    assert "alice@127.0.0.1" in repr(client.proxy)


@pytest.mark.parametrize("tls", [True, False], ids=["connect", "plain"])
def test_a_407_is_one_clear_error_without_the_password(ca, guarded, serve, tls, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = f"http://alice:wrong-{PASSWORD.replace(':', '')}@127.0.0.1:{guarded.port}"
    before = guarded.mark()
    with contextlib.ExitStack() as stack:
        if tls:
            emulator, url = stack.enter_context(tls_emulator(ca))
            bundle = stack.enter_context(ca.cert_pem.tempfile())
            client = ValarClient(
                api_key=emulator.config.api_key, base_url=url, proxy=wrong, verify=bundle
            )
        else:
            emulator, plain = serve(latency=QUICK)
            client = ValarClient(api_key=plain.api_key, base_url=plain.base_url, proxy=wrong)
        with pytest.raises(EndpointError) as caught:
            words(500).valar.run(TEMPLATE, client=client, store=False, **FAST)
        assert emulator.stats.total_requests == 0
    message = str(caught.value)
    assert caught.value.cause == "proxy"
    assert f"http://alice@127.0.0.1:{guarded.port}" in message and "407" in message
    assert "user name and password" in message
    assert "wrong-" not in message and "wrong-" not in caplog.text
    # Not one per row or per try: through a tunnel, connects go one at a time until one
    # succeeds, so one refusal; plain requests share the first creates' cold-start limit (5).
    assert len(guarded.seen()[before:]) <= (1 if tls else 5)


def test_a_refused_connect_is_one_clear_error(proxy):
    # The proxy cannot open a tunnel (nothing listens at the API's port): it answers 502.
    client = ValarClient(
        api_key="sk-x", base_url=f"https://localhost:{closed_port()}/v1", proxy=proxy.url
    )
    before = proxy.mark()
    with pytest.raises(EndpointError) as caught:
        words(300).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert caught.value.cause == "proxy"
    assert proxy.url in str(caught.value) and "tunnel" in str(caught.value)
    assert len(proxy.seen()[before:]) <= 3


def test_an_unreachable_proxy_is_named_not_the_api(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://bob:hunter2@127.0.0.1:{port}")
    client = ValarClient(api_key="sk-x", base_url="https://api.example.invalid/v1")
    with pytest.raises(EndpointError) as caught:
        words(300).valar.run(TEMPLATE, client=client, store=False, **FAST)
    message = str(caught.value)
    assert caught.value.cause == "proxy_unreachable"
    assert f"the proxy http://bob@127.0.0.1:{port} (from HTTPS_PROXY)" in message
    assert "hunter2" not in message and "api.example.invalid" not in message


@pytest.mark.parametrize(
    ("proxies", "tls", "expected"),
    [
        ({"https": "http://p1:1", "http": "http://p2:2"}, True, "http://p1:1"),
        ({"https": "http://p1:1", "http": "http://p2:2"}, False, "http://p2:2"),
        ({"all": "http://p3:3"}, True, "http://p3:3"),
        ({"https": "p4:4"}, True, "http://p4:4"),  # no scheme: http://
        ({"https": "http://p5"}, True, "http://p5:80"),
        ({"http": "http://p2:2"}, True, None),  # an https API does not use HTTP_PROXY
        ({}, True, None),
    ],
)
def test_the_environment_picks_the_proxy_by_scheme(proxies, tls, expected):
    endpoint = Endpoint.parse(("https" if tls else "http") + "://api.example.com/v1")
    route = choose_proxy(endpoint, None, proxies, lambda host: False)
    assert (route.shown if route else None) == expected


def test_proxies_that_are_not_http_or_https_are_refused_before_any_request(monkeypatch):
    for url in ("socks5://127.0.0.1:1080", "ftp://127.0.0.1:3128", "http://:3128"):
        with pytest.raises(ConfigError, match=r"proxy \(ValarClient\(proxy=...\)\)"):
            ValarClient(api_key="sk-x", proxy=url)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:pw@127.0.0.1:1080")
    client = ValarClient(api_key="sk-x")
    with pytest.raises(ConfigError, match=r"HTTPS_PROXY\) uses socks5://") as caught:
        words(3).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert "pw" not in str(caught.value)
    assert isinstance(parse_proxy("http://h:99999", "x"), str)


def test_a_bad_proxy_url_in_a_traceback_with_locals_does_not_show_the_password():
    with pytest.raises(ConfigError) as caught:
        ValarClient(api_key="sk-x", proxy="socks5://bob:hunter2@127.0.0.1:1080")
    shown = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    ours = [frame for frame in shown.stack if "valar_pandas" in frame.filename]
    assert ours  # the library's own frames, where the URL was read
    rendered = "".join(traceback.StackSummary.from_list(ours).format())
    assert "proxy = Secret('***')" in rendered  # the frames' locals are there, masked
    assert "hunter2" not in rendered


def test_a_bad_proxy_url_from_the_environment_does_not_show_its_password(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "socks5://alice:hunter2@proxy.example:1080")
    client = ValarClient(api_key="sk-x", base_url="https://api.example/v1")
    with pytest.raises(ConfigError) as caught:
        words(3).valar.run(TEMPLATE, client=client, store=False, **FAST)
    shown = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    ours = [frame for frame in shown.stack if "valar_pandas" in frame.filename]
    assert ours
    rendered = "".join(traceback.StackSummary.from_list(ours).format())
    assert "hunter2" not in rendered and "hunter2" not in str(caught.value)


def test_an_https_proxy_carries_tls_inside_tls_and_plain_http(ca, tls_proxy, serve, tmp_path):
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    via = f"https://127.0.0.1:{tls_proxy.port}"
    before = tls_proxy.mark()
    with tls_emulator(ca) as (emulator, url):
        client = ValarClient(
            api_key=emulator.config.api_key,
            base_url=url,
            proxy=via,
            verify=str(tmp_path / "ca.pem"),
        )
        df = words(20)
        assert df.valar.run(TEMPLATE, client=client, store=False, **FAST)[
            "output"
        ].tolist() == echo(df)
        client.close()  # its connections end, so the proxy logs them
        tls_proxy.settle()
    _, plain = serve(latency=QUICK)
    client = ValarClient(
        api_key=plain.api_key, base_url=plain.base_url, proxy=via, verify=str(tmp_path / "ca.pem")
    )
    assert df.valar.run(TEMPLATE, client=client, store=False, **FAST)["output"].tolist() == echo(df)
    client.close()
    lines = tls_proxy.seen()[before:]
    assert any("CONNECT localhost:" in line for line in lines)
    assert any("/v1/responses" in line for line in lines)


def test_an_https_proxy_whose_certificate_is_not_trusted_is_one_error(tls_proxy, serve):
    _, plain = serve(latency=QUICK)
    client = ValarClient(
        api_key=plain.api_key,
        base_url=plain.base_url,
        proxy=f"https://127.0.0.1:{tls_proxy.port}",
    )
    with pytest.raises(EndpointError) as caught:
        words(200).valar.run(TEMPLATE, client=client, store=False, **FAST)
    assert caught.value.cause == "proxy"
    assert f"the TLS connection to the proxy https://127.0.0.1:{tls_proxy.port}" in str(
        caught.value
    )
    assert "verify=" in str(caught.value)


def test_the_environment_is_read_again_when_it_changes(monkeypatch):
    client = ValarClient(api_key="sk-x", base_url="https://api.example.com/v1")
    endpoint = Endpoint.parse(client.base_url)
    assert network(client).proxy_for(endpoint) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    route = network(client).proxy_for(endpoint)
    assert route is not None and (route.shown, route.source) == (
        "http://127.0.0.1:3128",
        "HTTPS_PROXY",
    )
    monkeypatch.setenv("NO_PROXY", ".example.com")
    assert network(client).proxy_for(endpoint) is None
    fixed = ValarClient(api_key="sk-x", base_url=client.base_url, proxy="http://10.0.0.1:8080")
    assert network(fixed).proxy_for(endpoint) == fixed.proxy  # NO_PROXY is not read for proxy=
