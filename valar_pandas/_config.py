"""Where the API key and base URL come from, and how the key is kept out of sight.

The key lives inside a :class:`Secret` whose ``repr`` and ``str`` are masked, so printing a
client, a job, an exception or a dataclass that holds one never shows it. Only the transport
calls :meth:`Secret.reveal`, to build the ``Authorization`` header.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass

from ._conn import Endpoint
from ._errors import ConfigError

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_RESPONSE_BYTES", "Secret", "ValarClient"]

DEFAULT_BASE_URL = "https://api.valarhq.ai/v1"
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""The cap on one answer, decoded: a Response object with a long answer is well under 1 MB."""


class Secret:
    """A string that does not show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Call only where it must go on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, init=False, repr=False)
class ValarClient:
    """Connection settings for the Valar API.

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

    Raises:
        ConfigError: No key was given and ``VALAR_API_KEY`` is unset or empty.

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

    def __init__(
        self,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        realtime_timeout: float = 600.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        url = base_url or os.environ.get("VALAR_BASE_URL") or DEFAULT_BASE_URL
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            # The value is not echoed: a key passed in the base URL's place must not show.
            raise ConfigError("the base URL must start with http:// or https://")
        try:
            Endpoint.parse(url)
        except ValueError:
            raise ConfigError(
                "the base URL must be http:// or https:// followed by a host and an optional "
                "port between 1 and 65535"
            ) from None
        if timeout <= 0 or realtime_timeout <= 0:
            raise ConfigError("timeouts must be positive numbers of seconds")
        try:  # any integer type (numpy's too), but not a bool or a float
            cap = -1 if isinstance(max_response_bytes, bool) else operator.index(max_response_bytes)
        except TypeError:
            cap = -1
        if cap < 64 * 1024:
            raise ConfigError("max_response_bytes must be a whole number of bytes, 65536 or more")
        secret = api_key if isinstance(api_key, Secret) else None
        if secret is None:
            raw = api_key if api_key is not None else os.environ.get("VALAR_API_KEY", "")
            secret = Secret(raw.strip()) if isinstance(raw, str) else Secret("")
            del raw
        if not secret.reveal():
            raise ConfigError(
                "No Valar API key: set the VALAR_API_KEY environment variable or pass "
                "client=ValarClient(api_key=...)."
            )
        if not all("!" <= char <= "~" for char in secret.reveal()):
            # Not echoed either: the key travels in a header, which allows no spaces or controls.
            raise ConfigError(
                "the API key contains spaces, control or non-ASCII characters; "
                "check that it was copied whole and alone"
            )
        object.__setattr__(self, "api_key", secret)
        object.__setattr__(self, "base_url", url.rstrip("/"))
        object.__setattr__(self, "timeout", float(timeout))
        object.__setattr__(self, "realtime_timeout", float(realtime_timeout))
        object.__setattr__(self, "max_response_bytes", cap)

    def __repr__(self) -> str:
        return (
            f"ValarClient(base_url={self.base_url!r}, api_key={self.api_key!r}, "
            f"timeout={self.timeout}, realtime_timeout={self.realtime_timeout})"
        )
