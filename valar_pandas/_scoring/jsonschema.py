"""A validator for the subset of JSON Schema people write by hand. Pure.

Types (incl. lists of types and null), ``enum``, ``const``, ``required``, ``properties``,
``additionalProperties``, ``items``, numeric bounds (inclusive and exclusive), string
lengths and ``pattern``, ``anyOf``/``oneOf``/``allOf`` and local ``$ref``. Errors name the
JSON path of the offending value. Used to check structured answers without a dependency.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["json_type", "resolve_ref", "validate"]

_QUOTE_MAX = 80


def validate(instance: Any, schema: Any) -> list[str]:
    """Check decoded JSON against a JSON schema; the subset people write by hand.

    Supported: ``type`` (a name or a list, ``null`` included; an integral float counts as an
    integer), ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties``
    (false or a schema), ``items`` (a schema, or a list for tuples), ``minItems``,
    ``maxItems``, ``uniqueItems``, ``minimum``, ``maximum``, ``exclusiveMinimum``,
    ``exclusiveMaximum`` (numbers, or draft-4 booleans), ``multipleOf``, ``minLength``,
    ``maxLength``, ``pattern`` (Python ``re.search``), ``anyOf``, ``oneOf``, ``allOf``,
    ``not``, boolean schemas and local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, as
    pydantic writes them). Other keywords (``format``, ``title``, ``default`` …) are ignored.
    ``true`` and ``1`` are never equal.

    Args:
        instance: The decoded JSON value.
        schema: The schema (the root, against which ``$ref`` resolves).

    Returns:
        Error messages, each starting with the JSON path (``$.items[2].name: ...``); empty
        when the instance is valid.
    """
    errors: list[str] = []
    _validate(instance, schema, schema, "$", errors, 0)
    return errors


def _validate(value: Any, schema: Any, root: Any, path: str, errors: list[str], depth: int) -> None:
    if depth > 50:
        errors.append(f"{path}: schema nests too deeply (a $ref cycle?)")
        return
    if schema is True or schema == {}:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        target = resolve_ref(schema["$ref"], root)
        if target is None:
            errors.append(f"{path}: cannot resolve $ref {schema['$ref']!r}")
            return
        _validate(value, target, root, path, errors, depth + 1)
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(_is_type(value, k) for k in kinds):
            wanted = " or ".join(kinds)
            errors.append(f"{path}: expected {wanted}, got {json_type(value)}")
            return
    if "enum" in schema and not any(_json_equal(value, o) for o in schema["enum"]):
        shown = ", ".join(_dump(o) for o in schema["enum"])
        errors.append(f"{path}: {_dump(value)} is not one of {shown}")
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.append(f"{path}: {_dump(value)} is not {_dump(schema['const'])}")
    if _is_type(value, "number"):
        _check_number(value, schema, path, errors)
    elif isinstance(value, str):
        _check_string(value, schema, path, errors)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, errors, depth)
    elif isinstance(value, dict):
        _check_object(value, schema, root, path, errors, depth)
    _check_combinators(value, schema, root, path, errors, depth)


def _check_number(value: float, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    minimum, maximum = _number(schema.get("minimum")), _number(schema.get("maximum"))
    low, high = _number(schema.get("exclusiveMinimum")), _number(schema.get("exclusiveMaximum"))
    if schema.get("exclusiveMinimum") is True:  # draft 4: a flag on minimum
        low, minimum = minimum, None
    if schema.get("exclusiveMaximum") is True:
        high, maximum = maximum, None
    if minimum is not None and value < minimum:
        errors.append(f"{path}: {_dump(value)} is less than the minimum {_dump(minimum)}")
    if maximum is not None and value > maximum:
        errors.append(f"{path}: {_dump(value)} is greater than the maximum {_dump(maximum)}")
    if low is not None and value <= low:
        errors.append(f"{path}: {_dump(value)} is not greater than {_dump(low)}")
    if high is not None and value >= high:
        errors.append(f"{path}: {_dump(value)} is not less than {_dump(high)}")
    step = _number(schema.get("multipleOf"))
    if step is not None and step > 0:
        ratio = value / step
        if not math.isclose(ratio, round(ratio), rel_tol=1e-9, abs_tol=1e-9):
            errors.append(f"{path}: {_dump(value)} is not a multiple of {_dump(step)}")


def _number(value: object) -> float | None:
    """A numeric schema keyword's value, or None when absent (or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _check_string(value: str, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    if isinstance(shortest, int) and len(value) < shortest:
        errors.append(f"{path}: {_dump(value)} is shorter than {shortest} characters")
    if isinstance(longest, int) and len(value) > longest:
        errors.append(f"{path}: {_dump(value)} is longer than {longest} characters")
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and re.search(pattern, value) is None:
        errors.append(f"{path}: {_dump(value)} does not match the pattern {pattern!r}")


