"""The options of a run, validated in one place before any request is built. Pure.

Two layers: :func:`checked_arguments` turns a call that does not fit a method's signature (an
unknown option, a missing one) into a :class:`ConfigError` naming close matches, and
:func:`validate_options` checks every value.

Numbers are taken as numbers, not as Python's own types: numpy's integers count wherever an
integer is meant and any finite real number wherever a float is; ``True`` and ``False`` are
never numbers here.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import math
import numbers
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, ParamSpec, TypeVar, cast

from .batchplan import check_label
from .errors import ConfigError
from .spec import DEFAULT_MAX_RPS, OPTIONS, defaults

__all__ = [
    "DEFAULT_MAX_RPS",
    "MIN_MAX_RPS",
    "MODES",
    "RunOptions",
    "as_int",
    "as_real",
    "check_extra_body",
    "check_reasoning",
    "checked_arguments",
    "validate_options",
]

P = ParamSpec("P")
R = TypeVar("R")

MODES = ("background", "realtime", "batch", "auto")
WINDOWS = ("standard", "asap")
ERRORS = ("column", "raise")
PROGRESS = ("auto", "tqdm", "widget", None)
ON_MISSING = ("empty", "skip")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
"""``reasoning.effort`` as Valar documents it (its support page)."""
SUMMARIES = ("auto", "concise", "detailed")
"""``reasoning.generate_summary`` as Valar documents it."""
OWNED_FIELDS: dict[str, tuple[str, str]] = {
    "model": ("the library sets it from model=", "the command sets it from --model"),
    "input": ("the library sets it from the template", "the command sets it from --template"),
    "instructions": (
        "the library sets it from instructions=",
        "the command sets it from --instructions",
    ),
    "max_output_tokens": (
        "the library sets it from max_output_tokens=",
        "the command sets it from --max-output-tokens",
    ),
    "temperature": (
        "the library sets it from temperature=",
        "the command sets it from --temperature",
    ),
    "reasoning": ("the library sets it from reasoning=", "the command sets it from --reasoning"),
    "background": ("the library sets it from mode=", "the command sets it from --mode"),
    "metadata": (
        "the library sets it from completion_window=",
        "the command sets it from --completion-window",
    ),
    "stream": ("answers are polled, never streamed",) * 2,
    "store": ("Valar stores every response, and answers are read back by id",) * 2,
}
"""Body fields the library sets itself, and what sets them instead of ``extra_body``."""
MIN_MAX_RPS = 0.1
"""The smallest request budget, requests a second: one request every ten seconds. A row costs
at least two requests (a create, then a poll; one in realtime mode), so at this floor a row
takes 20 s and 1,000 rows more than five hours; a budget below it means a run that never ends
in practice (``max_rps=1e-6`` waits eleven days between requests). It still lets a caller stay
under an endpoint's limit of a few requests a minute."""


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs besides the frame, the template and the client.

    One field per *settled* row of :data:`~valar_pandas._core.spec.OPTIONS` (checked when this
    module is imported), plus ``text``; the rows' defaults fill :func:`validate_options`.
    """

    model: str
    into: str
    instructions: str | None
    max_output_tokens: int | None
    temperature: float | None
    completion_window: str
    mode: Literal["background", "realtime", "batch", "auto"]
    concurrency: int
    errors: Literal["column", "raise"]
    progress: Literal["auto", "tqdm", "widget"] | None
    details: bool
    on_missing: Literal["empty", "skip"]
    salt: str | None
    cache: bool = True
    retry_failed: bool = True
    budget: float | None = None
    text: dict[str, Any] | None = None
    """The ``text`` field of every request (structured output), set by ``score()``."""
    label: str | None = None
    """The label of the batches a batch run creates."""
    max_rps: float | None = DEFAULT_MAX_RPS
    """The most HTTP requests a second, every kind together; None for no limit."""
    reasoning: dict[str, str] | None = None
    """The ``reasoning`` field of every request (``{"effort": ...}``), or None."""
    extra_body: dict[str, Any] | None = None
    """More fields of every request body (a JSON-safe copy of what was given), or None."""

    @property
    def background(self) -> bool:
        """Whether requests are planned as background requests.

        True in every mode but realtime: batch items are the same requests (the Batch API
        path strips the ``background`` flag from each item), so the run store serves a row
        to either mode.
        """
        return self.mode != "realtime"


def as_int(value: object) -> int | None:
    """``value`` as a plain ``int`` if it is an integer (numpy's too), else None.

    ``True``/``False`` are not integers here, nor is a float with a whole value: an option
    that counts things takes a count.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def as_real(value: object) -> float | None:
    """``value`` as a finite ``float`` if it is a real number (numpy's too), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _got(value: object) -> str:
    """``value`` for an error message: a short number as itself, anything else by its type.

    Text is never quoted: a key pasted into the wrong option must not show.
    """
    shown = repr(value) if isinstance(value, numbers.Number) else ""
    return shown if 0 < len(shown) <= 40 else f"a {type(value).__name__}"


_FIXED = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
)


def _unfit(
    shown: str, signature: inspect.Signature, args: tuple[object, ...], kwargs: Mapping[str, object]
) -> ConfigError:
    """Why ``args``/``kwargs`` do not bind to ``signature``, as a ConfigError."""
    params = {n: p for n, p in signature.parameters.items() if n != "self" and p.kind in _FIXED}
    by_name = [n for n, p in params.items() if p.kind is not p.POSITIONAL_ONLY]
    unknown = [k for k in kwargs if k not in by_name]
    if unknown:
        said = []
        for name in unknown:
            close = difflib.get_close_matches(name, by_name, n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"the options are {', '.join(by_name)}"
            )
            said.append(f"{shown} has no option {name!r} ({hint})")
        return ConfigError("; ".join(said))
    positional = [
        n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    given = list(args[1:]) if "self" in signature.parameters else list(args)
    if len(given) > len(positional):
        rest = next((n for n in by_name if n not in positional), "...")
        return ConfigError(
            f"{shown} takes only {', '.join(positional) or 'no arguments'} by position; "
            f"give the rest by name, e.g. {rest}=..."
        )
    twice = [n for n in positional[: len(given)] if n in kwargs]
    if twice:
        return ConfigError(f"{shown} got {twice[0]!r} twice, by position and by name")
    filled = set(positional[: len(given)]) | set(kwargs)
    missing = [n for n, p in params.items() if p.default is p.empty and n not in filled]
    if missing:
        kind = "argument" if missing[0] in positional else "option"
        return ConfigError(f"{shown} is missing the required {kind} {missing[0]!r}")
    return ConfigError(f"{shown} cannot take these arguments")


def checked_arguments(function: Callable[P, R]) -> Callable[P, R]:
    """Check a call against ``function``'s signature first: misfits are ConfigErrors.

    An unknown keyword (``temprature=``) names its close matches, a missing required
    argument is named, and extra positional arguments are refused, all before ``function``
    runs; Python would raise a bare ``TypeError``. A ``TypeError`` raised inside ``function``
    is left alone. Works for coroutine functions too (the check then runs when the coroutine
    starts, before anything is sent), and keeps the signature for ``help()`` and editors.

    Args:
        function: A method or function taking fixed parameters (no ``*args`` or
            ``**kwargs``).

    Returns:
        The same function, checked.
    """
    signature = inspect.signature(function)
    owner, _, name = function.__qualname__.rpartition(".")
    shown = f"{owner.rpartition('.')[2]}()" if name == "__init__" else f"{name}()"

    def check(args: tuple[object, ...], kwargs: Mapping[str, object]) -> None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            raise _unfit(shown, signature, args, kwargs) from None

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def started(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return await function(*args, **kwargs)

        return cast(Callable[P, R], started)

    @functools.wraps(function)
    def called(*args: P.args, **kwargs: P.kwargs) -> R:
        check(args, kwargs)
        return function(*args, **kwargs)

    return called


def _choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"unknown {name} {value!r}; use one of {shown}")


def check_reasoning(value: object) -> dict[str, str] | None:
    """``reasoning=`` as the body's ``reasoning`` field, checked.

    Args:
        value: An effort word, a mapping of ``effort`` and ``generate_summary``, or None.

    Returns:
        ``{"effort": ...}`` (and ``generate_summary`` when given), or None.

    Raises:
        ConfigError: An unknown word or key, or a value of the wrong type.
    """
    if value is None:
        return None
    if isinstance(value, str):
        _choice("reasoning effort", value, EFFORTS)
        return {"effort": value}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"reasoning must be an effort ({', '.join(EFFORTS)}) or a mapping of 'effort' "
            f"and 'generate_summary', got {_got(value)}"
        )
    unknown = [k for k in value if k not in ("effort", "generate_summary")]
    if unknown or not value:
        said = f"has {unknown[0]!r}" if unknown else "is empty"
        raise ConfigError(
            f"reasoning {said}: give 'effort' ({', '.join(EFFORTS)}) and/or "
            f"'generate_summary' ({', '.join(SUMMARIES)})"
        )
    out: dict[str, str] = {}
    if "effort" in value:
        _choice("reasoning effort", value["effort"], EFFORTS)
        out["effort"] = value["effort"]
    if "generate_summary" in value:
        _choice("reasoning generate_summary", value["generate_summary"], SUMMARIES)
        out["generate_summary"] = value["generate_summary"]
    return out


def check_extra_body(value: object, scoring: bool) -> dict[str, Any] | None:
    """``extra_body=`` checked and copied: JSON only, no field the library sets itself.

    The copy is made through JSON, so a later change to the caller's mapping changes no
    request, and what is fingerprinted is what is sent. The fields Valar documents are
    checked as it documents them: ``top_p`` a number from 0 to 1, ``user`` text of at most
    256 characters, ``prompt_cache_key`` text.

    Args:
        value: A mapping of field names to JSON values, or None.
        scoring: Whether the call is a scoring call (``text`` is then the library's).

    Returns:
        The fields, or None when none are given.

    Raises:
        ConfigError: Not a mapping of text keys to JSON values, or a field the library owns.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"extra_body must be a mapping of body fields, got {_got(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"extra_body's keys must be field names (text), got {_got(key)}")
        if key in OWNED_FIELDS:
            python, command = OWNED_FIELDS[key]
            raise ConfigError(
                f"extra_body may not set {key!r}: {python}",
                command=f"--extra-body may not set {key!r}: {command}",
            )
        if key == "text" and scoring:
            raise ConfigError(
                "extra_body may not set 'text' when scoring: the answer's format is the "
                "library's (labels=, scale= or schema=)",
                command="--extra-body may not set 'text' with a scoring flag: the answer's "
                "format comes from --score-labels, --score-scale or --schema",
            )
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode()  # a lone surrogate cannot be sent
        copied = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"extra_body must hold JSON values only ({exc})") from None
    top_p = copied.get("top_p")
    if top_p is not None and (as_real(top_p) is None or not 0 <= top_p <= 1):
        raise ConfigError(f"extra_body's top_p must be a number from 0 to 1, got {_got(top_p)}")
    user = copied.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise ConfigError("extra_body's user must be text of at most 256 characters")
    cache_key = copied.get("prompt_cache_key")
    if cache_key is not None and not isinstance(cache_key, str):
        raise ConfigError("extra_body's prompt_cache_key must be text")
    return copied or None


def validate_options(**values: object) -> RunOptions:
    """Check every option and fill defaults (from :data:`~valar_pandas._core.spec.OPTIONS`).

    Takes the options that become :class:`RunOptions` fields, by name, plus ``text`` (the
    structured-output format a scoring call sets). ``completion_window`` defaults to
    ``"asap"`` in realtime mode (a foreground call on the standard window would hold a
    connection open for minutes) and to ``"standard"`` in every other mode. The Batch API
    runs only on the standard window, so ``mode="batch"`` with ``"asap"`` is refused;
    ``label`` names batches and needs ``mode="batch"`` or ``"auto"``.

    Returns:
        The validated options.

    Raises:
        ConfigError: Any option is unknown, of the wrong type or out of range.
    """
    unknown = [name for name in values if name not in _SETTLED and name != "text"]
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; the options are {', '.join(_SETTLED)}")
    given = {**defaults(_SETTLED), "text": None, "model": None, **values}
    model, into, mode, label = given["model"], given["into"], given["mode"], given["label"]
    instructions, salt = given["instructions"], given["salt"]
    max_output_tokens, temperature = given["max_output_tokens"], given["temperature"]
    concurrency, budget, max_rps = given["concurrency"], given["budget"], given["max_rps"]
    errors, progress, on_missing = given["errors"], given["progress"], given["on_missing"]
    details, cache, retry_failed = given["details"], given["cache"], given["retry_failed"]
    text = cast("dict[str, Any] | None", given["text"])
    reasoning = check_reasoning(given["reasoning"])
    extra_body = check_extra_body(given["extra_body"], scoring=text is not None)
    completion_window = given["completion_window"]
    if not isinstance(model, str) or not model.strip():
        raise ConfigError("model is required, e.g. model='zai-org/GLM-5.1-FP8'")
    if not isinstance(into, str) or not into:
        raise ConfigError("into must be a non-empty column name")
    _choice("mode", mode, MODES)
    window = completion_window
    if window is None:
        window = "asap" if mode == "realtime" else "standard"
    _choice("completion_window", window, WINDOWS)
    if mode == "batch" and window == "asap":
        raise ConfigError(
            "the Batch API runs on the standard window only: use mode='batch' with "
            "completion_window='standard' (the default), or mode='background' or "
            "'realtime' for the asap window",
            command="the Batch API runs on the standard window only: use --mode batch with "
            "--completion-window standard (the default), or --mode background or realtime "
            "for the asap window",
        )
    label = check_label(label)
    if label is not None and mode not in ("batch", "auto"):
        raise ConfigError("label names a batch: it applies only with mode='batch' or 'auto'")
    _choice("errors", errors, ERRORS)
    _choice("progress", progress, PROGRESS)
    _choice("on_missing", on_missing, ON_MISSING)
    if instructions is not None and not isinstance(instructions, str):
        raise ConfigError("instructions must be a string")
    tokens = None if max_output_tokens is None else as_int(max_output_tokens)
    if max_output_tokens is not None and (tokens is None or tokens < 1):
        raise ConfigError(
            f"max_output_tokens must be a positive integer, got {_got(max_output_tokens)}"
        )
    heat = None if temperature is None else as_real(temperature)
    if temperature is not None and (heat is None or not 0 <= heat <= 2):
        raise ConfigError(f"temperature must be a number from 0 to 2, got {_got(temperature)}")
    slots = as_int(concurrency)
    if slots is None or slots < 1:
        raise ConfigError(f"concurrency must be a positive integer, got {_got(concurrency)}")
    if salt is not None and not isinstance(salt, str):
        raise ConfigError("salt must be a string")
    for name, flag in (("details", details), ("cache", cache), ("retry_failed", retry_failed)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{name} must be True or False")
    dollars = None if budget is None else as_real(budget)
    if budget is not None and (dollars is None or not dollars > 0):
        raise ConfigError(
            f"budget must be a positive, finite number of US dollars (None for no limit), "
            f"got {_got(budget)}"
        )
    rate = None if max_rps is None else as_real(max_rps)
    if max_rps is not None and (rate is None or not rate >= MIN_MAX_RPS):
        raise ConfigError(
            f"max_rps must be a positive number of requests a second, at least {MIN_MAX_RPS} "
            f"(one request every ten seconds), or None for no limit; got {_got(max_rps)}"
        )
    return RunOptions(
        model=model.strip(),
        into=into,
        instructions=instructions,
        max_output_tokens=tokens,
        temperature=heat,
        completion_window=str(window),
        mode=mode,
        concurrency=slots,
        errors=errors,
        progress=progress,
        details=bool(details),
        on_missing=on_missing,
        salt=salt,
        cache=bool(cache),
        retry_failed=bool(retry_failed),
        budget=dollars,
        text=text,
        label=label,
        max_rps=rate,
        reasoning=reasoning,
        extra_body=extra_body,
    )


_SETTLED = [o.name for o in OPTIONS if o.settled]
if {f.name for f in fields(RunOptions)} != {*_SETTLED, "text"}:
    raise RuntimeError("RunOptions and the settled rows of OPTIONS name different options")
