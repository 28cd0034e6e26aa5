"""A transport of one's own: a function that answers the client's requests instead of a server.

Given as ``ValarClient(transport=handler)``, it stands in for the network for everything that
client sends (creates, polls, batch calls, cancels), as httpx's ``MockTransport`` does. Every
other part of a run is the real one: the retries, the overload control, the run store, the
merge. A test that is about those, not about sockets, then runs in milliseconds::

    def handler(request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path == "/responses":
            return HttpResponse(200, json={"id": "resp_1", "status": "completed", ...})
        return HttpResponse(404, json={"error": {"message": "not found"}})

    client = ValarClient(api_key="sk-test", transport=handler)

The handler may be a plain function or a coroutine function; it is called on the loop the run
runs on, so a plain one must not block. An ``OSError`` it raises (``ConnectionResetError``,
``TimeoutError``) is taken for a failed exchange and retried like one.

The API key is not among the request's headers: a handler that logs or prints its requests
cannot show it. It is there as :attr:`HttpRequest.api_key`, a masked
:class:`~valar_pandas._core.secret.Secret`, for a handler that checks it.
"""

from __future__ import annotations

import json as _json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .secret import Secret

__all__ = ["Handler", "HttpRequest", "HttpResponse"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request the client sends, as a transport of one's own receives it.

    Attributes:
        method: ``"GET"`` or ``"POST"``.
        path: The path below the base URL, with any query, e.g. ``"/responses"``.
        headers: Header names in lower case to values, ``authorization`` left out.
        body: The JSON body sent (empty for a ``GET``).
        api_key: The key the client would send, masked in every repr.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    api_key: Secret = field(repr=False)

    def json(self) -> Any:
        """The body, decoded from JSON.

        Raises:
            ValueError: The body is empty or not JSON.
        """
        return _json.loads(self.body)


class HttpResponse:
    """The answer a transport of one's own gives to one request.

    Args:
        status: The HTTP status.
        body: The body, bytes or text (UTF-8).
        headers: Header names to values (``Retry-After`` and ``Location`` are read).
        json: A value to send as the JSON body instead of ``body``.

    Example:
        >>> HttpResponse(429, headers={"Retry-After": "1"}).status
        429
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes | str = b"",
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> None:
        if json is not None:
            body = _json.dumps(json)
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self.headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {len(self.body)} bytes)"


Handler = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]
"""A transport of one's own: answers each request, as a function or a coroutine function."""
