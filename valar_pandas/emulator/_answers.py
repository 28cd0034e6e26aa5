"""Deterministic answers: what the emulated model says for a request body.

Owns the reading of a request body (user text, instructions, token counts), the canonical
body fingerprint, and :func:`answer_text`, which answers in plain text or, when the body asks
for ``json_schema`` output, with JSON from ``_structured``. Everything is a pure function of
the body, stable across processes (hashlib, never ``hash()``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from ._judge import read_judge
from ._sentiment import classify_sentiment
from ._structured import Structured, requested_schema, structured_answer

__all__ = [
    "answer_for",
    "answer_text",
    "body_digest",
    "canonical_json",
    "input_texts",
    "input_tokens",
    "is_pairwise_judge",
    "structured_for",
]

_ECHO_WORDS = 12
_LABELS = ("positive", "negative", "neutral")
_INSTRUCTION_ROLES = frozenset(("system", "developer"))
_MARKER = re.compile(r"\b(?:review|text|comment|feedback)(?:\s*#?\s*\d+)?\s*:", re.IGNORECASE)
_SENTIMENT = re.compile(r"\bsentiment\b", re.IGNORECASE)
_LABEL_WORDS = re.compile(r"\b(?:positive|negative|neutral)\b", re.IGNORECASE)
_ONE_OF = re.compile(r"\bone of(?:[^:\n.]{0,40}:)?\s*([^\n.;?!]+)", re.IGNORECASE)
_OPTION = r"[\"'`]?[\w-]+[\"'`]?"
_AS_LIST = re.compile(
    rf"\bas\s+({_OPTION}(?:\s*,\s*{_OPTION})*\s*,?\s*or\s+{_OPTION})", re.IGNORECASE
)
_SPLIT_OPTIONS = re.compile(r"\s*(?:,|\bor\b|\||/)\s*", re.IGNORECASE)
_JSON_HINT = re.compile(r"[^.!?\n]*\bjson\b.*", re.IGNORECASE)


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """Serialise a request body canonically (sorted keys, no spaces).

    Args:
        body: A JSON-compatible request body.

    Returns:
        The UTF-8 bytes of ``json.dumps(body, sort_keys=True, separators=(",", ":"))``.
    """
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def body_digest(body: Mapping[str, Any]) -> str:
    """Fingerprint a request body: SHA-256 of its canonical JSON.

    Args:
        body: A JSON-compatible request body.

    Returns:
        The hex digest.
    """
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def input_texts(body: Mapping[str, Any]) -> tuple[str, str, str]:
    """Split a request's input into the parts the emulated model reads.

    Args:
        body: A request body for ``POST /v1/responses``.

    Returns:
        ``(user, instructions, everything)``: the text of the last user message (or the string
        input), the text of the system/developer messages and the ``instructions`` field, and
        all input text together (what the input tokens are counted from).
    """
    raw = body.get("input")
    extra = body.get("instructions")
    instructions = [extra] if isinstance(extra, str) and extra else []
    if isinstance(raw, str):
        return raw, "\n".join(instructions), "\n".join([*instructions, raw])
    user = ""
    everything = list(instructions)
    if isinstance(raw, list):
        for message in raw:
            if not isinstance(message, dict):
                continue
            text = _content_text(message.get("content"))
            everything.append(text)
            role = message.get("role")
            if role == "user":
                user = text
            elif role in _INSTRUCTION_ROLES:
                instructions.append(text)
    return user, "\n".join(instructions), "\n".join(everything)


def input_tokens(everything: str) -> int:
    """Count input tokens the way the emulator bills them: about four characters a token.

    Args:
        everything: All input text of a request.

    Returns:
        ``max(1, len(everything) // 4)``.
    """
    return max(1, len(everything) // 4)


def _stable_index(text: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % n


def _options(task: str) -> list[str]:
    for pattern in (_ONE_OF, _AS_LIST):
        for match in pattern.finditer(task):
            found = [o.strip().strip("\"'`[]()") for o in _SPLIT_OPTIONS.split(match.group(1))]
            found = [o for o in found if o and len(o.split()) <= 3]
            if len(found) >= 2:
                return list(dict.fromkeys(found))
    return []


def _asks_for_sentiment(task: str) -> bool:
    lowered = task.lower()
    return bool(_SENTIMENT.search(task)) and all(
        re.search(rf"\b{label}\b", lowered) for label in _LABELS
    )


def answer_text(body: Mapping[str, Any]) -> str:
    """The full deterministic answer the emulator gives for a request body.

    A body whose ``text.format`` is ``json_schema`` is answered with JSON satisfying the
    schema (see :func:`structured_for`). Otherwise reads the last user message (or the
    string input). A sentiment task that lists positive,
    negative and neutral is answered with one of those words from a lexicon reading of the
    text after the last ``Review:`` marker; a prompt offering "one of: a, b, c" (or "as a, b,
    or c") is answered with one option picked by a stable hash of the text; anything else is
    answered ``"Echo: "`` followed by the first twelve words of the user text.

    Args:
        body: A request body for ``POST /v1/responses``.

    Returns:
        The answer before any ``max_output_tokens`` truncation.
    """
    user, instructions, _ = input_texts(body)
    schema = requested_schema(body)
    if schema is not None:
        return structured_for(schema, user).text()
    return answer_for(user, instructions)


def structured_for(schema: Mapping[str, Any], user: str, first_bias: bool = False) -> Structured:
    """The structured answer for a schema and the text of the last user message.

    A judge prompt (see ``_judge.read_judge``) is answered as the emulated judge rules: the
    verdict of a pairwise prompt (the first answer when ``first_bias``), or a rubric's
    score, high for a right answer and low for a wrong one. Otherwise the text judged is
    what follows the last ``Review:``-style marker (or the whole message, with the words
    positive/negative/neutral taken out), less any sentence mentioning JSON through the end
    of its line, so an answer-format hint appended to the prompt does not sway the reading.

    Args:
        schema: The JSON schema from ``text.format.schema``.
        user: Text of the last user message.
        first_bias: A pairwise judge prompt prefers the first answer, whatever it holds
            (``EmulatorConfig.judge_position_bias``).

    Returns:
        The answer, with the places where it can be spoiled.
    """
    judged = read_judge(user)
    if judged is not None:
        if judged.pairwise:
            return structured_answer(schema, user, verdict=judged.verdict(first_bias))
        return structured_answer(schema, user, "positive" if judged.right[0] else "negative")
    markers = list(_MARKER.finditer(user))
    subject = user[markers[-1].end() :] if markers else _LABEL_WORDS.sub(" ", user)
    return structured_answer(schema, _JSON_HINT.sub(" ", subject))


def answer_for(user: str, instructions: str) -> str:
    """The answer for already extracted texts (see :func:`answer_text`).

    Args:
        user: Text of the last user message.
        instructions: Text of the system/developer messages and ``instructions``.

    Returns:
        The answer before any ``max_output_tokens`` truncation.
    """
    markers = list(_MARKER.finditer(user))
    if markers:
        subject = user[markers[-1].end() :]
        preamble = user[: markers[-1].start()]
    else:
        subject = preamble = user
    task = f"{instructions}\n{preamble}"
    if _asks_for_sentiment(task):
        return classify_sentiment(subject if markers else _LABEL_WORDS.sub(" ", subject))
    options = _options(task)
    if options:
        return options[_stable_index(" ".join(subject.split()), len(options))]
    return " ".join(["Echo:", *user.split()[:_ECHO_WORDS]])


def is_pairwise_judge(user: str) -> bool:
    """Whether the text of the last user message is a pairwise judge prompt (``_judge``)."""
    judged = read_judge(user)
    return judged is not None and judged.pairwise
