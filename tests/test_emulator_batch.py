"""The emulator's Batch API over loopback: validation, lifecycle, results, replays, paging."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from valar_pandas.emulator import Emulator, EmulatorConfig, Faults, Latency
from valar_pandas.emulator._cli import _config, _parser

MODEL = "zai-org/GLM-5.1-FP8"
AUTH = {"Authorization": "Bearer sk-emulator"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Reply:
    status: int
    body: Any


class Server:
    def __init__(self, emulator: Emulator, url: str) -> None:
        self.emulator, self.url = emulator, url

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        headers = {**AUTH, "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Reply(response.status, json.loads(response.read()))
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, json.loads(error.read()))

    def create(self, batch: dict[str, Any], key: str | None = None) -> Reply:
        return self.call("POST", "/batches", batch, key)


@pytest.fixture
def serve() -> Iterator[Any]:
    contexts: list[Any] = []

    def start(**config: Any) -> Server:
        config.setdefault("latency", Latency.fast())
        # The Batch API is off by default, as the vendor calls it "coming soon": on here.
        emulator = Emulator(EmulatorConfig(**{"batch_api": True, **config}))
        context = emulator.run_in_thread(host="127.0.0.1", port=0)
        url = context.__enter__()
        contexts.append(context)
        return Server(emulator, url)

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)


def params(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "input": [{"role": "user", "content": text}],
        "metadata": {"completion_window": "standard"},
        **extra,
    }


def batch(n: int = 3, label: str | None = "my-batch", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "endpoint": "/v1/responses",
        "requests": [{"custom_id": f"req-{i}", "params": params(f"text {i}")} for i in range(n)],
        **extra,
    }
    if label is not None:
        body["label"] = label
    return body


def test_create_answers_the_summary_and_bills_one_inference_per_item(serve):
    server = serve()
    reply = server.create(batch(3), key="k1")
    assert reply.status == 200
    assert set(reply.body) == {"id", "request_counts", "created_at", "label"}
    assert reply.body["id"].startswith("batch_") and reply.body["request_counts"] == 3
    assert reply.body["label"] == "my-batch"
    assert "label" not in server.create(batch(1, label=None)).body
    stats = server.emulator.stats
    assert (stats.batch_creates, stats.inferences, stats.requests["POST /v1/batches"]) == (2, 4, 2)


@pytest.mark.parametrize(("vocabulary", "initial"), [("pending", "PENDING"), ("queued", "QUEUED")])
def test_the_status_map_moves_with_the_clock_in_upper_case(serve, vocabulary, initial):
    server = serve(vocabulary=vocabulary, latency=Latency(median=10.0, sigma=0.0))
    clock = Clock()
    server.emulator.clock = clock
    created = server.create(batch(2)).body
    path = f"/batches/{created['id']}"
    statuses = lambda: {  # noqa: E731
        cid: entry["status"]
        for cid, entry in server.call("GET", path).body["request_status"].items()
    }
    assert statuses() == {"req-0": initial, "req-1": initial}
    clock.now += 5
    assert statuses() == {"req-0": "RUNNING", "req-1": "RUNNING"}
    clock.now += 10
    assert statuses() == {"req-0": "COMPLETED", "req-1": "COMPLETED"}
    shown = server.call("GET", path).body
    assert {k: shown[k] for k in ("id", "request_counts", "label")} == {
        "id": created["id"],
        "request_counts": 2,
        "label": "my-batch",
    }
    result = server.call("GET", f"{path}/req-1").body
    assert result["object"] == "response" and result["status"] == "completed"
    assert result["output"][0]["content"][0]["text"] == "Echo: text 1"


def test_failed_items_on_demand_and_cancelled_items(serve):
    server = serve(faults=Faults(failed=1.0), latency=Latency(median=0.0, sigma=0.0))
    created = server.create(batch(2)).body
    body = server.call("GET", f"/batches/{created['id']}").body
    assert {e["status"] for e in body["request_status"].values()} == {"FAILED"}
    failed = server.call("GET", f"/batches/{created['id']}/req-0").body
    assert failed["status"] == "failed" and failed["error"]["message"]
    slow = serve(latency=Latency(median=60.0, sigma=0.0), cancel_supported=True)
    created = slow.create(batch(1)).body
    record = slow.emulator.store.batches[created["id"]].items["req-0"]
    assert slow.call("POST", f"/responses/{record.id}/cancel").status == 200
    body = slow.call("GET", f"/batches/{created['id']}").body
    assert body["request_status"] == {"req-0": {"status": "CANCELLED"}}


def test_unknown_batches_and_items_are_404(serve):
    server = serve()
    created = server.create(batch(1)).body
    assert server.call("GET", "/batches/batch_nope").status == 404
    missing = server.call("GET", f"/batches/{created['id']}/req-9")
    assert missing.status == 404 and missing.body["error"]["code"] == "not_found"


def test_a_replayed_create_returns_the_same_batch_and_bills_nothing(serve):
    server = serve()
    first = server.create(batch(3), key="same")
    again = server.create(batch(3), key="same")
    assert first.body == again.body
    assert server.emulator.stats.batch_creates == 1 and server.emulator.stats.inferences == 3
    other = server.create(batch(4), key="same")
    assert other.status == 400 and other.body["error"]["type"] == "idempotency_error"


def test_a_dropped_batch_create_replays_on_retry(serve):
    server = serve(faults=Faults(drop_after_create=1.0))
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        server.create(batch(2), key="drop")
    replay = server.create(batch(2), key="drop")
    assert replay.status == 200 and server.emulator.stats.batch_creates == 1
    assert server.emulator.stats.inferences == 2


def _item(cid: Any = "ok", **extra: Any) -> dict[str, Any]:
    return {"custom_id": cid, "params": params(**extra)}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"endpoint": "/v1/chat/completions"}, "endpoint"),
        ({"requests": []}, "requests"),
        ({"requests": "nope"}, "requests"),
        ({"label": "has space"}, "label"),
        ({"label": "x" * 129}, "label"),
        ({"requests": [_item("Upper")]}, "requests[0].custom_id"),
        ({"requests": [_item("-lead")]}, "requests[0].custom_id"),
        ({"requests": [_item("a" * 65)]}, "requests[0].custom_id"),
        ({"requests": [_item(7)]}, "requests[0].custom_id"),
        ({"requests": [_item("a"), _item("a")]}, "requests[1].custom_id"),
        ({"requests": [_item(model="nope/nope")]}, "requests[0].params.model"),
        ({"requests": [{"custom_id": "a", "params": "x"}]}, "requests[0].params"),
        (
            {"requests": [_item(metadata={"completion_window": "asap"})]},
            "requests[0].params.metadata.completion_window",
        ),
    ],
)
def test_invalid_batches_are_400_and_bill_nothing(serve, change, param):
    server = serve()
    reply = server.create({**batch(1), **change}, key="k")
    assert reply.status == 400, reply.body
    assert reply.body["error"]["type"] == "invalid_request_error"
    assert reply.body["error"]["param"] == param
    assert server.emulator.stats.inferences == 0 and server.emulator.stats.batch_creates == 0
    assert server.create(batch(1), key="k").status == 200  # the key was left unreserved


def test_count_and_size_limits(serve):
    server = serve(batch_max_requests=2, batch_max_bytes=2_000)
    assert server.create(batch(2)).status == 200
    too_many = server.create(batch(3))
    assert too_many.status == 400 and too_many.body["error"]["param"] == "requests"
    big = batch(1, label=None)
    big["requests"][0]["params"]["input"][0]["content"] = "x" * 2_000
    too_big = server.create(big)
    assert too_big.status == 400 and too_big.body["error"]["code"] == "batch_too_large"


def test_listing_is_a_bare_array_newest_first_paged_by_after_id(serve):
    server = serve()
    ids = [server.create(batch(1, label=f"b{i}")).body["id"] for i in range(5)]
    newest = list(reversed(ids))
    everything = server.call("GET", "/batches").body
    assert isinstance(everything, list) and [b["id"] for b in everything] == newest
    assert set(everything[0]) == {"id", "request_counts", "created_at", "label"}
    first = server.call("GET", "/batches?limit=2").body
    second = server.call("GET", f"/batches?limit=2&after_id={first[-1]['id']}").body
    third = server.call("GET", f"/batches?limit=2&after_id={second[-1]['id']}").body
    assert [b["id"] for b in first + second + third] == newest and len(third) == 1
    before = server.call("GET", f"/batches?limit=2&before_id={newest[3]}").body
    assert [b["id"] for b in before] == newest[1:3]
    for query in ("limit=0", "limit=201", "limit=x", "after_id=batch_nope"):
        assert server.call("GET", f"/batches?{query}").status == 400
    other = serve()
    assert other.call("GET", "/batches").body == []


def test_the_batch_api_can_be_switched_off(serve):
    server = serve(batch_api=False)
    assert server.create(batch(1)).status == 404
    for path in ("/batches", "/batches/batch_x", "/batches/batch_x/req-0"):
        reply = server.call("GET", path)
        assert reply.status == 404 and reply.body["error"]["code"] == "not_found"
    assert server.emulator.stats.requests["POST /v1/batches"] == 1
    assert server.emulator.stats.inferences == 0


def test_batch_config_and_cli_flag():
    with pytest.raises(ValueError, match="batch_max_requests"):
        EmulatorConfig(batch_max_requests=0)
    parse = lambda *argv: _config(_parser("x").parse_args(list(argv)))  # noqa: E731
    assert EmulatorConfig().batch_api is False and EmulatorConfig().cancel_supported is False
    assert parse().batch_api is False and parse().cancel_supported is False
    assert parse("--batch-api").batch_api is True and parse("--cancel").cancel_supported is True
    assert parse("--batch-api", "--no-batch-api").batch_api is False
    assert parse("--cancel", "--no-cancel").cancel_supported is False
    shaped = parse(
        "--batch-api", "--batch-refusal", "not_enabled", "--batch-failure-detail", "none",
        "--batch-drop-items", "3", "--unknown-model-status", "404",
    )  # fmt: skip
    assert (
        shaped.batch_refusal, shaped.batch_failure_detail, shaped.batch_drop_items,
        shaped.unknown_model_status,
    ) == ("not_enabled", "none", 3, 404)  # fmt: skip
    assert EmulatorConfig().batch_max_bytes == 256_000_000
    for bad in (
        {"batch_refusal": "nope"}, {"batch_failure_detail": "x"}, {"batch_drop_items": -1},
        {"unknown_model_status": 418},
    ):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            EmulatorConfig(**bad)


@pytest.mark.parametrize(
    ("refusal", "status", "words"),
    [
        ("not_enabled", 403, "not enabled for your organisation"),
        ("coming_soon", 400, "Coming soon"),
        ("unavailable", 400, "not available for this account"),
    ],
)
def test_a_refusing_batch_api_answers_every_batch_route_alike(serve, refusal, status, words):
    server = serve(batch_refusal=refusal)
    for method, path, body in (
        ("POST", "/batches", batch(1)), ("GET", "/batches", None),
        ("GET", "/batches/batch_x", None), ("GET", "/batches/batch_x/req-0", None),
    ):  # fmt: skip
        reply = server.call(method, path, body)
        assert reply.status == status and words in reply.body["error"]["message"]
    assert server.call("POST", "/responses", batch(1)["requests"][0]["params"]).status == 200
    assert server.emulator.stats.inferences == 1 and server.emulator.stats.batch_creates == 0


@pytest.mark.parametrize(("refusal", "status"), [("overloaded", 503), ("server_error", 500)])
def test_an_overloaded_batch_api_fails_every_create_only(serve, refusal, status):
    server = serve(batch_refusal=refusal, faults=Faults(retry_after=0.5))
    reply = server.create(batch(1), key="k")
    assert reply.status == status and server.emulator.stats.batch_creates == 0
    assert server.call("GET", "/batches").body == []
    assert server.emulator.stats.faults[refusal] == 1


@pytest.mark.parametrize("detail", ["status", "result", "none"])
def test_where_a_failed_items_reason_shows(serve, detail):
    server = serve(
        faults=Faults(failed=1.0), latency=Latency(median=0.0, sigma=0.0),
        batch_failure_detail=detail,
    )  # fmt: skip
    created = server.create(batch(1)).body
    entry = server.call("GET", f"/batches/{created['id']}").body["request_status"]["req-0"]
    result = server.call("GET", f"/batches/{created['id']}/req-0")
    reason = server.emulator.store.batches[created["id"]].items["req-0"].text
    assert entry["status"] == "FAILED"
    assert entry.get("error") == ({"code": "server_error", "message": reason}
                                  if detail == "status" else None)  # fmt: skip
    if detail == "none":
        assert result.status == 404
    else:
        assert result.status == 200 and result.body["error"]["message"] == reason


def test_a_batch_can_drop_its_last_items(serve):
    server = serve(batch_drop_items=2)
    created = server.create(batch(5)).body
    assert created["request_counts"] == 3
    shown = server.call("GET", f"/batches/{created['id']}").body
    assert sorted(shown["request_status"]) == ["req-0", "req-1", "req-2"]
    assert server.call("GET", f"/batches/{created['id']}/req-4").status == 404
    assert server.emulator.stats.inferences == 3


def test_an_unknown_model_can_be_answered_404_as_openai_does(serve):
    server = serve(unknown_model_status=404)
    item = batch(1)
    item["requests"][0]["params"]["model"] = "no/such-model"
    for reply in (
        server.create(item),
        server.call("POST", "/responses", item["requests"][0]["params"]),
    ):
        assert reply.status == 404 and reply.body["error"]["code"] == "model_not_found"
    assert serve().create(item).status == 400  # the default: 400 model_not_found
