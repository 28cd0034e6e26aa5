"""The engine against scripted servers: exact fault choreography the emulator does not script."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from helpers import Handler, scripted

from valar_pandas import ValarClient
from valar_pandas._core.models import Event, Retrying
from valar_pandas._core.wire import make_request, response_body
from valar_pandas._policy import PollSchedule, RetryPolicy
from valar_pandas._run.engine import EngineConfig, execute
from valar_pandas._transport.http import Http

FAST_POLL = PollSchedule(first=0.01, growth=1.0, cap=0.01, deadline=0.5)
FAST_RETRY = RetryPolicy(attempts=3, base=0.01, cap=0.01)


def _message(text: str) -> dict:
    return {"type": "message", "content": [{"type": "output_text", "text": text}]}


async def _engine(routes: dict[str, Handler], n: int = 1, **config):
    """Serve ``routes`` on loopback and run ``n`` requests through the engine."""
    max_rps = config.pop("max_rps", None)
    connections = config.get("concurrency", 4)
    events: list[Event] = []
    requests = [make_request(response_body("m", f"row {i}")) for i in range(n)]
    settings = {"concurrency": 4, "background": True, "poll": FAST_POLL, "retry": FAST_RETRY}
    settings.update(config)
    async with scripted(routes) as url:
        http = Http(ValarClient(api_key="k", base_url=url), connections, max_rps)
        try:
            results = await execute(requests, {}, http, EngineConfig(**settings), events.append)
        finally:
            await http.close()
    return [results[r.fingerprint] for r in requests], events, http.sent


def run(routes, n=1, **config):
    return asyncio.run(_engine(routes, n, **config))


async def created(request: web.Request) -> web.Response:
    return web.json_response({"id": "resp_1", "status": "queued"}, status=202)


def test_unknown_status_past_the_deadline_is_a_row_error():
    async def paused(request):
        return web.json_response({"id": "resp_1", "status": "paused"})

    (outcome,), _, _ = run({"POST /v1/responses": created, "GET /v1/responses/{id}": paused})
    assert outcome.status == "error"
    assert "no final status" in outcome.error and "'paused'" in outcome.error
    assert outcome.response_id == "resp_1"


def test_a_404_right_after_create_is_retried():
    seen = {"n": 0}

    async def lagging(request):
        seen["n"] += 1
        if seen["n"] == 1:
            return web.json_response({"error": {"message": "not found"}}, status=404)
        return web.json_response(
            {"id": "resp_1", "status": "completed", "output": [_message("late")]}
        )

    (outcome,), _, _ = run({"POST /v1/responses": created, "GET /v1/responses/{id}": lagging})
    assert (outcome.status, outcome.text) == ("completed", "late")


def test_unreadable_poll_body_is_retried():
    seen = {"n": 0}

    async def flaky(request):
        seen["n"] += 1
        if seen["n"] == 1:
            return web.Response(text="<html>oops</html>", status=200)
        return web.json_response(
            {"id": "resp_1", "status": "completed", "output": [_message("ok")]}
        )

    (outcome,), events, _ = run({"POST /v1/responses": created, "GET /v1/responses/{id}": flaky})
    assert outcome.text == "ok"
    assert any(isinstance(e, Retrying) for e in events)


def test_retry_after_is_honoured_and_the_same_key_is_resent():
    keys: list[str] = []

    async def limited(request):
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0.2"}
            )
        return web.json_response({"id": "r", "status": "completed", "output": [_message("hi")]})

    (outcome,), events, sent = run({"POST /v1/responses": limited})
    assert outcome.text == "hi" and sent == 2
    assert len(set(keys)) == 1 and keys[0].startswith("vp1-")
    (retry,) = [e for e in events if isinstance(e, Retrying)]
    assert 0.2 <= retry.delay <= 0.22 and "429" in retry.reason


def test_idempotency_error_is_reported_as_a_bug_not_retried():
    async def conflict(request):
        body = {
            "error": {
                "message": "key reused",
                "type": "idempotency_error",
                "code": "idempotency_error",
            }
        }
        return web.json_response(body, status=400)

    (outcome,), _, sent = run({"POST /v1/responses": conflict})
    assert sent == 1
    assert "idempotency_error" in outcome.error and "bug in valar_pandas" in outcome.error


def test_other_client_errors_are_not_retried():
    async def bad(request):
        return web.json_response(
            {"error": {"message": "too long", "type": "invalid_request_error"}}, status=400
        )

    outcomes, _, sent = run({"POST /v1/responses": bad}, n=3)
    assert sent == 3
    assert all("too long" in o.error for o in outcomes)


def test_persistent_5xx_gives_up_with_the_reason():
    async def down(request):
        return web.Response(text="upstream", status=502)

    (outcome,), _, sent = run({"POST /v1/responses": down})
    assert sent == FAST_RETRY.attempts
    assert outcome.error == "gave up after 3 attempts: HTTP 502: upstream"


def test_connections_the_server_keeps_dropping_become_row_errors():
    async def go():
        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()  # read the request, never answer: transient, worth a retry

        server = await asyncio.start_server(drop, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        http = Http(ValarClient(api_key="k", base_url=f"http://127.0.0.1:{port}/v1"), 2)
        config = EngineConfig(concurrency=2, background=True, poll=FAST_POLL, retry=FAST_RETRY)
        requests = [make_request(response_body("m", "x"))]
        try:
            return await execute(requests, {}, http, config, lambda e: None)
        finally:
            await http.close()
            server.close()

    (outcome,) = asyncio.run(go()).values()
    assert outcome.status == "error" and outcome.error.startswith("gave up after 3 attempts")


def test_polls_lost_to_errors_end_as_row_errors_with_the_id():
    async def broken(request):
        return web.Response(text="nope", status=500)

    (outcome,), _, _ = run({"POST /v1/responses": created, "GET /v1/responses/{id}": broken})
    assert outcome.error.startswith("lost track of response resp_1 while polling")
    assert outcome.response_id == "resp_1"


def test_concurrency_bounds_requests_in_flight():
    state = {"now": 0, "peak": 0}

    async def slow(request):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        body = json.loads(await request.read())
        text = body["input"][0]["content"]
        return web.json_response({"id": "r", "status": "completed", "output": [_message(text)]})

    outcomes, _, _ = run({"POST /v1/responses": slow}, n=30, concurrency=3)
    assert [o.text for o in outcomes] == [f"row {i}" for i in range(30)]
    assert state["peak"] == 3


@pytest.mark.parametrize(("answer", "peak"), [(0.02, 8), (2.5, 8)])
def test_creates_wait_for_the_first_acceptance_but_not_for_a_slow_model(answer, peak):
    # Five creates go out until one is accepted; a realtime create is only answered when the
    # model is done, so the limit also lifts after its grace (2 s) without an answer.
    state = {"now": 0, "peak": 0, "before_first": 0, "answered": 0}

    async def realtime(request):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        if not state["answered"]:
            state["before_first"] = max(state["before_first"], state["now"])
        await asyncio.sleep(answer)
        state["now"] -= 1
        state["answered"] += 1
        body = json.loads(await request.read())
        text = body["input"][0]["content"]
        return web.json_response({"id": "r", "status": "completed", "output": [_message(text)]})

    outcomes, _, _ = run({"POST /v1/responses": realtime}, n=16, concurrency=8, background=False)
    assert [o.text for o in outcomes] == [f"row {i}" for i in range(16)]
    assert state["before_first"] == (5 if answer < 1 else 8)
    assert state["peak"] == peak


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_while_polling_stops_the_run(status):
    from valar_pandas import AuthenticationError

    async def denied(request):
        return web.json_response({"error": {"message": "bad key"}}, status=status)

    with pytest.raises(AuthenticationError):
        run({"POST /v1/responses": created, "GET /v1/responses/{id}": denied})


def test_overload_answers_shrink_concurrency_and_successes_restore_it():
    """A burst of 429s halves the live limit (AIMD); the rows still all complete."""
    state = {"now": 0, "peak_after_storm": 0, "calls": 0}

    async def crowded(request):
        state["calls"] += 1
        if state["calls"] <= 40:
            return web.json_response(
                {"error": {"message": "busy"}}, status=429, headers={"Retry-After": "0.05"}
            )
        state["now"] += 1
        state["peak_after_storm"] = max(state["peak_after_storm"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return web.json_response({"id": "r", "status": "completed", "output": [_message("ok")]})

    retry = RetryPolicy(attempts=2, base=0.01, cap=0.05)  # 429s do not use these up
    outcomes, _, _ = run({"POST /v1/responses": crowded}, n=60, concurrency=16, retry=retry)
    assert all(o.text == "ok" for o in outcomes)
    assert state["peak_after_storm"] < 16  # the limit had been cut and was still recovering


def test_overload_answers_do_not_use_up_a_rows_tries():
    """More 429s and 503s than ``attempts`` allows: the row still completes, on every path."""
    calls = {"POST": 0, "GET": 0}

    def busy_then(method, answer):
        async def handler(request):
            calls[method] += 1
            if calls[method] <= 6:
                status = 429 if calls[method] % 2 else 503
                return web.json_response(
                    {"error": {"message": "busy"}}, status=status, headers={"Retry-After": "0"}
                )
            return web.json_response(answer, status=202 if method == "POST" else 200)

        return handler

    routes = {
        "POST /v1/responses": busy_then("POST", {"id": "resp_1", "status": "queued"}),
        "GET /v1/responses/{id}": busy_then(
            "GET", {"id": "resp_1", "status": "completed", "output": [_message("ok")]}
        ),
    }
    (outcome,), events, sent = run(routes)  # FAST_RETRY: 3 tries for other failures
    assert outcome.text == "ok" and sent == 14
    assert sum(isinstance(e, Retrying) for e in events) == 12


def test_overload_answers_have_a_budget_of_their_own():
    async def always_busy(request):
        return web.json_response(
            {"error": {"message": "busy"}}, status=429, headers={"Retry-After": "0"}
        )

    retry = RetryPolicy(attempts=2, base=0.01, cap=0.01, overload_attempts=5)
    (outcome,), _, sent = run({"POST /v1/responses": always_busy}, retry=retry)
    assert sent == 5
    assert outcome.error == "gave up after 5 attempts: HTTP 429: busy"


def test_max_rps_paces_requests():
    stamps: list[float] = []

    async def fast(request):
        stamps.append(asyncio.get_running_loop().time())
        return web.json_response({"id": "r", "status": "completed", "output": [_message("ok")]})

    run({"POST /v1/responses": fast}, n=80, concurrency=50, max_rps=100.0)
    # the bucket allows a burst of 50, then 100 a second: 80 requests take >= 0.3 s
    assert stamps[-1] - stamps[0] >= 0.28


def test_gate_follows_a_changing_limit():
    from valar_pandas._transport.gate import Gate

    async def go():
        limit = {"n": 2}
        gate = Gate(lambda: limit["n"])
        await gate.acquire()
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        limit["n"] = 3
        gate.poke()
        await asyncio.sleep(0)
        assert waiter.done() and gate.busy == 3
        limit["n"] = 1
        gate.release()
        gate.release()
        blocked = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        assert not blocked.done()  # 1 busy, limit 1
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        gate.release()
        await gate.acquire()
        assert gate.busy == 1

    asyncio.run(go())
