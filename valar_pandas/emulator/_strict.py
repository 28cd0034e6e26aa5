"""Strict schemas: the rules a ``json_schema`` format with ``"strict": true`` must meet.

Owns :func:`strict_schema_error`, which checks a schema against strict mode's rules (OpenAI's
Structured Outputs rules, which an OpenAI-compatible server may enforce) and answers the way
OpenAI does, naming where the schema breaks them::

    Invalid schema for response_format 'Review': In context=('properties', 'address'),
    'required' is required to be supplied and to be an array including every key in
    properties. Missing 'postcode'.

The rules checked, at every level (properties, ``items``, ``anyOf`` branches, ``$defs``):

- the root is an object schema (``"type": "object"``), not an ``anyOf``;
- every object sets ``additionalProperties: false`` and lists every property in ``required``;
- every schema has a ``type`` (or is an ``anyOf``, an ``enum``, a ``const`` or a ``$ref``);
- a ``$ref`` has no sibling keywords;
- these keywords are not permitted: ``default``, ``oneOf``, ``allOf``, ``not``, ``if``,
  ``then``, ``else``, ``minLength``, ``maxLength``, ``patternProperties``,
  ``propertyNames``, ``unevaluatedProperties``, ``unevaluatedItems``, ``minProperties``,
  ``maxProperties``, ``contains``, ``minContains``, ``maxContains``, ``uniqueItems``,
  ``prefixItems``, ``additionalItems``, ``dependentRequired``, ``dependentSchemas``,
  ``dependencies``; ``format`` only with date-time, time, date, duration, email, hostname,
  ipv4, ipv6 or uuid.

Imports nothing outside the emulator.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NOT_PERMITTED", "strict_schema_error"]

NOT_PERMITTED = (
    "default",
    "oneOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "minLength",
    "maxLength",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "minProperties",
    "maxProperties",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "prefixItems",
    "additionalItems",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
)
_FORMATS = frozenset(
    ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
)
_MAX_DEPTH = 64

Context = tuple[str | int, ...]


def strict_schema_error(schema: Any, name: str) -> str | None:
    """Why a schema sent with ``"strict": true`` breaks strict mode's rules, if it does.

    Args:
        schema: ``text.format.schema``.
        name: ``text.format.name``, quoted in the message.

    Returns:
        The OpenAI-like message (``Invalid schema for response_format '<name>': In
        context=(...), ...``), or None when the schema meets the rules.
    """
    prefix = f"Invalid schema for response_format {name!r}: "
    if not isinstance(schema, dict):
        return prefix + "schema must be a JSON Schema object."
    if "anyOf" in schema:
        return prefix + "In context=(), 'anyOf' is not permitted at the root."
    if schema.get("type") != "object":
        shown = schema.get("type")
        return (
            prefix + f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{shown}\"'."
        )
    found = _found(schema, ())
    return None if found is None else prefix + found


def _found(schema: Any, context: Context) -> str | None:
    """The first rule ``schema`` breaks, with its context; None when it meets them all."""
    where = f"In context={context!r}, "
    if len(context) > _MAX_DEPTH:
        return where + "the schema nests too deeply."
    if not isinstance(schema, dict):
        return where + "schema must be an object."
    for key in NOT_PERMITTED:
        if key in schema:
            return where + f"{key!r} is not permitted."
    fmt = schema.get("format")
    if fmt is not None and fmt not in _FORMATS:
        return where + f"'format' {fmt!r} is not permitted."
    if "$ref" in schema:
        siblings = sorted(k for k in schema if k != "$ref")
        return where + f"$ref cannot have keywords {set(siblings)!r}." if siblings else None
    kind = schema.get("type")
    if kind is None and not any(k in schema for k in ("anyOf", "enum", "const")):
        return where + "schema must have a 'type' key."
    kinds = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    if "object" in kinds or "properties" in schema:
        found = _object(schema, context, where)
        if found is not None:
            return found
    items = schema.get("items")
    if items is not None:
        found = _found(items, (*context, "items"))
        if found is not None:
            return found
    branches = schema.get("anyOf")
    if branches is not None:
        if not isinstance(branches, list) or not branches:
            return where + "'anyOf' must be a non-empty array."
        for i, branch in enumerate(branches):
            found = _found(branch, (*context, "anyOf", i))
            if found is not None:
                return found
    for defs in ("$defs", "definitions"):
        table = schema.get(defs)
        for key, sub in table.items() if isinstance(table, dict) else ():
            found = _found(sub, (*context, defs, key))
            if found is not None:
                return found
    return None


def _object(schema: dict[str, Any], context: Context, where: str) -> str | None:
    if schema.get("additionalProperties") is not False:
        return where + "'additionalProperties' is required to be supplied and to be false."
    properties = schema.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        return where + "'properties' must be an object."
    required = schema.get("required")
    missing = [key for key in properties if not isinstance(required, list) or key not in required]
    if not isinstance(required, list) or missing:
        tail = f" Missing {missing[0]!r}." if missing else ""
        return (
            where + "'required' is required to be supplied and to be an array including every "
            f"key in properties.{tail}"
        )
    extra = [key for key in required if key not in properties]
    if extra:
        return where + f"'required' names {extra[0]!r}, which is not in properties."
    for key, sub in properties.items():
        found = _found(sub, (*context, "properties", key))
        if found is not None:
            return found
    return None
