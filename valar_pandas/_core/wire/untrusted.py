"""What a server sends, made safe to use: JSON within a nesting bound, text, ids.

No sockets, no sleeping, no pandas: decided from plain data and table-tested.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "TooDeep", "decode_json", "encodable", "usable_id"]

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects read in a reply (a Response object needs 5)."""
_MAX_ID = 256
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
"""A JSON string (skipped whole, brackets inside it are text) or one bracket."""


class TooDeep(ValueError):
    """A reply nests arrays and objects deeper than anything the contract sends."""


def decode_json(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode a reply's JSON, refusing nesting deeper than ``max_depth``.

    Args:
        body: The reply's body.
        max_depth: The deepest nesting of arrays and objects accepted.

    Returns:
        The decoded value.

    Raises:
        ValueError: The body is not JSON.
        TooDeep: It nests deeper than ``max_depth`` (which would otherwise exhaust the
            stack while decoding, or after): the same reply again would be no better.

    Example:
        >>> decode_json(b'{"a": ["[[[["]}')
        {'a': ['[[[[']}
        >>> decode_json(b"[" * 100)
        Traceback (most recent call last):
        valar_pandas._core.wire.untrusted.TooDeep: JSON nested deeper than 64 levels
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") > max_depth:  # may nest too deep: measure it
        depth = 0
        for token in _TOKENS.finditer(raw):
            char = token.group()
            if char in (b"[", b"{"):
                depth += 1
                if depth > max_depth:
                    raise TooDeep(f"JSON nested deeper than {max_depth} levels")
            elif char in (b"]", b"}"):
                depth -= 1
    try:
        return json.loads(raw)
    except RecursionError:  # a deep nest with brackets the scan could not see: still refused
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None


def encodable(text: str) -> str:
    r"""Text UTF-8 can carry: each lone surrogate (half an emoji) becomes its escape.

    The six characters ``\udXXX`` stand for the surrogate, so nothing is lost, and the
    same text is written to the run store, the frame and output files.

    Example:
        >>> encodable("ok \ud83d")
        'ok \\ud83d'
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def usable_id(value: object) -> bool:
    r"""Whether a server's id can go into a request path and the run store as it is.

    A usable id is a string of 1 to 256 printable ASCII characters, without spaces.

    Example:
        >>> usable_id("resp_abc123"), usable_id("resp_\ud83d"), usable_id("a b")
        (True, False, False)
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_ID
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )
