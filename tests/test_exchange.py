"""The one exchange every path shares: overload control, retries, timeouts, logging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from helpers import Handler, scripted

from valar_pandas import ValarClient
from valar_pandas._core.batchplan import BatchPoll
from valar_pandas._core.models import Event, Outcome, Retrying
from valar_pandas._core.wire import make_request, response_body
from valar_pandas._policy import PollSchedule, RetryPolicy
from valar_pandas._run.batch import BatchConfig, execute_batches
from valar_pandas._run.cancel import cancel_responses
from valar_pandas._run.engine import EngineConfig, execute
from valar_pandas._transport.exchange import Exchange
from valar_pandas._transport.http import Http, Unreachable

FAST_POLL = PollSchedule(first=0.01, growth=1.0, cap=0.01, deadline=5.0)
QUICK_BATCH = BatchPoll(first=0.01, growth=1.0, cap=0.05)


def _completed(text: str = "ok", response_id: str = "r") -> dict:
    message = {"type": "message", "content": [{"type": "output_text", "text": text}]}
    return {"id": response_id, "status": "completed", "output": [message]}


def _busy(status: int = 429, after: str = "0.05") -> web.Response:
    return web.json_response(
        {"error": {"message": "busy"}}, status=status, headers={"Retry-After": after}
    )


@contextlib.asynccontextmanager
async def _server(routes: dict[str, Handler], **client: float) -> AsyncIterator[ValarClient]:
    async with scripted(routes) as url:
        yield ValarClient(api_key="k", base_url=url, **client)


class _InFlight:
    """Counts requests a handler is serving at once, from the ``after``-th call on."""

    def __init__(self, storm: int) -> None:
        self.storm, self.calls, self.now, self.peak = storm, 0, 0, 0

    async def serve(self, answer: Callable[[], web.Response]) -> web.Response:
        self.calls += 1
        if self.calls <= self.storm:
            return _busy()
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(0.01)
        self.now -= 1
        return answer()


def test_a_batch_run_under_overload_has_fewer_requests_in_flight():
    """429s on the result fetches halve the batch run's live limit, as they do the engine's."""
    n, flight = 60, _InFlight(storm=40)
    requests = [make_request(response_body("m", f"row {i}")) for i in range(n)]
    cids = [f"r{i:06d}" for i in range(n)]

    async def create(request):
        return web.json_response({"id": "batch_1", "status": "in_progress"})

    async def status(request):
        return web.json_response({"request_status": {c: "COMPLETED" for c in cids}})

    async def fetch(request):
        cid = request.match_info["cid"]
        return await flight.serve(lambda: web.json_response(_completed(cid, f"resp_{cid}")))

    routes = {
        "POST /v1/batches": create,
        "GET /v1/batches/{id}": status,
        "GET /v1/batches/{id}/{cid}": fetch,
    }

    async def go() -> dict[str, Outcome]:
        async with _server(routes) as client:
            http = Http(client, 16)
            config = BatchConfig(
                concurrency=16, poll=QUICK_BATCH, retry=RetryPolicy(attempts=2, base=0.01)
            )
            try:
                return await execute_batches(
                    requests, {}, http, config, lambda e: None,
                    positions={r.fingerprint: i for i, r in enumerate(requests)},
                )  # fmt: skip
            finally:
                await http.close()

    results = asyncio.run(go())
    assert sorted(o.text for o in results.values()) == sorted(cids)
    assert flight.peak < 16  # the limit had been cut and was still recovering


def test_the_first_overload_cut_is_logged_once_at_warning_and_retries_at_debug(caplog):
    calls = {"n": 0}

    async def crowded(request):
        calls["n"] += 1
        return _busy(503, "0") if calls["n"] <= 6 else web.json_response(_completed())

    async def go() -> None:
        async with _server({"POST /v1/responses": crowded}) as client:
            http = Http(client, 4)
            config = EngineConfig(4, background=True, poll=FAST_POLL, retry=RetryPolicy(base=0.01))
            requests = [make_request(response_body("m", f"row {i}")) for i in range(4)]
            try:
                await execute(requests, {}, http, config, lambda e: None)
            finally:
                await http.close()

    with caplog.at_level(logging.DEBUG, logger="valar_pandas"):
        asyncio.run(go())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "overloaded (HTTP 503)" in warnings[0].getMessage()
    assert warnings[0].name.startswith("valar_pandas")
    retries = [r for r in caplog.records if r.levelno == logging.DEBUG and "retrying" in r.msg]
    assert len(retries) == 6
    assert "k" not in {r.getMessage() for r in caplog.records}


def test_a_cancel_retries_an_overload_answer_under_the_shared_policy():
    calls = {"n": 0}

    async def cancel(request):
        calls["n"] += 1
        if calls["n"] == 1:
            return _busy(503, "0")
        return web.json_response({"id": request.match_info["id"], "status": "cancelled"})

    async def go():
        async with _server({"POST /v1/responses/{id}/cancel": cancel}) as client:
            return await cancel_responses(
                client, {"fp": "resp_1"}, store=None, endpoint=client.base_url,
                retry=RetryPolicy(base=0.01),
            )  # fmt: skip

    report = asyncio.run(go())
    assert calls["n"] == 2 and report == {"cancelled": 1}


def test_a_cancel_gives_up_when_the_policy_does():
    calls = {"n": 0}

    async def cancel(request):
        calls["n"] += 1
        return _busy(503, "0")

    async def go():
        async with _server({"POST /v1/responses/{id}/cancel": cancel}) as client:
            return await cancel_responses(
                client, {"fp": "resp_1"}, store=None, endpoint=client.base_url,
                retry=RetryPolicy(base=0.01, overload_attempts=3),
            )  # fmt: skip

    report = asyncio.run(go())
    assert calls["n"] == 3 and report == {"failed": 1}


def test_a_call_waits_as_long_as_its_caller_says_not_as_the_client_default():
    async def slow(request):
        await asyncio.sleep(2.0)
        return web.json_response(_completed())

    async def go() -> float:
        async with _server({"GET /v1/slow": slow}, timeout=60.0) as client:
            http = Http(client, 1)
            started = time.monotonic()
            try:
                with pytest.raises(Unreachable):
                    await http.request("GET", "/slow", timeout=0.2)
            finally:
                await http.close()
            return time.monotonic() - started

    assert asyncio.run(go()) < 1.5


class _Recording(Http):
    """Records the timeout of every request, by method and path's first segment."""

    seen: list[tuple[str, str, float | None]]

    async def request(self, method, path, *, timeout=None, **kw):  # type: ignore[override]
        self.seen.append((method, path.split("/")[1], timeout))
        return await super().request(method, path, timeout=timeout, **kw)


