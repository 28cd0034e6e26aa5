"""The Batch API path's pure decisions: wire ids, chunks by count and bytes, keys, the mode."""

from __future__ import annotations

import itertools
import json

import pytest

from valar_pandas import ConfigError
from valar_pandas._core.batchplan import (
    AUTO_MIN_REQUESTS,
    BatchLimits,
    BatchPoll,
    check_label,
    choose_mode,
    chunk_items,
    custom_id,
    first_positions,
    is_custom_id,
    is_unavailable,
    item_status,
    make_item,
    status_map,
)
from valar_pandas._core.options import validate_options
from valar_pandas._core.wire import make_request, response_body

MODEL = "zai-org/GLM-5.1-FP8"


def request(text: str, salt: str | None = None):
    return make_request(response_body(MODEL, text, max_output_tokens=8), salt)


def items(n: int, width: int = 10, salt: str | None = None):
    return [make_item(request(f"row {i} " + "x" * width, salt), i) for i in range(n)]


@pytest.mark.parametrize("position", [0, 7, 123, 999_999, 1_000_000, 10**40])
def test_custom_ids_are_valid_and_position_based(position):
    cid = custom_id(position)
    assert is_custom_id(cid) and cid == f"r{position:06d}"


@pytest.mark.parametrize("text", ["", "R1", "-a", "a" * 65, "a b", "é"])
def test_invalid_custom_ids(text):
    assert not is_custom_id(text)


@pytest.mark.parametrize("label", [None, "a", "my-batch_2026", "A" * 128])
def test_good_labels(label):
    assert check_label(label) == label


@pytest.mark.parametrize("label", ["", "has space", "dots.no", "A" * 129, 3, ["x"], "ünï"])
def test_bad_labels_are_config_errors(label):
    with pytest.raises(ConfigError, match="label"):
        check_label(label)


def test_an_item_is_the_request_without_background_under_its_wire_id():
    req = request("hello")
    item = make_item(req, 42)
    decoded = json.loads(item.line)
    assert decoded["custom_id"] == "r000042" and item.fingerprint == req.fingerprint
    assert "background" not in decoded["params"] and req.body["background"] is True
    assert decoded["params"]["metadata"] == {"completion_window": "standard"}
    assert decoded["params"] == {k: v for k, v in req.body.items() if k != "background"}


def test_chunks_by_count_keep_order_and_stay_within_the_limit():
    chunks, oversize = chunk_items(items(10), "lbl", BatchLimits(max_requests=3))
    assert [len(c.items) for c in chunks] == [3, 3, 3, 1] and oversize == []
    assert [i.custom_id for c in chunks for i in c.items] == [custom_id(i) for i in range(10)]
    assert len({c.key for c in chunks}) == 4


def test_chunks_by_measured_bytes_and_bodies_are_exact_json():
    many = items(50, width=300)
    limit = 3_000
    chunks, oversize = chunk_items(many, "lbl", BatchLimits(max_bytes=limit))
    assert oversize == [] and len(chunks) > 5
    for chunk in chunks:
        assert len(chunk.payload) < limit
        body = json.loads(chunk.payload)
        assert body["endpoint"] == "/v1/responses" and body["label"] == "lbl"
        assert [r["custom_id"] for r in body["requests"]] == [i.custom_id for i in chunk.items]
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert chunk.payload == canonical.encode()
    # greedy: each chunk but the last would have overflowed with the next item
    for chunk, after in itertools.pairwise(chunks):
        assert len(chunk.payload) + 1 + len(after.items[0].line) >= limit
    assert sum(len(c.items) for c in chunks) == 50


def test_an_item_too_large_for_any_batch_is_set_aside():
    small, big = items(1)[0], items(1, width=5_000)[0]
    chunks, oversize = chunk_items([small, big], None, BatchLimits(max_bytes=1_000))
    assert oversize == [big] and [c.items for c in chunks] == [(small,)]
    assert "label" not in json.loads(chunks[0].payload)


