"""Structured answers: JSON that satisfies the schema a request sends in ``text.format``.

Owns :func:`requested_schema` (the schema of a body that asks for ``json_schema`` output),
:func:`structured_answer` (a deterministic JSON value for that schema, read from the text
being judged) and :class:`Structured`, which also knows the three ways to spoil the answer
for ``Faults.invalid_structured`` (bad JSON, a label outside the enum, a number out of range)
and the three ways to ignore its shape for ``Faults.disobey_schema`` (a property left out, an
undeclared property added, the answer wrapped in another object).

How values are chosen, all deterministic (hashlib, never ``hash()``):

- an ``enum`` holding at least two of positive/negative/neutral (any case) gets the lexicon
  sentiment of the text when it is among the options; any other ``enum`` gets an option
  picked by a stable hash of the text and the JSON path; ``const`` gets the constant;
- a judge prompt (``_judge``): an ``enum`` offering the verdict (``"1"``/``"2"``/``"tie"``
  and the like) answers the verdict; a number is placed as for a positive text when the
  answer judged is right and a negative one when it is wrong;
- a number with both bounds is placed by the sentiment: 90 % of the way up the range for
  positive, halfway for neutral, 10 % for negative (integers rounded half up, so a 1–5
  scale answers 5, 3 or 1); a number with one bound or none comes from a hash;
- a string is the first six words of the text, padded or cut to ``minLength``/``maxLength``;
- a boolean comes from a hash; an array has ``max(minItems, 1)`` items (at most
  ``maxItems``); an object has every property in ``properties``;
- ``type`` lists and ``anyOf``/``oneOf`` take their first non-null choice, ``allOf`` is
  merged, local ``$ref`` is followed. ``pattern``, ``format`` and ``multipleOf`` are not
  honoured.

Imports nothing outside the emulator.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._judge import VERDICT_OPTIONS
from ._sentiment import classify_sentiment

__all__ = ["DISOBEY_KINDS", "INVALID_KINDS", "Structured", "requested_schema", "structured_answer"]

#: The ways ``Faults.invalid_structured`` spoils an answer, in selection order.
INVALID_KINDS = ("json", "enum", "range")
#: The ways ``Faults.disobey_schema`` ignores the schema's shape, in selection order.
DISOBEY_KINDS = ("missing", "extra", "shape")

_SENTIMENTS = frozenset(("positive", "negative", "neutral"))
_PLACE = {"positive": 0.9, "neutral": 0.5, "negative": 0.1}
_PHRASE_WORDS = 6
_MAX_DEPTH = 12
_NOT_IN_ENUM = ("unknown", "other", "none of these", "n/a")

Location = tuple[str | int, ...]


@dataclass(slots=True)
class Structured:
    """A generated answer, and where it could be spoiled.

    Attributes:
        value: The decoded JSON answer.
        breaks: For ``"enum"`` and ``"range"``, the first location (keys and indexes from
            the top) where the answer can be made invalid, and the invalid value to put there.
    """

    value: Any
    breaks: dict[str, tuple[Location, Any]] = field(default_factory=dict)
    other: tuple[Location, Any] | None = None
    """Where the first ``enum`` is, and the option after the one chosen (a valid wrong
    answer, for ``EmulatorConfig.model_errors``); None when the schema has no enum of two."""

    def mistaken(self) -> str | None:
        """The answer with its first ``enum`` value changed to the next option, as JSON text.

        Returns:
            The text, or None when the schema has no ``enum`` of two options or more.
        """
        if self.other is None:
            return None
        location, option = self.other
        return json.dumps(_replace(self.value, location, option), ensure_ascii=False)

    def text(self) -> str:
        """The answer as JSON text."""
        return json.dumps(self.value, ensure_ascii=False)

    def invalid(self, selector: int) -> tuple[str, str]:
        """The answer spoiled one way: the way at ``selector % 3``, else the next that applies.

        Args:
            selector: Any integer, e.g. a byte of the body's hash.

        Returns:
            ``(kind, text)``: the kind from :data:`INVALID_KINDS` and the invalid text. Bad
            JSON (the closing brace dropped) always applies.
        """
        start = selector % len(INVALID_KINDS)
        for offset in range(len(INVALID_KINDS)):
            kind = INVALID_KINDS[(start + offset) % len(INVALID_KINDS)]
            if kind == "json":
                return kind, self.text()[:-1]
            if kind in self.breaks:
                location, bad = self.breaks[kind]
                return kind, json.dumps(_replace(self.value, location, bad), ensure_ascii=False)
        raise AssertionError("unreachable: bad JSON always applies")

    def disobey(self, selector: int) -> tuple[str, str]:
        """The answer in the wrong shape, as a model that ignores the schema writes it.

        Args:
            selector: Any integer, e.g. a byte of the body's hash.

        Returns:
            ``(kind, text)``: the kind from :data:`DISOBEY_KINDS` at ``selector % 3``
            (``"missing"``: the first property left out; ``"extra"``: a property the schema
            does not declare added; ``"shape"``: the whole answer wrapped as
            ``{"result": ...}``) and valid JSON text. An answer that is not an object with
            properties is always wrapped.
        """
        kind = DISOBEY_KINDS[selector % len(DISOBEY_KINDS)]
        value = self.value
        if not (isinstance(value, dict) and value):
            kind = "shape"
        if kind == "missing":
            first = next(iter(value))
            wrong: Any = {k: v for k, v in value.items() if k != first}
        elif kind == "extra":
            name = "note"
            while name in value:
                name += "_"
            wrong = {**value, name: "answered outside the schema"}
        else:
            wrong = {"result": value}
        return kind, json.dumps(wrong, ensure_ascii=False)


def requested_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a body asks its answer to satisfy, if it asks for one.

    Args:
        body: A (validated) request body.

    Returns:
        ``body["text"]["format"]["schema"]`` when ``text.format.type`` is ``json_schema``,
        else None.
    """
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        if isinstance(schema, dict):
            return schema
    return None


