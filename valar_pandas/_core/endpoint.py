"""Where requests go: the base URL parsed once into host, port, TLS and path prefix.

Pure (no socket is opened): the URL check in ``config`` and the connection pool in
``_transport.conn`` parse the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Endpoint"]


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
