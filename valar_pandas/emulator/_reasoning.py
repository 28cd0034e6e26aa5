"""Reasoning and prefix caching: the usage details a real service reports and a test needs.

Owns the ``reasoning`` field's vocabulary (Valar's support page: ``effort`` none / minimal /
low / medium / high / xhigh, ``generate_summary`` auto / concise / detailed), the reasoning
tokens a reasoning model spends at each effort, and :class:`PrefixCache`, which reports
``cached_tokens`` for an instructions prefix this emulator has seen before. Everything is
deterministic: the same body on the same emulator reports the same usage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "EFFORTS",
    "REASONING_TOKENS",
    "SUMMARIES",
    "PrefixCache",
    "effort_of",
]

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES = ("auto", "concise", "detailed")
REASONING_TOKENS: Mapping[str, int] = {
    "none": 0,
    "minimal": 8,
    "low": 32,
    "medium": 128,
    "high": 512,
    "xhigh": 2048,
}
"""Reasoning tokens a reasoning model spends per answer at each effort, before any cap."""


def effort_of(body: Mapping[str, Any], default: str) -> str:
    """The effort a (validated) body asks for, or ``default`` when it names none."""
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
    return effort if isinstance(effort, str) else default


class PrefixCache:
    """The instruction prefixes this emulator has seen, per model, for ``cached_tokens``.

    A request whose leading instructions (system and developer messages, ``instructions``)
    were seen before on the same model reports their tokens as cached, in whole blocks of
    ``block`` tokens, as a paged prefix cache would; the first request to send a prefix
    reports none.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def cached(self, model: str, prefix: str, tokens: int, block: int) -> int:
        """Cached tokens for a request, and remember its prefix.

        Args:
            model: The model id.
            prefix: The text of the request's instructions.
            tokens: The prefix's tokens, as the emulator counts them.
            block: The cache's block size in tokens; 0 turns caching off.

        Returns:
            ``tokens`` rounded down to whole blocks when the prefix was seen, else 0.
        """
        if not prefix or block <= 0:
            return 0
        key = hashlib.sha256(model.encode() + b"\x00" + prefix.encode()).digest()
        if key not in self._seen:
            self._seen.add(key)
            return 0
        return tokens // block * block
