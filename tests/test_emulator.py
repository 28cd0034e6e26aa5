"""The emulator itself, over real loopback sockets: the contract, replays, faults and the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from valar_pandas.emulator import Emulator, EmulatorConfig, Faults, Latency, answer_text

MODEL = "zai-org/GLM-5.1-FP8"
KEY = "sk-emulator"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLOW = Latency(median=30.0, sigma=0.0)
FAST = Latency(median=0.0, sigma=0.0)
SENTIMENT = (
    "Classify the sentiment of this product review as positive, negative, or neutral. "
    "Reply with one word.\n\nReview: {}"
)


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Server:
    """An emulator on its own thread, and a urllib caller for it."""

    def __init__(self, emulator: Emulator, url: str) -> None:
        self.emulator = emulator
        self.url = url

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        sent = {**(AUTH if auth else {}), **(headers or {})}
        if data is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Reply(response.status, dict(response.headers), json.loads(response.read()))
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, dict(error.headers), json.loads(error.read()))

    def create(self, body: dict[str, Any], key: str | None = None, **kw: Any) -> Reply:
        headers = {"Idempotency-Key": key} if key is not None else None
        return self.call("POST", "/responses", body, headers, **kw)

    def get(self, response_id: str) -> Reply:
        return self.call("GET", f"/responses/{response_id}")


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Any] = []

    def start(**config: Any) -> Server:
        config.setdefault("latency", Latency.fast())
        emulator = Emulator(EmulatorConfig(**config))
        context = emulator.run_in_thread(host="127.0.0.1", port=0)
        url = context.__enter__()
        servers.append(context)
        return Server(emulator, url)

    yield start
    for context in reversed(servers):
        context.__exit__(None, None, None)


def body(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "input": [{"role": "user", "content": text}],
        "background": True,
        **extra,
    }


def text_of(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        for part in item["content"]
        if part["type"] == "output_text"
    )


# -- auth, models, routes ---------------------------------------------------------------------


def test_wrong_or_missing_key_is_401_without_echoing_the_key(serve):
    server = serve()
    secret = "sk-not-the-right-one-12345"
    for headers in ({"Authorization": f"Bearer {secret}"}, {}):
        for method, path, payload in (
            ("POST", "/responses", body()),
            ("GET", "/models", None),
            ("GET", "/responses/resp_x", None),
        ):
            reply = server.call(method, path, payload, headers, auth=False)
            assert reply.status == 401
            assert reply.body["error"]["code"] == "invalid_api_key"
            assert set(reply.body["error"]) == {"message", "type", "param", "code"}
            assert secret not in json.dumps(reply.body)
    assert server.emulator.stats.inferences == 0
    assert server.emulator.stats.total_requests == 6


def test_models_lists_the_eight_priced_models(serve):
    reply = serve().call("GET", "/models")
    assert reply.status == 200 and reply.body["object"] == "list"
    ids = [m["id"] for m in reply.body["data"]]
    assert len(ids) == 8 and MODEL in ids and "moonshotai/Kimi-K2.6" in ids
    assert all(
        m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"]
        for m in reply.body["data"]
    )


def test_unknown_routes_and_ids_are_json_404(serve):
    server = serve()
    assert server.call("GET", "/nothing/here").status == 404
    assert server.call("DELETE", "/responses/resp_abc").status == 404
    missing = server.get("resp_does_not_exist")
    assert missing.status == 404 and "error" in missing.body
    created = server.create(body())
    server.emulator.config = dataclasses.replace(server.emulator.config, api_key="sk-other")
    assert (
        server.call(
            "GET", f"/responses/{created.body['id']}", headers={"Authorization": "Bearer sk-other"}
        ).status
        == 404
    )
    counted = server.emulator.stats.requests
    assert counted["GET /v1/responses/{id}"] == 2 and counted["POST /v1/responses"] == 1


# -- create, status, realtime -----------------------------------------------------------------


@pytest.mark.parametrize("create_status", [202, 200])
def test_background_create_answers_at_once_in_the_initial_status(serve, create_status):
    server = serve(background_create_status=create_status, latency=SLOW)
    reply = server.create(body(metadata={"completion_window": "standard", "row": "7"}))
    assert reply.status == create_status
    response = reply.body
    assert re.fullmatch(r"resp_[0-9a-f]+", response["id"])
    assert response["object"] == "response" and response["status"] == "pending"
    assert response["background"] is True and response["model"] == MODEL
    assert response["metadata"] == {"completion_window": "standard", "row": "7"}
    assert response["output"] == [] and response["error"] is None and response["store"] is True
    assert response["usage"]["total_tokens"] == 0
    assert server.emulator.stats.inferences == 1


@pytest.mark.parametrize(
    ("vocabulary", "initial", "running"),
    [("pending", "pending", "running"), ("queued", "queued", "in_progress")],
)
def test_status_moves_with_the_clock_in_both_vocabularies(serve, vocabulary, initial, running):
    server = serve(vocabulary=vocabulary, latency=Latency(median=10.0, sigma=0.0))
    clock = Clock()
    server.emulator.clock = clock
    response_id = server.create(body("one two three")).body["id"]
    seen = []
    for now in (1000.5, 1002.0, 1009.9, 1010.0, 1100.0):
        clock.now = now
        seen.append(server.get(response_id).body["status"])
    assert seen == [initial, running, running, "completed", "completed"]
    done = server.get(response_id).body
    assert text_of(done) == "Echo: one two three"
    assert done["output"][0]["role"] == "assistant" and done["output"][0]["id"].startswith("msg_")
    usage = done["usage"]
    assert usage["output_tokens"] == 4 and usage["input_tokens"] >= 1
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["prompt_tokens"] == usage["input_tokens"]
    assert usage["completion_tokens"] == usage["output_tokens"]
    assert usage["output_tokens_details"] == {"cached_tokens": 0, "reasoning_tokens": 0}


def test_realtime_waits_and_answers_200_completed(serve):
    server = serve(latency=Latency(median=0.05, sigma=0.0))
    reply = server.create({"model": MODEL, "input": "say hi", "temperature": 0.3})
    assert reply.status == 200
    assert reply.body["status"] == "completed" and reply.body["background"] is False
    assert text_of(reply.body) == "Echo: say hi" and reply.body["temperature"] == 0.3


def test_incomplete_when_the_answer_exceeds_max_output_tokens(serve):
    server = serve(latency=FAST)
    request = body("say one two three", max_output_tokens=2)
    response = server.get(server.create(request).body["id"]).body
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert text_of(response) == "Echo: say" and response["usage"]["output_tokens"] == 2
    assert server.emulator.expected_outcome(request) == ("incomplete", "Echo: say")


# -- idempotency ------------------------------------------------------------------------------


def test_replay_returns_the_current_state_of_the_same_record(serve):
    server = serve(latency=Latency(median=10.0, sigma=0.0))
    clock = Clock()
    server.emulator.clock = clock
    first = server.create(body(), key="row-1")
    clock.now += 60
    again = server.create(body(), key="row-1")
    assert again.status == first.status == 202
    assert again.body["id"] == first.body["id"]
    assert (first.body["status"], again.body["status"]) == ("pending", "completed")
    stats = server.emulator.stats
    assert stats.inferences == 1 and stats.requests["POST /v1/responses"] == 2
    assert list(stats.inferences_by_body.values()) == [1]
    other = server.create(body(), key="row-2")
    assert other.body["id"] != first.body["id"] and stats.inferences == 2
    server.create(body())
    server.create(body())
    assert stats.inferences == 4 and list(stats.inferences_by_body.values()) == [4]


def test_same_key_with_another_body_is_an_idempotency_error(serve):
    server = serve()
    server.create(body("first"), key="k")
    reply = server.create(body("second"), key="k")
    assert reply.status == 400
    assert reply.body["error"]["type"] == "idempotency_error"
    assert reply.body["error"]["code"] == "idempotency_error"
    assert server.emulator.stats.inferences == 1


def test_keys_are_separate_per_api_key(serve):
    server = serve()
    first = server.create(body(), key="k").body["id"]
    server.emulator.config = dataclasses.replace(server.emulator.config, api_key="sk-two")
    reply = server.call(
        "POST", "/responses", body(), {"Idempotency-Key": "k", "Authorization": "Bearer sk-two"}
    )
    assert reply.status == 202 and reply.body["id"] != first


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"model": "no/such-model"}, "no/such-model"),
        ({"model": None}, "model"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "text"),
        ({"stream": True}, "Streaming"),
        ({"store": False}, "store"),
        ({"metadata": {"n": 1}}, "metadata"),
        ({"metadata": {"completion_window": "24h"}}, "asap, standard"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"background": "yes"}, "background"),
    ],
)
def test_invalid_bodies_are_400_and_leave_the_key_unreserved(serve, change, needle):
    server = serve()
    bad = {k: v for k, v in {**body(), **change}.items() if v is not None}
    reply = server.create(bad, key="fix-me")
    assert reply.status == 400
    assert reply.body["error"]["type"] == "invalid_request_error"
    assert needle in reply.body["error"]["message"]
    good = server.create(body(), key="fix-me")
    assert good.status == 202 and server.emulator.stats.inferences == 1


def test_non_json_body_and_overlong_key_are_rejected(serve):
    server = serve()
    request = urllib.request.Request(
        server.url + "/responses", data=b"{not json", headers=AUTH, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    with info.value as error:
        assert error.code == 400 and "error" in json.loads(error.read())
    assert server.create(body(), key="k" * 256).status == 400
    assert server.create(body(), key="k" * 255).status == 202


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [
        (Faults(rate_429=1.0, retry_after=0.05), 429, "0.05"),
        (Faults(rate_429=1.0, retry_after=2.0), 429, "2"),
        (Faults(rate_500=1.0), 500, None),
        (Faults(rate_502=1.0), 502, None),
        (Faults(rate_503=1.0, retry_after=1.5), 503, "1.5"),
    ],
)
def test_transient_faults_answer_before_anything_happens(serve, fault, status, retry_after):
    server = serve(faults=fault)
    for reply in (server.create(body(), key="k"), server.get("resp_anything")):
        assert reply.status == status
        assert reply.headers.get("Retry-After") == retry_after
        assert set(reply.body["error"]) == {"message", "type", "param", "code"}
    assert server.call("GET", "/models").status == 200
    stats = server.emulator.stats
    assert stats.faults == {str(status): 2} and stats.inferences == 0
    assert stats.total_requests == 3
    server.emulator.config = EmulatorConfig(latency=Latency.fast())
    assert server.create(body("other"), key="k").status == 202  # the key was never reserved


def test_fault_rates_are_roughly_honoured_and_seeded(serve):
    counts = []
    for _ in range(2):
        server = serve(faults=Faults(rate_429=0.2, rate_500=0.1), seed=4)
        replies = [server.get("resp_x").status for _ in range(200)]
        counts.append((replies.count(429), replies.count(500), replies.count(404)))
    assert counts[0] == counts[1]
    n429, n500, n404 = counts[0]
    assert 20 <= n429 <= 60 and 5 <= n500 <= 35 and n404 == 200 - n429 - n500


def test_dropped_create_disconnects_but_the_record_exists_and_replays(serve):
    server = serve(faults=Faults(drop_after_create=1.0))

    async def scenario() -> dict[str, Any]:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            headers = {"Idempotency-Key": "dropped"}
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.post(
                    server.url + "/responses", json=body(), headers=headers
                ) as response:
                    await response.read()
            server.emulator.config = EmulatorConfig(latency=Latency.fast())
            async with session.post(
                server.url + "/responses", json=body(), headers=headers
            ) as response:
                assert response.status == 202
                return dict(await response.json())

    replayed = asyncio.run(scenario())
    stats = server.emulator.stats
    assert stats.faults["drop"] == 1 and stats.inferences == 1
    assert list(server.emulator.store.records) == [replayed["id"]]


def test_failed_outcomes_are_deterministic_per_body(serve):
    server = serve(faults=Faults(failed=0.3), latency=FAST, seed=9)
    bodies = [body(f"row {i}") for i in range(120)]
    expected = [server.emulator.expected_outcome(b) for b in bodies]
    ids = [server.create(b).body["id"] for b in bodies]
    seen = [server.get(i).body for i in ids]
    for (status, text), response in zip(expected, seen, strict=True):
        assert response["status"] == status
        if status == "failed":
            assert response["error"]["code"] == "server_error" and response["error"]["message"]
            assert response["error"]["message"] == text and response["output"] == []
        else:
            assert text_of(response) == text
    failed = sum(status == "failed" for status, _ in expected)
    assert 20 <= failed <= 60
    again = Emulator(EmulatorConfig(faults=Faults(failed=0.3), seed=9))
    assert [again.expected_outcome(b) for b in bodies] == expected
    other = Emulator(EmulatorConfig(faults=Faults(failed=0.3), seed=10))
    assert [other.expected_outcome(b) for b in bodies] != expected
    retried = server.create(bodies[0]).body["id"]
    assert server.get(retried).body["status"] == expected[0][0]


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_stops_a_running_response_and_leaves_a_finished_one(serve):
    server = serve(latency=SLOW, cancel_supported=True)
    clock = Clock()
    server.emulator.clock = clock
    running = server.create(body()).body["id"]
    reply = server.call("POST", f"/responses/{running}/cancel")
    assert reply.status == 200 and reply.body["status"] == "cancelled"
    clock.now += 3600
    assert server.get(running).body["status"] == "cancelled"
    finished = server.create(body("done")).body["id"]
    clock.now += 3600
    reply = server.call("POST", f"/responses/{finished}/cancel")
    assert reply.status == 200 and reply.body["status"] == "completed"
    assert server.call("POST", "/responses/resp_nope/cancel").status == 404
    server.emulator.config = EmulatorConfig(latency=Latency.fast(), cancel_supported=False)
    assert server.call("POST", f"/responses/{running}/cancel").status == 404
    assert server.emulator.stats.requests["POST /v1/responses/{id}/cancel"] == 4


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_realtime_replay_waits_for_the_same_record():
    emulator = Emulator(EmulatorConfig(latency=Latency(median=0.2, sigma=0.0)))

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        async with emulator.serve() as url, aiohttp.ClientSession(headers=AUTH) as session:
            realtime = {"model": MODEL, "input": "wait for me"}

            async def post(delay: float) -> tuple[int, dict[str, Any]]:
                await asyncio.sleep(delay)
                async with session.post(
                    url + "/responses", json=realtime, headers={"Idempotency-Key": "rt"}
                ) as response:
                    return response.status, dict(await response.json())

            return list(await asyncio.gather(post(0.0), post(0.05)))

    (s1, r1), (s2, r2) = asyncio.run(scenario())
    assert s1 == s2 == 200 and r1["id"] == r2["id"]
    assert r1["status"] == r2["status"] == "completed" and emulator.stats.inferences == 1


def test_many_concurrent_creates_and_polls():
    emulator = Emulator(EmulatorConfig(latency=FAST))

    async def scenario() -> set[str]:
        async with emulator.serve() as url, aiohttp.ClientSession(headers=AUTH) as session:

            async def one(i: int) -> str:
                async with session.post(
                    url + "/responses", json=body(f"row {i}"), headers={"Idempotency-Key": f"k{i}"}
                ) as response:
                    created = await response.json()
                async with session.get(f"{url}/responses/{created['id']}") as response:
                    done = await response.json()
                assert text_of(done) == f"Echo: row {i}"
                return str(done["id"])

            return set(await asyncio.gather(*(one(i) for i in range(300))))

    assert len(asyncio.run(scenario())) == 300
    assert emulator.stats.inferences == 300 and emulator.stats.total_requests == 600
    emulator.stats.reset()
    assert emulator.stats.inferences == 0 and not emulator.stats.requests


# -- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("review", "label"),
    [
        ("Battery died after two days, returned it.", "negative"),
        ("Does the job. Nothing special.", "neutral"),
        ("Absolutely love it, works perfectly", "positive"),
        ("Would not recommend. Stopped working after a week.", "negative"),
        ("Not good at all.", "negative"),
        ("Great value, sturdy and easy to set up. Five stars!", "positive"),
        ("It arrived. It is a phone case.", "neutral"),
        ("Never worked out of the box, total waste of money.", "negative"),
        ("No complaints, really happy with it.", "positive"),
    ],
)
def test_sentiment_answers_read_reviews(review, label):
    assert answer_text({"model": MODEL, "input": SENTIMENT.format(review)}) == label


def test_sentiment_with_the_instruction_in_a_system_message(serve):
    server = serve(latency=FAST)
    request = body("I hate it, it broke.")
    request["input"].insert(
        0, {"role": "system", "content": "Classify sentiment: positive, negative or neutral."}
    )
    assert text_of(server.get(server.create(request).body["id"]).body) == "negative"


def test_labelled_choices_and_echo():
    topic = {"model": MODEL, "input": "Label the topic as sports, politics, or tech. Text: {}"}
    answers = {
        answer_text({**topic, "input": topic["input"].format(f"story {i}")}) for i in range(30)
    }
    assert answers == {"sports", "politics", "tech"}
    colour = {"model": MODEL, "input": "Answer with one of: red, green, blue. Text: a leaf"}
    assert answer_text(colour) in {"red", "green", "blue"}
    assert answer_text(colour) == answer_text(dict(colour))
    long = " ".join(f"w{i}" for i in range(30))
    assert answer_text({"model": MODEL, "input": f"  {long}  "}) == "Echo: " + " ".join(
        f"w{i}" for i in range(12)
    )
    multi = {
        "model": MODEL,
        "input": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "second  one"}]},
        ],
    }
    assert answer_text(multi) == "Echo: second one"


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        EmulatorConfig(vocabulary="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EmulatorConfig(background_create_status=201)
    with pytest.raises(ValueError):
        Faults(rate_429=1.5)
    with pytest.raises(ValueError):
        Faults(rate_429=0.6, rate_500=0.6)
    with pytest.raises(ValueError):
        Latency(median=-1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        EmulatorConfig().seed = 3  # type: ignore[misc]


# -- CLI --------------------------------------------------------------------------------------


def test_cli_serves_until_sigint():
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "valar_pandas.emulator",
            "--port",
            "0",
            "--api-key",
            "sk-cli",
            "--vocabulary",
            "queued",
            "--latency-median",
            "0",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert match, line
        assert "sk-cli" in line
        url = match.group(1)
        request = urllib.request.Request(
            url + "/models", headers={"Authorization": "Bearer sk-cli"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert len(json.loads(response.read())["data"]) == 8
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_start_and_stop_serve_across_calls():
    import urllib.request

    emulator = Emulator()
    url = emulator.start()
    try:
        with pytest.raises(RuntimeError, match="already serving"):
            emulator.start()
        request = urllib.request.Request(
            f"{url}/models", headers={"Authorization": f"Bearer {emulator.config.api_key}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    finally:
        emulator.stop()
    emulator.stop()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=2)
