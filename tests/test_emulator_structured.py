"""The emulator's structured answers: valid JSON for the schema sent, spoiled on request."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from valar_pandas._scoring import (
    ScoreSpec,
    instructions_hint,
    make_spec,
    parse,
    text_format,
    validate,
)
from valar_pandas.emulator import Emulator, EmulatorConfig, Faults, Latency, answer_text
from valar_pandas.emulator._cli import _config, _parser
from valar_pandas.emulator._cli import main as emulator_main
from valar_pandas.emulator._validate import validate_create

MODEL = "zai-org/GLM-5.1-FP8"
SENTIMENT = ["positive", "negative", "neutral"]
REVIEWS = {
    "Absolutely love it, works perfectly": "positive",
    "Battery died after two days, returned it.": "negative",
    "Does the job. Nothing special.": "neutral",
}
RICH: dict[str, Any] = {
    "type": "object",
    "title": "Facts",
    "properties": {
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "topics": {
            "type": "array",
            "items": {"type": "string", "enum": ["price", "quality", "shipping"]},
            "minItems": 2,
            "maxItems": 3,
        },
        "would_buy": {"type": "boolean"},
        "summary": {"type": "string", "minLength": 3, "maxLength": 20},
        "price": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "meta": {
            "type": "object",
            "properties": {
                "lang": {"const": "en"},
                "count": {"anyOf": [{"type": "null"}, {"type": "integer", "maximum": 3}]},
                "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            },
            "required": ["lang", "count", "ratio"],
            "additionalProperties": False,
        },
        "tone": {"$ref": "#/$defs/Tone"},
        "both": {"allOf": [{"type": "integer"}, {"minimum": 10}]},
        "pair": {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]},
    },
    "required": ["stars", "topics", "would_buy"],
    "additionalProperties": False,
    "$defs": {"Tone": {"type": "string", "enum": ["calm", "angry"]}},
}
SPECS: dict[str, ScoreSpec] = {
    "labels": make_spec(labels=SENTIMENT),
    "labels+reasons": make_spec(labels=["Negative", "Positive"], reasons=True),
    "other labels": make_spec(labels=["spam", "ham", "unsure"]),
    "stars": make_spec(scale=(1, 5)),
    "stars+reasons": make_spec(scale=(1, 5), reasons=True),
    "unit": make_spec(scale=(0.0, 1.0)),
    "wide": make_spec(scale=(-10, 10)),
    "rich": make_spec(schema=RICH),
    "rich+reasons": make_spec(schema=RICH, reasons=True),
}


def request(spec: ScoreSpec, review: str, *, hint_in_user: bool = False) -> dict[str, Any]:
    """A body as the scoring integration builds it: the hint in the instructions or the prompt."""
    prompt = f"Judge this product review.\n\nReview: {review}"
    messages = [{"role": "user", "content": prompt}]
    if hint_in_user:
        messages[0]["content"] = f"{prompt}\n\n{instructions_hint(spec)}"
    else:
        messages.insert(0, {"role": "system", "content": instructions_hint(spec)})
    return {"model": MODEL, "input": messages, "text": text_format(spec)}


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("review", list(REVIEWS))
def test_answers_satisfy_the_schema_sent(name: str, review: str) -> None:
    spec = SPECS[name]
    body = request(spec, review)
    text = answer_text(body)
    assert validate(json.loads(text), text_format(spec)["format"]["schema"]) == []
    parsed = parse(spec, text)
    assert parsed.error is None
    assert answer_text(json.loads(json.dumps(body))) == text  # deterministic


@pytest.mark.parametrize(("review", "sentiment"), list(REVIEWS.items()))
@pytest.mark.parametrize("hint_in_user", [False, True])
def test_sentiment_answers_mean_something(review: str, sentiment: str, hint_in_user: bool) -> None:
    labels = parse(
        SPECS["labels"], answer_text(request(SPECS["labels"], review, hint_in_user=hint_in_user))
    )
    assert labels.values == {"": sentiment}
    cased = parse(SPECS["labels+reasons"], answer_text(request(SPECS["labels+reasons"], review)))
    assert cased.values[""] in ("Negative", "Positive")
    if sentiment != "neutral":
        assert cased.values[""] == sentiment.capitalize()
    assert isinstance(cased.values["reason"], str) and cased.values["reason"]
    stars = parse(
        SPECS["stars"], answer_text(request(SPECS["stars"], review, hint_in_user=hint_in_user))
    )
    assert stars.values == {"": {"positive": 5, "neutral": 3, "negative": 1}[sentiment]}
    unit = parse(SPECS["unit"], answer_text(request(SPECS["unit"], review)))
    assert unit.values[""] == pytest.approx(
        {"positive": 0.9, "neutral": 0.5, "negative": 0.1}[sentiment]
    )
    rich = json.loads(answer_text(request(SPECS["rich"], review)))
    assert rich["stars"] == stars.values[""]
    assert rich["summary"] == review[:20]  # the first words, cut to maxLength


def test_plain_requests_are_answered_as_before() -> None:
    prompt = (
        "Classify the sentiment of this product review as positive, negative, or neutral. "
        "Reply with one word.\n\nReview: Absolutely love it."
    )
    plain = {"model": MODEL, "input": prompt}
    assert answer_text(plain) == "positive"
    assert answer_text({**plain, "text": {"format": {"type": "text"}}}) == "positive"


def _bodies(spec: ScoreSpec, n: int) -> list[dict[str, Any]]:
    return [request(spec, f"Review number {i}: it works well enough.") for i in range(n)]


def _emulator(rate: float, seed: int = 0) -> Emulator:
    return Emulator(EmulatorConfig(faults=Faults(invalid_structured=rate), seed=seed))


def _kind(spec: ScoreSpec, text: str) -> str:
    """Which of the three ways an answer is invalid."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return "json"
    errors = validate(decoded, text_format(spec)["format"]["schema"])
    assert len(errors) == 1, errors
    return "enum" if "is not one of" in errors[0] else "range"


