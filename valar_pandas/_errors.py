"""The exception tree of valar_pandas. Bottom of the import graph: imports nothing of ours.

```
ValarError
├── ConfigError        bad template, column, option or key: raised before any request
├── APIError           the server refused the run as a whole (status_code, code, plain message)
│   ├── AuthenticationError   401/403: the key was rejected
│   └── BatchUnavailable      mode="batch", but this server has no Batch API
├── EndpointError      the base URL cannot be used (certificate, DNS, refused, redirect, ...)
└── RowErrors          errors="raise" and rows failed; carries the merged frame
```

Per-row failures are data (an ``<into>_error`` column), not exceptions, unless the caller asks
for ``errors="raise"``. No message in this tree ever contains the API key: messages are built
from server error bodies and our own text only.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BatchUnavailable",
    "ConfigError",
    "EndpointError",
    "RowErrors",
    "ValarError",
]


class ValarError(Exception):
    """Root of every exception valar_pandas raises."""


class ConfigError(ValarError, ValueError):
    """The call cannot start: a bad template, a missing column, a bad option or a missing key."""


class APIError(ValarError):
    """The server rejected the run as a whole (not a per-row failure).

    Attributes:
        status_code: The HTTP status the server answered with.
        code: The error code or type from the server's error envelope, if any.
    """

    def __init__(self, message: str, *, status_code: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class AuthenticationError(APIError):
    """The server answered 401 or 403: the API key is missing, wrong or lacks access."""


class BatchUnavailable(APIError):
    """``mode="batch"`` was asked for, but the server's Batch API is absent or disabled.

    Raised before any batch is created. ``mode="auto"`` falls back to background mode
    instead of raising.
    """


class RowErrors(ValarError):
    """Raised by ``errors="raise"`` when at least one row failed.

    Attributes:
        frame: The complete merged result, successes included, so no paid-for answer is lost.
        failed: How many rows failed.
    """

    def __init__(self, message: str, *, frame: Any, failed: int) -> None:
        super().__init__(message)
        self.frame = frame
        self.failed = failed


class EndpointError(ValarError):
    """The endpoint cannot be used at all, so the run stopped creating at once.

    Raised when the first requests prove it: the server's TLS certificate does not verify,
    its host name does not resolve, nothing listens on its port, it redirects, it answers
    with something other than the API's JSON, or it accepts requests and never answers. The
    message names the cause and the fix. Rows already answered are kept in the run store.

    Attributes:
        cause: ``"certificate"``, ``"tls"``, ``"dns"``, ``"refused"``, ``"redirect"``,
            ``"not_api"`` or ``"silent"``.
        location: The ``Location`` a redirect pointed at, else None.
    """

    def __init__(self, message: str, *, cause: str, location: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.location = location
