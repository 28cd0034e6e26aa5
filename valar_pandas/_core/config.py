"""Where the API key and base URL come from, and how the key is kept out of sight.

The key lives inside a :class:`Secret` whose ``repr`` and ``str`` are masked, so printing a
client, a job, an exception or a dataclass that holds one never shows it. Only the transport
calls :meth:`Secret.reveal`, to build the ``Authorization`` header.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from .endpoint import resolve_base_url
from .errors import ConfigError
from .handler import Handler
from .options import MIN_MAX_RPS, as_int, as_real, checked_arguments
from .proxy import ProxyRoute, parse_proxy
from .secret import Secret
from .spec import DEFAULT_MAX_RPS, defaults

if TYPE_CHECKING:
    import ssl

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ValarClient",
]

CLOSED = (
    "this ValarClient was closed (client.close(), or the end of its `with` block); "
    "make a new ValarClient to send more"
)
"""What a run on a closed client raises (a ConfigError), before or while it sends."""
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""The cap on one answer, decoded: a Response object with a long answer is well under 1 MB."""


def _key_sealed_first(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap the key given to ``ValarClient(...)`` in a :class:`Secret` before anything else.

    Every frame below this one (the argument check, ``__init__``, the URL check) then holds
    ``Secret('***')``, so a failure's traceback rendered with its locals cannot show the key.
    """

    def seal(value: object) -> object:
        return Secret(value.strip()) if isinstance(value, str) else value

    @functools.wraps(init)
    def sealed(self: object, *args: object, **kwargs: object) -> None:
        if args:
            args = (seal(args[0]), *args[1:])
        if "api_key" in kwargs:
            kwargs["api_key"] = seal(kwargs["api_key"])
        if isinstance(kwargs.get("proxy"), str):  # it may hold the proxy's password
            kwargs["proxy"] = Secret(str(kwargs["proxy"]))
        init(self, *args, **kwargs)

    return sealed


class _Live(Protocol):
    """What a client holds once it has been used: its pools, its budget, its limit."""

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


_DEFAULT_CONCURRENCY: int = defaults(["concurrency"])["concurrency"]


@dataclass(frozen=True, init=False, repr=False)
class ValarClient:
    """The client of the Valar API: its settings, and the connections everything shares.

    One client is one connection pool, one request budget (``max_rps``) and one limit on
    requests in flight (``concurrency``) for everything that uses it in the process: runs one
    after another reuse its connections, and runs, jobs, the windows of ``valar-pandas run``
    and server-side cancels going on at once share its budget and its limit. A run's own
    ``concurrency=`` and ``max_rps=`` options cap that run further, within the client's. The
    connections are opened on first use; close the client when done (``with ValarClient()
    as client:``, :meth:`close` or ``await`` :meth:`aclose`), or leave it open: whatever is
    open is closed when the interpreter exits. A run on a closed client raises
    :class:`~valar_pandas.ConfigError`. A call without ``client=`` uses one client per
    process made from the environment
    (:func:`~valar_pandas._transport.shared.default_client`).

    Args:
        api_key: The API key. Defaults to the ``VALAR_API_KEY`` environment variable.
        base_url: The API root including ``/v1``. Defaults to ``VALAR_BASE_URL`` or
            ``https://api.valarhq.ai/v1``.
        timeout: Seconds to wait for one HTTP exchange of a background call. Realtime calls
            wait for the model, so they use ``realtime_timeout``.
        realtime_timeout: Seconds to wait for one realtime (foreground) call.
        max_response_bytes: The most bytes one answer may have once decompressed (8 MiB by
            default); a larger one is that row's error and is not fetched again. A batch's
            status map may be larger (up to 64 MiB), as it lists up to 100,000 items.
        concurrency: The most HTTP requests in flight at once, everything sent through this
            client together (also the most connections it keeps open per event loop).
        max_rps: The most HTTP requests a second, everything sent through this client
            together (bursts of up to 50); None for no limit.
        transport: A function that answers the requests instead of the network, for tests
            (see :class:`~valar_pandas.HttpRequest`); None to use the network.
        proxy: An HTTP proxy, ``http[s]://[user:password@]host:port``, for every request
            (``NO_PROXY`` is not read for it). None (the default) takes the proxy from the
            environment: ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` in
            either case, as ``requests`` and ``httpx`` read them. The password is kept out of
            every repr, message and log line.
        trust_env: Whether the environment's proxy variables are read. ``False`` connects
            directly unless ``proxy`` is given. It does not touch ``SSL_CERT_FILE`` and
            ``SSL_CERT_DIR``, which ``verify=True`` always honours.
        verify: Which certificate authorities the API's TLS certificate must chain to.
            ``True``: the system's defaults, with ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when
            set. A path: only the CAs of that PEM file (or directory of hashed
            certificates), e.g. a company's inspection CA. ``"system"``: the operating
            system's trust store through the ``truststore`` package (``pip install
            truststore``). An ``ssl.SSLContext``: used as it is. There is no ``False``: to
            reach a lab server with a self-made certificate, pass its CA.

    Raises:
        ConfigError: No key was given and ``VALAR_API_KEY`` is unset or empty; the base URL
            is not a plain http or https URL (see :func:`resolve_base_url`: credentials, a
            query or a fragment in it are refused); a timeout is not a positive, finite
            number; ``concurrency`` is not a positive whole number, ``max_rps`` not None or
            at least 0.1, ``transport`` not callable; a proxy that is not ``http://`` or
            ``https://`` with a host and a valid port; ``verify`` that is not ``True``, a path,
            ``"system"`` or an ``ssl.SSLContext``; an unknown argument.

    Example:
        >>> client = ValarClient(api_key="sk-test", base_url="http://127.0.0.1:8080/v1")
        >>> client
        ValarClient(base_url='http://127.0.0.1:8080/v1', api_key=Secret('***'), ...)
    """

    api_key: Secret
    base_url: str
    timeout: float
    realtime_timeout: float
    max_response_bytes: int
    concurrency: int
    max_rps: float | None
    transport: Handler | None
    proxy: ProxyRoute | None
    trust_env: bool
    verify: bool | str | ssl.SSLContext

    @_key_sealed_first
    @checked_arguments
    def __init__(
        self,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        realtime_timeout: float = 600.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        concurrency: int = _DEFAULT_CONCURRENCY,
        max_rps: float | None = DEFAULT_MAX_RPS,
        transport: Handler | None = None,
        proxy: str | Secret | None = None,
        trust_env: bool = True,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
    ) -> None:
        url = resolve_base_url(base_url)
        wait, realtime_wait = as_real(timeout), as_real(realtime_timeout)
        if wait is None or realtime_wait is None or wait <= 0 or realtime_wait <= 0:
            raise ConfigError("timeouts must be positive, finite numbers of seconds")
        cap = as_int(max_response_bytes)
        if cap is None or cap < 64 * 1024:
            raise ConfigError("max_response_bytes must be a whole number of bytes, 65536 or more")
        slots, rate = as_int(concurrency), None if max_rps is None else as_real(max_rps)
        if slots is None or slots < 1:
            raise ConfigError("concurrency must be a positive whole number of requests")
        if max_rps is not None and (rate is None or not rate >= MIN_MAX_RPS):
            raise ConfigError(
                f"max_rps must be at least {MIN_MAX_RPS} requests a second, or None for no limit"
            )
        if transport is not None and not callable(transport):
            raise ConfigError("transport must be a function that answers an HttpRequest")
        secret = api_key if isinstance(api_key, Secret) else None
        if secret is None:
            raw = api_key if api_key is not None else os.environ.get("VALAR_API_KEY", "")
            secret = Secret(raw.strip()) if isinstance(raw, str) else Secret("")
            del raw
        if not secret.reveal():
            raise ConfigError(
                "No Valar API key: set the VALAR_API_KEY environment variable or pass "
                "client=ValarClient(api_key=...).",
                command="No Valar API key: set the VALAR_API_KEY environment variable.",
            )
        if not all("!" <= char <= "~" for char in secret.reveal()):
            # Not echoed either: the key travels in a header, which allows no spaces or controls.
            raise ConfigError(
                "the API key contains spaces, control or non-ASCII characters; "
                "check that it was copied whole and alone"
            )
        object.__setattr__(self, "api_key", secret)
        object.__setattr__(self, "base_url", url)
        object.__setattr__(self, "timeout", wait)
        object.__setattr__(self, "realtime_timeout", realtime_wait)
        object.__setattr__(self, "max_response_bytes", cap)
        object.__setattr__(self, "concurrency", slots)
        object.__setattr__(self, "max_rps", rate)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "proxy", _checked_proxy(proxy))
        if not isinstance(trust_env, bool):
            raise ConfigError("trust_env must be True or False")
        object.__setattr__(self, "trust_env", trust_env)
        object.__setattr__(self, "verify", _checked_verify(verify))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: nothing more can be sent through this client."""
        return bool(self.__dict__.get("_closed", False))

    def close(self) -> None:
        """Close the client's connections; runs still going on end with a ConfigError.

        Call it from any thread (from inside a coroutine, prefer :meth:`aclose`). Closing
        twice is harmless.
        """
        object.__setattr__(self, "_closed", True)
        live: _Live | None = self.__dict__.get("_live")
        if live is not None:
            live.close()

    async def aclose(self) -> None:
        """Close the client's connections, from a coroutine (see :meth:`close`)."""
        object.__setattr__(self, "_closed", True)
        live: _Live | None = self.__dict__.get("_live")
        if live is not None:
            await live.aclose()

    def __enter__(self) -> ValarClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> ValarClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        # Never raises, even on an object whose __init__ failed half-way (a traceback that
        # shows locals reprs it); the key shows only as Secret('***').
        fields = ("base_url", "api_key", "timeout", "realtime_timeout", "concurrency", "max_rps")
        shown = ", ".join(
            f"{name}={getattr(self, name, '<unset>')!r}"
            if name in ("base_url", "api_key")
            else f"{name}={getattr(self, name, '<unset>')}"
            for name in fields
        )
        return f"ValarClient({shown})"


def _checked_proxy(proxy: object) -> ProxyRoute | None:
    """``proxy=`` read; the URL (sealed in a :class:`Secret`) is never held in plain here."""
    if proxy is None:
        return None
    if not isinstance(proxy, Secret):
        raise ConfigError("proxy must be a URL, http://[user:password@]host:port, or None")
    route = parse_proxy(proxy.reveal(), "ValarClient(proxy=...)")
    if isinstance(route, str):
        raise ConfigError(route)
    return route


def _checked_verify(verify: object) -> bool | str | ssl.SSLContext:
    """``verify=`` read: ``True``, a path (as ``str``), ``"system"`` or an SSL context."""
    if verify is True:
        return True
    if verify is False:
        raise ConfigError(
            "verify=False is not offered: it would send the API key to whoever answers. For a "
            "server with a private or self-signed certificate authority, pass that CA: "
            'ValarClient(verify="path/to/ca.pem")'
        )
    if isinstance(verify, str | os.PathLike):
        path = os.fspath(verify)
        if isinstance(path, str) and path.strip():
            return path
    elif any(
        kind.__module__ == "ssl" and kind.__name__ == "SSLContext" for kind in type(verify).__mro__
    ):
        return verify  # type: ignore[return-value]  # an ssl.SSLContext (ssl is not imported here)
    raise ConfigError(
        'verify must be True, a path to a PEM file of CA certificates, "system" or an '
        "ssl.SSLContext"
    )
