"""Every option a call takes, defined once: its type, default, meaning and command-line flag.

A call's options fall into four kinds, by what they decide:

- **request**: what is asked. These shape a request's body and so its fingerprint (the run
  store's key): ``model``, ``instructions``, ``max_output_tokens``, ``temperature``,
  ``completion_window``, ``mode`` (a background request differs from a realtime one),
  ``on_missing`` (whether a row with a missing value is sent at all), ``salt``,
  ``reasoning`` and ``extra_body``.
- **execution**: how the requests are sent and paid for, never what they ask:
  ``concurrency``, ``max_rps``, ``budget``, ``label``, ``cache``, ``retry_failed``,
  ``store``, ``price``, ``client``.
- **presentation**: what the caller gets back: ``into``, ``details``, ``errors``,
  ``progress``.
- **scoring**: what :meth:`ValarAccessor.score` asks for (``labels``, ``scale``, ``schema``,
  ``reasons``) and how often it re-asks an unreadable reply (``retries_on_invalid``).

Two definitions say the same thing, each for its reader, and are checked against each other
when this module is imported: the :class:`~typing.TypedDict` per kind (composed into one per
method, as ``**options: Unpack[RunArgs]``), which is what a type checker reads, so
``ValarAccessor(df).run("x", model=1)`` is a type error (pandas' stubs do not type
``df.valar``); and :data:`OPTIONS`, one row per option
(default, one-line doc, kind, command-line flag), which is what runs.
:func:`~valar_pandas._core.signatures.takes` gives each public method a signature listing every
option with its default (for ``help()``, ``inspect.signature`` and editors' completion) and
the ``Args:`` lines of its docstring;
:func:`~valar_pandas._core.options.validate_options` fills its defaults from the table, and the
``valar-pandas run`` command adds one flag per row that has one. An option added to both
definitions so appears in every method that takes its kind, in validation and on the
command line; an option in one definition only stops the import.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Required, TypedDict

from .prices import Price

if TYPE_CHECKING:
    from .config import ValarClient

__all__ = [
    "OPTIONS",
    "EstimateArgs",
    "ExecutionOptions",
    "Flag",
    "Option",
    "PresentationOptions",
    "RequestOptions",
    "RequestsArgs",
    "RunArgs",
    "ScoreArgs",
    "ScoreOptions",
    "defaults",
    "names_of",
    "option",
]

StoreArg = str | os.PathLike[str] | bool | None
PriceArg = Price | Mapping[str, float] | None
Mode = Literal["background", "realtime", "batch", "auto"]
CompletionWindow = Literal["standard", "asap"]
Progress = Literal["auto", "tqdm", "widget"] | None
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
ReasoningArg = Effort | Mapping[str, str] | None
OptionKind = Literal["request", "execution", "presentation", "scoring", "preview"]

DEFAULT_MAX_RPS = 2000.0
"""The default request budget, requests a second. Valar publishes no rate limit; 200
connections (the default concurrency) at 100 ms round trips make 2,000 requests a second, so
the budget holds back only a client whose server answers faster than that (a local emulator,
a nearby proxy), where one process could otherwise send several thousand a second."""
PREVIEW_ROWS = 1000
"""Rows :meth:`ValarAccessor.requests` previews unless told otherwise."""


class RequestOptions(TypedDict, total=False):
    """What is asked: the options a request's fingerprint covers."""

    model: Required[str]
    instructions: str | None
    max_output_tokens: int | None
    temperature: float | None
    completion_window: CompletionWindow | None
    mode: Mode
    on_missing: Literal["empty", "skip"]
    salt: str | None
    reasoning: ReasoningArg
    extra_body: Mapping[str, Any] | None


class ExecutionOptions(TypedDict, total=False):
    """How requests are sent, cached and paid for; never what they ask."""

    concurrency: int
    max_rps: float | None
    budget: float | None
    label: str | None
    cache: bool
    retry_failed: bool
    store: StoreArg
    price: PriceArg
    client: ValarClient | None


class PresentationOptions(TypedDict, total=False):
    """What comes back: column names, extra columns, failures, progress."""

    into: str
    errors: Literal["column", "raise"]
    progress: Progress
    details: bool


class ScoreShape(TypedDict, total=False):
    """What a scoring call asks for (one of labels, scale, schema)."""

    labels: Sequence[str] | None
    scale: Sequence[float] | None
    schema: Mapping[str, Any] | type | None
    reasons: bool


class ScoreOptions(ScoreShape, total=False):
    """The scoring options: the answer's shape, and re-asks of unreadable replies."""

    retries_on_invalid: int


