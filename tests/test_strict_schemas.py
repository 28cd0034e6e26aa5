"""Strict structured outputs: users' schemas rewritten for strict mode and answers read back,
and the emulator's strict-schema, disobey and image modes, end to end."""

from __future__ import annotations

import base64
import json
import struct
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Callable
from typing import Any, Literal

import pandas as pd
import pytest
from pydantic import BaseModel

from valar_pandas import ValarClient
from valar_pandas._cli.main import main
from valar_pandas._cli.reviews import make_reviews
from valar_pandas._scoring import make_spec, parse, text_format, validate
from valar_pandas._scoring.strict import restore, strict_form
from valar_pandas.emulator import Emulator, EmulatorConfig, Faults
from valar_pandas.emulator._batches import validate_batch
from valar_pandas.emulator._cli import _config, _parser
from valar_pandas.emulator._validate import validate_create

Serve = Callable[..., tuple[Emulator, ValarClient]]

NULL = {"type": "null"}


def obj(
    properties: dict[str, Any], required: list[str] | None = None, **rest: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, **rest}
    if required is not None:
        out["required"] = required
    return out


def closed(properties: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        **rest,
        "required": list(properties),
        "additionalProperties": False,
    }


# -- the rewrite, as a table ----------------------------------------------------------------------

STRING, INTEGER = {"type": "string"}, {"type": "integer"}

REWRITES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "already strict: unchanged",
        closed({"a": STRING, "b": {"type": ["integer", "null"]}}),
        closed({"a": STRING, "b": {"type": ["integer", "null"]}}),
    ),
    (
        "optional property: a union with null",
        obj({"a": STRING, "b": INTEGER}, ["a"]),
        closed({"a": STRING, "b": {"anyOf": [INTEGER, NULL]}}),
    ),
    (
        "optional that admits null already: left as it is",
        obj({"a": {"type": ["string", "null"]}, "b": {"anyOf": [INTEGER, NULL]}}),
        closed({"a": {"type": ["string", "null"]}, "b": {"anyOf": [INTEGER, NULL]}}),
    ),
    (
        "an enum of strings is not nullable through its type list alone",
        obj({"t": {"type": ["string", "null"], "enum": ["x", "y"]}}),
        closed({"t": {"anyOf": [{"type": ["string", "null"], "enum": ["x", "y"]}, NULL]}}),
    ),
    (
        "nested objects and arrays of objects are closed too",
        obj({"m": obj({"k": STRING}), "l": {"type": "array", "items": obj({"v": INTEGER})}}, ["m"]),
        closed(
            {
                "m": closed({"k": {"anyOf": [STRING, NULL]}}),
                "l": {
                    "anyOf": [
                        {"type": "array", "items": closed({"v": {"anyOf": [INTEGER, NULL]}})},
                        NULL,
                    ]
                },
            }
        ),
    ),
    (
        "defaults dropped, oneOf as anyOf, one-branch allOf inlined, $ref siblings moved",
        obj(
            {
                "d": {"type": "integer", "default": 3},
                "o": {"oneOf": [STRING, INTEGER]},
                "a": {"allOf": [{"$ref": "#/$defs/T"}], "description": "tone"},
                "r": {"$ref": "#/$defs/T", "description": "again"},
            },
            ["d", "o", "a", "r"],
            **{"$defs": {"T": {"type": "string", "enum": ["calm", "angry"]}}},
        ),
        closed(
            {
                "d": INTEGER,
                "o": {"anyOf": [STRING, INTEGER]},
                "a": {"anyOf": [{"$ref": "#/$defs/T"}], "description": "tone"},
                "r": {"anyOf": [{"$ref": "#/$defs/T"}], "description": "again"},
            },
            **{"$defs": {"T": {"type": "string", "enum": ["calm", "angry"]}}},
        ),
    ),
    (
        "$defs objects are closed, and anyOf branches",
        obj(
            {"u": {"anyOf": [{"$ref": "#/$defs/P"}, obj({"z": STRING}, ["z"])]}},
            ["u"],
            **{"$defs": {"P": obj({"x": INTEGER})}},
        ),
        closed(
            {"u": {"anyOf": [{"$ref": "#/$defs/P"}, closed({"z": STRING})]}},
            **{"$defs": {"P": closed({"x": {"anyOf": [INTEGER, NULL]}})}},
        ),
    ),
]


