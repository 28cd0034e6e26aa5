"""Which proxy, if any, a request to the API goes through. Pure: the environment is passed in.

The rules are those of ``requests``, ``httpx`` and curl, read with the standard library's own
parsing (:func:`urllib.request.getproxies` and ``proxy_bypass``, called by the shell that
passes their results here): ``HTTPS_PROXY`` for an ``https://`` base URL, ``HTTP_PROXY`` for
an ``http://`` one, ``ALL_PROXY`` for either when the other is unset, and no proxy for a host
that ``NO_PROXY`` lists. A proxy given as ``ValarClient(proxy=...)`` is used for every request
and ``NO_PROXY`` is not read for it.

A proxy URL is ``http://[user:password@]host[:port]``, or ``https://`` for a proxy that is
itself spoken to over TLS (its certificate checked with the client's ``verify=``); a bare
``host:port`` is read as ``http://``. SOCKS is not spoken. The user name and password
(percent-encoded in the URL when they hold ``:``, ``@`` or ``/``) are kept in an object whose
repr is masked and leave only as the ``Proxy-Authorization`` header line: no repr, message
or log line shows the password.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .endpoint import Endpoint
from .errors import ConfigError
from .secret import Secret

__all__ = ["ProxyRoute", "choose_proxy", "parse_proxy"]


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """A proxy to reach the API through.

    Attributes:
        host: The proxy's host name or address.
        port: Its TCP port (80 when the URL names none, as ``requests`` and ``httpx`` take it).
        shown: The proxy as messages name it: ``http://user@host:port``, never the password.
        tls: Whether the connection to the proxy itself is TLS (an ``https://`` proxy).
        source: Where it was configured, for messages (``"HTTPS_PROXY"``, ``"proxy="``).
    """

    host: str
    port: int
    shown: str
    source: str
    tls: bool = False
    _credentials: Secret | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"ProxyRoute({self.shown!r}, source={self.source!r})"

    @property
    def authority(self) -> str:
        """``host:port`` as written in a URL (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def has_credentials(self) -> bool:
        """Whether the proxy URL carried a user name (and perhaps a password)."""
        return self._credentials is not None

    def authorization(self) -> bytes:
        """The ``Proxy-Authorization`` header line (CRLF-ended), or ``b""`` without credentials.

        Made from the secret only when a request is written: call it inside the write.
        """
        if self._credentials is None:
            return b""
        token = base64.b64encode(self._credentials.reveal().encode("utf-8"))
        return b"Proxy-Authorization: Basic " + token + b"\r\n"


def parse_proxy(url: str, source: str) -> ProxyRoute | str:
    """Read a proxy URL.

    The problem is returned, not raised, so that the caller raises it from a frame that does
    not hold the URL (a traceback that shows locals must not show the password).

    Args:
        url: ``http[s]://[user:password@]host[:port]``, or ``host:port``.
        source: Where it came from (``"ValarClient(proxy=...)"`` or the environment
            variable's name), for messages.

    Returns:
        The proxy; or, when it is not an ``http://`` or ``https://`` proxy with a host and a
        valid port (a ``socks5://`` proxy is refused before any request), the message of the
        :class:`ConfigError` to raise. The message never quotes the URL.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return (
            f"the proxy ({source}) is not a well-formed URL: give http://[user:password@]host:port"
        )
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return (
            f"the proxy ({source}) uses {scheme}://, which valar_pandas does not speak: only "
            "http:// and https:// proxies are supported (HTTPS to the API goes end-to-end "
            "encrypted through either, in a CONNECT tunnel)"
        )
    host = parts.hostname
    if not host or any(char.isspace() or not char.isprintable() for char in text):
        return f"the proxy ({source}) must be http://[user:password@]host[:port] with a host"
    tls = scheme == "https"
    port = port or (443 if tls else 80)
    credentials = None
    user = ""
    if parts.username is not None:
        user = unquote(parts.username)
        credentials = Secret(f"{user}:{unquote(parts.password or '')}")
    shown_host = f"[{host}]" if ":" in host else host
    login = f"{user}@" if user else ""
    shown = f"{scheme}://{login}{shown_host}:{port}"
    return ProxyRoute(host, port, shown, source, tls, credentials)


_ENVIRONMENT_NAMES = {"https": "HTTPS_PROXY", "http": "HTTP_PROXY", "all": "ALL_PROXY"}


def choose_proxy(
    endpoint: Endpoint,
    given: ProxyRoute | None,
    proxies: Mapping[str, str],
    bypass: Callable[[str], bool],
) -> ProxyRoute | None:
    """The proxy that requests to ``endpoint`` go through, or None to connect directly.

    Args:
        endpoint: The API.
        given: ``ValarClient(proxy=...)``: used for every request when set.
        proxies: The environment's proxies by scheme, as :func:`urllib.request.getproxies`
            returns them (``"https"``, ``"http"``, ``"all"``, ``"no"``); empty to ignore the
            environment (``trust_env=False``).
        bypass: Whether a host is exempt from the environment's proxy (``NO_PROXY``), as
            ``urllib.request.proxy_bypass`` decides.

    Returns:
        The route, or None.

    Raises:
        ConfigError: The environment's proxy URL is not usable (see :func:`parse_proxy`).
    """
    if given is not None:
        return given
    scheme = "https" if endpoint.tls else "http"
    key = scheme if proxies.get(scheme) else "all" if proxies.get("all") else None
    if key is None:
        return None
    if bypass(endpoint.host) or bypass(f"{endpoint.host}:{endpoint.port}"):
        return None
    route = parse_proxy(proxies[key], _ENVIRONMENT_NAMES[key])
    if isinstance(route, str):
        # Raised from a frame that no longer holds the URLs: one may carry a password, and a
        # traceback that shows locals would print it.
        del proxies
        raise ConfigError(route)
    return route
