"""Strict structured outputs: users' schemas rewritten for strict mode and answers read back,
and the emulator's strict-schema, disobey and image modes, end to end."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any, Literal

import pandas as pd
import pytest
from pydantic import BaseModel

from valar_pandas import ValarClient
from valar_pandas._scoring import make_spec, parse, restore, strict_form, text_format
from valar_pandas.emulator import Emulator

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
