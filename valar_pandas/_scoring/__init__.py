"""Scoring: a spec of what to ask, the request that asks it, and replies read into columns.

A scoring run asks every row for a label, a number on a scale, or an object matching a JSON
schema, as structured output. Everything here is decided from plain data, with no pandas,
and table-tested; the typed pandas columns are :mod:`valar_pandas._frame.score_columns`.
Values are keyed by *column suffix*: ``""`` is the ``<into>`` column itself (the label or the
score), ``"reason"`` is ``<into>_reason``, and a schema property ``p`` is ``<into>_p``.

Modules: :mod:`.spec` (:class:`ScoreSpec`, built and checked by :func:`make_spec`),
:mod:`.request` (the structured-output ``text`` field, the answer hint), :mod:`.reply`
(reading one reply, :func:`parse`), :mod:`.dtypes` (each value's pandas dtype) and
:mod:`.jsonschema` (a validator for the JSON-schema subset, no dependency) and
:mod:`.strict` (a user's schema rewritten for strict mode, and answers read back).
"""

from .dtypes import dtypes
from .jsonschema import validate
from .reply import ParsedReply, parse, reply_judge
from .request import answer_schema, instructions_hint, text_format
from .spec import REASON, Kind, ScoreSpec, column_name, make_spec, normalise_label
from .strict import StrictForm, restore, strict_form

__all__ = [
    "REASON",
    "Kind",
    "ParsedReply",
    "ScoreSpec",
    "StrictForm",
    "answer_schema",
    "column_name",
    "dtypes",
    "instructions_hint",
    "make_spec",
    "normalise_label",
    "parse",
    "reply_judge",
    "restore",
    "strict_form",
    "text_format",
    "validate",
]