def structured_answer(
    schema: Mapping[str, Any],
    subject: str,
    sentiment: str | None = None,
    verdict: str | None = None,
) -> Structured:
    """The deterministic answer satisfying ``schema`` for a text (see the module docstring).

    Args:
        schema: The requested JSON schema (the root, for ``$ref``).
        subject: The text being judged, e.g. the review after the last ``Review:`` marker.
        sentiment: The reading to use instead of the lexicon's reading of ``subject`` (a
            rubric judgement: positive for a right answer, negative for a wrong one).
        verdict: A pairwise judgement's verdict (``"first"``, ``"second"``, ``"tie"``):
            an ``enum`` holding an option that means it (``_judge.VERDICT_OPTIONS``)
            answers that option.

    Returns:
        The answer and its break points.
    """
    words = subject.split()
    reading = classify_sentiment(subject) if sentiment is None else sentiment
    maker = _Maker(schema, " ".join(words), reading, verdict)
    value = maker.value(schema, (), 0)
    return Structured(value, maker.breaks, maker.other)


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _replace(value: Any, location: Location, bad: Any) -> Any:
    if not location:
        return bad
    head, rest = location[0], location[1:]
    if isinstance(value, dict):
        return {k: _replace(v, rest, bad) if k == head else v for k, v in value.items()}
    return [_replace(v, rest, bad) if i == head else v for i, v in enumerate(value)]


