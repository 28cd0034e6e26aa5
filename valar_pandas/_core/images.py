"""Input tokens of an image part, estimated before sending. Pure: no I/O.

Valar does not publish how it counts image tokens, so the estimate follows OpenAI's
documented rule for its vision models, which the OpenAI-compatible API mirrors:

* ``detail: "low"``: 85 tokens, whatever the size.
* otherwise (``"high"``, ``"auto"`` or unset): the image is scaled to fit in 2048 × 2048,
  then so that its shorter side is at most 768; it costs 170 tokens per 512-pixel tile
  plus 85.

The size is read from the header of an inline image (a ``data:`` URL holding PNG, GIF, JPEG
or WebP). An image given by an http(s) URL is not fetched: it counts as the most the rule
allows, 1,445 tokens (8 tiles), so a budget is never overshot by an image it cannot see.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["IMAGE_LOW_TOKENS", "IMAGE_MAX_TOKENS", "image_tokens", "is_image_part"]

IMAGE_LOW_TOKENS = 85
"""Tokens of a ``detail: "low"`` image, and the base cost of every other image."""
_TILE_TOKENS = 170
IMAGE_MAX_TOKENS = IMAGE_LOW_TOKENS + 8 * _TILE_TOKENS
"""Tokens assumed for an image whose size is unknown: the most the rule gives (8 tiles)."""
_HEADER_CHARS = 65_536  # base64 characters decoded to find a size: 48 KB of the file


def is_image_part(part: Mapping[str, Any]) -> bool:
    """Whether a content part is an image (``input_image``, or chat-style ``image_url``)."""
    return part.get("type") in ("input_image", "image_url")


def image_tokens(part: Mapping[str, Any]) -> int:
    """Estimate the input tokens of one image part.

    Args:
        part: A content part, ``{"type": "input_image", "image_url": ..., "detail": ...}``
            (``image_url`` may also be ``{"url": ..., "detail": ...}``).

    Returns:
        The estimated tokens, by the rule in this module's docstring.

    Example:
        >>> image_tokens({"type": "input_image", "image_url": "https://x/y.png"})
        1445
        >>> image_tokens({"type": "input_image", "image_url": "https://x/y.png", "detail": "low"})
        85
    """
    url = part.get("image_url")
    detail = part.get("detail")
    if isinstance(url, Mapping):
        detail = url.get("detail", detail)
        url = url.get("url")
    if detail == "low":
        return IMAGE_LOW_TOKENS
    size = _data_url_size(url) if isinstance(url, str) else None
    if size is None:
        return IMAGE_MAX_TOKENS
    return tile_tokens(*size)


def tile_tokens(width: int, height: int) -> int:
    """Tokens of a high-detail image of ``width`` × ``height`` pixels.

    Example:
        >>> tile_tokens(1024, 1024), tile_tokens(2048, 4096), tile_tokens(100, 100)
        (765, 1105, 255)
    """
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return IMAGE_LOW_TOKENS + _TILE_TOKENS * tiles


def _data_url_size(url: str) -> tuple[int, int] | None:
    """Width and height of an inline base64 image, from its header; None when unknown."""
    if not url.startswith("data:"):
        return None
    meta, sep, data = url[5:].partition(",")
    if not sep or not meta.endswith(";base64"):
        return None
    head = data[:_HEADER_CHARS].strip()
    head = head[: len(head) - len(head) % 4]
    try:
        raw = base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return None
    size = _size(raw)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _size(raw: bytes) -> tuple[int, int] | None:
    """Width and height from the first bytes of a PNG, GIF, JPEG or WebP file."""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        w, h = struct.unpack(">II", raw[16:24])
        return int(w), int(h)
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        w, h = struct.unpack("<HH", raw[6:10])
        return int(w), int(h)
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return _webp_size(raw)
    if raw[:2] == b"\xff\xd8":
        return _jpeg_size(raw)
    return None


def _webp_size(raw: bytes) -> tuple[int, int] | None:
    chunk = raw[12:16]
    if chunk == b"VP8X" and len(raw) >= 30:
        w = int.from_bytes(raw[24:27], "little") + 1
        h = int.from_bytes(raw[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 " and len(raw) >= 30:
        w, h = struct.unpack("<HH", raw[26:30])
        return int(w) & 0x3FFF, int(h) & 0x3FFF
    if chunk == b"VP8L" and len(raw) >= 25:
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame, which holds the size."""
    i = 2
    while i + 9 <= len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        length = int.from_bytes(raw[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", raw[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None