class RunArgs(RequestOptions, ExecutionOptions, PresentationOptions, total=False):
    """The options of ``run``, ``arun`` and ``submit``."""


class ScoreArgs(RunArgs, ScoreOptions, total=False):
    """The options of ``score`` and ``submit_score``."""


class RequestsArgs(RequestOptions, ScoreShape, total=False):
    """The options of ``requests``: what shapes a body, and how many rows to preview."""

    n: int | None


class EstimateArgs(RequestOptions, ScoreShape, total=False):
    """The options of ``estimate``: what shapes a body, and where cache hits are read."""

    cache: bool
    retry_failed: bool
    store: StoreArg
    price: PriceArg
    client: ValarClient | None
    base_url: str | None


@dataclass(frozen=True)
class Flag:
    """An option's ``valar-pandas run`` flag.

    Attributes:
        help: The flag's help line (its default is appended when it has one).
        parse: How the value is read: ``"text"``, ``"int"`` (1 or more), ``"number"``
            (positive), ``"real"`` (any finite number), ``"rate"`` (requests a second),
            ``"count"`` (0 or more), ``"price"`` (INPUT,OUTPUT), ``"names"`` (a,b,c),
            ``"path"``, ``"json"`` (a JSON object, or ``@FILE``), ``"switch"``
            (``--x``/``--no-x``) or ``"choice"`` (one of the option's ``choices``).
        metavar: The value's placeholder in ``--help``.
        name: The flag when it is not ``--`` plus the option's name with dashes.
        choices: The allowed values of a ``"choice"`` flag.
    """

    help: str
    parse: str = "text"
    metavar: str | None = None
    name: str | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Option:
    """One option: the row of :data:`OPTIONS` that everything else derives from.

    Attributes:
        name: The keyword.
        kind: What it decides (see the module's docstring).
        default: Its default; :data:`REQUIRED` for ``model``.
        doc: Its ``Args:`` entry (one paragraph, wrapped when rendered).
        flag: Its command-line flag, or None.
        offline: Why the command line has no flag for it (exactly one of ``flag`` and
            ``offline`` is given).
        settled: Whether it is a field of :class:`~valar_pandas._core.options.RunOptions`
            (``store``, ``price`` and ``client`` are resources the service opens instead).
    """

    name: str
    kind: OptionKind
    default: Any
    doc: str
    flag: Flag | None = None
    offline: str = ""
    settled: bool = True


REQUIRED: Any = inspect.Parameter.empty
"""The default of an option with none."""

_MODE_DOC = (
    '``"background"`` (create, then poll; the default), ``"realtime"`` (one request that '
    'waits for the answer), ``"batch"`` (the Batch API; raises :class:`BatchUnavailable` '
    'where it cannot be used) or ``"auto"`` (the Batch API for 1,000 or more requests to send '
    "on the standard window, else background; background also, with a warning, where the "
    "Batch API cannot be used). "
    "See ``docs/batch.md``."
)

