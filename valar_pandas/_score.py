"""Scoring specs: labels, numeric scales and JSON-schema outputs, as pure functions.

Owns :class:`ScoreSpec` (built and checked by :func:`make_spec`), the Responses API ``text``
field that asks for structured output (:func:`text_format`), the one-sentence answer hint for
the prompt (:func:`instructions_hint`), reading one reply into typed values (:func:`parse`),
and the pandas dtype of each value (:func:`dtypes`); answers are checked with
:mod:`valar_pandas._jsonschema`. No I/O, no pandas, no aiohttp; everything here is
decided from plain data and table-tested.

Values are keyed by *column suffix*: ``""`` is the ``<into>`` column itself (the label or the
score), ``"reason"`` is ``<into>_reason``, and a schema property ``p`` is ``<into>_p``.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import ConfigError
from ._jsonschema import json_type, resolve_ref, validate

__all__ = [
    "REASON",
    "Kind",
    "Parsed",
    "ScoreSpec",
    "answer_schema",
    "column_name",
    "dtypes",
    "instructions_hint",
    "make_spec",
    "normalise_label",
    "parse",
    "reply_judge",
    "text_format",
    "validate",
]

Kind = Literal["labels", "scale", "schema"]

#: Suffix of the optional explanation column, ``<into>_reason``.
REASON = "reason"
_RESERVED = "error"  # <into>_error is the row's error column
_QUOTE_MAX = 80
_MAX_ERRORS = 3
_TYPES = frozenset(("null", "boolean", "integer", "number", "string", "array", "object"))
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_KEYED = re.compile(r"[\s*_`]*([^\W\d_][\w \-]{0,30}?)[\s*_`]*[:=](.*)", re.DOTALL)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_BARE_NUMBER = re.compile(
    rf"[\s*_`\"']*({_NUMBER})\s*(?:(?:/|out\s+of|of)\s*({_NUMBER}))?[\s*_`\"'.!]*",
    re.IGNORECASE,
)
_DTYPES = {
    frozenset({"string"}): "str",
    frozenset({"integer"}): "Int64",
    frozenset({"number"}): "Float64",
    frozenset({"integer", "number"}): "Float64",
    frozenset({"boolean"}): "boolean",
}


@dataclass(frozen=True, slots=True)
class ScoreSpec:
    """What a scoring run asks for; build it with :func:`make_spec`, which checks it.

    Attributes:
        kind: ``"labels"``, ``"scale"`` or ``"schema"``.
        labels: The labels, as given (kind ``labels``); also the categories of the column.
        scale: ``(lo, hi)`` bounds (kind ``scale``); both ints for an integer scale.
        schema: The JSON schema of one answer (kind ``schema``), without the reason property.
        reasons: Whether the model also explains each answer (a ``reason`` string).
        name: The ``name`` of the structured-output format.
    """

    kind: Kind
    labels: tuple[str, ...] = ()
    scale: tuple[float, float] | None = None
    schema: dict[str, Any] = field(default_factory=dict)
    reasons: bool = False
    name: str = "output"

    @property
    def integer(self) -> bool:
        """Whether this is a scale whose bounds are both integers."""
        return self.scale is not None and all(isinstance(b, int) for b in self.scale)


@dataclass(frozen=True, slots=True)
class Parsed:
    """One reply read against a spec.

    Attributes:
        values: Column suffix → value (see the module docstring); empty when ``error`` is set.
        error: Why the reply could not be read, quoting what the model said; None on success.
    """

    values: dict[str, Any]
    error: str | None = None


def column_name(into: str, suffix: str) -> str:
    """The column a value goes to: ``into`` for suffix ``""``, else ``<into>_<suffix>``."""
    return into if suffix == "" else f"{into}_{suffix}"


# -- building a spec ---------------------------------------------------------------------------


def make_spec(
    *,
    labels: Sequence[str] | None = None,
    scale: Sequence[float] | None = None,
    schema: Mapping[str, Any] | type | None = None,
    reasons: bool = False,
) -> ScoreSpec:
    """Check the scoring options and build the spec; exactly one of the three kinds is given.

    Args:
        labels: At least two distinct labels (distinct after :func:`normalise_label`).
        scale: ``(lo, hi)`` with ``lo < hi``, ints for an integer scale, else floats.
        schema: A JSON schema whose top level is ``{"type": "object", "properties": {...}}``,
            or a pydantic model class (read through its ``model_json_schema()``; pydantic is
            never imported here). No property may be named ``error`` (the ``<into>_error``
            column), nor ``reason`` when ``reasons`` is true.
        reasons: Also ask for a short ``reason`` string per answer.

    Returns:
        The spec.

    Raises:
        ConfigError: The options are missing, ambiguous or malformed.
    """
    given = [
        n for n, v in (("labels", labels), ("scale", scale), ("schema", schema)) if v is not None
    ]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise ConfigError(f"give exactly one of labels=, scale= or schema= (got {what})")
    if not isinstance(reasons, bool):
        raise ConfigError(f"reasons must be True or False, got {reasons!r}")
    if labels is not None:
        return ScoreSpec("labels", labels=_check_labels(labels), reasons=reasons, name="label")
    if scale is not None:
        return ScoreSpec("scale", scale=_check_scale(scale), reasons=reasons, name="score")
    assert schema is not None
    resolved, name = _resolve_schema(schema)
    _check_root(resolved, reasons)
    return ScoreSpec("schema", schema=resolved, reasons=reasons, name=name)


def _items(value: object) -> tuple[Any, ...] | None:
    """A list, tuple, array or index as a tuple; None for strings, mappings and scalars."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return None
    return tuple(value)


