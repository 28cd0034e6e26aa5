"""Strict structured outputs: a user's schema made strict-compatible, and answers read back.

Strict mode (``"strict": true`` in ``text.format``, OpenAI's rules, which OpenAI-compatible
servers follow) accepts only a subset of JSON Schema: every object lists *all* its properties
in ``required`` and sets ``additionalProperties: false``, an optional value is a union with
``null``, and a handful of keywords are refused. Users write schemas, and pydantic writes
models, that break these rules (an ``Optional`` field with a default is neither required nor
closed), so :func:`strict_form` rewrites a schema into the strict subset:

- every object's ``required`` becomes all of its properties, and ``additionalProperties``
  becomes ``false``;
- a property that was optional, and did not already admit ``null``, becomes
  ``{"anyOf": [<its schema>, {"type": "null"}]}``; the model answers ``null`` where it would
  have left the property out;
- ``default`` is dropped, ``oneOf`` becomes ``anyOf``, a one-branch ``allOf`` is inlined, and a
  ``$ref`` with sibling keywords becomes ``{"anyOf": [{"$ref": ...}], <siblings>}``;
- everything else (``$defs``, ``enum``, ``const``, bounds, ``pattern``, ``title``,
  ``description``) is kept as it is.

A schema that already meets the rules comes back equal to itself. A schema that needs what
strict mode cannot say (``additionalProperties`` true or a schema, ``patternProperties``, an
object without properties, an array without ``items``) or uses a keyword strict mode refuses
(``minLength``, ``uniqueItems``, ``not``, an unlisted ``format`` …) has no strict form: it is
sent unchanged with ``"strict": false`` and the reason is given.

Answers are always checked against the user's *own* schema, after :func:`restore` has turned
the strict form's nulls back into the user's shape: a ``null`` for an optional property whose
schema does not admit ``null`` is read as the property left out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .jsonschema import resolve_ref, validate

__all__ = ["REFUSED", "STRING_FORMATS", "StrictForm", "restore", "strict_form"]

#: Keywords strict mode refuses; a schema holding one is sent with ``"strict": false``.
REFUSED = (
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
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
)
#: The ``format`` values strict mode accepts on strings.
STRING_FORMATS = frozenset(
    ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
)
_MAX_NESTING = 10  # levels of nested objects strict mode allows
_MAX_PROPERTIES = 5000  # properties over the whole schema
_NULL: dict[str, Any] = {"type": "null"}


@dataclass(frozen=True, slots=True)
class StrictForm:
    """The schema to send and whether it is sent strict.

    Attributes:
        schema: The strict-compatible rewrite of the user's schema, or (when ``reason`` is
            set) the user's schema unchanged.
        reason: Why the schema has no strict form (``"$.tags: 'uniqueItems' is refused in
            strict mode"``); None when ``schema`` is strict-compatible.
    """

    schema: dict[str, Any]
    reason: str | None = None

    @property
    def strict(self) -> bool:
        """Whether the schema is sent with ``"strict": true``."""
        return self.reason is None


class _NotStrict(Exception):
    """Raised inside the walk: the schema has no strict form, for the reason given."""


def strict_form(schema: Mapping[str, Any]) -> StrictForm:
    """Rewrite an object schema into strict mode's subset (see the module docstring).

    Args:
        schema: A checked schema whose top level is an object with properties.

    Returns:
        The strict form, or the schema unchanged with the reason it cannot be strict.

    Example:
        >>> form = strict_form({"type": "object", "properties": {"n": {"type": "integer"}}})
        >>> form.strict, form.schema["required"], form.schema["properties"]["n"]
        (True, ['n'], {'anyOf': [{'type': 'integer'}, {'type': 'null'}]})
    """
    original = copy.deepcopy(dict(schema))
    walk = _Walk()
    try:
        rewritten = walk.node(copy.deepcopy(original), "$", 0)
    except _NotStrict as exc:
        return StrictForm(original, str(exc))
    return StrictForm(rewritten)


class _Walk:
    def __init__(self) -> None:
        self.properties = 0

    def node(self, schema: Any, path: str, nesting: int) -> Any:
        if isinstance(schema, bool) or not isinstance(schema, dict):
            raise _NotStrict(f"{path}: a boolean schema has no strict form")
        for key in REFUSED:
            if key in schema:
                raise _NotStrict(f"{path}: {key!r} is refused in strict mode")
        fmt = schema.get("format")
        if fmt is not None and fmt not in STRING_FORMATS:
            raise _NotStrict(f"{path}: format {fmt!r} is refused in strict mode")
        out = {k: v for k, v in schema.items() if k != "default"}
        if "oneOf" in out:
            if "anyOf" in out:
                raise _NotStrict(f"{path}: both 'oneOf' and 'anyOf'")
            out["anyOf"] = out.pop("oneOf")
        if "allOf" in out:
            out = self._inline_all_of(out, path)
        if "$ref" in out and len(out) > 1:
            ref = out.pop("$ref")
            if "anyOf" in out:
                raise _NotStrict(f"{path}: both '$ref' and 'anyOf'")
            out = {"anyOf": [{"$ref": ref}], **out}
        if isinstance(out.get("anyOf"), list):
            out["anyOf"] = [
                self.node(b, f"{path}.anyOf[{i}]", nesting) for i, b in enumerate(out["anyOf"])
            ]
        for defs in ("$defs", "definitions"):
            if isinstance(out.get(defs), dict):
                out[defs] = {
                    name: self.node(sub, f"{path}.{defs}.{name}", 0)
                    for name, sub in out[defs].items()
                }
        kinds = _kinds(out)
        if "object" in kinds or "properties" in out:
            out = self._object(out, path, nesting)
        if "array" in kinds or "items" in out:
            items = out.get("items")
            if not isinstance(items, dict):
                raise _NotStrict(f"{path}: an array needs one 'items' schema in strict mode")
            out["items"] = self.node(items, f"{path}[]", nesting)
        if not kinds and not any(k in out for k in ("anyOf", "$ref", "enum", "const")):
            raise _NotStrict(f"{path}: a schema without a type has no strict form")
        return out

    def _inline_all_of(self, out: dict[str, Any], path: str) -> dict[str, Any]:
        branches = out.pop("allOf")
        if not (isinstance(branches, list) and len(branches) == 1):
            raise _NotStrict(f"{path}: 'allOf' with several schemas is refused in strict mode")
        only = branches[0]
        if not isinstance(only, dict) or any(k in out for k in only):
            raise _NotStrict(f"{path}: 'allOf' overlaps the keywords beside it")
        return {**only, **out}

    def _object(self, out: dict[str, Any], path: str, nesting: int) -> dict[str, Any]:
        if nesting >= _MAX_NESTING:
            raise _NotStrict(f"{path}: objects nest deeper than {_MAX_NESTING} levels")
        extra = out.get("additionalProperties", False)
        if extra is not False:
            raise _NotStrict(
                f"{path}: 'additionalProperties' allows properties the schema does not name, "
                "which strict mode cannot"
            )
        properties = out.get("properties")
        if not isinstance(properties, dict) or not properties:
            raise _NotStrict(f"{path}: an object without properties has no strict form")
        required = out.get("required", [])
        unknown = [name for name in required if name not in properties]
        if unknown:
            raise _NotStrict(f"{path}: requires {unknown[0]!r}, which it does not define")
        self.properties += len(properties)
        if self.properties > _MAX_PROPERTIES:
            raise _NotStrict(f"more than {_MAX_PROPERTIES} properties in all")
        rewritten: dict[str, Any] = {}
        for name, sub in properties.items():
            value = self.node(sub, _join(path, name), nesting + 1)
            if name not in required and not _admits_null(value):
                value = {"anyOf": [value, dict(_NULL)]}
            rewritten[name] = value
        out["properties"] = rewritten
        out["required"] = list(properties)
        out["additionalProperties"] = False
        return out


def _kinds(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    return {k for k in kind if isinstance(k, str)} if isinstance(kind, list) else set()


def _admits_null(schema: Mapping[str, Any]) -> bool:
    """Whether a (rewritten) schema visibly admits ``null``: its type, enum, const or a branch."""
    if "null" in _kinds(schema) and "enum" not in schema and "const" not in schema:
        return True
    if "const" in schema and schema["const"] is None:
        return True
    if isinstance(schema.get("enum"), list) and None in schema["enum"]:
        return "type" not in schema or "null" in _kinds(schema)
    branches = schema.get("anyOf")
    return isinstance(branches, list) and any(
        isinstance(b, dict) and _admits_null(b) for b in branches
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if name.isidentifier() else f"{path}[{name!r}]"


def restore(value: Any, schema: Any, root: Any | None = None) -> Any:
    """An answer given under the strict form, read back into the user's own shape.

    A ``null`` for an optional property whose own schema does not admit ``null`` becomes the
    property left out, at any depth (nested objects, array items, ``$ref``, ``allOf``, and
    the first ``anyOf``/``oneOf`` branch the restored value satisfies). Everything else is
    kept; the result is then checked against the user's schema as any answer is.

    Args:
        value: The decoded answer.
        schema: The user's schema for it.
        root: The schema ``$ref`` resolves against; the schema itself when None.

    Returns:
        The answer with such nulls removed (a new value; ``value`` is not modified).
    """
    return _restore(value, schema, schema if root is None else root, 0)


def _restore(value: Any, schema: Any, root: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 50 or not isinstance(value, dict | list):
        return value
    if "$ref" in schema:
        value = _restore(value, resolve_ref(schema["$ref"], root), root, depth + 1)
    for sub in schema.get("allOf") or []:
        value = _restore(value, sub, root, depth + 1)
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list):
            # The value is an object or an array here, so a null branch cannot be its own;
            # when one branch is left, it is the only reading (the final check judges it).
            useful = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            if len(useful) == 1:
                value = _restore(value, useful[0], root, depth + 1)
                continue
            for branch in useful:
                candidate = _restore(value, branch, root, depth + 1)
                if not validate(candidate, _with_defs(branch, root)):
                    value = candidate
                    break
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_restore(v, items, root, depth + 1) for v in value]
        return value
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return value
    required = schema.get("required") or []
    out: dict[str, Any] = {}
    for name, item in value.items():
        sub = properties.get(name)
        optional = sub is not None and name not in required
        if item is None and optional and validate(None, _with_defs(sub, root)):
            continue  # null stood for "left out": the user's schema refuses it
        out[name] = _restore(item, sub, root, depth + 1) if sub is not None else item
    return out


def _with_defs(schema: Any, root: Any) -> Any:
    """A sub-schema that can be checked alone: the root's ``$defs`` put within its reach."""
    if not isinstance(schema, dict) or not isinstance(root, dict):
        return schema
    defs = {k: root[k] for k in ("$defs", "definitions") if k in root}
    return {**defs, **schema}