@pytest.mark.parametrize(
    ("given", "expected"), [r[1:] for r in REWRITES], ids=[r[0] for r in REWRITES]
)
def test_strict_form_rewrites(given: dict[str, Any], expected: dict[str, Any]) -> None:
    before = json.dumps(given)
    form = strict_form(given)
    assert form.strict and form.reason is None
    assert form.schema == expected
    assert json.dumps(given) == before  # the user's schema is never modified
    assert strict_form(form.schema).schema == form.schema  # strict forms are fixed points


NOT_STRICT: list[tuple[dict[str, Any], str]] = [
    (obj({"a": STRING}, additionalProperties=True), "$: 'additionalProperties' allows"),
    (obj({"a": obj({"b": STRING}, additionalProperties=STRING)}), "$.a: 'additionalProperties'"),
    (obj({"a": {"type": "object"}}), "$.a: an object without properties"),
    (obj({"a": STRING}, patternProperties={"^x": STRING}), "'patternProperties' is refused"),
    (obj({"a": {"type": "string", "minLength": 2}}), "$.a: 'minLength' is refused"),
    (obj({"a": {"type": "array", "items": STRING, "uniqueItems": True}}), "'uniqueItems'"),
    (obj({"a": {"type": "array"}}), "$.a: an array needs one 'items' schema"),
    (obj({"a": {"type": "array", "items": [STRING, INTEGER]}}), "$.a: an array needs one"),
    (obj({"a": {"type": "string", "format": "uri"}}), "$.a: format 'uri' is refused"),
    (obj({"a": {"not": STRING}}), "$.a: 'not' is refused"),
    (obj({"a": {"allOf": [STRING, {"maxLength": 3}]}}), "'allOf' with several schemas"),
    (obj({"a": {}}), "$.a: a schema without a type"),
    (obj({"a": True}), "$.a: a boolean schema"),
    (obj({"a": STRING}, ["a", "b"]), "requires 'b', which it does not define"),
]


@pytest.mark.parametrize(("given", "reason"), NOT_STRICT)
def test_schemas_without_a_strict_form_are_sent_as_given(
    given: dict[str, Any], reason: str
) -> None:
    form = strict_form(given)
    assert not form.strict
    assert form.reason is not None and reason in form.reason
    assert form.schema == given


def test_a_format_strict_mode_lists_is_kept() -> None:
    form = strict_form(obj({"when": {"type": "string", "format": "date-time"}}, ["when"]))
    assert form.strict and form.schema["properties"]["when"]["format"] == "date-time"


def test_objects_nested_past_ten_levels_have_no_strict_form() -> None:
    schema: dict[str, Any] = obj({"leaf": STRING}, ["leaf"])
    for _ in range(10):
        schema = obj({"in": schema}, ["in"])
    assert "nest deeper than 10" in (strict_form(schema).reason or "")


# -- pydantic models ----------------------------------------------------------------------------


class Address(BaseModel):
    city: str
    postcode: str | None = None


class Review(BaseModel):
    stars: int
    summary: str | None = None
    tone: Literal["calm", "angry"] = "calm"
    tags: list[str] = []
    address: Address | None = None
    visits: list[Address]


def test_pydantic_model_is_sent_strict_and_read_back_into_the_model() -> None:
    spec = make_spec(schema=Review)
    fmt = text_format(spec)["format"]
    assert fmt["strict"] is True and spec.not_strict is None
    sent = fmt["schema"]
    assert sent["required"] == list(Review.model_json_schema()["properties"])
    assert sent["additionalProperties"] is False
    assert sent["$defs"]["Address"]["required"] == ["city", "postcode"]
    assert sent["$defs"]["Address"]["additionalProperties"] is False
    assert sent["properties"]["tone"]["anyOf"][1] == NULL  # optional: a union with null
    assert "default" not in json.dumps(sent)
    assert spec.schema == Review.model_json_schema()  # validation uses the user's own
    # The answer a strict server gives: every key present, nulls for what was left out.
    answer = {
        "stars": 4,
        "summary": None,
        "tone": None,
        "tags": None,
        "address": {"city": "Oslo", "postcode": None},
        "visits": [{"city": "Bergen", "postcode": "5003"}],
    }
    parsed = parse(spec, json.dumps(answer))
    assert parsed.error is None
    assert parsed.values["tone"] is None and parsed.values["tags"] is None
    given = {k: v for k, v in parsed.values.items() if v is not None}
    review = Review.model_validate(given)  # a missing optional takes the model's default
    assert review.tone == "calm" and review.tags == [] and review.address is not None
    # A null where the model requires a value is still an error, named by its path.
    bad = parse(spec, json.dumps({**answer, "stars": None}))
    assert bad.error is not None and "$.stars: expected integer, got null" in bad.error