class _Maker:
    """Walks a schema, building a value and noting the first enum and bounded number."""

    def __init__(
        self, root: Mapping[str, Any], subject: str, sentiment: str, verdict: str | None = None
    ) -> None:
        self.root = root
        self.subject = subject
        self.sentiment = sentiment
        self.verdict = verdict
        self.breaks: dict[str, tuple[Location, Any]] = {}
        self.other: tuple[Location, Any] | None = None

    def _hash(self, where: Location) -> int:
        return _stable(f"{self.subject}\x00{where!r}")

    def _resolve(self, schema: Any, depth: int) -> Any:
        while isinstance(schema, dict) and depth < _MAX_DEPTH:
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                target: Any = self.root
                for part in ref[1:].split("/")[1:]:
                    part = part.replace("~1", "/").replace("~0", "~")
                    target = target.get(part) if isinstance(target, Mapping) else None
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**target, **rest} if isinstance(target, dict) else rest
            elif isinstance(schema.get("allOf"), list):
                merged: dict[str, Any] = {}
                for sub in schema["allOf"]:
                    sub = self._resolve(sub, depth + 1)
                    if isinstance(sub, dict):
                        merged.update(sub)
                merged.update({k: v for k, v in schema.items() if k != "allOf"})
                schema = merged
            else:
                for key in ("anyOf", "oneOf"):
                    branches = schema.get(key)
                    if isinstance(branches, list) and branches:
                        useful = [b for b in branches if not _is_null(b)] or branches
                        rest = {k: v for k, v in schema.items() if k != key}
                        first = useful[0] if isinstance(useful[0], dict) else {}
                        return self._resolve({**rest, **first}, depth + 1)
                return schema
            depth += 1
        return schema

    def value(self, schema: Any, where: Location, depth: int) -> Any:
        schema = self._resolve(schema, depth)
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return self._phrase({})
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._choose(schema["enum"], where)
        kind = _first_type(schema)
        if kind == "object":
            out: dict[str, Any] = {}
            properties = schema.get("properties")
            for name, sub in (properties if isinstance(properties, dict) else {}).items():
                out[name] = self.value(sub, (*where, name), depth + 1)
            for name in schema.get("required") or []:
                if isinstance(name, str) and name not in out:
                    out[name] = self._phrase({})
            return out
        if kind == "array":
            return self._array(schema, where, depth)
        if kind in ("integer", "number"):
            return self._number(schema, where, kind == "integer")
        if kind == "boolean":
            return self._hash(where) % 2 == 0
        if kind == "null":
            return None
        return self._phrase(schema)

    def _choose(self, options: list[Any], where: Location) -> Any:
        lowered = [o.strip().lower() if isinstance(o, str) else None for o in options]
        meaning = VERDICT_OPTIONS.get(self.verdict or "", ())
        meant = [i for i, o in enumerate(lowered) if o in meaning]
        if meant:
            chosen = options[meant[0]]
        elif len(_SENTIMENTS.intersection(lowered)) >= 2 and self.sentiment in lowered:
            chosen = options[lowered.index(self.sentiment)]
        else:
            chosen = options[self._hash(where) % len(options)]
        if self.other is None and len(options) >= 2:
            self.other = (where, options[(options.index(chosen) + 1) % len(options)])
        if "enum" not in self.breaks:
            shown = {json.dumps(o) for o in options}
            bad = next((s for s in _NOT_IN_ENUM if json.dumps(s) not in shown), None)
            if bad is not None:
                self.breaks["enum"] = (where, bad)
        return chosen

    def _array(self, schema: dict[str, Any], where: Location, depth: int) -> list[Any]:
        fewest = schema.get("minItems")
        most = schema.get("maxItems")
        count = max(fewest if isinstance(fewest, int) else 0, 1)
        if isinstance(most, int):
            count = min(count, most)
        items = schema.get("items")
        out = []
        for i in range(count):
            sub = items[i] if isinstance(items, list) and i < len(items) else items
            out.append(self.value(sub if sub is not None else {}, (*where, i), depth + 1))
        return out

    def _number(self, schema: dict[str, Any], where: Location, integer: bool) -> int | float:
        lo, lo_open = _bound(schema, "minimum", "exclusiveMinimum", lower=True)
        hi, hi_open = _bound(schema, "maximum", "exclusiveMaximum", lower=False)
        if integer:
            if lo is not None:
                lo = math.floor(lo) + 1 if lo_open or not float(lo).is_integer() else int(lo)
            if hi is not None:
                hi = math.ceil(hi) - 1 if hi_open or not float(hi).is_integer() else int(hi)
        value: float
        if lo is not None and hi is not None:
            value = lo + _PLACE[self.sentiment] * (hi - lo)
        elif lo is not None:
            value = lo + 1 + self._hash(where) % 10
        elif hi is not None:
            value = hi - 1 - self._hash(where) % 10
        else:
            value = self._hash(where) % 101 if integer else (self._hash(where) % 10001) / 100
        if integer:
            value = math.floor(value + 0.5)
            if hi is not None:
                value = min(value, hi)
            if lo is not None:
                value = max(value, lo)
        self._note_range(schema, where, integer)
        return int(value) if integer else float(value)

    def _note_range(self, schema: dict[str, Any], where: Location, integer: bool) -> None:
        if "range" in self.breaks:
            return
        hi, _ = _bound(schema, "maximum", "exclusiveMaximum", lower=False)
        lo, _ = _bound(schema, "minimum", "exclusiveMinimum", lower=True)
        if hi is not None:
            bad: float = math.floor(hi) + 1
        elif lo is not None:
            bad = math.ceil(lo) - 1
        else:
            return
        self.breaks["range"] = (where, int(bad) if integer else float(bad))

    def _phrase(self, schema: dict[str, Any]) -> str:
        phrase = " ".join(self.subject.split()[:_PHRASE_WORDS]) or "no text"
        shortest, longest = schema.get("minLength"), schema.get("maxLength")
        if isinstance(shortest, int):
            while len(phrase) < shortest:
                phrase += " " + phrase
        if isinstance(longest, int):
            phrase = phrase[: max(longest, 0)]
        return phrase


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _first_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        useful = [k for k in kind if k != "null"]
        return str(useful[0]) if useful else "null"
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _bound(
    schema: Mapping[str, Any], inclusive: str, exclusive: str, lower: bool
) -> tuple[float | None, bool]:
    """The tighter of a closed and an open bound, and whether it is open (draft-4 flags too)."""
    closed = _real(schema.get(inclusive))
    flag = schema.get(exclusive)
    if flag is True:
        return closed, closed is not None
    opened = _real(flag)
    if opened is None:
        return closed, False
    if closed is None or (opened >= closed if lower else opened <= closed):
        return opened, True
    return closed, False


def _real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value