@pytest.mark.parametrize("background", [True, False])
def test_creates_wait_for_the_model_only_in_realtime_mode_and_polls_never(background):
    async def create(request):
        if background:
            return web.json_response({"id": "resp_1", "status": "queued"}, status=202)
        return web.json_response(_completed())

    async def poll(request):
        return web.json_response(_completed(response_id="resp_1"))

    routes = {"POST /v1/responses": create, "GET /v1/responses/{id}": poll}

    async def go() -> list[tuple[str, str, float | None]]:
        async with _server(routes, timeout=7.0, realtime_timeout=70.0) as client:
            http = _Recording(client, 2)
            http.seen = []
            config = EngineConfig(2, background=background, poll=FAST_POLL)
            try:
                await execute([make_request(response_body("m", "x"))], {}, http, config, print)
            finally:
                await http.close()
            return http.seen

    seen = asyncio.run(go())
    assert seen[0] == ("POST", "responses", 7.0 if background else 70.0)
    assert all(t == 7.0 for m, _, t in seen if m == "GET") and len(seen) == 1 + background


def test_batch_polls_and_fetches_use_the_short_timeout_and_the_upload_the_long_one():
    request = make_request(response_body("m", "x"))

    async def create(request):
        return web.json_response({"id": "batch_1", "status": "in_progress"})

    async def status(request):
        return web.json_response({"request_status": {"r000000": "COMPLETED"}})

    async def fetch(request):
        return web.json_response(_completed())

    routes = {
        "POST /v1/batches": create,
        "GET /v1/batches/{id}": status,
        "GET /v1/batches/{id}/{cid}": fetch,
    }

    async def go() -> list[tuple[str, str, float | None]]:
        async with _server(routes, timeout=7.0, realtime_timeout=70.0) as client:
            http = _Recording(client, 2)
            http.seen = []
            config = BatchConfig(concurrency=2, poll=QUICK_BATCH)
            try:
                await execute_batches(
                    [request], {}, http, config, lambda e: None,
                    positions={request.fingerprint: 0},
                )  # fmt: skip
            finally:
                await http.close()
            return http.seen

    seen = asyncio.run(go())
    assert seen[0] == ("POST", "batches", 70.0)
    assert [t for m, _, t in seen[1:]] == [7.0] * (len(seen) - 1) and len(seen) >= 3


