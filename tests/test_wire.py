"""The Valar contract as pure functions: bodies, keys, statuses, parsing. No I/O."""

import json

import pytest

from valar_pandas._core.wire import (
    error_summary,
    make_request,
    normalise_status,
    output_text,
    parse_response,
    response_body,
)


def test_body_for_background_prompt():
    body = response_body("m", "hello", max_output_tokens=16, temperature=0.0)
    assert body == {
        "model": "m",
        "input": [{"role": "user", "content": "hello"}],
        "max_output_tokens": 16,
        "temperature": 0.0,
        "background": True,
        "metadata": {"completion_window": "standard"},
    }


def test_body_for_realtime_with_instructions_and_messages():
    messages = [{"role": "user", "content": "q"}]
    body = response_body(
        "m", messages, instructions="be brief", completion_window="asap", background=False
    )
    assert "background" not in body
    assert body["input"] == [{"role": "system", "content": "be brief"}, *messages]
    assert body["metadata"] == {"completion_window": "asap"}
    assert messages == [{"role": "user", "content": "q"}]  # caller's list untouched


def test_request_key_is_content_addressed():
    a = make_request(response_body("m", "x"))
    b = make_request(response_body("m", "x"))
    c = make_request(response_body("m2", "x"))
    salted = make_request(response_body("m", "x"), salt="again")
    assert a.idempotency_key == b.idempotency_key
    assert len({a.idempotency_key, c.idempotency_key, salted.idempotency_key}) == 3
    assert len(a.idempotency_key) <= 255
    assert json.loads(a.payload) == a.body


def test_payload_is_canonical_regardless_of_key_order():
    a = make_request({"model": "m", "input": "x"})
    b = make_request({"input": "x", "model": "m"})
    assert a.payload == b.payload and a.fingerprint == b.fingerprint


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("pending", "queued"),
        ("queued", "queued"),
        ("QUEUED", "queued"),
        ("running", "running"),
        ("in_progress", "running"),
        ("RUNNING", "running"),
        ("completed", "completed"),
        ("COMPLETED", "completed"),
        ("failed", "failed"),
        ("FAILED", "failed"),
        ("cancelled", "cancelled"),
        ("canceled", "cancelled"),
        ("CANCELLED", "cancelled"),
        ("incomplete", "incomplete"),
        ("expired", "failed"),
        (" Completed ", "completed"),
        ("paused", "unknown"),
        (None, "unknown"),
        (3, "unknown"),
    ],
)
def test_normalise_status(raw, expected):
    assert normalise_status(raw) == expected


def _message(*texts, kind="output_text"):
    return {"type": "message", "content": [{"type": kind, "text": t} for t in texts]}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"output": [_message("a", "b"), _message("c")]}, "abc"),
        (
            {
                "output": [
                    {"type": "reasoning", "content": [{"type": "output_text", "text": "no"}]},
                    _message("yes"),
                ]
            },
            "yes",
        ),
        ({"output": [_message("x", kind="refusal")]}, None),
        ({"output": "plain"}, "plain"),
        ({"output": [], "output_text": "fallback"}, "fallback"),
        ({"output": None}, None),
        ({"output": [_message("")]}, ""),
        (
            {"output": [{"content": [{"type": "output_text", "text": "untyped item"}]}]},
            "untyped item",
        ),
    ],
    ids=["joined", "skips-reasoning", "refusal", "string", "fallback", "none", "empty", "untyped"],
)
def test_output_text(obj, expected):
    assert output_text(obj) == expected


def test_parse_pending_response():
    parsed = parse_response({"id": "resp_1", "status": "pending", "output": []})
    assert (parsed.status, parsed.response_id, parsed.outcome) == ("queued", "resp_1", None)


