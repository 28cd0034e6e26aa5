"""The ``valar-pandas run`` command line: its flags, and how their values are read.

One flag per row of :data:`~valar_pandas._core.spec.OPTIONS` that has one, named, typed and
described by the row, so the command takes every option the accessor takes that makes sense
in a file-to-file run (the rows without a flag say why). The command's own flags (the
input, the template, windows, previews) are added here too.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._core.options import MIN_MAX_RPS
from .._core.prices import Price
from .._core.spec import OPTIONS, REQUIRED, Option

__all__ = ["IN_FLIGHT", "WINDOW_ROWS", "add_run_parser", "flag_of", "joined_values"]

WINDOW_ROWS = 20_000
"""Rows per window by default: planned, sent and written together."""
IN_FLIGHT = 3
"""Windows running at once: the tail of one overlaps the next ones."""

_EPILOG = """\
examples:
  valar-pandas run reviews.parquet out.parquet --model zai-org/GLM-5.1-FP8 \\
      --template 'Classify the sentiment of this review in one word: {review}' \\
      --into sentiment --max-output-tokens 16
  valar-pandas run reviews.parquet out.parquet --model zai-org/GLM-5.1-FP8 \\
      --template @prompt.txt --score-labels positive,negative,neutral --into sentiment
  valar-pandas run big/ out/ --model zai-org/GLM-5.1-FP8 --template @prompt.txt --mode auto
  valar-pandas run reviews.csv out.parquet --model zai-org/GLM-5.1-FP8 \\
      --template 'Review: {review}' --estimate

Re-run the same command after a crash or Ctrl-C: finished rows come from the run store,
rows already sent are picked up by id, nothing is paid for twice.

exit codes:
  0    every row answered
  1    some rows failed (or --budget held them back); the output is still
       written, with the reasons in <into>_error
  2    usage or configuration error, reported before any request (or the server
       refused the run as a whole: rejected key, unknown model)
  130  interrupted; re-run the same command to resume
  143  stopped by SIGTERM (ends the run as Ctrl-C does)

environment: VALAR_API_KEY (required to send), VALAR_BASE_URL, VALAR_PANDAS_STORE.
See docs/cli.md."""


def _whole(lowest: int) -> Callable[[str], int]:
    """A reader of whole numbers of at least ``lowest``, for argparse's ``type=``."""

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{text!r} must be {lowest} or more")
        return value

    return read


_positive_int = _whole(1)
_count = _whole(0)


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


def _positive_float(text: str) -> float:
    value = _real(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _rate(text: str) -> float:
    value = _positive_float(text)
    if value < MIN_MAX_RPS:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be at least {MIN_MAX_RPS} (one request every ten seconds)"
        )
    return value


def _price(text: str) -> Price:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r}: write INPUT,OUTPUT, two non-negative numbers of US dollars per "
            "million tokens, e.g. 0.5,1.5"
        )
    return Price(input=values[0], output=values[1])


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name; write a,b,c")
    return names


def _json_object(text: str) -> dict[str, Any]:
    """A JSON object given inline, or read from the file named after a leading ``@``."""
    shown = text
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise argparse.ArgumentTypeError(f"cannot read {path}: {exc}") from None
        shown = str(path)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{shown!r} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"{shown!r} must be a JSON object, e.g. '{{\"top_p\": 0.9}}'"
        )
    return value


_PARSE: dict[str, Callable[[str], Any] | None] = {
    "text": None,
    "choice": None,
    "switch": None,
    "int": _positive_int,
    "count": _count,
    "number": _positive_float,
    "real": _real,
    "rate": _rate,
    "price": _price,
    "names": _names,
    "path": Path,
    "json": _json_object,
}

_NUMBERS = re.compile(r"-[0-9.]+(?:[eE][+-]?\d+)?(?:,[+-]?[0-9.]+(?:[eE][+-]?\d+)?)*")
"""A value such as ``-1,1`` that argparse would otherwise take for an option."""

_VALUED = ("--score-scale", "--price")