def _check_labels(labels: object) -> tuple[str, ...]:
    found = _items(labels)
    if found is None:
        raise ConfigError(f"labels must be a list of strings, got {labels!r}")
    if len(found) < 2:
        raise ConfigError(f"labels needs at least two labels, got {list(found)!r}")
    seen: dict[str, str] = {}
    for label in found:
        if not isinstance(label, str):
            raise ConfigError(f"every label must be a string, got {label!r}")
        key = normalise_label(label)
        if not key:
            raise ConfigError(f"label {label!r} is empty once spaces and punctuation are ignored")
        if key in seen:
            raise ConfigError(
                f"labels {seen[key]!r} and {label!r} are the same once case, spaces and "
                "punctuation are ignored"
            )
        seen[key] = label
    return tuple(str(label) for label in found)  # plain str, not numpy's str_


def _check_scale(scale: object) -> tuple[float, float]:
    pair = _items(scale)
    if pair is None or len(pair) != 2:
        raise ConfigError(f"scale must be a pair (lo, hi), got {scale!r}")
    bounds: list[float] = []
    for bound in pair:
        if isinstance(bound, bool) or not isinstance(bound, numbers.Real):
            raise ConfigError(f"scale bounds must be numbers, got {bound!r}")
        value = int(bound) if isinstance(bound, numbers.Integral) else float(bound)
        if not math.isfinite(value):
            raise ConfigError(f"scale bounds must be finite, got {bound!r}")
        bounds.append(value)
    lo, hi = bounds
    if not lo < hi:
        raise ConfigError(f"scale needs lo < hi, got ({lo!r}, {hi!r})")
    return lo, hi


