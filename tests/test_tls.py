"""TLS to the emulator with certificates from a ``trustme`` CA: verify=, SSL_CERT_FILE, errors.

One SSL context per client: every pool of the client verifies with it, and it is built again
only when ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` change.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import time
from collections.abc import Iterator

import pytest
import trustme
from helpers import FAST, TEMPLATE, echo, words

from valar_pandas import ConfigError, EndpointError, ValarClient
from valar_pandas._transport.http import Http
from valar_pandas._transport.network import network
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

QUICK = Latency(median=0.01, sigma=0.0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.contextmanager
def tls_emulator(ca: trustme.CA, name: str, hellos: list[int]) -> Iterator[tuple[Emulator, str]]:
    """The emulator over HTTPS on localhost, with a certificate from ``ca`` for ``name``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    context.sni_callback = lambda *_: hellos.append(1)  # one per TLS handshake begun
    emulator = Emulator(EmulatorConfig(latency=QUICK))
    with emulator.run_in_thread(host="localhost", port=0, ssl_context=context) as url:
        yield emulator, url


def test_a_good_certificate_from_verify_path_or_context(ca, tmp_path):
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    own = ssl.create_default_context()
    ca.configure_trust(own)
    with tls_emulator(ca, "localhost", []) as (emulator, url):
        for verify in (str(bundle), bundle, own):
            client = ValarClient(api_key=emulator.config.api_key, base_url=url, verify=verify)
            df = words(15)
            out = df.valar.run(TEMPLATE, client=client, store=False, **FAST)
            assert out["output"].tolist() == echo(df)


@pytest.mark.parametrize("problem", ["wrong host name", "untrusted CA"])
def test_a_bad_certificate_is_one_clear_error_fast(ca, tmp_path, problem):
    hellos: list[int] = []
    other = trustme.CA()
    trusted = ca if problem == "wrong host name" else other
    trusted.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    name = "api.example.org" if problem == "wrong host name" else "localhost"
    with tls_emulator(ca, name, hellos) as (emulator, url):
        client = ValarClient(
            api_key=emulator.config.api_key, base_url=url, verify=str(tmp_path / "ca.pem")
        )
        began = time.monotonic()
        with pytest.raises(EndpointError) as caught:
            words(1000).valar.run(TEMPLATE, client=client, store=False, **FAST)
        took = time.monotonic() - began
        assert emulator.stats.total_requests == 0
    assert caught.value.cause == "certificate"
    expected = "Hostname mismatch" if problem == "wrong host name" else "unable to get local issuer"
    assert expected in str(caught.value) and "verify=" in str(caught.value)
    assert len(hellos) <= 2 and took < 5.0


def test_one_ssl_context_per_client_until_the_ca_variables_change(ca, monkeypatch):
    client = ValarClient(api_key="sk-x", base_url="https://localhost:9/v1")
    first = network(client)
    assert network(client) is first
    pools = [Http(client, 2)._pool, Http(client, 2)._pool]
    assert all(pool._ssl is first.ssl_context for pool in pools)
    with ca.cert_pem.tempfile() as bundle:
        monkeypatch.setenv("SSL_CERT_FILE", bundle)
        again = network(client)
        assert network(client) is again
    assert again is not first and again.ssl_context is not first.ssl_context
    monkeypatch.delenv("SSL_CERT_FILE")
    assert network(client) is not again
    other = ValarClient(api_key="sk-x", base_url="https://localhost:9/v1")
    assert network(other).ssl_context is not network(client).ssl_context


def test_the_system_trust_store_is_opt_in_through_truststore(monkeypatch):
    truststore = pytest.importorskip("truststore")
    client = ValarClient(api_key="sk-x", verify="system")
    assert isinstance(network(client).ssl_context, truststore.SSLContext)
    assert not isinstance(network(ValarClient(api_key="sk-x")).ssl_context, truststore.SSLContext)
    monkeypatch.setitem(sys.modules, "truststore", None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install truststore"):
        network(ValarClient(api_key="sk-x", verify="system"))


def test_verify_values_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="verify=False is not offered"):
        ValarClient(api_key="sk-x", verify=False)
    for bad in (0, "", 1.5):
        with pytest.raises(ConfigError, match="verify must be"):
            ValarClient(api_key="sk-x", verify=bad)
    missing = ValarClient(api_key="sk-x", base_url="https://localhost:9/v1", verify="nope.pem")
    with pytest.raises(ConfigError, match=r"verify='nope\.pem': no such file"):
        words(3).valar.run(TEMPLATE, client=missing, store=False, **FAST)
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = ValarClient(api_key="sk-x", verify=str(tmp_path / "junk.pem"))
    with pytest.raises(ConfigError, match="not a PEM file"):
        network(junk)