def test_restore_drops_only_nulls_the_user_schema_refuses() -> None:
    schema = obj(
        {"a": INTEGER, "b": {"type": ["integer", "null"]}, "c": INTEGER, "n": obj({"x": STRING})},
        ["c"],
    )
    answer = {"a": None, "b": None, "c": None, "n": {"x": None}}
    assert restore(answer, schema) == {"b": None, "c": None, "n": {}}
    assert answer == {"a": None, "b": None, "c": None, "n": {"x": None}}  # not modified


def test_restore_reads_each_union_branch_in_its_own_shape() -> None:
    first = {"type": "object", "properties": {"a": INTEGER}, "additionalProperties": False}
    second = obj({"b": STRING, "c": INTEGER}, ["b"], additionalProperties=False)
    schema = obj({"u": {"anyOf": [first, second]}, "v": {"oneOf": [second, NULL]}}, ["u"])
    answer = {"u": {"b": "x", "c": None}, "v": {"b": "y", "c": None}}
    restored = restore(answer, schema)
    assert restored == {"u": {"b": "x"}, "v": {"b": "y"}}
    assert validate(restored, schema) == []
    assert restore({"u": {"a": None}}, schema) == {"u": {}}  # the first branch fits


def test_a_schema_without_a_strict_form_warns_and_is_sent_not_strict() -> None:
    frame = pd.DataFrame({"review": ["fine"]})
    loose = obj({"tags": {"type": "array", "items": STRING, "uniqueItems": True}}, ["tags"])
    with pytest.warns(UserWarning, match=r"no strict form \(\$\.tags: 'uniqueItems'"):
        preview = frame.valar.requests("Tags of {review}", schema=loose, model="m")
    fmt = preview["body"].iloc[0]["text"]["format"]
    assert fmt["strict"] is False and fmt["schema"] == loose
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a strict schema warns nothing
        frame.valar.requests("Tags of {review}", schema=Review, model="m")


# -- the emulator's strict-schema mode ----------------------------------------------------------

SENTIMENT = "Extract the facts of this product review.\n\nReview: {review}"
MODEL = "zai-org/GLM-5.1-FP8"
FAST = {"model": MODEL, "completion_window": "asap", "progress": None}


class Visit(BaseModel):
    city: str
    note: str | None = None