def joined_values(argv: list[str]) -> list[str]:
    """``--score-scale -1,1`` as ``--score-scale=-1,1``, so argparse reads it as the value.

    argparse treats any word starting with ``-`` that is not a plain negative number as an
    option; a scale or price list that starts with a negative number is one such word.

    Args:
        argv: The command line, without the program name.

    Returns:
        The same arguments, each such option joined to its value.
    """
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            value = next(words, None)
            if value is not None and _NUMBERS.fullmatch(value):
                out.append(f"{word}={value}")
                continue
            out.append(word)
            if value is not None:
                out.append(value)
            continue
        out.append(word)
        if word == "--":
            out.extend(words)
    return out


def flag_of(option: Option) -> str:
    """The command-line flag of an option that has one (``--max-output-tokens``)."""
    assert option.flag is not None
    return option.flag.name or "--" + option.name.replace("_", "-")


def _help(option: Option) -> str:
    """The flag's help line, with the option's default when it has one worth saying."""
    assert option.flag is not None
    default = option.default
    if option.flag.parse == "switch":
        return f"{option.flag.help} (default: {'on' if default else 'off'})"
    if default is None or default is REQUIRED or option.name == "into":
        return option.flag.help
    shown = f"{default:,g}" if isinstance(default, int | float) else str(default)
    return f"{option.flag.help} (default {shown})"


def _add_option(group: Any, option: Option) -> None:
    """Add an option's flag; every flag defaults to None, meaning "not given"."""
    flag = option.flag
    assert flag is not None
    extra: dict[str, Any] = {}
    if flag.parse == "switch":
        extra["action"] = argparse.BooleanOptionalAction
    elif flag.parse == "choice":
        extra["choices"] = flag.choices
    else:
        extra["type"] = _PARSE[flag.parse]
        extra["metavar"] = flag.metavar
    if option.default is REQUIRED:
        extra["required"] = True
    group.add_argument(flag_of(option), dest=option.name, default=None, help=_help(option), **extra)


def add_run_parser(commands: Any) -> None:
    """Register the ``run`` subcommand.

    Args:
        commands: The subparsers action of the ``valar-pandas`` parser.
    """
    run = commands.add_parser(
        "run",
        help="run a model over every row of a parquet, CSV or JSONL file",
        description="Run a language model over every row of INPUT and write OUTPUT: every\n"
        "input column (or those --columns selects), in order, plus the answers. The input\n"
        "is streamed in windows, so memory stays bounded at any file size; everything is\n"
        "checked before the first request; re-running the same command resumes.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = run.add_argument
    add(
        "input",
        type=Path,
        metavar="INPUT",
        help="a .parquet file, a directory of .parquet files, a .csv or a .jsonl file",
    )
    add(
        "output",
        type=Path,
        metavar="OUTPUT",
        help="a .parquet file, or a directory for parquet parts (any other name)",
    )
    add(
        "--encoding",
        metavar="CODEC",
        help="text encoding of a CSV or JSONL input, e.g. cp1252 (default: strict UTF-8)",
    )
    add(
        "--template",
        required=True,
        metavar="TEXT|@FILE",
        help="prompt naming columns, e.g. 'Review: {review}'; @FILE reads it from a file",
    )
    add(
        "--columns",
        type=_names,
        metavar="A,B",
        help="input columns to carry into the output, in this order (default: all); "
        "the template may still name others",
    )
    scoring = run.add_mutually_exclusive_group()
    for option in OPTIONS:
        if option.flag is None:
            continue
        shape = option.name in ("labels", "scale", "schema")
        _add_option(scoring if shape else run, option)
    add("--limit", type=_positive_int, metavar="N", help="only the first N rows")
    add(
        "--window-rows",
        type=_positive_int,
        default=WINDOW_ROWS,
        metavar="N",
        help=f"rows planned, sent and written together (default {WINDOW_ROWS:,}); "
        f"up to {IN_FLIGHT} windows run at once",
    )
    add("--dry-run", action="store_true", help="print the first requests and counts; send nothing")
    add("--estimate", action="store_true", help="print the cost estimate and exit; send nothing")
    add("--quiet", action="store_true", help="no progress bar and no summary")
    add("--json", action="store_true", help="print the summary as one JSON object on stdout")
    add(
        "--dask",
        metavar="local:N|tcp://HOST:8786",
        help="run the windows on a Dask cluster: N local worker processes, or a scheduler's "
        'address (needs pip install "valar-pandas[dask]"; see docs/dask.md)',
    )