def test_batch_keys_replay_the_same_chunk_and_change_with_label_salt_and_attempt():
    first, _ = chunk_items(items(5), "a")
    again, _ = chunk_items(items(5), "a")
    relabelled, _ = chunk_items(items(5), "b")
    salted, _ = chunk_items(items(5, salt="s"), "a")
    assert first[0].key == again[0].key and first[0].key.startswith("vpb1-")
    assert len(first[0].key) <= 255
    assert relabelled[0].key != first[0].key
    assert salted[0].payload == first[0].payload and salted[0].key != first[0].key
    retried = [
        make_item(
            make_request(response_body(MODEL, f"row {i} " + "x" * 10, max_output_tokens=8)), i
        )
        for i in range(5)
    ]
    retried[0] = type(retried[0])(
        retried[0].fingerprint, retried[0].custom_id, "vp1-other-1", retried[0].line
    )
    assert chunk_items(retried, "a")[0][0].key != first[0].key


@pytest.mark.parametrize(
    ("mode", "window", "to_create", "chosen"),
    [
        ("batch", "standard", 1, "batch"),
        ("auto", "standard", AUTO_MIN_REQUESTS, "batch"),
        ("auto", "standard", AUTO_MIN_REQUESTS - 1, "background"),
        ("auto", "asap", 50_000, "background"),
        ("background", "standard", 50_000, "background"),
    ],
)
def test_the_auto_rule(mode, window, to_create, chosen):
    assert choose_mode(mode, window, to_create) == chosen


@pytest.mark.parametrize(
    ("status", "code", "message", "absent"),
    [
        (404, None, "HTTP 404: Route POST /v1/batches not found.", True),
        (405, None, "", True),
        (501, None, "", True),
        (400, None, "HTTP 400: The Batch API is not available yet", True),
        (400, None, "HTTP 400: Batches are not generally available. Coming soon.", True),
        (400, "batches_unavailable", "HTTP 400", True),
        (400, None, "HTTP 400: 'label' must be 1 to 128 letters", False),
        (400, None, "HTTP 400: the asap window is not available for batch requests", False),
        (422, None, "batches unavailable", False),
        (500, None, "", False),
    ],
)
def test_when_the_batch_api_is_absent(status, code, message, absent):
    assert is_unavailable(status, code, message) is absent


def test_status_maps_and_item_statuses():
    body = {"request_status": {"a": {"status": "COMPLETED"}, "b": "RUNNING", "c": {}}}
    assert status_map(body) == {"a": "COMPLETED", "b": "RUNNING", "c": None}
    assert status_map({"id": "x"}) is None and status_map([1]) is None
    words = ["PENDING", "QUEUED", "RUNNING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]
    assert [item_status(w) for w in words] == [
        "queued", "queued", "running", "running", "completed", "failed", "cancelled",
    ]  # fmt: skip
    assert item_status("VALIDATING") == "unknown" and item_status(None) == "unknown"


def test_the_poll_schedule_grows_and_its_cap_rises_with_the_batch():
    poll = BatchPoll()
    gaps = [poll.next_delay(n, 100, 0.5) for n in range(12)]
    assert gaps[0] == 2.0 and gaps == sorted(gaps) and max(gaps) == 30.0
    assert poll.next_delay(50, 100_000, 0.5) == 100.0
    assert poll.next_delay(50, 10_000_000, 0.5) == 120.0


def test_first_positions():
    assert first_positions(["a", object(), "b", "a", "c"]) == {"a": 0, "b": 2, "c": 4}


def test_batch_options():
    opts = validate_options(model=MODEL, mode="batch", label="run-1")
    assert (opts.completion_window, opts.background, opts.label) == ("standard", True, "run-1")
    assert validate_options(model=MODEL, mode="auto").completion_window == "standard"
    with pytest.raises(ConfigError, match="standard window only"):
        validate_options(model=MODEL, mode="batch", completion_window="asap")
    with pytest.raises(ConfigError, match="only with mode='batch' or 'auto'"):
        validate_options(model=MODEL, label="x")
    with pytest.raises(ConfigError, match="not a valid batch label"):
        validate_options(model=MODEL, mode="batch", label="no spaces")