class Facts(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    stars: int | None = None
    summary: str = ""
    tags: list[str] = []
    visit: Visit | None = None
    visits: list[Visit]


def post(client: ValarClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One raw create, for what the server answers to exactly this body."""
    request = urllib.request.Request(
        client.base_url + "/responses",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {client.api_key.reveal()}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def structured(schema: dict[str, Any], strict: bool = True, name: str = "Facts") -> dict[str, Any]:
    fmt = {"type": "json_schema", "name": name, "schema": schema, "strict": strict}
    return {"model": MODEL, "input": "Review: fine", "text": {"format": fmt}}


def test_a_strict_server_refuses_pydantic_s_own_schema_and_names_where(serve: Serve) -> None:
    _, client = serve(strict_schemas=True)
    status, body = post(client, structured(Facts.model_json_schema()))
    assert status == 400
    error = body["error"]
    assert error["param"] == "text.format.schema" and error["code"] == "invalid_json_schema"
    assert error["message"].startswith("Invalid schema for response_format 'Facts': In context=")
    # The same schema without strict, and the library's strict form with it, are accepted.
    assert post(client, structured(Facts.model_json_schema(), strict=False))[0] == 200
    assert post(client, structured(make_spec(schema=Facts).wire_schema))[0] == 200
    _, lenient = serve()  # strict_schemas is off by default
    assert post(lenient, structured(Facts.model_json_schema()))[0] == 200


STRICT_BREAKS: list[tuple[dict[str, Any], str]] = [
    (obj({"a": STRING}, ["a"]), "In context=(), 'additionalProperties' is required to be"),
    (
        closed({"a": STRING, "b": STRING}) | {"required": ["a"]},
        "In context=(), 'required' is required to be supplied and to be an array including "
        "every key in properties. Missing 'b'.",
    ),
    (
        closed({"m": obj({"x": STRING}, ["x"])}),
        "In context=('properties', 'm'), 'additionalProperties'",
    ),
    (
        closed({"l": {"type": "array", "items": closed({"x": STRING}) | {"required": []}}}),
        "In context=('properties', 'l', 'items'), 'required' is required",
    ),
    (
        closed({"a": {"type": "string", "minLength": 1}}),
        "In context=('properties', 'a'), 'minLength' is not permitted.",
    ),
    (
        closed({"a": {"type": "integer", "default": 1}}),
        "In context=('properties', 'a'), 'default' is not permitted.",
    ),
    (
        closed({"a": {"$ref": "#/$defs/T", "description": "d"}})
        | {"$defs": {"T": {"type": "string"}}},
        "In context=('properties', 'a'), $ref cannot have keywords {'description'}.",
    ),
    (
        closed({"a": {"anyOf": [STRING, obj({"x": STRING})]}}),
        "In context=('properties', 'a', 'anyOf', 1), 'additionalProperties'",
    ),
    (
        closed({"a": STRING}) | {"$defs": {"T": obj({"x": STRING})}},
        "In context=('$defs', 'T'), 'additionalProperties'",
    ),
    (closed({"a": {}}), "In context=('properties', 'a'), schema must have a 'type' key."),
    ({"anyOf": [closed({"a": STRING})]}, "'anyOf' is not permitted at the root."),
]


@pytest.mark.parametrize(("schema", "message"), STRICT_BREAKS)
def test_strict_mode_rules_in_the_emulator(schema: dict[str, Any], message: str) -> None:
    error = validate_create(structured(schema), (MODEL,), strict_schemas=True)
    assert error is not None and error.status == 400
    assert error.message.startswith("Invalid schema for response_format 'Facts': ")
    assert message in error.message
    assert validate_create(structured(schema, strict=False), (MODEL,), strict_schemas=True) is None
    assert validate_create(structured(schema), (MODEL,)) is None  # the mode is off by default


def test_every_strict_form_passes_the_emulator_s_rules() -> None:
    for _, given, _ in REWRITES:
        form = strict_form(given)
        assert validate_create(structured(form.schema), (MODEL,), strict_schemas=True) is None
    for model in (Review, Facts):
        spec = make_spec(schema=model, reasons=True)
        body = {"model": MODEL, "input": "x", "text": text_format(spec)}
        assert validate_create(body, (MODEL,), strict_schemas=True) is None


def test_pydantic_optionals_score_against_a_strict_server(serve: Serve) -> None:
    """c881ea1 sent pydantic's schema as it is with strict: true: every create was a 400 and
    the run stopped after the first five ("all rejected the same way")."""
    emulator, client = serve(strict_schemas=True)
    frame = make_reviews(12)
    out = frame.valar.score(SENTIMENT, schema=Facts, into="f", client=client, **FAST)
    assert out["f_error"].isna().all(), out["f_error"].dropna().tolist()
    assert out["f_sentiment"].notna().all() and out.attrs["valar"]["failed"] == 0
    assert emulator.stats.inferences == 12
    for _, row in out.iterrows():  # every answer reads back into the user's model
        given = {k: row[f"f_{k}"] for k in Facts.model_fields if row[f"f_{k}"] is not None}
        Facts.model_validate(given)


# -- the emulator's disobey mode ------------------------------------------------------------------

CLOSED = closed(
    {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
    }
)


def test_disobeyed_schemas_are_row_errors_naming_what_is_wrong(serve: Serve) -> None:
    _, client = serve(faults=Faults(disobey_schema=1.0), strict_schemas=True)
    out = make_reviews(30).valar.score(SENTIMENT, schema=CLOSED, into="f", client=client, **FAST)
    errors = out["f_error"]
    assert errors.notna().all() and out["f_sentiment"].isna().all()
    assert out.attrs["valar"]["failed"] == 30
    shape = errors.str.contains('unexpected property "result"')  # wrapped: all missing too
    extra = errors.str.contains('unexpected property "note"')
    missing = errors.str.contains("missing required property") & ~shape
    kinds = {"missing": missing.sum(), "extra": extra.sum(), "shape": shape.sum()}
    assert all(kinds.values()) and sum(kinds.values()) == 30, kinds  # all three, each once
    # The answers are still valid JSON and the responses completed: a reading failure.
    assert not errors.str.contains("not JSON|not valid JSON").any()
    assert (out["f_error"].str.startswith("reply does not match the schema")).all()


def test_disobeyed_rows_are_re_asked_and_billed(serve: Serve) -> None:
    emulator, client = serve(faults=Faults(disobey_schema=0.5), seed=4)
    frame = make_reviews(40)
    first = frame.valar.score(SENTIMENT, schema=CLOSED, into="f", client=client, **FAST)
    failed = int(first["f_error"].notna().sum())
    before = emulator.stats.inferences
    out = frame.valar.score(
        SENTIMENT, schema=CLOSED, into="f", client=client, retries_on_invalid=3, **FAST
    )
    asked = out.attrs["valar"]["invalid_retries"]
    assert failed > 0 and asked >= failed
    assert emulator.stats.inferences == before + asked  # every re-ask is a new inference
    assert int(out["f_error"].notna().sum()) < failed  # re-asks draw afresh


def test_disobey_and_invalid_structured_stay_apart(serve: Serve) -> None:
    emulator, _ = serve(faults=Faults(disobey_schema=1.0, invalid_structured=1.0))
    body = structured(CLOSED)
    for i in range(12):  # both drawn: invalid_structured spoils values, and wins
        status, text = emulator.expected_outcome(body, key=f"k{i}")
        assert status == "completed"
        spoiled = text.endswith("}") is False or "unknown" in text or '"stars": 6' in text
        assert spoiled and "note" not in text and "result" not in text, text
    emulator.config = EmulatorConfig(faults=Faults(disobey_schema=1.0))
    status, text = emulator.expected_outcome(body, key="k0")
    assert status == "completed" and validate(json.loads(text), CLOSED)  # valid JSON, wrong shape
    assert emulator.expected_outcome(body, key="k0") == (status, text)  # the same key, the same


# -- images ---------------------------------------------------------------------------------------

KIMI = "moonshotai/Kimi-K2.6"


def png(width: int, height: int) -> str:
    """A real (tiny-content) PNG of the given size, as a data: URL."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def with_photo(row: pd.Series) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": f"Describe product {row['product']}"},
                {"type": "input_image", "image_url": row["photo"], "detail": "low"},
            ],
        }
    ]


