"""Signatures and ``Args:`` docs of the accessor's methods, made from the options table.

A method is written as ``def run(self, template, **options: Unpack[RunArgs])``, so a type
checker reads its options from the TypedDict; :func:`takes` then gives it, at run time, the
signature and docstring it would have had with every option spelled out (defaults from
:data:`~valar_pandas._core.spec.OPTIONS`), for ``help()``, ``inspect.signature``, editors'
completion and :func:`~valar_pandas._core.options.checked_arguments`.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar

from .spec import EstimateArgs, RequestsArgs, RunArgs, ScoreArgs, names_of, option

__all__ = ["annotation", "takes"]

F = TypeVar("F", bound=Callable[..., Any])

_ANNOTATIONS: dict[str, str] = {}
for _args in (RunArgs, ScoreArgs, RequestsArgs, EstimateArgs):
    for _name, _hint in _args.__annotations__.items():
        # As the methods' own annotations read (postponed): text, ``Required`` dropped.
        _text = getattr(_hint, "__forward_arg__", str(_hint))
        _bare = _text.startswith("Required[")
        _ANNOTATIONS[_name] = _text[len("Required[") : -1] if _bare else _text


def annotation(name: str) -> str:
    """An option's type as its TypedDict spells it (``"int | None"``)."""
    return _ANNOTATIONS[name]


def takes(args: type, **overrides: tuple[Any, str]) -> Callable[[F], F]:
    """Give a method taking ``**options: Unpack[args]`` the signature and docs of its options.

    The method's keyword-only parameters become the options of ``args`` in table order,
    each with its default, so ``help()``, ``inspect.signature`` and editors show them all;
    the line ``{options}`` of its docstring becomes one ``Args:`` entry per option.

    Args:
        args: The method's TypedDict (:class:`RunArgs`, :class:`ScoreArgs`, ...).
        **overrides: ``name=(default, doc)`` for an option whose default or doc differs
            in this method (``into`` is ``"score"`` when scoring); an empty doc keeps the
            table's.

    Returns:
        A decorator that sets ``__signature__`` and ``__doc__`` and returns the method.
    """

    def decorate(method: F) -> F:
        own = inspect.signature(method)
        fixed = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        params, lines = [], []
        for name in names_of(args):
            default, doc = overrides.get(name, (option(name).default, ""))
            hint = _ANNOTATIONS[name]
            params.append(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                  annotation=hint)
            )  # fmt: skip
            lines.append(f"{name}: {doc or option(name).doc}")
        method.__signature__ = own.replace(parameters=[*fixed, *params])  # type: ignore[attr-defined]
        method.__doc__ = _fill(method.__doc__ or "", lines)
        return method

    return decorate


def _fill(doc: str, entries: list[str]) -> str:
    """``doc`` with its ``{options}`` line replaced by ``entries``, wrapped as ``Args:``."""
    out = []
    for line in doc.splitlines():
        if line.strip() != "{options}":
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        for entry in entries:
            out.extend(
                textwrap.wrap(
                    entry, width=96, initial_indent=indent, subsequent_indent=indent + "    "
                )
            )
    return "\n".join(out) + ("\n" if doc.endswith("\n") else "")
