"""Text encodings: a codec name checked, and a whole file decoded strictly before any parse.

A CSV or JSON Lines input must be text in its encoding (strict UTF-8 unless told otherwise).
The file is decoded a block at a time; the first byte that is not text is named by its line
and its offset, with what to do about it.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .._core.errors import ConfigError

__all__ = ["check_decodes", "check_encoding"]

_CHECK_BLOCK = 1 << 20  # bytes decoded at a time by the encoding check (1 MiB)


def check_encoding(encoding: str) -> str:
    """The canonical name of a text encoding Python knows.

    Args:
        encoding: Any codec name Python accepts, e.g. ``"cp1252"`` or ``"latin-1"``.

    Returns:
        Its canonical name, e.g. ``"cp1252"`` or ``"iso8859-1"``.

    Raises:
        ConfigError: Python knows no such codec, or it is not a text encoding.
    """
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(
            f"unknown encoding {encoding!r}; name one Python knows, e.g. utf-8, cp1252, "
            "latin-1, utf-16"
        ) from None
    if not getattr(info, "_is_text_encoding", True):
        raise ConfigError(f"{encoding!r} is not a text encoding; name one such as cp1252")
    return info.name


def check_decodes(path: Path, encoding: str) -> None:
    """Decode the whole file strictly, a block at a time; name the first bad byte."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with path.open("rb") as file:
        while True:
            block = file.read(_CHECK_BLOCK)
            held = len(decoder.getstate()[0])  # bytes of a character the last block began
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise ConfigError(_not_text(path, encoding, offset - held, exc)) from None
            if not block:
                return
            offset += len(block)


def _not_text(path: Path, encoding: str, start: int, exc: UnicodeDecodeError) -> str:
    at = start + exc.start
    bad = exc.object[exc.start : exc.end]
    name = "UTF-8" if encoding == "utf-8" else encoding
    hint = (
        "if the file was saved in another encoding, name it with --encoding "
        "(e.g. --encoding cp1252 for a file saved by Excel on Windows)"
        if encoding == "utf-8"
        else "name the file's encoding with --encoding"
    )
    return (
        f"{path}: line {_line_of(path, encoding, at)}, byte {at}: {bytes(bad)!r} is not "
        f"{name} text ({exc.reason}); {hint}"
    )


def _line_of(path: Path, encoding: str, at: int) -> int:
    """The 1-based line holding byte ``at`` (only the bytes before it are decoded)."""
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    lines = 1
    with path.open("rb") as file:
        left = at
        while left > 0:
            block = file.read(min(_CHECK_BLOCK, left))
            if not block:
                break
            left -= len(block)
            lines += decoder.decode(block, final=left <= 0).count("\n")
    return lines
