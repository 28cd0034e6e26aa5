"""Text that came from the server, made safe to keep and to show.

Two dangers, two helpers. A server may echo the API key in what it sends back (an error
message quoting the ``Authorization`` header): :func:`scrub_body` takes it out of every answer
where answers enter the library (the HTTP doorway, :mod:`valar_pandas._transport.http`), before
anything parses, stores, writes, shows or raises it, so every later use sees ``***``. And a server's
text may hold terminal control sequences (``ESC [ 2 J`` clears a screen, ``ESC ] 0 ;`` retitles
the window): :func:`printable` writes every control character as a visible escape before the
text reaches a terminal or a message.

Pure: no I/O. The key is read from its :class:`~valar_pandas._core.secret.Secret` inside each
expression that needs it and kept in no variable, so a traceback shown with its locals cannot
show it.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .secret import Secret

__all__ = ["MASK", "printable", "scrub_body", "scrub_text"]

MASK = "***"
"""What stands where the key was."""

MIN_SECRET = 8
"""Keys shorter than this are not searched for: too short to be a real key, they would match
ordinary text (a test's key ``"k"`` in every answer's ``"ok"``)."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
"""C0 and C1 controls, DEL, the bidirectional overrides and lone surrogates."""

_ASCII_ESCAPE = re.compile(rb"\\u00([2-7][0-9a-fA-F])|\\([\"\\/])")
r"""JSON escapes that stand for a printable ASCII character (``\u0073``, ``\/``, ``\"``)."""

_ASCII_HINT = re.compile(rb"\\u00[2-7]|\\/")
r"""Where an escape could spell one of a key's characters (``\"`` and ``\\`` aside): rare."""

_REPLACED = (
    b'{"error": {"message": "the server\'s answer quoted the API key and could not be '
    b'cleaned, so it was dropped", "type": "server_error", "code": "key_in_answer"}}'
)


def printable(text: str) -> str:
    r"""``text`` with every control character written as a visible escape.

    Args:
        text: Text from the server or the run store.

    Returns:
        The same text where each C0 or C1 control character, DEL, bidirectional override and
        lone surrogate is replaced by its escape (``\x1b``, ``\u202e``), so a terminal
        shows it instead of obeying it. Other text, any script or emoji, is unchanged.
    """
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def scrub_text(text: str, secret: Secret) -> str:
    """``text`` with every occurrence of the key replaced by :data:`MASK`.

    Args:
        text: Any text (a header value, a message).
        secret: The API key.

    Returns:
        The text, the key masked (a key shorter than :data:`MIN_SECRET` is left alone).
    """
    if len(secret.reveal()) < MIN_SECRET or secret.reveal() not in text:
        return text
    return text.replace(secret.reveal(), MASK)


def scrub_body(body: bytes, secret: Secret) -> bytes:
    r"""An answer's bytes with the key replaced by :data:`MASK`, however it is written.

    The key is found as it is, and as JSON may spell it with escapes (``\u0073k-...``,
    ``\/``): such an answer is decoded, masked string by string and encoded again. One
    that cannot be decoded is replaced by an error envelope, so the key never passes.

    Args:
        body: The answer as it arrived (decoded from gzip, not yet parsed).
        secret: The API key.

    Returns:
        The body, unchanged when the key is not in it (the usual case, checked in one scan)
        or shorter than :data:`MIN_SECRET`.
    """
    if len(secret.reveal()) < MIN_SECRET:
        return body
    if secret.reveal().encode("latin-1") in body:
        body = body.replace(secret.reveal().encode("latin-1"), MASK.encode("ascii"))
    if _ASCII_HINT.search(body) is None and not (b"\\" in body and _escaped_in_json(secret)):
        return body  # no escape that could spell the key: JSON escapes \n, \" and é freely
    if secret.reveal().encode("latin-1") not in _ASCII_ESCAPE.sub(_unescape, body):
        return body
    try:
        decoded = json.loads(body)
        return json.dumps(_masked(decoded, secret)).encode("ascii")
    except (ValueError, RecursionError):
        return _REPLACED


def _escaped_in_json(secret: Secret) -> bool:
    """Whether the key holds a character JSON must escape (``"`` or a backslash)."""
    return '"' in secret.reveal() or "\\" in secret.reveal()


def _unescape(match: re.Match[bytes]) -> bytes:
    hex_digits, char = match.group(1), match.group(2)
    return bytes([int(hex_digits, 16)]) if hex_digits is not None else char


def _masked(value: Any, secret: Secret) -> Any:
    """A decoded JSON value with the key masked in every string, keys of objects included."""
    if isinstance(value, str):
        return scrub_text(value, secret)
    if isinstance(value, list):
        return [_masked(item, secret) for item in value]
    if isinstance(value, dict):
        return {scrub_text(k, secret): _masked(v, secret) for k, v in value.items()}
    return value
