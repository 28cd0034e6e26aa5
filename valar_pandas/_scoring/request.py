"""What a scoring run sends: the structured-output ``text`` field and the answer hint.

:func:`text_format` asks for one JSON object matching :func:`answer_schema`;
:func:`instructions_hint` says the same in one sentence, for models that ignore
``text.format``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .spec import REASON, ScoreSpec

__all__ = ["answer_schema", "instructions_hint", "text_format"]


def answer_schema(spec: ScoreSpec) -> dict[str, Any]:
    """The JSON schema of one complete answer, reason included when asked for.

    The ``reason`` property comes first, so a model that writes properties in order explains
    itself before it commits to an answer. A user's schema is given in the form it is sent
    in: its strict form when it has one (see :mod:`.strict`).

    Args:
        spec: The spec.

    Returns:
        A fresh dict (safe to modify).
    """
    reason = {REASON: {"type": "string"}} if spec.reasons else {}
    if spec.kind == "schema":
        schema = copy.deepcopy(spec.wire_schema or spec.schema)
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
        ``{"format": {"type": "json_schema", "name": ..., "schema": ..., "strict": ...}}``,
        to be sent as the request body's ``text``: a user's schema in its strict form with
        ``"strict": true``, or as given with ``"strict": false`` when it has no strict form
        (:attr:`ScoreSpec.not_strict` says why).

    Example:
        >>> text_format(make_spec(labels=["yes", "no"]))["format"]["schema"]["properties"]
        {'label': {'type': 'string', 'enum': ['yes', 'no']}}
    """
    return {
        "format": {
            "type": "json_schema",
            "name": spec.name,
            "schema": answer_schema(spec),
            "strict": spec.not_strict is None,
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
