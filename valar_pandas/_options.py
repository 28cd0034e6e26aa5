"""The options of a run, validated in one place before any request is built. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ._batchplan import check_label
from ._errors import ConfigError

__all__ = ["DEFAULT_MAX_RPS", "MODES", "RunOptions", "validate_options"]

MODES = ("background", "realtime", "batch", "auto")
WINDOWS = ("standard", "asap")
ERRORS = ("column", "raise")
PROGRESS = ("auto", "tqdm", "widget", None)
ON_MISSING = ("empty", "skip")
DEFAULT_MAX_RPS = 2000.0
"""The default request budget, requests a second. Valar publishes no rate limit; 200
connections (the default concurrency) at 100 ms round trips make 2,000 requests a second, so
the budget holds back only a client whose server answers faster than that (a local emulator,
a nearby proxy), where one process could otherwise send several thousand a second."""


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs besides the frame, the template and the client."""

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

    @property
    def background(self) -> bool:
        """Whether requests are planned as background requests.

        True in every mode but realtime: batch items are the same requests (the Batch API
        path strips the ``background`` flag from each item), so the run store serves a row
        to either mode.
        """
        return self.mode != "realtime"


def _choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"unknown {name} {value!r}; use one of {shown}")


def validate_options(
    *,
    model: object,
    into: object = "output",
    instructions: object = None,
    max_output_tokens: object = None,
    temperature: object = None,
    completion_window: object = None,
    mode: object = "background",
    concurrency: object = 200,
    errors: object = "column",
    progress: object = "auto",
    details: object = False,
    on_missing: object = "empty",
    salt: object = None,
    cache: object = True,
    retry_failed: object = True,
    budget: object = None,
    text: dict[str, Any] | None = None,
    label: object = None,
    max_rps: object = DEFAULT_MAX_RPS,
) -> RunOptions:
    """Check every option and fill defaults.

    ``completion_window`` defaults to ``"asap"`` in realtime mode (a foreground call on the
    standard window would hold a connection open for minutes) and to ``"standard"`` in every
    other mode. The Batch API runs only on the standard window, so ``mode="batch"`` with
    ``"asap"`` is refused; ``label`` names batches and needs ``mode="batch"`` or ``"auto"``.

    Returns:
        The validated options.

    Raises:
        ConfigError: Any option is of the wrong type or out of range.
    """
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
            "'realtime' for the asap window"
        )
    label = check_label(label)
    if label is not None and mode not in ("batch", "auto"):
        raise ConfigError("label names a batch: it applies only with mode='batch' or 'auto'")
    _choice("errors", errors, ERRORS)
    _choice("progress", progress, PROGRESS)
    _choice("on_missing", on_missing, ON_MISSING)
    if instructions is not None and not isinstance(instructions, str):
        raise ConfigError("instructions must be a string")
    if max_output_tokens is not None and (
        not isinstance(max_output_tokens, int)
        or isinstance(max_output_tokens, bool)
        or max_output_tokens < 1
    ):
        raise ConfigError("max_output_tokens must be a positive integer")
    if temperature is not None and (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not 0 <= temperature <= 2
    ):
        raise ConfigError("temperature must be a number from 0 to 2")
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigError("concurrency must be a positive integer")
    if salt is not None and not isinstance(salt, str):
        raise ConfigError("salt must be a string")
    for name, flag in (("details", details), ("cache", cache), ("retry_failed", retry_failed)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{name} must be True or False")
    if budget is not None and (
        not isinstance(budget, int | float) or isinstance(budget, bool) or not budget > 0
    ):
        raise ConfigError("budget must be a positive number of US dollars")
    if max_rps is not None and (
        not isinstance(max_rps, int | float)
        or isinstance(max_rps, bool)
        or not 0 < max_rps < float("inf")
    ):
        raise ConfigError("max_rps must be a positive number of requests a second, or None")
    return RunOptions(
        model=model.strip(),
        into=into,
        instructions=instructions,
        max_output_tokens=max_output_tokens,
        temperature=None if temperature is None else float(temperature),
        completion_window=str(window),
        mode=mode,  # type: ignore[arg-type]
        concurrency=concurrency,
        errors=errors,  # type: ignore[arg-type]
        progress=progress,  # type: ignore[arg-type]
        details=bool(details),
        on_missing=on_missing,  # type: ignore[arg-type]
        salt=salt,
        cache=bool(cache),
        retry_failed=bool(retry_failed),
        budget=None if budget is None else float(budget),
        text=text,
        label=label,
        max_rps=None if max_rps is None else float(max_rps),
    )
