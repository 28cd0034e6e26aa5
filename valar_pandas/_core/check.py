"""``valar-pandas check``: what it sends and costs, and how each observation is judged. Pure.

The check sends a handful of tiny requests to the configured endpoint and compares what comes
back with what the vendor documents (valar-api.md): the key, ``GET /v1/models``, a background
create and its polls per completion window, an ``Idempotency-Key`` replay, a strict
structured output and the Batch API's availability. This module holds the requests, their
worst-case cost and the verdicts; :mod:`valar_pandas._service.check` sends them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .batchplan import is_unavailable
from .errors import ConfigError
from .prices import PRICES_AS_OF, estimate_input_tokens, resolve_price
from .scrub import printable
from .wire.bodies import response_body
from .wire.responses import normalise_status

__all__ = [
    "CHECK_MODEL",
    "MAX_OUTPUT_TOKENS",
    "STRICT_SCHEMA",
    "WINDOWS",
    "CheckPlan",
    "CheckResult",
    "CheckRow",
    "Level",
    "Probe",
    "batch_row",
    "check_windows",
    "plan_check",
    "replay_row",
    "window_row",
]

Level = Literal["pass", "warn", "fail", "skip"]

_WIDTHS = (24, 6, 30, 38, 34)  # the table's columns wrap at these widths

WINDOWS: tuple[str, ...] = ("asap", "standard")
CHECK_MODEL = "zai-org/GLM-5.1-FP8"
MAX_OUTPUT_TOKENS = 64
"""The cap on every check answer: room for a short reply, or a reasoning model's thinking."""

