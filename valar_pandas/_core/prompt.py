"""Templates: turn one row into the ``input`` of a request. Pure: no I/O, no pandas.

A template is either a ``str.format``-style string whose ``{placeholders}`` name columns, or a
callable ``row -> str | list[message] | None``. Compiling a string template checks every
placeholder against the frame's columns *before* any request is built, and names close
matches when one is missing.

Placeholders are resolved by exact column name (so ``{unit price}`` or ``{a.b}`` work as
column names), then formatted with the placeholder's conversion and format spec
(``{price:.2f}``, ``{name!r}``). Literal braces are written ``{{`` and ``}}``.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "MISSING",
    "ROLES",
    "CompiledTemplate",
    "Message",
    "Row",
    "check_messages",
    "compile_template",
]

Message = dict[str, Any]
ROLES = frozenset({"system", "developer", "user", "assistant"})
_CONVERSIONS: dict[str, Callable[[object], str]] = {"r": repr, "s": str, "a": ascii}


class _Missing:
    """A missing value: renders as an empty string, whatever the format spec."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class Row(dict[Any, Any]):
    """A row handed to a callable template: a dict that also allows ``row.column`` access."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class _Piece:
    literal: str
    column: Hashable | None
    conversion: str | None
    spec: str


@dataclass(frozen=True)
class CompiledTemplate:
    """A template checked against a frame's columns.

    Attributes:
        columns: The column labels a string template reads, in first-use order (empty for a
            callable, which reads whatever it likes).
        func: The callable, when the template is one.
    """

    columns: tuple[Hashable, ...]
    func: Callable[[Row], Any] | None
    _pieces: tuple[_Piece, ...]

    def render(self, values: Mapping[Hashable, Any]) -> str:
        """Fill a string template from ``values`` (column label → value).

        Args:
            values: At least the template's ``columns``; :data:`MISSING` renders as ``""``
                whatever the placeholder's conversion or format spec.

        Returns:
            The rendered prompt text.
        """
        out: list[str] = []
        for piece in self._pieces:
            out.append(piece.literal)
            if piece.column is None:
                continue
            value = values[piece.column]
            if value is MISSING:
                continue
            if piece.conversion is not None:
                value = _CONVERSIONS[piece.conversion](value)
            try:
                out.append(format(value, piece.spec))
            except (TypeError, ValueError, OverflowError) as exc:
                raise ConfigError(
                    f"cannot format {value!r} from column {piece.column!r} with "
                    f"':{piece.spec}' ({exc})"
                ) from None
        return "".join(out)

    def fallible(self) -> CompiledTemplate | None:
        """The placeholders whose rendering can fail, as a template of their own.

        Only a format spec can refuse a value (``{qty:05d}`` a text or ``{n:c}`` a number
        past the last code point); a placeholder without one renders any value. Rendering
        every row with this template checks every row at the cost of those columns alone.

        Returns:
            A template of the placeholders that carry a format spec, or None when there are
            none (and so no value can fail) or the template is a callable.
        """
        pieces = tuple(
            _Piece("", p.column, p.conversion, p.spec)
            for p in self._pieces
            if p.column is not None and p.spec
        )
        if self.func is not None or not pieces:
            return None
        columns = tuple(dict.fromkeys(p.column for p in pieces))
        return CompiledTemplate(columns=columns, func=None, _pieces=pieces)


def compile_template(
    template: str | Callable[[Row], Any], columns: Sequence[Hashable]
) -> CompiledTemplate:
    """Check a template against the frame's columns.

    Args:
        template: A ``str.format``-style string naming columns, or a callable taking a
            :class:`Row` and returning a prompt string, a list of messages, or None to skip.
        columns: The frame's column labels.

    Returns:
        The compiled template.

    Raises:
        ConfigError: The string does not parse, uses a positional or empty placeholder or
            an unknown conversion, or names a column the frame lacks.

    Example:
        >>> t = compile_template("Review: {review}", ["review", "stars"])
        >>> t.columns, t.render({"review": "Great!"})
        (('review',), 'Review: Great!')
    """
    if callable(template):
        return CompiledTemplate(columns=(), func=template, _pieces=())
    if not isinstance(template, str):
        raise ConfigError(f"template must be a string or a callable, got {type(template).__name__}")
    by_name = {str(c): c for c in columns}
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(
            f"bad template: {exc} (write literal braces as '{{{{' and '}}}}')"
        ) from exc
    pieces: list[_Piece] = []
    used: list[Hashable] = []
    missing: list[str] = []
    for literal, field, spec, conversion in parsed:
        if field is None:
            pieces.append(_Piece(literal, None, None, ""))
            continue
        if field == "":
            raise ConfigError(
                "bad template: empty placeholder '{}'; name a column, e.g. '{review}'"
            )
        if spec and "{" in spec:
            raise ConfigError(f"bad template: nested placeholder in format spec of {{{field}}}")
        if conversion is not None and conversion not in _CONVERSIONS:
            raise ConfigError(f"bad template: unknown conversion '!{conversion}' in {{{field}}}")
        if field not in by_name:
            missing.append(field)
            continue
        column = by_name[field]
        if column not in used:
            used.append(column)
        pieces.append(_Piece(literal, column, conversion, spec or ""))
    if missing:
        raise ConfigError(_missing_message(missing, list(by_name)))
    if not used:
        raise ConfigError(
            "template names no column: every row would get the same prompt. "
            "Add a placeholder such as '{review}'."
        )
    return CompiledTemplate(columns=tuple(used), func=None, _pieces=tuple(pieces))


def _missing_message(missing: list[str], names: list[str]) -> str:
    parts = []
    for name in dict.fromkeys(missing):
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        if not close:
            close = [n for n in names if n.lower() == name.lower()]
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    shown = ", ".join(repr(n) for n in names[:20]) + (" …" if len(names) > 20 else "")
    noun = "column" if len(parts) == 1 else "columns"
    return (
        f"template names {noun} {', '.join(parts)} not in the frame. "
        f"Available columns: {shown}. Write literal braces as '{{{{' and '}}}}'."
    )


def check_messages(value: Any, where: str) -> list[Message]:
    """Validate what a callable template returned as a message list.

    Args:
        value: The callable's return value, already known not to be a string or None.
        where: A description of the row, for the error message.

    Returns:
        The messages as a list of plain dicts.

    Raises:
        ConfigError: It is not a non-empty list of ``{"role", "content"}`` dicts with a known
            role and string or list content.
    """
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(
            f"template callable returned {type(value).__name__} for {where}; "
            "return a string, a non-empty list of messages, or None to skip the row"
        )
    messages: list[Message] = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ConfigError(f"message {i} for {where} must be a dict with 'role' and 'content'")
        if message["role"] not in ROLES:
            raise ConfigError(
                f"message {i} for {where} has role {message['role']!r}; use one of {sorted(ROLES)}"
            )
        if not isinstance(message["content"], str | list):
            raise ConfigError(f"message {i} for {where} must have string or list content")
        messages.append(dict(message))
    return messages
