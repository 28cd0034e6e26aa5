"""What a client's connections go through: its proxy route and its SSL context, built once.

:func:`network` reads ``ValarClient(proxy=, trust_env=, verify=)`` and the environment with
the standard library (:func:`urllib.request.getproxies`, ``proxy_bypass``) and keeps the result
on the client, so every pool of the client shares one SSL context (its CA files are read
once, and TLS sessions can be resumed). It is built again only when the environment it was
read from changes (a notebook that sets ``SSL_CERT_FILE`` or ``HTTPS_PROXY`` after creating
the client is honoured at the next run).
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._core.config import ValarClient
from .._core.endpoint import Endpoint
from .._core.proxy import ProxyRoute, choose_proxy
from .tls import make_context

__all__ = ["Network", "network"]

_CACHE = "_valar_network"


@dataclass(frozen=True)
class Network:
    """A client's route to the API: which proxy, which SSL context.

    Attributes:
        ssl_context: The context every TLS connection of the client verifies with.
    """

    ssl_context: ssl.SSLContext
    _given: ProxyRoute | None
    _proxies: Mapping[str, str]
    _bypass: Callable[[str], bool]
    _key: tuple[object, ...]

    def __repr__(self) -> str:
        return f"Network(proxy={self._given!r}, from_environment={sorted(self._proxies)})"

    def proxy_for(self, endpoint: Endpoint) -> ProxyRoute | None:
        """The proxy requests to ``endpoint`` go through, or None to connect directly.

        Raises:
            ConfigError: The environment's proxy URL is not usable.
        """
        return choose_proxy(endpoint, self._given, self._proxies, self._bypass)


def network(client: ValarClient) -> Network:
    """The client's network settings, built on first use and kept on the client.

    Args:
        client: The client.

    Returns:
        Its :class:`Network`: the same object for as long as the environment it was read
        from does not change.

    Raises:
        ConfigError: ``verify`` names a missing file or ``"system"`` without ``truststore``.
    """
    key = _environment_key(client)
    kept = client.__dict__.get(_CACHE)
    if isinstance(kept, Network) and kept._key == key:
        return kept
    context = (
        kept.ssl_context
        if isinstance(kept, Network) and kept._key[0] == key[0]
        else make_context(client.verify)
    )
    if client.trust_env and client.proxy is None:
        proxies: Mapping[str, str] = {
            scheme: url for scheme, url in urllib.request.getproxies().items() if url
        }
        bypass = _bypass(proxies)
    else:
        proxies, bypass = {}, _never
    built = Network(context, client.proxy, proxies, bypass, key)
    object.__setattr__(client, _CACHE, built)  # a cache, not a field: the client stays frozen
    return built


def _environment_key(client: ValarClient) -> tuple[object, ...]:
    """What the network was built from: CA variables first, then the proxy variables."""
    cas = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if not client.trust_env or client.proxy is not None:
        return (cas,)
    names = tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.lower().endswith("_proxy") or name == "REQUEST_METHOD"
        )
    )
    return (cas, names)


def _bypass(proxies: Mapping[str, str]) -> Callable[[str], bool]:
    """``NO_PROXY`` as the standard library reads it."""
    if "no" in proxies:
        # In the module, not in its type stubs.
        read = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        return lambda host: bool(read(host, proxies))
    return lambda host: bool(urllib.request.proxy_bypass(host))


def _never(host: str) -> bool:
    return False