def _resolve_schema(schema: object) -> tuple[dict[str, Any], str]:
    title: object = None
    if isinstance(schema, type):
        reader = getattr(schema, "model_json_schema", None)
        if not callable(reader):
            raise ConfigError(
                f"schema must be a JSON-schema dict or a pydantic model class, got {schema!r}"
            )
        title = schema.__name__
        schema = reader()
    if not isinstance(schema, Mapping):
        raise ConfigError(f"schema must be a JSON-schema dict, got {type(schema).__name__}")
    try:
        resolved = json.loads(json.dumps(schema, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"schema must be plain JSON data: {exc}") from None
    title = title or resolved.get("title")
    name = _NAME_CHARS.sub("_", title).strip("_")[:64] if isinstance(title, str) else ""
    return resolved, name or "output"


def _check_root(schema: dict[str, Any], reasons: bool) -> None:
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ConfigError('schema must describe an object: {"type": "object", "properties": {...}}')
    properties: dict[str, Any] = schema["properties"]
    if not properties:
        raise ConfigError("schema has no properties")
    if _RESERVED in properties:
        raise ConfigError("schema property 'error' is reserved for the <into>_error column")
    if reasons and REASON in properties:
        raise ConfigError(
            "schema already has a 'reason' property; drop reasons=True or rename the property"
        )
    _check_schema(schema, "$")


def _check_schema(schema: object, path: str) -> None:
    """Catch the mistakes that would otherwise surface only after paying for every row."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise ConfigError(f"schema at {path} must be an object, got {schema!r}")
    kind = schema.get("type")
    if kind is not None and not isinstance(kind, str | list):
        raise ConfigError(f"schema at {path}: 'type' must be a string or a list of strings")
    for name in [kind] if isinstance(kind, str) else kind or []:
        if name not in _TYPES:
            raise ConfigError(f"schema at {path}: unknown type {name!r}")
    if "enum" in schema and not (isinstance(schema["enum"], list) and schema["enum"]):
        raise ConfigError(f"schema at {path}: 'enum' must be a non-empty list")
    required = schema.get("required", [])
    if not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        raise ConfigError(f"schema at {path}: 'required' must be a list of property names")
    pattern = schema.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"schema at {path}: bad pattern {pattern!r}: {exc}") from None
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ConfigError(f"schema at {path}: 'properties' must be an object")
    for name, sub in properties.items():
        _check_schema(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            _check_schema(schema[key], f"{path}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if branches is None:
            continue
        if not isinstance(branches, list) or not branches:
            raise ConfigError(f"schema at {path}: {key!r} must be a non-empty list")
        for i, sub in enumerate(branches):
            _check_schema(sub, f"{path}.{key}[{i}]")
    for defs in ("$defs", "definitions"):
        found = schema.get(defs) or {}
        if not isinstance(found, dict):
            raise ConfigError(f"schema at {path}: {defs!r} must be an object")
        for name, sub in found.items():
            _check_schema(sub, f"{path}.{defs}.{name}")


# -- what is sent ------------------------------------------------------------------------------


def answer_schema(spec: ScoreSpec) -> dict[str, Any]:
    """The JSON schema of one complete answer, reason included when asked for.

    The ``reason`` property comes first, so a model that writes properties in order explains
    itself before it commits to an answer.

    Args:
        spec: The spec.

    Returns:
        A fresh dict (safe to modify).
    """
    reason = {REASON: {"type": "string"}} if spec.reasons else {}
    if spec.kind == "schema":
        schema = copy.deepcopy(spec.schema)
        if spec.reasons:
            schema["properties"] = {**reason, **schema["properties"]}
            schema["required"] = [REASON, *schema.get("required", [])]
        return schema
    if spec.kind == "labels":
        value: dict[str, Any] = {"type": "string", "enum": list(spec.labels)}
        key = "label"
    else:
        assert spec.scale is not None
        lo, hi = spec.scale
        value = {"type": "integer" if spec.integer else "number", "minimum": lo, "maximum": hi}
        key = "score"
    properties = {**reason, key: value}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def text_format(spec: ScoreSpec) -> dict[str, Any]:
    """The Responses API ``text`` field that asks for structured output.

    Args:
        spec: The spec.

    Returns:
        ``{"format": {"type": "json_schema", "name": ..., "schema": ..., "strict": True}}``,
        to be sent as the request body's ``text``.

    Example:
        >>> text_format(make_spec(labels=["yes", "no"]))["format"]["schema"]["properties"]
        {'label': {'type': 'string', 'enum': ['yes', 'no']}}
    """
    return {
        "format": {
            "type": "json_schema",
            "name": spec.name,
            "schema": answer_schema(spec),
            "strict": True,
        }
    }


def instructions_hint(spec: ScoreSpec) -> str:
    """One sentence telling the model how to answer, for models that ignore ``text.format``.

    Args:
        spec: The spec.

    Returns:
        E.g. ``Answer with JSON only, in the form {"label": <one of "yes", "no">}.``
    """
    reason = '"reason": <one short sentence>, ' if spec.reasons else ""
    if spec.kind == "labels":
        options = ", ".join(json.dumps(label, ensure_ascii=False) for label in spec.labels)
        return f'Answer with JSON only, in the form {{{reason}"label": <one of {options}>}}.'
    if spec.kind == "scale":
        assert spec.scale is not None
        lo, hi = spec.scale
        what = "an integer" if spec.integer else "a number"
        return (
            f'Answer with JSON only, in the form {{{reason}"score": <{what} from {lo} to {hi}>}}.'
        )
    schema = json.dumps(answer_schema(spec), ensure_ascii=False, separators=(",", ":"))
    return f"Answer with JSON only: one object matching this JSON schema: {schema}."


# -- reading replies ---------------------------------------------------------------------------


def normalise_label(text: str) -> str:
    r"""The form labels and replies are compared in.

    Unicode NFKC, case-folded, runs of whitespace collapsed to one space, and whitespace,
    quotes and punctuation (Unicode categories ``P*``: ``. , ; : ! ? " ' ` * _ - ( ) [ ]`` …,
    so also Markdown ``**bold**``) stripped from both ends. Inner punctuation is kept.

    Example:
        >>> normalise_label('  **"Very   Positive."**\n')
        'very positive'
    """
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P") or char == "`"


def parse(spec: ScoreSpec, text: str | None) -> Parsed:
    """Read one reply into values, or say why it cannot be read.

    Labels: a JSON object ``{"label": ...}`` (also inside a fenced ```json block or surrounded
    by prose), or a plain reply; either way the label is matched under
    :func:`normalise_label` (case, surrounding quotes/punctuation/Markdown and repeated spaces
    ignored) and the value is the label exactly as given in the spec. A plain reply may carry
    a short key first: ``Label: Positive``, ``**Sentiment:** positive``, ``answer = yes``.
    Anything else, e.g. ``"Positive, mostly"`` or a second sentence, is an error.

    Scale: a JSON object ``{"score": n}`` (a number or a numeric string; ``true`` is not a
    number), or a reply that is just a number, optionally keyed (``Score: 4``) and optionally
    followed by ``/ hi`` or ``out of hi`` where ``hi`` is the scale's upper bound. The number
    must lie within the bounds (inclusive; never clipped) and, on an integer scale, be whole
    (``4.0`` reads as 4).

    Schema: a JSON object (bare, fenced, or the first ``{`` to the last ``}`` of the reply)
    that :func:`validate` accepts; the values are the schema's top-level properties (missing
    optional ones are None, nested objects stay dicts, undeclared extras are dropped).

    Reasons: when asked for, ``reason`` comes from the JSON object; it may be missing (a
    plain-text reply has none), which gives None, but if present it must be a string.

    Args:
        spec: The spec.
        text: The model's output text; None when there was none.

    Returns:
        The values, or an error quoting (at most 80 characters of) what the model said.
    """
    if text is None:
        return Parsed({}, "the response has no output text")
    if spec.kind == "labels":
        return _parse_label(spec, text)
    if spec.kind == "scale":
        return _parse_score(spec, text)
    return _parse_schema(spec, text)


def _parse_label(spec: ScoreSpec, text: str) -> Parsed:
    labels = {normalise_label(label): label for label in spec.labels}
    obj = _json_object(text) if _looks_like_json(text) else None
    if obj is None and _starts_json(text):
        return Parsed({}, f"reply is not valid JSON: {_quote(text)}")
    if obj is not None:
        value = obj.get("label")
        if not isinstance(value, str):
            return Parsed({}, f"JSON reply has no string 'label': {_quote(text)}")
        match = labels.get(normalise_label(value))
        if match is None:
            return Parsed({}, f"label {_quote(value)} is not one of {_listing(spec.labels)}")
        return _with_reason(spec, {"": match}, obj, text)
    for candidate in _plain_candidates(text):
        match = labels.get(normalise_label(candidate))
        if match is not None:
            return _with_reason(spec, {"": match}, None, text)
    return Parsed({}, f"reply {_quote(text)} is not one of {_listing(spec.labels)}")


def _parse_score(spec: ScoreSpec, text: str) -> Parsed:
    assert spec.scale is not None
    lo, hi = spec.scale
    obj = _json_object(text) if _looks_like_json(text) else None
    if obj is None and _starts_json(text):
        return Parsed({}, f"reply is not valid JSON: {_quote(text)}")
    if obj is not None:
        number = _as_number(obj.get("score"))
        if number is None:
            return Parsed({}, f"JSON reply has no numeric 'score': {_quote(text)}")
    else:
        number = None
        for candidate in _plain_candidates(text):
            found = _BARE_NUMBER.fullmatch(candidate)
            if found is None:
                continue
            number = float(found.group(1))
            if found.group(2) is not None and float(found.group(2)) != hi:
                return Parsed({}, f"reply {_quote(text)} is not on the {_span(spec)} scale")
            break
        if number is None:
            return Parsed({}, f"reply {_quote(text)} is not a number")
    if not math.isfinite(number):
        return Parsed({}, f"score {_quote(text)} is not a finite number")
    if not lo <= number <= hi:
        return Parsed({}, f"score {_show(number)} is outside the {_span(spec)} scale")
    value: float = number
    if spec.integer:
        if not number.is_integer():
            return Parsed({}, f"score {_show(number)} is not a whole number")
        value = int(number)
    return _with_reason(spec, {"": value}, obj, text)


def _parse_schema(spec: ScoreSpec, text: str) -> Parsed:
    found, decoded = _decode_json(text)
    if not found:
        return Parsed({}, f"reply is not JSON: {_quote(text)}")
    schema = spec.schema
    if spec.reasons:  # a reason is welcome (and must be a string) but never required
        schema = {**schema, "properties": {REASON: {"type": "string"}, **schema["properties"]}}
    errors = validate(decoded, schema)
    if errors:
        shown = "; ".join(errors[:_MAX_ERRORS])
        more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
        return Parsed({}, f"reply does not match the schema: {shown}{more}")
    assert isinstance(decoded, dict)
    values = {name: decoded.get(name) for name in spec.schema["properties"]}
    return _with_reason(spec, values, decoded, text)


def _with_reason(
    spec: ScoreSpec, values: dict[str, Any], obj: Mapping[str, Any] | None, text: str
) -> Parsed:
    if spec.reasons:
        reason = obj.get(REASON) if obj is not None else None
        if reason is not None and not isinstance(reason, str):
            return Parsed({}, f"'reason' is not a string: {_quote(text)}")
        values[REASON] = reason
    return Parsed(values)


def _starts_json(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith("{") or (stripped.startswith("```") and "{" in stripped)


def _looks_like_json(text: str) -> bool:
    stripped = text.strip()
    return stripped.startswith(("{", "```")) or ("{" in stripped and "}" in stripped)


def _plain_candidates(text: str) -> list[str]:
    candidates = [text]
    keyed = _KEYED.fullmatch(text)
    if keyed is not None:
        candidates.append(keyed.group(2))
    return candidates


def _decode_json(text: str) -> tuple[bool, Any]:
    """The first reading that decodes: a fenced block, the whole text, or ``{`` … ``}``."""
    stripped = text.strip()
    candidates = [m.group(1) for m in _FENCE.finditer(stripped)]
    candidates.append(stripped)
    first, last = stripped.find("{"), stripped.rfind("}")
    if 0 <= first < last:
        candidates.append(stripped[first : last + 1])
    for candidate in candidates:
        try:
            return True, json.loads(candidate, parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # nested past the stack: not a reading
            continue
    return False, None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(text: str) -> dict[str, Any] | None:
    found, decoded = _decode_json(text)
    return decoded if found and isinstance(decoded, dict) else None


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        found = _BARE_NUMBER.fullmatch(value)
        return float(found.group(1)) if found is not None and found.group(2) is None else None
    return None


def _span(spec: ScoreSpec) -> str:
    assert spec.scale is not None
    return f"{_show(spec.scale[0])}–{_show(spec.scale[1])}"


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _QUOTE_MAX:
        text = text[: _QUOTE_MAX - 1] + "…"
    return f'"{text}"'


def _listing(labels: Sequence[str]) -> str:
    return ", ".join(labels)


# -- dtypes ------------------------------------------------------------------------------------


def dtypes(spec: ScoreSpec) -> dict[str, str]:
    """The pandas dtype of each value, by column suffix, in column order.

    Labels give ``"category"`` whose categories are exactly ``spec.labels``, in that order;
    an integer scale gives ``"Int64"``, a float scale ``"Float64"``. A schema property gives
    ``"str"`` (string), ``"Int64"`` (integer), ``"Float64"`` (number, or integer-or-number),
    ``"boolean"`` (boolean), else ``"object"``; ``null`` alongside one type (``["integer",
    "null"]``, pydantic's ``anyOf`` for ``Optional``) keeps that type's dtype. ``reason``
    is ``"str"``.

    Args:
        spec: The spec.

    Returns:
        Column suffix → dtype name.
    """
    out: dict[str, str] = {}
    if spec.kind == "labels":
        out[""] = "category"
    elif spec.kind == "scale":
        out[""] = "Int64" if spec.integer else "Float64"
    else:
        for name, sub in spec.schema["properties"].items():
            out[name] = _DTYPES.get(frozenset(_value_types(sub, spec.schema, 0)), "object")
    if spec.reasons:
        out[REASON] = "str"
    return out


def _value_types(schema: object, root: Mapping[str, Any], depth: int) -> set[str]:
    """The non-null JSON types a sub-schema admits; ``{"?"}`` when unknown."""
    if not isinstance(schema, dict) or depth > 20:
        return {"?"}
    if "$ref" in schema:
        return _value_types(resolve_ref(schema["$ref"], root), root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, str | list):
        kinds = {kind} if isinstance(kind, str) else set(kind)
        kinds.discard("null")
        return kinds or {"?"}
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            found: set[str] = set()
            for branch in schema[key]:
                if not (isinstance(branch, dict) and branch.get("type") == "null"):
                    found |= _value_types(branch, root, depth + 1)
            return found or {"?"}
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if isinstance(values, list):
        found = {json_type(v) for v in values} - {"null"}
        return {"number" if found == {"integer", "number"} else t for t in found} or {"?"}
    return {"?"}


def reply_judge(spec: ScoreSpec) -> Callable[[str | None], str | None]:
    """Why a completed reply cannot be read under ``spec`` (None when it can), for displays.

    Args:
        spec: The spec the replies are read with.

    Returns:
        A function of a reply's text: :func:`parse`'s error, or None.
    """

    def judge(text: str | None) -> str | None:
        return parse(spec, text).error

    return judge