_PROMPT = "Reply with the single word: ok"
_STRICT_PROMPT = 'Is the sky blue on a clear day? Answer as JSON: {"answer": "yes" or "no"}.'
STRICT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
_STRICT_TEXT = {
    "format": {"type": "json_schema", "name": "check", "schema": STRICT_SCHEMA, "strict": True}
}


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One check: what the vendor documents, what the endpoint did, and what to do about it.

    Attributes:
        name: What is checked, e.g. ``"API key"``.
        level: ``"pass"``, ``"warn"`` (works, with a caveat), ``"fail"`` or ``"skip"``
            (not tried, because an earlier check failed).
        expectation: What the documents say should happen.
        observation: What happened.
        fix: What to do when it did not pass; empty otherwise.
    """

    name: str
    level: Level
    expectation: str
    observation: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``valar_pandas.check()`` found.

    Attributes:
        base_url: The endpoint checked.
        model: The model checked.
        rows: One row per check, in the order they ran.
        spent: USD the check's answers cost by the usage they report (None when the model
            has no known price).
    """

    base_url: str
    model: str
    rows: tuple[CheckRow, ...]
    spent: float | None = None

    @property
    def ok(self) -> bool:
        """Whether every required check passed (warnings and skips aside, no failure)."""
        return all(row.level != "fail" for row in self.rows)

    @property
    def exit_code(self) -> int:
        """The command's exit code: 0 when :attr:`ok`, else 1."""
        return 0 if self.ok else 1

    def table(self) -> str:
        """The rows as a plain-text table: check | result | expectation | observation | fix.

        Returns:
            The table, then a closing line that says whether the endpoint is ready.
        """
        head = ("check", "result", "expectation", "observation", "fix")
        raw = [head] + [
            (r.name, r.level.upper(), r.expectation, r.observation, r.fix or "-") for r in self.rows
        ]
        cells: list[tuple[str, ...]] = [tuple(printable(cell) for cell in row) for row in raw]
        widths = [min(_WIDTHS[i], max(len(row[i]) for row in cells)) for i in range(len(head))]
        lines: list[str] = []
        for n, row in enumerate(cells):
            wrapped = [
                textwrap.wrap(cell, width, break_on_hyphens=False) or [""]
                for cell, width in zip(row, widths, strict=True)
            ]
            for i in range(max(len(parts) for parts in wrapped)):
                parts = [p[i] if i < len(p) else "" for p in wrapped]
                line = " | ".join(x.ljust(w) for x, w in zip(parts, widths, strict=True))
                lines.append(line.rstrip())
            if n == 0 or len(self.rows) > n:
                lines.append("-+-".join("-" * w for w in widths))
        failed = sum(r.level == "fail" for r in self.rows)
        warned = sum(r.level == "warn" for r in self.rows)
        spent = "" if self.spent is None else f"; these answers cost ${self.spent:.6f}"
        if failed:
            verdict = f"{failed} check(s) FAILED: follow the fix column, then run the check again"
        else:
            verdict = "every required check passed: this endpoint is ready for valar-pandas"
            if warned:
                verdict += f" ({warned} warning(s) above)"
        lines.append("")
        lines.append(f"{verdict}{spent}.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


@dataclass(frozen=True, slots=True)
class Probe:
    """One create the check sends.

    Attributes:
        name: Its row's name, e.g. ``"background asap"``.
        window: Its completion window.
        body: The request body, as sent.
    """

    name: str
    window: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CheckPlan:
    """What the check will send and the most it can cost.

    Attributes:
        model: The model asked.
        windows: The completion windows timed.
        probes: The creates: one background request per window, then the strict one.
        cost: The most the creates can cost in USD, the replay included as if the server
            billed it again; None when the model has no known price.
    """

    model: str
    windows: tuple[str, ...]
    probes: tuple[Probe, ...]
    cost: float | None

    def describe(self, base_url: str) -> str:
        """What will be sent, and its cost, for the user to read before anything is sent.

        Args:
            base_url: The endpoint it goes to.

        Returns:
            A few lines of text.
        """
        windows = ", ".join(self.windows)
        lines = [
            f"valar-pandas check: {base_url}, model {self.model}",
            "It sends, with your key (never shown):",
            "  GET  /models                              is the key accepted, is the model listed",
        ]
        for probe in self.probes[:-1]:
            lines.append(
                f"  POST /responses  {probe.window:<8}  a background request "
                f"({_PROMPT!r}, max {MAX_OUTPUT_TOKENS} tokens), polled until done"
            )
        lines.append(
            "  POST /responses  again     the first request under the same "
            "Idempotency-Key: must replay it, not run (and bill) it again"
        )
        lines.append(
            f"  POST /responses  asap      a strict structured output (a yes/no JSON schema, "
            f"max {MAX_OUTPUT_TOKENS} tokens)"
        )
        lines.append(
            "  GET  /batches, POST /batches (no items)   is the Batch API available (free)"
        )
        if self.cost is None:
            cost = "unknown: the model is not in the price table"
        else:
            cost = f"at most ${self.cost:.4f} (prices as of {PRICES_AS_OF})"
        lines.append(f"Cost: {cost}. Windows timed: {windows}.")
        return "\n".join(lines)


def check_windows(windows: Iterable[str] | str) -> tuple[str, ...]:
    """Read the windows to time: a sequence, or a comma-separated string.

    Args:
        windows: ``("asap", "standard")``, ``"asap,standard"`` or a subset.

    Returns:
        The windows, once each, in the order given.

    Raises:
        ConfigError: A window is not ``asap`` or ``standard``, or none is given.
    """
    names = windows.split(",") if isinstance(windows, str) else list(windows)
    chosen: list[str] = []
    for name in names:
        window = name.strip() if isinstance(name, str) else name
        if window not in WINDOWS:
            raise ConfigError(
                f"windows: {window!r} is not a completion window; use asap, standard or both"
            )
        if window not in chosen:
            chosen.append(window)
    if not chosen:
        raise ConfigError("windows: name at least one completion window (asap, standard)")
    return tuple(chosen)


def plan_check(model: str, windows: Iterable[str] | str) -> CheckPlan:
    """The requests the check sends, and their worst-case cost.

    Args:
        model: The model to check.
        windows: The completion windows to time (see :func:`check_windows`).

    Returns:
        The plan.

    Raises:
        ConfigError: The model is not a non-empty string.
    """
    if not isinstance(model, str) or not model.strip():
        raise ConfigError("model: name the model to check, e.g. zai-org/GLM-5.1-FP8")
    chosen = check_windows(windows)
    probes = [
        Probe(
            f"background {window}",
            window,
            response_body(
                model,
                _PROMPT,
                max_output_tokens=MAX_OUTPUT_TOKENS,
                completion_window=window,
            ),
        )
        for window in chosen
    ]
    probes.append(
        Probe(
            "strict structured output",
            "asap",
            response_body(
                model,
                _STRICT_PROMPT,
                max_output_tokens=MAX_OUTPUT_TOKENS,
                completion_window="asap",
                text=_STRICT_TEXT,
            ),
        )
    )
    billed = [*probes, probes[0]]  # the replay, billed again by a server that ignores keys
    total: float | None = 0.0
    for probe in billed:
        price = resolve_price(model, probe.window, None)
        if price is None or total is None:
            total = None
            continue
        total += price.cost(estimate_input_tokens(probe.body), MAX_OUTPUT_TOKENS)
    return CheckPlan(model, chosen, tuple(probes), total)


def window_row(
    window: str,
    create_status: int,
    words: Sequence[str],
    seconds: float,
    final: str | None,
    text: str | None,
    timeout: float,
) -> CheckRow:
    """Judge one background create and its polls.

    Args:
        window: Its completion window.
        create_status: The create's HTTP status.
        words: Every distinct status word seen, in order (create and polls).
        seconds: From the create to the last poll.
        final: The terminal status word (normalised), or None when the wait timed out.
        text: The answer's text, if any.
        timeout: The longest wait allowed.

    Returns:
        The row.
    """
    name = f"background {window}"
    pace = "seconds" if window == "asap" else "about five minutes per turn"
    expectation = (
        f"202/200 at once; pending|queued → running|in_progress → completed; {window}: {pace}"
    )
    seen = " → ".join(words) if words else "no status"
    observation = f"HTTP {create_status}; {seen}; {seconds:.1f} s"
    unknown = [w for w in words if normalise_status(w) == "unknown"]
    if final is None:
        return CheckRow(
            name,
            "warn",
            expectation,
            f"{observation}, still not done after the {timeout:.0f} s allowed",
            f"run again with a longer --timeout (the {window} window: {pace}); runs of this "
            "window wait as long, polling cheaply",
        )
    if final != "completed":
        return CheckRow(
            name,
            "fail",
            expectation,
            observation,
            "the model did not complete a one-line answer: try another --model, or ask Valar "
            "support with the response id from a run's details",
        )
    if not text:
        return CheckRow(
            name,
            "warn",
            expectation,
            f"{observation}, but no output text",
            f"the {MAX_OUTPUT_TOKENS}-token cap went on reasoning: give runs of this model a "
            "larger max_output_tokens",
        )
    if create_status not in (200, 202) or unknown:
        odd = f"status words outside the documents: {', '.join(unknown)}" if unknown else ""
        return CheckRow(
            name,
            "warn",
            expectation,
            f"{observation}; {odd or f'HTTP {create_status} on create'}",
            "the library reads unknown status words as still running; report it to Valar",
        )
    return CheckRow(name, "pass", expectation, f"{observation}; answered {text[:20]!r}")


def replay_row(first_id: str | None, replay_id: str | None, replay_status: int) -> CheckRow:
    """Judge the same create sent twice under one ``Idempotency-Key``.

    Args:
        first_id: The response id of the first create.
        replay_id: The id the second create answered with, if any.
        replay_status: The second create's HTTP status.

    Returns:
        The row.
    """
    expectation = "the same Idempotency-Key twice: the same response id, billed once"
    if replay_id is None:
        return CheckRow(
            "idempotent replay",
            "fail",
            expectation,
            f"HTTP {replay_status} without a response id",
            "the server refuses a repeated Idempotency-Key: retries after a lost connection "
            "cannot be made safe; report it to Valar",
        )
    if replay_id != first_id:
        return CheckRow(
            "idempotent replay",
            "fail",
            expectation,
            f"a new response id ({replay_id} after {first_id}): ran and billed twice",
            "the server ignores Idempotency-Key: a retry after a lost connection pays again; "
            "keep the run store on (the default) so re-runs reuse answers, and report it",
        )
    return CheckRow(
        "idempotent replay",
        "pass",
        expectation,
        f"HTTP {replay_status}, the same id {replay_id}: replayed, not run again",
    )


def batch_row(
    get_status: int | None, post_status: int | None, code: str | None, message: str
) -> CheckRow:
    """Judge the Batch API's answers to ``GET /v1/batches`` and an empty ``POST /v1/batches``.

    The documents disagree (the API is "coming soon" on three pages and "stable" on one), so
    an unavailable Batch API is a warning: ``mode="auto"`` then runs in background mode.

    Args:
        get_status: HTTP status of ``GET /v1/batches?limit=1``, or None when unreachable.
        post_status: HTTP status of a create with no items, or None when unreachable.
        code: The error code of the create's answer, if any.
        message: The error message of the create's answer (empty if none).

    Returns:
        The row.
    """
    name = "Batch API"
    expectation = (
        "documented as both coming soon and stable: available, or absent (404), not "
        "enabled (403), coming soon (400)"
    )
    observed = f"GET HTTP {get_status}; POST (no items) {message[:160] or f'HTTP {post_status}'}"
    fallback = (
        'unavailable: mode="auto" falls back to background requests (same answers, '
        'standard-window price); mode="batch" would fail'
    )
    if post_status in (404, 405, 501) or get_status in (404, 405, 501):
        return CheckRow(name, "warn", expectation, f"{observed}: absent", fallback)
    if post_status == 403:
        return CheckRow(name, "warn", expectation, f"{observed}: not enabled", fallback)
    if post_status == 400 and is_unavailable(400, code, message):
        return CheckRow(name, "warn", expectation, f"{observed}: coming soon", fallback)
    if post_status in (200, 400, 422) and get_status == 200:
        return CheckRow(name, "pass", expectation, f"{observed}: available")
    return CheckRow(
        name,
        "warn",
        expectation,
        f"{observed}: could not tell",
        'mode="auto" falls back to background requests if batches turn out unavailable',
    )