PHOTOS = pd.DataFrame(
    {
        "product": ["lamp", "chair", "desk"],
        "photo": [png(16, 16), png(32, 8), "https://example.com/desk.jpg"],
    }
)


def test_images_run_end_to_end_on_a_model_that_takes_them(serve: Serve) -> None:
    """c881ea1's emulator refused every image part ("only text content parts")."""
    emulator, client = serve()
    fast = {**FAST, "model": KIMI}
    estimate = PHOTOS.valar.estimate(with_photo, model=KIMI)
    assert estimate.images == 3
    out = PHOTOS.valar.run(with_photo, into="d", client=client, **fast)
    assert out["d_error"].isna().all(), out["d_error"].tolist()
    assert out["d"].str.startswith("Echo: Describe product").all()
    assert emulator.stats.inferences == 3
    scored = PHOTOS.valar.score(with_photo, schema=Visit, into="v", client=client, **fast)
    assert scored["v_error"].isna().all() and scored["v_city"].notna().all()


def test_images_on_a_text_model_are_row_errors_that_say_so(serve: Serve) -> None:
    emulator, client = serve()
    out = PHOTOS.valar.run(with_photo, into="d", client=client, **FAST)
    assert out["d"].isna().all()
    assert out["d_error"].str.contains(f"model '{MODEL}' does not support image input").all()
    assert emulator.stats.inferences == 0


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ({"type": "input_image", "file_id": "file_1"}, "must be an http(s) URL or a data: URL"),
        ({"type": "input_image", "image_url": "data:text/plain;base64,aGk="}, "JPEG, PNG"),
        ({"type": "input_image", "image_url": "https://x/y.png", "detail": "max"}, "detail"),
        ({"type": "image_url", "image_url": {"url": "https://x/y.png"}}, "input_image content"),
    ],
)
def test_image_parts_are_checked(part: dict[str, Any], message: str) -> None:
    body = {"model": KIMI, "input": [{"role": "user", "content": [part]}]}
    error = validate_create(body, (KIMI,), image_models=(KIMI,))
    assert error is not None and message in error.message