def test_retry_after_sets_the_wait_and_every_retry_is_an_event():
    events: list[Event] = []
    calls = {"n": 0}

    async def flaky(request):
        calls["n"] += 1
        if calls["n"] == 1:
            return _busy(429, "0.3")
        if calls["n"] == 2:
            return web.json_response({"error": {"message": "upstream"}}, status=502)
        return web.json_response({"ok": True})

    async def go():
        async with _server({"GET /v1/thing": flaky}) as client:
            http = Http(client, 1)
            exchange = Exchange(http, RetryPolicy(base=0.01, cap=0.01), 1, events.append)
            try:
                return await exchange.call(
                    "GET", "/thing", timeout=5.0, read=lambda r: json.loads(r.body)
                )
            finally:
                await http.close()

    answer = asyncio.run(go())
    assert not isinstance(answer, str) and answer.value == {"ok": True} and answer.tries == 3
    waits = [e.delay for e in events if isinstance(e, Retrying)]
    assert len(waits) == 2 and 0.3 <= waits[0] <= 0.33 and waits[1] <= 0.01


def test_a_fallback_to_background_mode_is_logged_at_warning(caplog):
    request = make_request(response_body("m", "x"))

    async def absent(request):
        return web.json_response({"error": {"message": "no such route"}}, status=404)

    async def fallback(rest):
        return {r.fingerprint: Outcome("completed", text="ok") for r in rest}

    notices: list[str] = []

    async def go() -> dict[str, Outcome]:
        async with _server({"POST /v1/batches": absent}) as client:
            http = Http(client, 2)
            try:
                return await execute_batches(
                    [request], {}, http, BatchConfig(concurrency=2), lambda e: None,
                    positions={request.fingerprint: 0}, fallback=fallback, notices=notices,
                )  # fmt: skip
            finally:
                await http.close()

    with caplog.at_level(logging.INFO, logger="valar_pandas"), warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is the caller's to issue, after the run
        results = asyncio.run(go())
    assert results[request.fingerprint].text == "ok"
    (notice,) = notices
    assert "no such route" in notice and "1 requests go in background mode" in notice
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.levelno == logging.WARNING and "HTTP 404" in line.getMessage()
    assert "1 requests go in background mode" in line.getMessage()


def test_the_library_prints_no_log_line_unless_logging_is_configured():
    code = (
        "import logging, valar_pandas._transport.exchange\n"
        "logging.getLogger('valar_pandas.exchange').warning('a line nobody asked for')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""


def test_a_run_sending_down_both_paths_has_one_set_of_slots():
    """Rows resumed from a batch and fresh background rows share the run's concurrency."""
    from valar_pandas._core.options import validate_options
    from valar_pandas._core.plan import plan_requests
    from valar_pandas._run.claims import Work
    from valar_pandas._run.compose import _send

    n, limit, flight = 24, 4, _InFlight(storm=0)
    options = validate_options(model="m", concurrency=limit, mode="background")
    plan = plan_requests([f"row {i}" for i in range(2 * n)], options)
    requests = list(plan.requests.values())
    resumed = requests[:n]  # the other half is sent in the background
    cids = {r.fingerprint: f"r{i:06d}" for i, r in enumerate(resumed)}

    async def slowly(answer: Callable[[], web.Response]) -> web.Response:
        flight.now += 1
        flight.peak = max(flight.peak, flight.now)
        await asyncio.sleep(0.05)
        flight.now -= 1
        return answer()

    async def create(request):
        body = await request.json()
        return await slowly(lambda: web.json_response(_completed(body["input"][-1]["content"])))

    async def status(request):
        return await slowly(
            lambda: web.json_response({"request_status": {c: "COMPLETED" for c in cids.values()}})
        )

    async def fetch(request):
        cid = request.match_info["cid"]
        return await slowly(lambda: web.json_response(_completed(cid, f"resp_{cid}")))

    routes = {
        "POST /v1/responses": create,
        "GET /v1/batches/{id}": status,
        "GET /v1/batches/{id}/{cid}": fetch,
    }
    work = Work(
        cached={}, send=requests, attach={}, entries={},
        batches={fp: ("bk", "batch_1", cid) for fp, cid in cids.items()},
    )  # fmt: skip

    async def go() -> dict[str, Outcome]:
        async with _server(routes) as client:
            http = Http(client, 64)
            try:
                return await _send(plan, work, options, http, lambda e: None, None, [])
            finally:
                await http.close()

    results = asyncio.run(go())
    assert len(results) == 2 * n and all(o.ok for o in results.values())
    assert {results[r.fingerprint].text for r in resumed} == set(cids.values())
    assert flight.peak <= limit  # two paths, one run: never more than its concurrency