def test_invalid_fraction_is_deterministic_and_predicted() -> None:
    spec = SPECS["rich"]
    bodies = _bodies(spec, 300)
    emulator = _emulator(0.3)
    outcomes = [emulator.expected_outcome(b) for b in bodies]
    assert all(status == "completed" for status, _ in outcomes)
    invalid = [text for _, text in outcomes if parse(spec, text).error is not None]
    assert 0.2 < len(invalid) / len(bodies) < 0.4
    assert {_kind(spec, text) for text in invalid} == {"json", "enum", "range"}
    assert [_emulator(0.3).expected_outcome(b) for b in bodies] == outcomes  # same seed
    reseeded = [_emulator(0.3, seed=1).expected_outcome(b) for b in bodies]
    assert reseeded != outcomes
    for body, (_, text) in zip(bodies, outcomes, strict=True):
        if parse(spec, text).error is None:
            assert text == answer_text(body)  # a valid answer is the plain structured one


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("labels", {"json", "enum"}),
        ("stars", {"json", "range"}),
        ("rich", {"json", "enum", "range"}),
    ],
)
def test_every_answer_invalid_at_rate_one(name: str, kinds: set[str]) -> None:
    spec = SPECS[name]
    emulator = _emulator(1.0)
    texts = [emulator.expected_outcome(b)[1] for b in _bodies(spec, 60)]
    assert all(parse(spec, text).error is not None for text in texts)
    assert {_kind(spec, text) for text in texts} == kinds


def test_no_invalid_answers_by_default_nor_for_plain_requests() -> None:
    spec = SPECS["rich"]
    assert all(
        parse(spec, _emulator(0.0).expected_outcome(b)[1]).error is None for b in _bodies(spec, 50)
    )
    plain = {"model": MODEL, "input": "hello there"}
    assert _emulator(1.0).expected_outcome(plain) == ("completed", "Echo: hello there")


def test_failed_wins_over_invalid() -> None:
    emulator = Emulator(EmulatorConfig(faults=Faults(failed=1.0, invalid_structured=1.0)))
    assert emulator.expected_outcome(_bodies(SPECS["labels"], 1)[0])[0] == "failed"


def test_invalid_structured_is_a_probability() -> None:
    with pytest.raises(ValueError, match="invalid_structured"):
        Faults(invalid_structured=1.5)


# -- over the wire ------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[Emulator, str]]:
    config = EmulatorConfig(latency=Latency(median=0.0, sigma=0.0))
    emulator = Emulator(config)
    with emulator.run_in_thread() as url:
        yield emulator, url


