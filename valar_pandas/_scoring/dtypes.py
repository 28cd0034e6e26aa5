"""The pandas dtype of each value a spec asks for, decided from the spec alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .jsonschema import json_type, resolve_ref
from .spec import REASON, ScoreSpec

__all__ = ["dtypes"]

_DTYPES = {
    frozenset({"string"}): "str",
    frozenset({"integer"}): "Int64",
    frozenset({"number"}): "Float64",
    frozenset({"integer", "number"}): "Float64",
    frozenset({"boolean"}): "boolean",
}


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
