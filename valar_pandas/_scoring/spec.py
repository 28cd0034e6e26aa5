"""Scoring specs: what a scoring run asks for (labels, a scale or a JSON schema), checked.

:func:`make_spec` builds a :class:`ScoreSpec` and refuses, before any request, labels that
collide once normalised, a scale that is not a range, or a schema outside the subset the
structured-output APIs accept. Values are keyed by *column suffix*: ``""`` is the ``<into>``
column itself (the label or the score), ``"reason"`` is ``<into>_reason``, and a schema
property ``p`` is ``<into>_p``.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._core.errors import ConfigError
from .strict import strict_form

__all__ = ["REASON", "Kind", "ScoreSpec", "column_name", "make_spec", "normalise_label"]

Kind = Literal["labels", "scale", "schema"]

#: Suffix of the optional explanation column, ``<into>_reason``.
REASON = "reason"
_RESERVED = "error"  # <into>_error is the row's error column
_TYPES = frozenset(("null", "boolean", "integer", "number", "string", "array", "object"))
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


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
        wire_schema: What is sent for ``schema`` (kind ``schema``): its strict-compatible
            rewrite (:func:`~.strict.strict_form`), or ``schema`` itself when it has none.
        not_strict: Why ``schema`` has no strict form, so it is sent with ``"strict":
            false``; None when the request is strict.
    """

    kind: Kind
    labels: tuple[str, ...] = ()
    scale: tuple[float, float] | None = None
    schema: dict[str, Any] = field(default_factory=dict)
    reasons: bool = False
    name: str = "output"
    wire_schema: dict[str, Any] = field(default_factory=dict)
    not_strict: str | None = None

    @property
    def integer(self) -> bool:
        """Whether this is a scale whose bounds are both integers."""
        return self.scale is not None and all(isinstance(b, int) for b in self.scale)


def column_name(into: str, suffix: str) -> str:
    """The column a value goes to: ``into`` for suffix ``""``, else ``<into>_<suffix>``."""
    return into if suffix == "" else f"{into}_{suffix}"


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
    form = strict_form(resolved)
    return ScoreSpec(
        "schema",
        schema=resolved,
        reasons=reasons,
        name=name,
        wire_schema=form.schema,
        not_strict=form.reason,
    )


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
