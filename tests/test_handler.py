"""ValarClient(transport=handler): a function in the network's place, for fast tests.

Everything but the sockets is the real thing here: retries, overload control, the run store
and the merge.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from helpers import FAST, TEMPLATE, echo, words

from valar_pandas import (
    AuthenticationError,
    ConfigError,
    HttpRequest,
    HttpResponse,
    ValarClient,
)

KEY = "sk-handler-0123456789"


def completed(request: HttpRequest, n: int) -> HttpResponse:
    """The emulator's answer, made here: the prompt echoed back."""
    prompt = request.json()["input"][-1]["content"]
    text = f"Echo: {prompt}"
    message = {"type": "message", "content": [{"type": "output_text", "text": text}]}
    return HttpResponse(200, json={"id": f"resp_{n}", "status": "completed", "output": [message]})


class Server:
    """Answers creates at once, after ``busy`` overload answers and ``drops`` resets."""

    def __init__(self, busy: int = 0, drops: int = 0, delay: float = 0.0) -> None:
        self.busy, self.drops, self.delay = busy, drops, delay
        self.seen: list[HttpRequest] = []
        self.in_flight = self.peak = 0

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.seen.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.drops:
                self.drops -= 1
                raise ConnectionResetError("reset by peer")
            if self.busy:
                self.busy -= 1
                return HttpResponse(
                    429, json={"error": {"message": "busy"}}, headers={"Retry-After": "0"}
                )
            return completed(request, len(self.seen))
        finally:
            self.in_flight -= 1


def test_a_run_through_a_handler_sees_requests_without_the_key(caplog):
    server = Server()
    client = ValarClient(api_key=KEY, transport=server)
    with caplog.at_level(logging.DEBUG, logger="valar_pandas"):
        out = words(12).valar.run(TEMPLATE, client=client, store=None, **FAST)
    assert out["output"].tolist() == echo(words(12))
    creates = [r for r in server.seen if (r.method, r.path) == ("POST", "/responses")]
    assert len(creates) == 12
    first = creates[0]
    assert "authorization" not in first.headers and first.headers["idempotency-key"]
    assert first.api_key.reveal() == KEY  # there for a handler that checks it, masked
    shown = [repr(r) for r in server.seen] + [repr(client), caplog.text]
    assert not [text for text in shown if KEY in text]


def test_overload_answers_and_resets_from_a_handler_are_retried():
    server = Server(busy=3, drops=2)
    client = ValarClient(api_key=KEY, transport=server)
    out = words(4).valar.run(TEMPLATE, client=client, store=None, **FAST)
    assert out["output"].tolist() == echo(words(4))
    assert len(server.seen) == 4 + 3 + 2


def test_a_plain_function_handler_and_a_rejected_key():
    def rejecting(request: HttpRequest) -> HttpResponse:
        if request.api_key.reveal() != "sk-right":
            return HttpResponse(401, json={"error": {"message": "bad key"}})
        return completed(request, 1)

    client = ValarClient(api_key=KEY, transport=rejecting)
    with pytest.raises(AuthenticationError):
        words(2).valar.run(TEMPLATE, client=client, store=None, **FAST)
    right = ValarClient(api_key="sk-right", transport=rejecting)
    assert words(1).valar.run(TEMPLATE, client=right, store=None, **FAST)["output"].notna().all()


def test_jobs_at_once_share_the_clients_limit_through_a_handler():
    server = Server(delay=0.01)
    client = ValarClient(api_key=KEY, transport=server, concurrency=3)
    jobs = [
        words(20).valar.submit(TEMPLATE, client=client, store=None, salt=str(k), **FAST)
        for k in range(3)
    ]
    assert all(job.result(timeout=30)["output"].tolist() == echo(words(20)) for job in jobs)
    assert server.peak == 3  # three runs of 200 slots each, within the client's three
    client.close()
    with pytest.raises(ConfigError, match="closed"):
        words(1).valar.run(TEMPLATE, client=client, store=None, **FAST)


def test_a_handler_that_answers_something_else_is_a_clear_error():
    client = ValarClient(api_key=KEY, transport=lambda request: {"status": 200})
    with pytest.raises(TypeError, match="HttpResponse"):
        words(1).valar.run(TEMPLATE, client=client, store=None, **FAST)