OPTIONS: tuple[Option, ...] = (
    Option("model", "request", REQUIRED, 'The model id, e.g. ``"zai-org/GLM-5.1-FP8"``.',
           Flag("model id, e.g. zai-org/GLM-5.1-FP8")),
    Option("labels", "scoring", None,
           "The allowed labels: ``<into>`` is a ``category`` column with exactly these "
           "categories.",
           Flag("answer with one of these labels: a category column", "names", "A,B,C",
                name="--score-labels"), settled=False),
    Option("scale", "scoring", None,
           "``(lo, hi)``: ``<into>`` is ``Int64`` for integer bounds, else ``Float64``; values "
           "outside the range are errors, not clipped.",
           Flag("answer with a number in [LO, HI]: integer for whole bounds", metavar="LO,HI",
                name="--score-scale"), settled=False),
    Option("schema", "scoring", None,
           "A JSON schema (top level an object with ``properties``) or a pydantic model class: "
           "one typed ``<into>_<property>`` column per top-level property.",
           Flag("answer with a JSON object matching this schema: one column per property",
                "path", "FILE.json"), settled=False),
    Option("reasons", "scoring", False,
           "Also ask for a short justification, in ``<into>_reason``.",
           Flag("also ask for a short justification, in <into>_reason", "switch"),
           settled=False),
    Option("retries_on_invalid", "scoring", 0,
           "Re-ask a row whose reply could not be read up to this many times, each under a "
           "fresh salt (a new inference, billed).",
           Flag("re-ask a row whose reply could not be read up to N times, each a billed "
                "inference", "count", "N"), settled=False),
    Option("into", "presentation", "output",
           "Name of the output text column (the column prefix when scoring). The error "
           "column is ``<into>_error``.",
           Flag("output column (default 'output', or 'score' when scoring)", metavar="NAME")),
    Option("instructions", "request", None,
           "System instructions sent ahead of every row's prompt (when scoring, the answer "
           "hint is appended).",
           Flag("system instructions sent before every prompt; @FILE reads them from a file",
                metavar="TEXT|@FILE")),
    Option("max_output_tokens", "request", None, "Cap on each answer's length, in tokens.",
           Flag("cap on each answer", "int", "N")),
    Option("temperature", "request", None, "Sampling temperature, 0 to 2.",
           Flag("sampling temperature, 0 to 2", "real", "T")),
    Option("completion_window", "request", None,
           '``"standard"`` (cheaper, minutes; the default except in realtime mode) or '
           '``"asap"`` (the default in realtime mode; not for batch).',
           Flag("standard (cheaper) or asap; default asap in realtime mode, else standard",
                "choice", choices=("standard", "asap"))),
    Option("mode", "request", "background", _MODE_DOC,
           Flag("how to send", "choice", choices=("background", "realtime", "batch", "auto"))),
    Option("concurrency", "execution", 200,
           "Most HTTP requests in flight at once, within the client's ``concurrency`` (which "
           "runs, jobs and cancels using the client share; on the command line: shared by the "
           "windows running).",
           Flag("most HTTP requests in flight, shared by the windows running", "int", "N")),
    Option("max_rps", "execution", DEFAULT_MAX_RPS,
           "Most HTTP requests a second, creates, polls and retries together (bursts of up to "
           "50, never more than one second's worth), within the client's ``max_rps`` (which "
           "everything using the client shares); None for no limit of the call's own. The "
           "default, 2,000, is "
           "what 200 connections make at 100 ms round trips: it holds back only a client whose "
           "server answers faster than that.",
           Flag("most HTTP requests a second, at least 0.1; shared by the windows running",
                "rate", "N")),
    Option("errors", "presentation", "column",
           '``"column"`` puts failures in ``<into>_error``; ``"raise"`` raises '
           ":class:`RowErrors` (carrying the full frame) when any row failed (when scoring, "
           "unreadable replies count as failures).",
           offline="the command always writes failures to <into>_error and exits 1"),
    Option("progress", "presentation", "auto",
           '``"auto"`` or ``"tqdm"`` for a progress bar, ``"widget"`` for the notebook '
           "widget, None for none.",
           offline="the command draws a bar on stderr; --quiet hides it"),
    Option("details", "presentation", False,
           "Also add ``<into>_response_id``, ``_status``, ``_input_tokens``, "
           "``_output_tokens``, ``_reasoning_tokens`` (of the output tokens, those spent "
           "reasoning) and ``_partial`` (the text of an answer cut short, ``incomplete``, "
           "which the answer column never holds) columns.",
           Flag("also write <into>_response_id, _status, _input_tokens, _output_tokens, "
                "_reasoning_tokens and _partial (the text of an answer cut short)", "switch")),
    Option("on_missing", "request", "empty",
           'For missing values in columns the template names: ``"empty"`` renders them as '
           '``""``; ``"skip"`` leaves the row unsent, with a reason.',
           offline="a missing value renders as empty text on the command line"),
    Option("salt", "request", None,
           "Any string; a new salt asks for fresh answers instead of replays.",
           Flag("any text; a new salt asks for fresh answers instead of stored ones",
                metavar="TEXT")),
    Option("reasoning", "request", None,
           'A reasoning model\'s effort: ``"none"``, ``"minimal"``, ``"low"``, ``"medium"``, '
           '``"high"`` or ``"xhigh"``, sent as ``reasoning.effort``; or a mapping of '
           '``effort`` and ``generate_summary`` (``"auto"``, ``"concise"`` or '
           '``"detailed"``). None sends no ``reasoning`` field (the model\'s own default). '
           "Reasoning tokens are billed as output and count against ``max_output_tokens``.",
           Flag("a reasoning model's effort: none, minimal, low, medium, high or xhigh "
                "(billed as output, within --max-output-tokens)", "choice",
                choices=("none", "minimal", "low", "medium", "high", "xhigh"))),
    Option("extra_body", "request", None,
           "More fields for every request body, as a JSON-serialisable mapping (e.g. "
           '``{"top_p": 0.9, "user": "team-a", "prompt_cache_key": "reviews"}``); part of the '
           "fingerprint. Fields the library sets itself (``model``, ``input``, "
           "``instructions``, ``max_output_tokens``, ``temperature``, ``reasoning``, "
           "``background``, ``metadata``, ``stream``, ``store``; ``text`` when scoring) are "
           "refused: use their own options.",
           Flag("more fields for every request body, a JSON object, e.g. '{\"top_p\": 0.9}'; "
                "@FILE reads it from a file", "json", "JSON|@FILE")),
    Option("cache", "execution", True,
           "Answer from the run store what it already holds (and resume what an interrupted "
           "run started). False asks afresh for every row and keeps nothing.",
           Flag("answer from the run store what it holds; --no-cache asks every row afresh "
                "and keeps nothing (no resume)", "switch")),
    Option("retry_failed", "execution", True,
           "Ask again, on a re-run, rows the server failed last time (``failed`` or "
           "``cancelled``; a truncated, ``incomplete`` answer stands until the request "
           "changes, e.g. a larger ``max_output_tokens``).",
           Flag("ask again, once, the rows the server failed (failed, cancelled) in an "
                "earlier run; a truncated answer stands until the request changes", "switch")),
    Option("store", "execution", None,
           "The run store file; None or True for the default location "
           "(``VALAR_PANDAS_STORE`` or the user cache directory); False for none.",
           Flag("run store file (default VALAR_PANDAS_STORE or the user cache directory)",
                "path", "PATH"), settled=False),
    Option("budget", "execution", None,
           "Most USD this call may spend: once spend plus the estimate of what is in flight "
           "would pass it, no new row is sent and the rest say so in the error column.",
           Flag("most US dollars the whole run may spend; rows past it are not sent",
                "number", "USD")),
    Option("price", "execution", None,
           'USD per million tokens (``Price`` or ``{"input", "output", "cached_input"}``) '
           "replacing the shipped table for this call.",
           Flag("US dollars per million input and output tokens, for a model the price table "
                "lacks (or to override it); --budget needs a price", "price",
                "INPUT,OUTPUT"), settled=False),
    Option("label", "execution", None,
           "A name for the batches a batch run creates (letters, digits, ``-``, ``_``; at "
           'most 128); only with ``mode="batch"`` or ``"auto"``.',
           Flag("a name for the batches a batch run creates; with --mode batch or auto",
                metavar="NAME")),
    Option("client", "execution", None,
           "Connection settings; default reads ``VALAR_API_KEY`` and ``VALAR_BASE_URL``.",
           offline="the command reads VALAR_API_KEY and VALAR_BASE_URL", settled=False),
    Option("base_url", "execution", None,
           "Where cache hits are read from, when no ``client`` is given (default "
           "``VALAR_BASE_URL`` or the Valar API); no key is needed.",
           offline="the command reads VALAR_BASE_URL", settled=False),
    Option("n", "preview", PREVIEW_ROWS,
           "How many leading rows to preview (1,000 by default); None for every row.",
           offline="--dry-run prints the first requests", settled=False),
)  # fmt: skip