def _check_array(
    value: list[Any], schema: dict[str, Any], root: Any, path: str, errors: list[str], depth: int
) -> None:
    fewest, most = schema.get("minItems"), schema.get("maxItems")
    if isinstance(fewest, int) and len(value) < fewest:
        errors.append(f"{path}: has {len(value)} items, fewer than {fewest}")
    if isinstance(most, int) and len(value) > most:
        errors.append(f"{path}: has {len(value)} items, more than {most}")
    items = schema.get("items")
    if isinstance(items, list):
        for i, (item, sub) in enumerate(zip(value, items, strict=False)):
            _validate(item, sub, root, f"{path}[{i}]", errors, depth + 1)
    elif items is not None:
        for i, item in enumerate(value):
            _validate(item, items, root, f"{path}[{i}]", errors, depth + 1)
    if schema.get("uniqueItems") is True:
        seen = [_canonical(item) for item in value]
        if len(set(seen)) != len(seen):
            errors.append(f"{path}: items are not unique")


def _check_object(
    value: dict[str, Any],
    schema: dict[str, Any],
    root: Any,
    path: str,
    errors: list[str],
    depth: int,
) -> None:
    for name in schema.get("required", []):
        if name not in value:
            errors.append(f"{path}: missing required property {_dump(name)}")
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        where = _join(path, name)
        if name in properties:
            _validate(item, properties[name], root, where, errors, depth + 1)
        elif extra is False:
            errors.append(f"{path}: unexpected property {_dump(name)}")
        elif isinstance(extra, dict):
            _validate(item, extra, root, where, errors, depth + 1)


def _check_combinators(
    value: Any, schema: dict[str, Any], root: Any, path: str, errors: list[str], depth: int
) -> None:
    for sub in schema.get("allOf") or []:
        _validate(value, sub, root, path, errors, depth + 1)
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        found = [_branch_errors(value, b, root, path, depth) for b in branches]
        if all(found):
            errors.append(f"{path}: matches none of the anyOf choices ({found[0][0]})")
    branches = schema.get("oneOf")
    if isinstance(branches, list):
        found = [_branch_errors(value, b, root, path, depth) for b in branches]
        matched = sum(not f for f in found)
        if matched == 0:
            errors.append(f"{path}: matches none of the oneOf choices ({found[0][0]})")
        elif matched > 1:
            errors.append(f"{path}: matches {matched} of the oneOf choices, not exactly one")
    if "not" in schema and not _branch_errors(value, schema["not"], root, path, depth):
        errors.append(f"{path}: matches a schema it must not match")


def _branch_errors(value: Any, schema: Any, root: Any, path: str, depth: int) -> list[str]:
    found: list[str] = []
    _validate(value, schema, root, path, found, depth + 1)
    return found


def resolve_ref(ref: object, root: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return False


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _canonical(value: Any) -> str:
    """A form in which equal JSON values are equal strings and ``true`` differs from ``1``."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return "n" + repr(float(value))
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(k), _canonical(v)) for k, v in value.items())
        return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in items) + "}"
    return repr(value)


def _json_equal(a: Any, b: Any) -> bool:
    return _canonical(a) == _canonical(b)


def _dump(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False, default=repr)
    return shown if len(shown) <= _QUOTE_MAX else shown[: _QUOTE_MAX - 1] + "…"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if name.isidentifier() else f"{path}[{json.dumps(name)}]"
