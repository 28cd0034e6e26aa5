"""Where requests go: the base URL checked (:func:`resolve_base_url`) and parsed once.

Pure (no socket is opened): the check and the connection pool (``_transport.conn``) parse
the same way, through :class:`Endpoint`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["DEFAULT_BASE_URL", "Endpoint", "resolve_base_url"]

DEFAULT_BASE_URL = "https://api.valarhq.ai/v1"


_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _valid_host(host: str, netloc: str) -> bool:
    """Whether a URL's host can be looked up and written in a ``Host`` header.

    A bracketed host must be an IPv6 address; any other is an IPv4 address or a DNS name
    whose labels are letters (any script), digits, ``-`` or ``_``, each 1 to 63 characters
    once IDNA-encoded, 253 in all. A doubled dot, a smart quote, a backslash or a percent
    sign is refused here, not met later as a ``UnicodeError`` on the first request.
    """
    if netloc.rpartition("@")[2].startswith("["):
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            return False
        return "%" not in host
    name = host[:-1] if host.endswith(".") else host
    if not all(char.isalnum() or char in "-_." for char in name):
        return False
    try:
        encoded = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(encoded) <= 253 and all(_LABEL.fullmatch(label) for label in encoded.split("."))


def resolve_base_url(given: object = None) -> str:
    """The API root a call uses: ``given``, else ``VALAR_BASE_URL``, else the Valar API.

    The URL is checked before anything uses it, and normalised (surrounding whitespace and
    trailing slashes dropped) so that the run store files rows under one name for it. No
    message quotes the URL: a key or a password pasted into it must not show.

    Args:
        given: A base URL, or None (or ``""``) for the environment's or the default.

    Returns:
        ``http[s]://host[:port][/path]`` without a trailing slash.

    Raises:
        ConfigError: Not an http or https URL with a valid host (IDNA, IPv4 or bracketed
            IPv6: no empty labels, quotes or stray punctuation) and a port between 1 and
            65535; a user name or password in it (``user:password@host``); a query or
            fragment; spaces, NUL or other control characters inside it; a path that is not
            ASCII.
    """
    env = os.environ.get("VALAR_BASE_URL")
    where = "base_url" if given else "VALAR_BASE_URL" if env else "the default base URL"
    url = given or env or DEFAULT_BASE_URL
    if not isinstance(url, str) or not url.strip().startswith(("http://", "https://")):
        # The value is not echoed: a key passed in the base URL's place must not show.
        raise ConfigError(f"the base URL ({where}) must start with http:// or https://")
    url = url.strip()
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ConfigError(f"the base URL ({where}) contains spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. brackets that do not hold an IPv6 address
        raise ConfigError(f"the base URL ({where}) is not a well-formed URL") from None
    if "@" in parts.netloc:
        said = (
            f"the base URL ({where}) holds a user name or password (user:password@host); "
            "it is refused so that it is never sent or stored. Give the URL without them, and "
            "the key through VALAR_API_KEY"
        )
        raise ConfigError(f"{said} or ValarClient(api_key=...)", command=said)
    if "?" in url or "#" in url:
        raise ConfigError(
            f"the base URL ({where}) has a query (?...) or a fragment (#...), which would not "
            "be sent; give only http[s]://host[:port]/path"
        )
    if not parts.path.isascii():
        raise ConfigError(
            f"the base URL ({where}) has characters outside ASCII in its path; percent-encode them"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0 or not _valid_host(parts.hostname, parts.netloc):
        raise ConfigError(
            f"the base URL ({where}) must be http:// or https:// followed by a host (a name "
            "such as api.valarhq.ai, an IPv4 address or a bracketed IPv6 address) and an "
            "optional port between 1 and 65535"
        )
    try:
        Endpoint.parse(url)
    except ValueError:
        raise ConfigError(
            f"the base URL ({where}) must be http:// or https:// followed by a host and an "
            "optional port between 1 and 65535"
        ) from None
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go, parsed once from the base URL.

    Attributes:
        host: Host name or address.
        port: TCP port.
        tls: Whether to speak TLS.
        prefix: Path prefix of every request, e.g. ``/v1``.
        authority: The ``Host`` header value.
    """

    host: str
    port: int
    tls: bool
    prefix: str
    authority: str

    @classmethod
    def parse(cls, base_url: str) -> Endpoint:
        """Parse ``http[s]://host[:port][/prefix]``.

        Args:
            base_url: The API root.

        Returns:
            The endpoint.

        Raises:
            ValueError: Not an http or https URL with a host and a valid port.
        """
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the base URL must be http:// or https:// followed by a host")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError:
            raise ValueError("the base URL's port must be between 1 and 65535") from None
        default = port == (443 if tls else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        authority = shown if default else f"{shown}:{port}"
        return cls(host, port, tls, parts.path.rstrip("/"), authority)
