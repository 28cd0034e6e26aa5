"""A pool whose answers come from a function: ``ValarClient(transport=handler)``, for tests.

It takes the place of :class:`~valar_pandas._transport.conn.Pool` and behaves as it does where a
caller can tell: at most ``limit`` requests in flight, the request's timeout and answer cap
enforced, an ``OSError`` from the handler a failed exchange (retried like a dropped
connection), a closed pool refusing requests. The handler sees an
:class:`~valar_pandas._core.handler.HttpRequest` without the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import inspect

from .._core.handler import Handler, HttpRequest, HttpResponse
from .._core.secret import Secret
from .conn import Answer, ConnectionFailed

__all__ = ["HandlerPool"]


class HandlerPool:
    """Answers requests with a handler instead of a server.

    Args:
        handler: The caller's function (or coroutine function).
        secret: The API key, handed to the handler masked.
        limit: Most requests in flight at once.

    Attributes:
        attempts: Always 0: nothing connects.
    """

    def __init__(self, handler: Handler, secret: Secret, limit: int) -> None:
        self._handler = handler
        self._secret = secret
        self._slots = asyncio.Semaphore(limit)
        self._closed = False
        self.attempts = 0

    def __repr__(self) -> str:
        return f"HandlerPool({self._handler!r})"

    async def request(
        self,
        method: bytes,
        path: str,
        payload: bytes | None,
        extra: bytes,
        timeout: float,
        cap: int,
        *,
        resend_safe: bool = False,
    ) -> Answer:
        """Hand one request to the handler and return its answer (never sent twice).

        Raises:
            ConnectionFailed: The pool is closed, the handler raised an ``OSError`` or took
                longer than ``timeout``, or the body is over ``cap``.
        """
        headers = {"user-agent": "valar-pandas", "accept": "application/json"}
        for line in extra.decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if payload is not None:
            headers["content-type"] = "application/json"
        request = HttpRequest(method.decode("ascii"), path, headers, payload or b"", self._secret)
        async with self._slots:
            if self._closed:
                raise ConnectionFailed("the connection pool is closed")
            try:
                async with asyncio.timeout(timeout):
                    answer = self._handler(request)
                    if inspect.isawaitable(answer):
                        answer = await answer
            except TimeoutError:
                raise ConnectionFailed(f"no answer within {timeout:g} s", fault="silent") from None
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                raise ConnectionFailed(f"the transport failed: {reason}", detail=reason) from None
        if not isinstance(answer, HttpResponse):
            raise TypeError(f"a transport must return an HttpResponse, not {type(answer).__name__}")
        if len(answer.body) > cap:
            raise ConnectionFailed(f"the answer is larger than {cap} bytes", fault="too_large")
        return (
            answer.status,
            answer.headers.get("retry-after"),
            answer.body,
            answer.headers.get("location"),
        )

    async def close(self) -> None:
        """Refuse every later request."""
        self._closed = True
