"""Scoring specs, the structured-output format, reply parsing, dtypes and typed columns. Pure."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from valar_pandas import ConfigError
from valar_pandas._frame.score_columns import row_errors, to_columns
from valar_pandas._scoring import (
    ParsedReply,
    ScoreSpec,
    column_name,
    dtypes,
    instructions_hint,
    make_spec,
    normalise_label,
    parse,
    text_format,
    validate,
)

SENTIMENT = ["positive", "negative", "neutral"]
LABELS = make_spec(labels=SENTIMENT)
LABELS_WHY = make_spec(labels=SENTIMENT, reasons=True)
STARS = make_spec(scale=(1, 5))
UNIT = make_spec(scale=(0.0, 1.0))
FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Review facts",
    "properties": {
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "topics": {"type": "array", "items": {"type": "string"}},
        "would_buy": {"type": "boolean"},
        "summary": {"type": ["string", "null"]},
        "price": {"type": "number"},
        "meta": {"type": "object", "properties": {"lang": {"type": "string"}}},
    },
    "required": ["stars", "would_buy"],
    "additionalProperties": False,
}
FACTS = make_spec(schema=FACTS_SCHEMA)
FACTS_WHY = make_spec(schema=FACTS_SCHEMA, reasons=True)


# -- building specs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of labels=, scale= or schema= (got none)"),
        ({"labels": ["a", "b"], "scale": (1, 5)}, "got labels and scale"),
        ({"labels": "ab"}, "labels must be a list of strings"),
        ({"labels": ["only"]}, "at least two labels"),
        ({"labels": ["Yes", "yes."]}, "'Yes' and 'yes.' are the same"),
        ({"labels": ["ok", "?!"]}, "label '?!' is empty"),
        ({"labels": ["ok", 3]}, "every label must be a string"),
        ({"scale": (5, 1)}, "lo < hi"),
        ({"scale": (1, 1)}, "lo < hi"),
        ({"scale": (1,)}, "a pair (lo, hi)"),
        ({"scale": "15"}, "a pair (lo, hi)"),
        ({"scale": ("1", 5)}, "bounds must be numbers"),
        ({"scale": (True, 5)}, "bounds must be numbers"),
        ({"scale": (0, math.inf)}, "finite"),
        ({"labels": ["a", "b"], "reasons": "yes"}, "reasons must be True or False"),
        ({"schema": {"type": "array", "items": {}}}, "must describe an object"),
        ({"schema": {"type": "object"}}, "must describe an object"),
        ({"schema": {"type": "object", "properties": {}}}, "has no properties"),
        ({"schema": {"type": "object", "properties": {"error": {}}}}, "'error' is reserved"),
        (
            {"schema": {"type": "object", "properties": {"reason": {}}}, "reasons": True},
            "already has a 'reason' property",
        ),
        ({"schema": {"type": "object", "properties": {"a": {"type": "str"}}}}, "unknown type"),
        (
            {"schema": {"type": "object", "properties": {"a": {"pattern": "("}}}},
            "bad pattern",
        ),
        ({"schema": {"type": "object", "properties": {"a": {"enum": []}}}}, "'enum' must be"),
        (
            {"schema": {"type": "object", "properties": {"a": {"anyOf": {}}}}},
            "'anyOf' must be a non-empty list",
        ),
        (
            {"schema": {"type": "object", "properties": {"a": {}}, "required": "a"}},
            "'required' must be a list",
        ),
        ({"schema": {"type": "object", "properties": {"a": {"enum": [{1, 2}]}}}}, "plain JSON"),
        ({"schema": int}, "pydantic model class"),
        ({"schema": [1, 2]}, "must be a JSON-schema dict"),
    ],
)
def test_make_spec_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_spec(**kwargs)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("scale", "integer", "kept"),
    [
        ((1, 5), True, (1, 5)),
        ([0, 10], True, (0, 10)),
        ((np.int64(1), np.int64(7)), True, (1, 7)),
        ((0.0, 1.0), False, (0.0, 1.0)),
        ((1, 5.5), False, (1, 5.5)),
        ((-1.5, np.float64(1.5)), False, (-1.5, 1.5)),
        (np.array([2, 4]), True, (2, 4)),
    ],
)
def test_scale_bounds(scale: Any, integer: bool, kept: tuple[float, float]) -> None:
    spec = make_spec(scale=scale)
    assert spec.integer is integer
    assert spec.scale == kept
    assert all(type(b) in (int, float) for b in spec.scale)


def test_labels_from_any_sequence() -> None:
    for labels in (("a", "b"), np.array(["a", "b"]), pd.Index(["a", "b"])):
        assert make_spec(labels=labels).labels == ("a", "b")
        assert all(type(label) is str for label in make_spec(labels=labels).labels)
    with pytest.raises(ConfigError, match="list of strings"):
        make_spec(labels={"a": 1, "b": 2})


def test_specs_keep_what_was_given() -> None:
    assert ScoreSpec("labels", labels=tuple(SENTIMENT), name="label") == LABELS
    assert STARS.kind == "scale" and STARS.name == "score" and not STARS.reasons
    assert FACTS.name == "Review_facts"
    assert make_spec(schema={**FACTS_SCHEMA, "title": None}).name == "output"
    assert FACTS.schema == FACTS_SCHEMA and FACTS.schema is not FACTS_SCHEMA
    assert column_name("mood", "") == "mood"
    assert column_name("mood", "reason") == "mood_reason"


# -- the format and the hint ---------------------------------------------------------------------


def test_text_format_labels() -> None:
    assert text_format(LABELS) == {
        "format": {
            "type": "json_schema",
            "name": "label",
            "schema": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": SENTIMENT}},
                "required": ["label"],
                "additionalProperties": False,
            },
            "strict": True,
        }
    }
    schema = text_format(LABELS_WHY)["format"]["schema"]
    assert list(schema["properties"]) == ["reason", "label"]  # explain first, then decide
    assert schema["properties"]["reason"] == {"type": "string"}
    assert schema["required"] == ["reason", "label"]


@pytest.mark.parametrize(
    ("spec", "score"),
    [
        (STARS, {"type": "integer", "minimum": 1, "maximum": 5}),
        (UNIT, {"type": "number", "minimum": 0.0, "maximum": 1.0}),
        (make_spec(scale=(1, 2.5)), {"type": "number", "minimum": 1, "maximum": 2.5}),
    ],
)
def test_text_format_scale(spec: ScoreSpec, score: dict[str, Any]) -> None:
    fmt = text_format(spec)["format"]
    assert fmt["name"] == "score" and fmt["strict"] is True
    assert fmt["schema"] == {
        "type": "object",
        "properties": {"score": score},
        "required": ["score"],
        "additionalProperties": False,
    }


def test_text_format_schema() -> None:
    fmt = text_format(FACTS)["format"]
    assert fmt == {
        "type": "json_schema",
        "name": "Review_facts",
        "schema": FACTS.wire_schema,  # the strict form: every property required, nulls for
        "strict": True,  # the optional ones, every object closed
    }
    assert fmt["schema"]["required"] == list(FACTS_SCHEMA["properties"])
    assert fmt["schema"]["properties"]["price"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert fmt["schema"]["properties"]["meta"]["anyOf"][0]["additionalProperties"] is False
    why = text_format(FACTS_WHY)["format"]["schema"]
    assert list(why["properties"]) == ["reason", *FACTS_SCHEMA["properties"]]
    assert why["required"] == ["reason", *FACTS_SCHEMA["properties"]]
    assert FACTS_WHY.schema == FACTS_SCHEMA  # the spec's own schema is left alone
    json.dumps(text_format(FACTS_WHY), allow_nan=False)  # plain JSON, fit for the wire


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        (
            LABELS,
            'Answer with JSON only, in the form {"label": <one of "positive", "negative", '
            '"neutral">}.',
        ),
        (
            LABELS_WHY,
            'Answer with JSON only, in the form {"reason": <one short sentence>, "label": '
            '<one of "positive", "negative", "neutral">}.',
        ),
        (STARS, 'Answer with JSON only, in the form {"score": <an integer from 1 to 5>}.'),
        (UNIT, 'Answer with JSON only, in the form {"score": <a number from 0.0 to 1.0>}.'),
    ],
)
def test_instructions_hint(spec: ScoreSpec, hint: str) -> None:
    assert instructions_hint(spec) == hint


def test_instructions_hint_schema_embeds_the_schema() -> None:
    hint = instructions_hint(FACTS_WHY)
    prefix = "Answer with JSON only: one object matching this JSON schema: "
    assert hint.startswith(prefix) and hint.endswith(".")
    assert json.loads(hint[len(prefix) : -1]) == text_format(FACTS_WHY)["format"]["schema"]


# -- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  **"Very   Positive."**\n', "very positive"),
        ("NEUTRAL", "neutral"),
        ("(negative)", "negative"),
        ("`pos-itive`", "pos-itive"),
        ("ｐｏｓｉｔｉｖｅ", "positive"),
        ("C++", "c++"),
        ("¿qué?", "qué"),
        ("", ""),
    ],
)
def test_normalise_label(text: str, expected: str) -> None:
    assert normalise_label(text) == expected


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("positive", "positive"),
        ("Positive.", "positive"),
        ("  NEGATIVE!\n", "negative"),
        ('"neutral"', "neutral"),
        ("**Neutral**", "neutral"),
        ("Label: Positive", "positive"),
        ("label = negative", "negative"),
        ("**Sentiment:** neutral.", "neutral"),
        ("Final answer: positive", "positive"),
        ('{"label": "negative"}', "negative"),
        ('{"label": "  Neutral. "}', "neutral"),
        ('```json\n{"label": "positive"}\n```', "positive"),
        ('Sure! Here it is: {"label": "negative"} Hope that helps.', "negative"),
        ("```\npositive\n```", "positive"),
    ],
)
def test_labels_read(reply: str, label: str) -> None:
    assert parse(LABELS, reply) == ParsedReply({"": label})


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("mostly positive", 'reply "mostly positive" is not one of positive, negative, neutral'),
        ("Positive, mostly", "is not one of"),
        ("positive\nThe customer is happy.", "is not one of"),
        ("positive negative", "is not one of"),
        ("Positive: the customer loves it", "is not one of"),
        ("", 'reply "" is not one of'),
        ('{"label": "great"}', 'label "great" is not one of positive, negative, neutral'),
        ('{"sentiment": "positive"}', "JSON reply has no string 'label'"),
        ('{"label": 1}', "JSON reply has no string 'label'"),
        ('{"label": "positive"', 'reply is not valid JSON: "{"label": "positive""'),
        ('```json\n{"label": "positive",}\n```', "reply is not valid JSON"),
    ],
)
def test_labels_refused(reply: str, error: str) -> None:
    parsed = parse(LABELS, reply)
    assert parsed.values == {}
    assert parsed.error is not None and error in parsed.error


def test_labels_keep_the_spec_spelling() -> None:
    spec = make_spec(labels=["Very Good", "Bad_Fit", "n/a"])
    assert parse(spec, "very good").values == {"": "Very Good"}
    assert parse(spec, "bad_fit").values == {"": "Bad_Fit"}
    assert parse(spec, "N/A.").values == {"": "n/a"}
    assert parse(spec, "bad fit").error is not None  # inner punctuation matters


def test_errors_quote_at_most_80_characters() -> None:
    reply = "I think " + "it is really hard to say " * 20
    error = parse(LABELS, reply).error
    assert error is not None
    quoted = error.split('"')[1]
    assert len(quoted) == 80 and quoted.endswith("…") and quoted.startswith("I think it is")


def test_no_text_is_an_error() -> None:
    for spec in (LABELS, STARS, FACTS):
        assert parse(spec, None) == ParsedReply({}, "the response has no output text")


# -- scales ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reply", "value"),
    [
        (STARS, "4", 4),
        (STARS, " 5 ", 5),
        (STARS, "1.", 1),
        (STARS, "4.0", 4),
        (STARS, "**3**", 3),
        (STARS, '"2"', 2),
        (STARS, "Score: 4", 4),
        (STARS, "Rating = 2", 2),
        (STARS, "4/5", 4),
        (STARS, "4 / 5", 4),
        (STARS, "3 out of 5", 3),
        (STARS, "3 of 5.", 3),
        (STARS, '{"score": 5}', 5),
        (STARS, '{"score": 2.0}', 2),
        (STARS, '{"score": "3"}', 3),
        (STARS, '```json\n{"score": 1}\n```', 1),
        (UNIT, "0.25", 0.25),
        (UNIT, ".5", 0.5),
        (UNIT, "1", 1.0),
        (UNIT, "0", 0.0),
        (UNIT, "+1e-1", 0.1),
        (UNIT, '{"score": 0.75}', 0.75),
        (make_spec(scale=(-5, 5)), "-3", -3),
    ],
)
def test_scale_read(spec: ScoreSpec, reply: str, value: float) -> None:
    parsed = parse(spec, reply)
    assert parsed == ParsedReply({"": value})
    assert type(parsed.values[""]) is (int if spec.integer else float)


@pytest.mark.parametrize(
    ("spec", "reply", "error"),
    [
        (STARS, "7", "score 7 is outside the 1–5 scale"),
        (STARS, "0", "score 0 is outside the 1–5 scale"),
        (STARS, "-1", "outside"),
        (STARS, '{"score": 6}', "score 6 is outside the 1–5 scale"),
        (STARS, "4.5", "score 4.5 is not a whole number"),
        (STARS, "4/10", 'reply "4/10" is not on the 1–5 scale'),
        (STARS, "four", 'reply "four" is not a number'),
        (STARS, "I'd say 4", "is not a number"),
        (STARS, "4 stars", "is not a number"),
        (STARS, "nan", "is not a number"),
        (STARS, "1e999", "is not a finite number"),
        (STARS, '{"score": true}', "JSON reply has no numeric 'score'"),
        (STARS, '{"score": null}', "JSON reply has no numeric 'score'"),
        (STARS, '{"score": "4/5"}', "JSON reply has no numeric 'score'"),
        (STARS, '{"rating": 4}', "JSON reply has no numeric 'score'"),
        (STARS, '{"score": NaN}', "reply is not valid JSON"),
        (STARS, '{"score": 4', "reply is not valid JSON"),
        (UNIT, "1.01", "score 1.01 is outside the 0–1 scale"),
        (UNIT, "true", "is not a number"),
        (UNIT, "", "is not a number"),
    ],
)
def test_scale_refused(spec: ScoreSpec, reply: str, error: str) -> None:
    parsed = parse(spec, reply)
    assert parsed.values == {}
    assert parsed.error is not None and error in parsed.error


# -- schemas -----------------------------------------------------------------------------------

FULL = {
    "stars": 4,
    "topics": ["price", "fit"],
    "would_buy": True,
    "summary": "Nice",
    "price": 19.5,
    "meta": {"lang": "en"},
}


@pytest.mark.parametrize(
    ("reply", "values"),
    [
        (json.dumps(FULL), FULL),
        (f"```json\n{json.dumps(FULL)}\n```", FULL),
        (f"Here you go:\n{json.dumps(FULL)}\nAnything else?", FULL),
        (
            '{"stars": 2, "would_buy": false}',
            {
                "stars": 2,
                "topics": None,
                "would_buy": False,
                "summary": None,
                "price": None,
                "meta": None,
            },
        ),
        (
            '{"stars": 3.0, "would_buy": true, "summary": null}',
            {**dict.fromkeys(FULL), "stars": 3.0, "would_buy": True},
        ),
    ],
)
def test_schema_read(reply: str, values: dict[str, Any]) -> None:
    assert parse(FACTS, reply) == ParsedReply(values)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("no JSON here", 'reply is not JSON: "no JSON here"'),
        ("[1, 2]", "$: expected object, got array"),
        ('{"stars": 9, "would_buy": true}', "$.stars: 9 is greater than the maximum 5"),
        ('{"stars": "4", "would_buy": true}', "$.stars: expected integer, got string"),
        ('{"stars": 4}', '$: missing required property "would_buy"'),
        ('{"stars": 4, "would_buy": 1}', "$.would_buy: expected boolean, got integer"),
        ('{"stars": 4, "would_buy": true, "extra": 1}', '$: unexpected property "extra"'),
        ('{"stars": 4, "would_buy": true, "topics": ["a", 2]}', "$.topics[1]: expected string"),
        ('{"stars": 4, "would_buy": true, "meta": {"lang": 1}}', "$.meta.lang: expected string"),
        (
            '{"stars": 0, "would_buy": 1, "summary": 2, "price": "x"}',
            "(and 1 more)",
        ),
    ],
)
def test_schema_refused(reply: str, error: str) -> None:
    parsed = parse(FACTS, reply)
    assert parsed.values == {}
    assert parsed.error is not None and error in parsed.error


def test_schema_extras_are_dropped_when_allowed() -> None:
    spec = make_spec(schema={"type": "object", "properties": {"a": {"type": "integer"}}})
    assert parse(spec, '{"a": 1, "b": 2}') == ParsedReply({"a": 1})


# -- reasons -----------------------------------------------------------------------------------


STARS_WHY = make_spec(scale=(1, 5), reasons=True)
NO_FACTS = {**dict.fromkeys(FULL), "stars": 1, "would_buy": False}


@pytest.mark.parametrize(
    ("spec", "reply", "values"),
    [
        (LABELS_WHY, '{"reason": "Yes.", "label": "positive"}', {"": "positive", "reason": "Yes."}),
        (LABELS_WHY, "negative", {"": "negative", "reason": None}),
        (LABELS_WHY, '{"label": "neutral"}', {"": "neutral", "reason": None}),
        (STARS_WHY, '{"reason": "ok", "score": 3}', {"": 3, "reason": "ok"}),
        (STARS_WHY, "3", {"": 3, "reason": None}),
        (FACTS_WHY, '{"reason": "r", "stars": 1, "would_buy": false}', {**NO_FACTS, "reason": "r"}),
        (FACTS_WHY, '{"stars": 1, "would_buy": false}', {**NO_FACTS, "reason": None}),
    ],
)  # fmt: skip
def test_reasons(spec: ScoreSpec, reply: str, values: dict[str, Any]) -> None:
    assert parse(spec, reply) == ParsedReply(values)


@pytest.mark.parametrize(
    ("spec", "reply"),
    [
        (LABELS_WHY, '{"reason": 3, "label": "positive"}'),
        (make_spec(scale=(1, 5), reasons=True), '{"reason": ["a"], "score": 3}'),
        (FACTS_WHY, '{"reason": 1, "stars": 1, "would_buy": false}'),
    ],
)
def test_reason_must_be_text(spec: ScoreSpec, reply: str) -> None:
    parsed = parse(spec, reply)
    assert parsed.values == {} and parsed.error is not None and "reason" in parsed.error


# -- dtypes ------------------------------------------------------------------------------------


def _props(**properties: Any) -> ScoreSpec:
    return make_spec(schema={"type": "object", "properties": properties})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (LABELS, {"": "category"}),
        (LABELS_WHY, {"": "category", "reason": "str"}),
        (STARS, {"": "Int64"}),
        (UNIT, {"": "Float64"}),
        (make_spec(scale=(1, 5.0), reasons=True), {"": "Float64", "reason": "str"}),
        (
            FACTS_WHY,
            {
                "stars": "Int64",
                "topics": "object",
                "would_buy": "boolean",
                "summary": "str",
                "price": "Float64",
                "meta": "object",
                "reason": "str",
            },
        ),
        (
            _props(
                a={"type": ["integer", "null"]},
                b={"anyOf": [{"type": "number"}, {"type": "null"}]},
                c={"enum": ["x", "y"]},
                d={"const": 3},
                e={"type": ["integer", "number"]},
                f={"type": ["string", "integer"]},
                g={},
                h={"$ref": "#/$defs/Tone"},
                i={"enum": [1, 2.5]},
                j={"type": "null"},
            ),
            {
                "a": "Int64",
                "b": "Float64",
                "c": "str",
                "d": "Int64",
                "e": "Float64",
                "f": "object",
                "g": "object",
                "h": "object",  # unresolvable: no $defs
                "i": "Float64",
                "j": "object",
            },
        ),
    ],
)
def test_dtypes(spec: ScoreSpec, expected: dict[str, str]) -> None:
    assert dtypes(spec) == expected


# -- the validator -----------------------------------------------------------------------------

DEFS = {"$defs": {"Tone": {"type": "string", "enum": ["a", "b"]}}}
TONE = {"$ref": "#/$defs/Tone"}
INTEGER = {"type": "integer"}

VALIDATION: list[tuple[Any, Any, str | None]] = [
    # (schema, instance, expected error or None)
    ({"type": "integer"}, 3, None),
    ({"type": "integer"}, 3.0, None),
    ({"type": "integer"}, 3.5, "$: expected integer, got number"),
    ({"type": "integer"}, True, "$: expected integer, got boolean"),
    ({"type": "number"}, False, "$: expected number, got boolean"),
    ({"type": "boolean"}, 0, "$: expected boolean, got integer"),
    ({"type": "string"}, None, "$: expected string, got null"),
    ({"type": ["string", "null"]}, None, None),
    ({"type": ["string", "null"]}, 1, "$: expected string or null, got integer"),
    ({"type": "array"}, {}, "$: expected array, got object"),
    ({"type": "object"}, [], "$: expected object, got array"),
    ({"enum": ["a", 1, None]}, None, None),
    ({"enum": [1]}, True, "$: true is not one of 1"),
    ({"enum": [True]}, 1, "$: 1 is not one of true"),
    ({"enum": [1]}, 1.0, None),
    ({"enum": [[1, {"a": 2}]]}, [1, {"a": 2}], None),
    ({"const": "x"}, "y", '$: "y" is not "x"'),
    ({"minimum": 1, "maximum": 5}, 5, None),
    ({"minimum": 1}, 0.5, "$: 0.5 is less than the minimum 1"),
    ({"maximum": 5}, 6, "$: 6 is greater than the maximum 5"),
    ({"exclusiveMinimum": 0}, 0, "$: 0 is not greater than 0"),
    ({"exclusiveMaximum": 1}, 1.0, "$: 1.0 is not less than 1"),
    ({"minimum": 0, "exclusiveMinimum": True}, 0, "$: 0 is not greater than 0"),
    ({"maximum": 1, "exclusiveMaximum": True}, 1, "$: 1 is not less than 1"),
    ({"multipleOf": 0.5}, 1.5, None),
    ({"multipleOf": 2}, 3, "$: 3 is not a multiple of 2"),
    ({"maximum": 5}, "9", None),  # numeric keywords do not apply to strings
    ({"minLength": 2, "maxLength": 3}, "abc", None),
    ({"minLength": 2}, "a", '$: "a" is shorter than 2 characters'),
    ({"maxLength": 2}, "abc", '$: "abc" is longer than 2 characters'),
    ({"pattern": "^[A-Z]{2}$"}, "GB", None),
    ({"pattern": "^[A-Z]{2}$"}, "gb", "$: \"gb\" does not match the pattern '^[A-Z]{2}$'"),
    ({"items": {"type": "integer"}}, [1, "x"], "$[1]: expected integer, got string"),
    ({"items": [{"type": "integer"}, {"type": "string"}]}, [1, "x", None], None),
    ({"items": [{"type": "integer"}, {"type": "string"}]}, ["x"], "$[0]: expected integer"),
    ({"minItems": 2}, [1], "$: has 1 items, fewer than 2"),
    ({"maxItems": 1}, [1, 2], "$: has 2 items, more than 1"),
    ({"uniqueItems": True}, [1, 1.0], "$: items are not unique"),
    ({"uniqueItems": True}, [1, True], None),
    ({"required": ["a"]}, {}, '$: missing required property "a"'),
    ({"properties": {"a b": {"type": "string"}}}, {"a b": 1}, '$["a b"]: expected string'),
    ({"properties": {}, "additionalProperties": False}, {"b": 1}, '$: unexpected property "b"'),
    ({"additionalProperties": {"type": "integer"}}, {"b": "x"}, "$.b: expected integer"),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, None, None),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "x", "$: matches none of the anyOf"),
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, "x", None),
    ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, 1, "$: matches 2 of the oneOf choices"),
    ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, "x", "$: matches none of the oneOf"),
    ({"allOf": [{"minimum": 1}, {"maximum": 3}]}, 4, "$: 4 is greater than the maximum 3"),
    ({"not": {"type": "null"}}, None, "$: matches a schema it must not match"),
    ({"not": {"type": "null"}}, 1, None),
    (True, {"anything": 1}, None),
    (False, 1, "$: no value is allowed here"),
    ({"properties": {"t": TONE}, **DEFS}, {"t": "a"}, None),
    ({"properties": {"t": TONE}, **DEFS}, {"t": "c"}, '$.t: "c" is not one of "a", "b"'),
    ({"properties": {"t": {"$ref": "#/$defs/Nope"}}}, {"t": 1}, "$.t: cannot resolve $ref"),
    ({"format": "email", "title": "x", "default": 1}, "not an email", None),
    (
        {"properties": {"rows": {"type": "array", "items": {"properties": {"n": INTEGER}}}}},
        {"rows": [{"n": 1}, {"n": "2"}]},
        "$.rows[1].n: expected integer, got string",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "instance", "error"), VALIDATION)
def test_validate(schema: Any, instance: Any, error: str | None) -> None:
    errors = validate(instance, schema)
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith(error), errors


@pytest.mark.parametrize(("schema", "instance", "error"), VALIDATION)
def test_validate_agrees_with_jsonschema(schema: Any, instance: Any, error: str | None) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    if isinstance(schema, dict) and (
        schema.get("exclusiveMinimum") is True
        or schema.get("exclusiveMaximum") is True
        or isinstance(schema.get("items"), list)
        or "Nope" in json.dumps(schema)
    ):
        pytest.skip("draft-4 or tuple forms, or an unresolvable reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        valid = jsonschema.Draft202012Validator(schema).is_valid(instance)
    assert valid is (error is None)


def test_validate_survives_a_ref_cycle() -> None:
    schema = {"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}
    assert "nests too deeply" in validate(1, schema)[0]


# -- pydantic ----------------------------------------------------------------------------------


class _ModelLike:
    """Duck-types a pydantic model class: only ``model_json_schema`` is read."""

    schema: ClassVar[dict[str, Any]] = {
        "$defs": {"Tone": {"enum": ["calm", "angry"], "title": "Tone", "type": "string"}},
        "properties": {
            "tone": {"$ref": "#/$defs/Tone"},
            "count": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
        "required": ["tone"],
        "title": "Mood",
        "type": "object",
    }

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return cls.schema


def test_model_class_is_read_through_model_json_schema() -> None:
    spec = make_spec(schema=_ModelLike, reasons=True)
    assert spec.name == "ModelLike"  # the class name, cut to the characters a name allows
    assert spec.schema == _ModelLike.schema
    assert dtypes(spec) == {"tone": "str", "count": "Int64", "reason": "str"}
    assert parse(spec, '{"tone": "calm", "count": null}') == ParsedReply(
        {"tone": "calm", "count": None, "reason": None}
    )
    error = parse(spec, '{"tone": "sad"}').error
    assert error is not None and '$.tone: "sad" is not one of "calm", "angry"' in error


def test_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Review(pydantic.BaseModel):
        stars: int
        summary: str | None = None
        tags: list[str]

    spec = make_spec(schema=Review)
    assert spec.name == "Review"
    assert dtypes(spec) == {"stars": "Int64", "summary": "str", "tags": "object"}
    parsed = parse(spec, '{"stars": 4, "tags": ["fit"]}')
    assert parsed == ParsedReply({"stars": 4, "summary": None, "tags": ["fit"]})
    Review.model_validate(parsed.values)
    assert parse(spec, '{"stars": "x", "tags": []}').error is not None


# -- typed columns -----------------------------------------------------------------------------


def test_to_columns_labels() -> None:
    parsed = [
        parse(LABELS_WHY, '{"reason": "good", "label": "positive"}'),
        None,
        parse(LABELS_WHY, "nope"),
        parse(LABELS_WHY, "neutral"),
    ]
    columns = to_columns(LABELS_WHY, parsed, "mood")
    assert list(columns) == ["mood", "mood_reason"]
    mood = pd.Series(columns["mood"])
    assert isinstance(mood.dtype, pd.CategoricalDtype)
    assert list(mood.cat.categories) == SENTIMENT
    assert mood.tolist()[0] == "positive" and mood.tolist()[3] == "neutral"
    assert mood.isna().tolist() == [False, True, True, False]
    assert mood.value_counts()["negative"] == 0  # unused labels still count
    reason = pd.Series(columns["mood_reason"])
    assert reason.dtype == "str"
    assert reason.isna().tolist() == [False, True, True, True] and reason[0] == "good"


@pytest.mark.parametrize(
    ("spec", "replies", "dtype", "values"),
    [
        (STARS, ["4", "9", "1"], "Int64", [4, None, 1]),
        (UNIT, ["0.5", "x", "1"], "Float64", [0.5, None, 1.0]),
    ],
)
def test_to_columns_scale(
    spec: ScoreSpec, replies: list[str], dtype: str, values: list[Any]
) -> None:
    columns = to_columns(spec, [parse(spec, r) for r in replies], "s")
    assert list(columns) == ["s"]
    column = pd.Series(columns["s"])
    assert column.dtype == dtype
    assert [None if pd.isna(v) else v for v in column] == values


def test_to_columns_schema() -> None:
    replies = [json.dumps({**FULL, "reason": "r"}), None, '{"stars": 2.0, "would_buy": false}']
    parsed = [None if r is None else parse(FACTS_WHY, r) for r in replies]
    columns = to_columns(FACTS_WHY, parsed, "f")
    frame = pd.DataFrame(columns)
    assert list(frame.columns) == [
        "f_stars", "f_topics", "f_would_buy", "f_summary", "f_price", "f_meta", "f_reason",
    ]  # fmt: skip
    assert frame.dtypes.astype(str).tolist() == [
        "Int64", "object", "boolean", "str", "Float64", "object", "str",
    ]  # fmt: skip
    assert frame["f_stars"].tolist()[::2] == [4, 2]
    assert frame["f_topics"][0] == ["price", "fit"] and frame["f_meta"][0] == {"lang": "en"}
    assert frame["f_topics"][1] is None and frame["f_would_buy"].isna().tolist() == [
        False,
        True,
        False,
    ]


def test_to_columns_keeps_values_a_dtype_cannot_hold() -> None:
    spec = make_spec(schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    odd = ParsedReply({"n": "seven"})  # never produced by parse, but never lost either
    column = to_columns(spec, [odd, ParsedReply({"n": 1})], "x")["x_n"]
    assert pd.Series(column).dtype == object and list(column) == ["seven", 1]


def test_to_columns_of_nothing() -> None:
    columns = to_columns(LABELS, [], "m")
    assert len(columns["m"]) == 0 and list(pd.Series(columns["m"]).cat.categories) == SENTIMENT


def test_row_errors() -> None:
    parsed = [parse(STARS, "3"), None, parse(STARS, "9"), parse(STARS, "9")]
    errors = row_errors([None, "failed: boom", None, "incomplete: max_output_tokens"], parsed)
    assert errors == [
        None,
        "failed: boom",
        "score 9 is outside the 1–5 scale",
        "incomplete: max_output_tokens",
    ]
    with pytest.raises(ValueError, match="2 errors for 1 parsed rows"):
        row_errors([None, None], [None])