def _post(url: str, payload: Any, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": "Bearer sk-emulator", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    sent = urllib.request.Request(
        url + "/responses", data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_served_answers_match_expected_outcome(server: tuple[Emulator, str]) -> None:
    emulator, url = server
    emulator.config = dataclasses.replace(emulator.config, faults=Faults(invalid_structured=0.5))
    for body in _bodies(SPECS["stars"], 6):
        status, response = _post(url, body)  # realtime: the finished response
        assert status == 200 and response["status"] == "completed"
        text = response["output"][0]["content"][0]["text"]
        assert ("completed", text) == emulator.expected_outcome(body)


GOOD_SCHEMA = {"type": "object", "properties": {}}
SCHEMA = "text.format.schema"


def _json_schema(**extra: Any) -> dict[str, Any]:
    return {"format": {"type": "json_schema", **extra}}


@pytest.mark.parametrize(
    ("text", "param", "message"),
    [
        ("json", "text", "'text' must be an object"),
        ({"format": "json_schema"}, "text.format.type", "must be one of: text, json_schema"),
        ({"format": {"type": "json_object"}}, "text.format.type", "must be one of"),
        ({"format": {}}, "text.format.type", "must be one of"),
        (_json_schema(), SCHEMA, "is required"),
        (_json_schema(schema="{}"), SCHEMA, "JSON schema object"),
        (_json_schema(schema=GOOD_SCHEMA, name=3), "text.format.name", "string"),
        (_json_schema(schema=GOOD_SCHEMA, strict="yes"), "text.format.strict", "boolean"),
    ],
)  # fmt: skip
def test_bad_text_format_is_refused(text: Any, param: str, message: str) -> None:
    error = validate_create({"model": MODEL, "input": "hi", "text": text}, (MODEL,))
    assert error is not None
    assert (error.status, error.type, error.param) == (400, "invalid_request_error", param)
    assert message in error.message


@pytest.mark.parametrize(
    "text",
    [
        None,
        {},
        {"format": None},
        {"format": {"type": "text"}},
        {"format": {"type": "json_schema", "schema": GOOD_SCHEMA}},
        {"format": {"type": "json_schema", "name": "x", "schema": GOOD_SCHEMA, "strict": True}},
        {"format": {"type": "text"}, "verbosity": "low"},
    ],
)
def test_good_text_format_is_accepted(text: Any) -> None:
    assert validate_create({"model": MODEL, "input": "hi", "text": text}, (MODEL,)) is None


def test_bad_text_format_is_400_over_the_wire(server: tuple[Emulator, str]) -> None:
    emulator, url = server
    status, reply = _post(
        url, {"model": MODEL, "input": "hi", "text": {"format": {"type": "json_schema"}}}
    )
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error"
    assert reply["error"]["param"] == "text.format.schema"
    assert emulator.stats.inferences == 0


def test_cli_flag() -> None:
    args = _parser("emulator").parse_args(["--invalid-structured", "0.25"])
    assert _config(args).faults.invalid_structured == 0.25
    assert _config(_parser("emulator").parse_args([])).faults.invalid_structured == 0.0
    assert emulator_main(["--invalid-structured", "2"]) == 2  # refused before serving


def test_invalid_answers_are_drawn_per_attempt_so_a_re_ask_can_succeed(
    server: tuple[Emulator, str],
) -> None:
    emulator, url = server
    emulator.config = dataclasses.replace(emulator.config, faults=Faults(invalid_structured=0.5))
    spec = SPECS["stars"]
    recovered = 0
    for body in _bodies(spec, 12):
        texts = {}
        for key in ("attempt-a", "attempt-b", "attempt-a"):  # the last is a replay
            status, response = _post(url, body, key=f"{key}-{body['input']}"[:255])
            assert status == 200
            text = response["output"][0]["content"][0]["text"]
            assert ("completed", text) == emulator.expected_outcome(body, f"{key}-{body['input']}")
            assert texts.setdefault(key, text) == text  # a replay repeats its answer
        bad = [parse(spec, texts[k]).error is not None for k in ("attempt-a", "attempt-b")]
        recovered += bad[0] and not bad[1]
    assert recovered > 0  # some first attempts were unreadable and their re-asks were not
    assert emulator.stats.inferences == 24  # two attempts per body; replays bill nothing


def test_batch_items_draw_per_batch_key_and_custom_id(server: tuple[Emulator, str]) -> None:
    emulator, url = server
    emulator.config = dataclasses.replace(
        emulator.config, faults=Faults(invalid_structured=0.5), batch_api=True
    )
    bodies = _bodies(SPECS["stars"], 12)
    items = [{"custom_id": f"r{i:03d}", "params": b} for i, b in enumerate(bodies)]
    payload = {"endpoint": "/v1/responses", "requests": items}
    texts: dict[str, list[str]] = {}
    for key in ("batch-a", "batch-b"):
        request = urllib.request.Request(
            url + "/batches",
            data=json.dumps(payload).encode(),
            headers={"Authorization": "Bearer sk-emulator", "Idempotency-Key": key},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            batch = emulator.store.batches[json.loads(reply.read())["id"]]
        texts[key] = [batch.items[item["custom_id"]].text for item in items]
        assert texts[key] == [
            emulator.expected_outcome(item["params"], f"{key}/{item['custom_id']}")[1]
            for item in items
        ]
    assert texts["batch-a"] != texts["batch-b"]  # a new batch key draws its items again