def test_at_most_twenty_images_a_request() -> None:
    image = {"type": "input_image", "image_url": "https://x/y.png"}
    body = {"model": KIMI, "input": [{"role": "user", "content": [image] * 21}]}
    error = validate_create(body, (KIMI,), image_models=(KIMI,))
    assert error is not None and "at most 20" in error.message
    body["input"][0]["content"] = [image] * 20
    assert validate_create(body, (KIMI,), image_models=(KIMI,)) is None


def test_the_command_line_sets_the_new_modes() -> None:
    args = _parser("emulator").parse_args(
        ["--strict-schemas", "--disobey-schema", "0.25", "--image-models", "a/b, c/d"]
    )
    config = _config(args)
    assert config.strict_schemas is True and config.faults.disobey_schema == 0.25
    assert config.image_models == ("a/b", "c/d")
    default = _config(_parser("emulator").parse_args([]))
    assert default.strict_schemas is False and default.faults.disobey_schema == 0.0
    assert default.image_models == (KIMI,) == EmulatorConfig().image_models
    assert _config(_parser("emulator").parse_args(["--image-models", ""])).image_models == ()
    with pytest.raises(ValueError, match="disobey_schema must be a probability"):
        Faults(disobey_schema=1.5)


# -- the command ------------------------------------------------------------------------------


def test_the_command_sends_the_strict_form_and_says_when_it_cannot(
    serve_cli: Callable[..., Emulator], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_cli(strict_schemas=True)
    pd.DataFrame({"review": ["great", "awful", "fine"]}).to_parquet(tmp_path / "in.parquet")
    schema = tmp_path / "facts.json"
    schema.write_text(json.dumps(Facts.model_json_schema()), encoding="utf-8")
    args = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--model", MODEL]
    args += ["--template", "Review: {review}", "--completion-window", "asap", "--quiet"]
    assert main([*args, "--schema", str(schema), "--into", "f"]) == 0
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert got["f_error"].isna().all() and got["f_sentiment"].notna().all()
    assert "warning" not in capsys.readouterr().err
    loose = tmp_path / "loose.json"
    loose.write_text(
        json.dumps(obj({"tags": {"type": "array", "items": STRING, "uniqueItems": True}}, ["tags"]))
    )
    assert main([*args, "--schema", str(loose), "--into", "g"]) == 0  # not strict: accepted
    err = capsys.readouterr().err
    assert (
        f"valar-pandas: warning: --schema {loose} has no strict form ($.tags: 'uniqueItems'" in err
    )


def test_batch_items_are_held_to_the_same_rules(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valar_pandas._core import batchplan

    monkeypatch.setattr(batchplan, "BATCH_POLL", batchplan.BatchPoll(0.1, 1.5, 0.5))
    emulator, client = serve(strict_schemas=True, batch_api=True)
    frame = make_reviews(6)
    batch = {"model": MODEL, "mode": "batch", "progress": None}
    out = frame.valar.score(SENTIMENT, schema=Facts, into="f", client=client, **batch)
    assert out["f_error"].isna().all(), out["f_error"].dropna().tolist()
    assert emulator.stats.batch_creates == 1
    raw = {"custom_id": "r1", "params": structured(Facts.model_json_schema())}
    error = validate_batch(
        {"endpoint": "/v1/responses", "requests": [raw]}, 100, (MODEL,), 10, 10**6,
        strict_schemas=True,
    )  # fmt: skip
    assert error is not None and "requests[0].params: Invalid schema for response_format" in (
        error.message
    )