def test_parse_completed_response_with_usage():
    obj = {
        "id": "r",
        "status": "completed",
        "output": [_message("positive")],
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.ok
    assert (outcome.text, outcome.input_tokens, outcome.output_tokens) == ("positive", 12, 1)


def test_parse_usage_aliases():
    obj = {
        "id": "r",
        "status": "completed",
        "output": "x",
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    outcome = parse_response(obj).outcome
    assert outcome is not None and (outcome.input_tokens, outcome.output_tokens) == (5, 2)


@pytest.mark.parametrize(
    ("obj", "status", "error"),
    [
        (
            {"id": "r", "status": "failed", "error": {"code": "server_error", "message": "boom"}},
            "failed",
            "failed: boom (server_error)",
        ),
        ({"id": "r", "status": "failed", "error": None}, "failed", "failed: no reason given"),
        ({"id": "r", "status": "cancelled"}, "cancelled", "cancelled: no reason given"),
        (
            {
                "id": "r",
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "output": [_message("part")],
            },
            "incomplete",
            "incomplete: max_output_tokens: the answer was cut at the output cap; "
            "raise max_output_tokens",
        ),
        (
            {"id": "r", "status": "completed", "output": []},
            "failed",
            "completed without any output text",
        ),
    ],
    ids=["failed", "failed-no-reason", "cancelled", "incomplete", "completed-empty"],
)
def test_parse_terminal_failures(obj, status, error):
    outcome = parse_response(obj).outcome
    assert outcome is not None and not outcome.ok
    assert (outcome.status, outcome.error) == (status, error)


def test_incomplete_keeps_partial_text():
    obj = {"id": "r", "status": "incomplete", "output": [_message("part")]}
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.text == "part"


@pytest.mark.parametrize("obj", [[1, 2], "x", None, {"status": "weird"}])
def test_parse_garbage_is_unknown(obj):
    parsed = parse_response(obj)
    assert parsed.status == "unknown" and parsed.outcome is None


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            400,
            b'{"error":{"message":"bad","type":"invalid_request_error"}}',
            "invalid_request_error",
            "HTTP 400 invalid_request_error: bad (invalid_request_error)",
        ),
        (
            400,
            b'{"error":{"message":"key reused","type":"idempotency_error",'
            b'"code":"idempotency_error"}}',
            "idempotency_error",
            "HTTP 400 idempotency_error: key reused (idempotency_error)",
        ),
        (502, b"<html>Bad Gateway</html>", None, "HTTP 502: <html>Bad Gateway</html>"),
        (503, b"", None, "HTTP 503"),
        (429, b'{"error":"slow down"}', None, "HTTP 429: slow down"),
    ],
    ids=["envelope", "idempotency", "html", "empty", "string-error"],
)
def test_error_summary(status, body, code, message):
    assert error_summary(status, body) == (code, message)


def test_error_summary_is_short():
    _, message = error_summary(500, b"x" * 5000)
    assert len(message) <= 300


@pytest.mark.parametrize(
    ("usage", "tokens", "bad"),
    [
        ({"input_tokens": 12, "output_tokens": 0}, (12, 0), None),
        ({"input_tokens": 10**9, "output_tokens": None}, (10**9, None), None),
        ({"output_tokens": None, "completion_tokens": 3}, (None, 3), None),
        (None, (None, None), None),
        ("not a mapping", (None, None), None),
        ({"output_tokens": 10**30}, None, "usage.output_tokens = 1000000000000000000000000000000"),
        ({"output_tokens": 10**9 + 1}, None, "usage.output_tokens = 1000000001"),
        ({"input_tokens": -1}, None, "usage.input_tokens = -1"),
        ({"output_tokens": 2.5}, None, "usage.output_tokens = 2.5"),
        ({"output_tokens": float("inf")}, None, "usage.output_tokens = inf"),
        ({"output_tokens": "12"}, None, "usage.output_tokens = '12'"),
        ({"output_tokens": True}, None, "usage.output_tokens = True"),
        ({"prompt_tokens": [1]}, None, "usage.prompt_tokens = [1]"),
        ({"input_tokens_details": {"cached_tokens": -5}}, None, "cached_tokens = -5"),
    ],
)
def test_usage_is_validated(usage, tokens, bad):
    obj = {"id": "resp_1", "status": "completed", "output": "hi", "usage": usage}
    outcome = parse_response(obj).outcome
    assert outcome is not None
    if bad is None:
        assert outcome.ok and (outcome.input_tokens, outcome.output_tokens) == tokens
    else:
        # Not a server verdict: the store keeps the id, and a re-run asks again for free.
        assert outcome.status == "error" and outcome.response_id == "resp_1"
        assert "impossible token count" in outcome.error and bad in outcome.error
        assert outcome.input_tokens is None and outcome.output_tokens is None


def test_an_integer_too_long_to_print_is_still_a_row_error():
    obj = {"id": "r", "status": "completed", "output": "x", "usage": {"output_tokens": 10**5000}}
    outcome = parse_response(obj).outcome
    assert outcome is not None and "too long to print" in outcome.error