_BY_NAME = {o.name: o for o in OPTIONS}
_KEYS = {
    k for args in (RunArgs, ScoreArgs, RequestsArgs, EstimateArgs) for k in args.__annotations__
}


def option(name: str) -> Option:
    """The row of :data:`OPTIONS` named ``name``."""
    return _BY_NAME[name]


def defaults(names: Sequence[str] | None = None) -> dict[str, Any]:
    """Every option's default (those of ``names`` only, when given), ``model`` aside."""
    chosen = OPTIONS if names is None else [_BY_NAME[n] for n in names]
    return {o.name: o.default for o in chosen if o.default is not REQUIRED}


def names_of(args: type) -> list[str]:
    """The option names a per-method TypedDict holds, in the order of :data:`OPTIONS`."""
    keys = set(args.__annotations__)
    return [o.name for o in OPTIONS if o.name in keys]


def _check() -> None:
    """The table and the TypedDicts name the same options, each once; a flag or a reason."""
    table = [o.name for o in OPTIONS]
    if len(set(table)) != len(table):
        raise RuntimeError("an option is in OPTIONS twice")
    if set(table) != _KEYS:
        raise RuntimeError(f"OPTIONS and the TypedDicts differ: {sorted(set(table) ^ _KEYS)}")
    for o in OPTIONS:
        if (o.flag is None) == (not o.offline):
            raise RuntimeError(f"option {o.name!r} needs exactly one of flag= and offline=")


_check()
