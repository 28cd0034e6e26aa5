"""The exception tree of valar_pandas. Bottom of the import graph: imports nothing of ours.

```
ValarError
├── ConfigError        bad template, column, option or key: raised before any request
├── APIError           the server refused the run as a whole (status_code, code, plain message)
│   ├── AuthenticationError   401/403: the key was rejected
│   └── BatchUnavailable      mode="batch", but the Batch API cannot be used here
├── EndpointError      the base URL cannot be used (certificate, DNS, refused, redirect, ...)
├── RowErrors          errors="raise" and rows failed; carries the merged frame
└── StoreError         the run store cannot be read or written; names the file, may carry the frame

StoreWarning (a UserWarning): the run's answers are in the returned frame, but the run store
could not record them
BudgetWarning (a UserWarning): the call spent more than budget=, as answers without a
max_output_tokens cap were longer than reserved
BatchFallbackWarning (a UserWarning): rows meant for the Batch API went in background mode
```

Per-row failures are data (an ``<into>_error`` column), not exceptions, unless the caller asks
for ``errors="raise"``. No message in this tree ever contains the API key: messages are built
from server error bodies and our own text only.

A message that says what to pass speaks Python's language (``price=``); where the same error
can reach the ``valar-pandas`` command, :attr:`ValarError.command` says it in the command's
(``--price``), and the command prints that one (:func:`for_command`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BatchFallbackWarning",
    "BatchUnavailable",
    "BudgetWarning",
    "ConfigError",
    "EndpointError",
    "RowErrors",
    "StoreError",
    "StoreWarning",
    "ValarError",
    "for_command",
]


class ValarError(Exception):
    """Root of every exception valar_pandas raises.

    Attributes:
        command: The same message for the ``valar-pandas`` command's users, naming its flags
            where ``str(error)`` names Python arguments; None when the message needs no
            translation.
    """

    command: str | None = None

    def __init__(self, *args: object, command: str | None = None) -> None:
        super().__init__(*args)
        self.command = command


def for_command(error: ValarError) -> str:
    """The message of ``error`` in the command's language: flags, not Python arguments."""
    return error.command if error.command is not None else str(error)


class ConfigError(ValarError, ValueError):
    """The call cannot start: a bad template, a missing column, a bad option or a missing key."""


class APIError(ValarError):
    """The server rejected the run as a whole (not a per-row failure).

    Attributes:
        status_code: The HTTP status the server answered with.
        code: The error code or type from the server's error envelope, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, command=command)
        self.status_code = status_code
        self.code = code


class AuthenticationError(APIError):
    """The server answered 401 or 403: the API key is missing, wrong or lacks access."""


class BatchUnavailable(APIError):
    """``mode="batch"`` was asked for, but the server's Batch API cannot be used.

    The first ``POST /v1/batches`` said so: the route is absent (404, 405, 501), batches
    are not enabled for the organisation (403, while the same key works on
    ``/v1/responses``), a 400 says they are "coming soon" or not available, or every try
    of the create was answered with a 501, or a 503 saying the Batch API is unavailable
    (any other server error may hide an accepted create: that is an :class:`APIError`,
    and the same call again replays the create). The message quotes the server's
    words. Raised before any batch is created; ``mode="auto"`` falls back to background
    mode instead, with a :class:`BatchFallbackWarning`.
    """


class BatchFallbackWarning(UserWarning):
    """Rows meant for the Batch API were sent in background mode instead.

    ``mode="auto"`` found the Batch API unusable on its first create (the route absent,
    batches not enabled, "coming soon", or a 501 or 503 saying the API is unavailable), or a
    batch showed it holds fewer items than were sent to it. Each row is sent under its own
    ``Idempotency-Key``, so nothing is paid twice; the frame holds every answer.

    It is issued on the caller's thread once the run has ended and its frame is built (a
    WARNING log line says so at the moment it happens). Under
    ``warnings.simplefilter("error")`` it is raised then, and carries the complete frame.

    Attributes:
        frame: The call's complete result, when the warning was issued with it (so that,
            raised as an error, it loses no answer); None otherwise.
    """

    def __init__(self, message: str, *, frame: Any = None) -> None:
        super().__init__(message)
        self.frame = frame


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


class StoreError(ValarError):
    """The run store could not be read or written.

    Raised before any request when the store cannot be read, by the store commands on a
    damaged file, and by ``errors="raise"`` when a run's answers could not all be recorded
    (then :attr:`frame` holds the complete result, every answer received included). The
    message names the file and what to do; it never quotes what the store holds.

    Attributes:
        path: The store file.
        frame: The complete merged result when the run got that far, else None.
    """

    def __init__(
        self, message: str, *, path: Any, frame: Any = None, command: str | None = None
    ) -> None:
        super().__init__(message, command=command)
        self.path = path
        self.frame = frame


class StoreWarning(UserWarning):
    """The run finished and its frame holds every answer, but the run store missed some.

    A re-run of the same call would ask those rows again (under the same idempotency keys,
    which the server replays while it keeps them): keep the returned frame.
    """


class EndpointError(ValarError):
    """The endpoint cannot be used at all, so the run stopped creating at once.

    Raised when the first requests prove it: the server's TLS certificate does not verify,
    its host name does not resolve, nothing listens on its port, it redirects, it answers
    with something other than the API's JSON, or it accepts requests and never answers. The
    message names the cause and the fix. Rows already answered are kept in the run store.

    Attributes:
        cause: ``"certificate"``, ``"tls"``, ``"dns"``, ``"refused"``, ``"redirect"``,
            ``"not_api"``, ``"silent"``, ``"proxy"`` (the proxy refused: a 407, or a non-2xx
            answer to ``CONNECT``) or ``"proxy_unreachable"``.
        location: The ``Location`` a redirect pointed at, else None.
    """

    def __init__(self, message: str, *, cause: str, location: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.location = location


class BudgetWarning(UserWarning):
    """The call spent more than its ``budget=``.

    A create is admitted only while spend plus what is reserved for answers in flight fits
    the budget; without ``max_output_tokens`` an answer has no worst case to reserve (a
    reasoning model bills its reasoning as output), so answers longer than reserved can
    pass it. Set ``max_output_tokens`` to make the budget a hard cap.
    """
