"""Reading replies: one model reply read into typed values under a spec, or why it cannot be.

Labels and scores are read from JSON (bare, fenced, or inside prose) or from a plain reply;
schema answers are checked with :func:`~.jsonschema.validate`. An error quotes what the model
said, shortened, so a reader sees at once why a row failed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .jsonschema import validate
from .spec import REASON, ScoreSpec, normalise_label
from .strict import restore

__all__ = ["ParsedReply", "parse", "reply_judge"]

_QUOTE_MAX = 80
_MAX_ERRORS = 3
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_KEYED = re.compile(r"[\s*_`]*([^\W\d_][\w \-]{0,30}?)[\s*_`]*[:=](.*)", re.DOTALL)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_BARE_NUMBER = re.compile(
    rf"[\s*_`\"']*({_NUMBER})\s*(?:(?:/|out\s+of|of)\s*({_NUMBER}))?[\s*_`\"'.!]*",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """One reply read against a spec.

    Attributes:
        values: Column suffix → value (see the module docstring); empty when ``error`` is set.
        error: Why the reply could not be read, quoting what the model said; None on success.
    """

    values: dict[str, Any]
    error: str | None = None


def parse(spec: ScoreSpec, text: str | None) -> ParsedReply:
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
    that :func:`validate` accepts against the user's own schema, once
    :func:`~.strict.restore` has read a ``null`` for an optional property that does not
    admit ``null`` (what the strict form asks for) as the property left out; the values
    are the schema's top-level properties (missing optional ones are None, nested objects
    stay dicts, undeclared extras are dropped).

    Reasons: when asked for, ``reason`` comes from the JSON object; it may be missing (a
    plain-text reply has none), which gives None, but if present it must be a string.

    Args:
        spec: The spec.
        text: The model's output text; None when there was none.

    Returns:
        The values, or an error quoting (at most 80 characters of) what the model said.
    """
    if text is None:
        return ParsedReply({}, "the response has no output text")
    if spec.kind == "labels":
        return _parse_label(spec, text)
    if spec.kind == "scale":
        return _parse_score(spec, text)
    return _parse_schema(spec, text)


def _parse_label(spec: ScoreSpec, text: str) -> ParsedReply:
    labels = {normalise_label(label): label for label in spec.labels}
    obj = _json_object(text) if _looks_like_json(text) else None
    if obj is None and _starts_json(text):
        return ParsedReply({}, f"reply is not valid JSON: {_quote(text)}")
    if obj is not None:
        value = obj.get("label")
        if not isinstance(value, str):
            return ParsedReply({}, f"JSON reply has no string 'label': {_quote(text)}")
        match = labels.get(normalise_label(value))
        if match is None:
            return ParsedReply({}, f"label {_quote(value)} is not one of {_listing(spec.labels)}")
        return _with_reason(spec, {"": match}, obj, text)
    for candidate in _plain_candidates(text):
        match = labels.get(normalise_label(candidate))
        if match is not None:
            return _with_reason(spec, {"": match}, None, text)
    return ParsedReply({}, f"reply {_quote(text)} is not one of {_listing(spec.labels)}")


def _parse_score(spec: ScoreSpec, text: str) -> ParsedReply:
    assert spec.scale is not None
    lo, hi = spec.scale
    obj = _json_object(text) if _looks_like_json(text) else None
    if obj is None and _starts_json(text):
        return ParsedReply({}, f"reply is not valid JSON: {_quote(text)}")
    if obj is not None:
        number = _as_number(obj.get("score"))
        if number is None:
            return ParsedReply({}, f"JSON reply has no numeric 'score': {_quote(text)}")
    else:
        number = None
        for candidate in _plain_candidates(text):
            found = _BARE_NUMBER.fullmatch(candidate)
            if found is None:
                continue
            number = float(found.group(1))
            if found.group(2) is not None and float(found.group(2)) != hi:
                return ParsedReply({}, f"reply {_quote(text)} is not on the {_span(spec)} scale")
            break
        if number is None:
            return ParsedReply({}, f"reply {_quote(text)} is not a number")
    if not math.isfinite(number):
        return ParsedReply({}, f"score {_quote(text)} is not a finite number")
    if not lo <= number <= hi:
        return ParsedReply({}, f"score {_show(number)} is outside the {_span(spec)} scale")
    value: float = number
    if spec.integer:
        if not number.is_integer():
            return ParsedReply({}, f"score {_show(number)} is not a whole number")
        value = int(number)
    return _with_reason(spec, {"": value}, obj, text)


def _parse_schema(spec: ScoreSpec, text: str) -> ParsedReply:
    found, decoded = _decode_json(text)
    if not found:
        return ParsedReply({}, f"reply is not JSON: {_quote(text)}")
    schema = spec.schema
    if spec.reasons:  # a reason is welcome (and must be a string) but never required
        schema = {**schema, "properties": {REASON: {"type": "string"}, **schema["properties"]}}
    decoded = restore(decoded, schema)
    errors = validate(decoded, schema)
    if errors:
        shown = "; ".join(errors[:_MAX_ERRORS])
        more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
        return ParsedReply({}, f"reply does not match the schema: {shown}{more}")
    assert isinstance(decoded, dict)
    values = {name: decoded.get(name) for name in spec.schema["properties"]}
    return _with_reason(spec, values, decoded, text)


def _with_reason(
    spec: ScoreSpec, values: dict[str, Any], obj: Mapping[str, Any] | None, text: str
) -> ParsedReply:
    if spec.reasons:
        reason = obj.get(REASON) if obj is not None else None
        if reason is not None and not isinstance(reason, str):
            return ParsedReply({}, f"'reason' is not a string: {_quote(text)}")
        values[REASON] = reason
    return ParsedReply(values)


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
