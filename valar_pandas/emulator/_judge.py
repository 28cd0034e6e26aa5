"""Judge prompts: a deterministic judge that prefers the answer naming the right sentiment.

Owns :func:`read_judge`. A user message is a judge prompt when it holds a ``Question:``
line followed by ``Answer 1:`` and ``Answer 2:`` lines (a pairwise judgement) or by one
``Answer:`` line (a rubric judgement). The question's text (after its last ``Review:``-style
marker, if any) is read by the lexicon (:func:`~._sentiment.classify_sentiment`); an answer
is *right* when the only sentiment word it holds (positive, negative or neutral) is that
reading. The emulated judge then prefers the right answer of two, calls it a tie when both
or neither are right, and scores a right answer high on a rubric's scale and a wrong one
low. ``EmulatorConfig.judge_position_bias`` makes it prefer the first answer shown for a
share of prompts, whatever they hold, as real judges lean towards a position.

Imports nothing outside the emulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._sentiment import classify_sentiment

__all__ = ["JudgeReading", "read_judge"]

_QUESTION = re.compile(r"^\s*question\s*:", re.IGNORECASE | re.MULTILINE)
_ANSWER = re.compile(r"^\s*answer(?:\s+([12]))?\s*:", re.IGNORECASE | re.MULTILINE)
_MARKER = re.compile(r"\b(?:review|text|comment|feedback)(?:\s*#?\s*\d+)?\s*:", re.IGNORECASE)
_WORDS = re.compile(r"\b(positive|negative|neutral)\b", re.IGNORECASE)

#: Enum options meaning each verdict, lower-cased.
VERDICT_OPTIONS = {
    "first": ("1", "a", "first", "answer 1", "answer a"),
    "second": ("2", "b", "second", "answer 2", "answer b"),
    "tie": ("tie", "equal", "draw", "same", "neither", "both"),
}


@dataclass(frozen=True, slots=True)
class JudgeReading:
    """What a judge prompt asks, read.

    Attributes:
        pairwise: Two answers to compare (else one to score).
        right: For each answer shown, in order, whether it names the question's sentiment.
    """

    pairwise: bool
    right: tuple[bool, ...]

    def verdict(self, first_bias: bool = False) -> str:
        """``"first"``, ``"second"`` or ``"tie"`` for a pairwise prompt.

        Args:
            first_bias: Prefer the first answer whatever the answers hold.
        """
        if first_bias:
            return "first"
        first, second = self.right
        if first and not second:
            return "first"
        if second and not first:
            return "second"
        return "tie"


def _is_right(answer: str, sentiment: str) -> bool:
    named = {w.lower() for w in _WORDS.findall(answer)}
    return named == {sentiment}


def read_judge(user: str) -> JudgeReading | None:
    """Read a judge prompt, or None when the text is not one.

    Args:
        user: Text of the last user message.

    Returns:
        The reading: pairwise when ``Answer 1:`` and ``Answer 2:`` follow the question,
        rubric when one ``Answer:`` does.
    """
    question = _QUESTION.search(user)
    if question is None:
        return None
    answers = list(_ANSWER.finditer(user, question.end()))
    if not answers:
        return None
    asked = user[question.end() : answers[0].start()]
    markers = list(_MARKER.finditer(asked))
    subject = asked[markers[-1].end() :] if markers else asked
    sentiment = classify_sentiment(subject)
    numbers = [m.group(1) for m in answers]
    if len(answers) >= 2 and numbers[:2] == ["1", "2"]:
        first = user[answers[0].end() : answers[1].start()]
        end = answers[2].start() if len(answers) > 2 else len(user)
        second = user[answers[1].end() : end]
        return JudgeReading(True, (_is_right(first, sentiment), _is_right(second, sentiment)))
    if numbers[0] is None:
        return JudgeReading(False, (_is_right(user[answers[0].end() :], sentiment),))
    return None
