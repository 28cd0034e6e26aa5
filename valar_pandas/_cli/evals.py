"""``valar-pandas evals INPUT REPORT``: a prompt × model sweep of a file, as an HTML report.

Reads the input (parquet, CSV or JSON Lines, as ``run`` reads it), runs
:func:`valar_pandas.evals.sweep` over it (every ``--template`` with every model of
``--models``, through the run store and ``--budget``), prints the leaderboard and writes the
report: one self-contained HTML file. The request flags are ``run``'s, from the same options
table. Exit codes: 0 every row answered; 1 some rows failed (the report is still written);
2 a usage or configuration error, before any request; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa  # type: ignore[import-untyped]

from .._core.errors import ConfigError
from .._core.spec import OPTIONS
from .._files import open_input
from ..evals import sweep
from .args import _add_option, _names, _positive_int
from .run import _text
from .stream import to_frame

__all__ = ["add_evals_parser", "evals_command"]

_NOT_HERE = ("model", "into", "details", "reasons", "price")
"""``run`` flags a sweep does not take: it names its models, columns and prices itself."""


def add_evals_parser(commands: Any) -> None:
    """Register the ``evals`` subcommand.

    Args:
        commands: The subparsers action of the ``valar-pandas`` parser.
    """
    parser = commands.add_parser(
        "evals",
        help="compare prompts × models on a file and write an HTML report",
        description="Run every --template with every model of --models over the same rows "
        "of INPUT (a sample with --sample), through the run store (pairs answered before "
        "are free) and --budget (the whole sweep is estimated first), print the leaderboard "
        "and write REPORT: one self-contained HTML file with the leaderboard, bootstrap "
        "intervals, the exact McNemar test, a quality-vs-cost chart, confusion matrices "
        "and per-class F1.",
    )
    add = parser.add_argument
    add("input", type=Path, metavar="INPUT", help="a .parquet file or directory, .csv or .jsonl")
    add("report", type=Path, metavar="REPORT", help="the HTML report to write")
    add(
        "--template",
        action="append",
        required=True,
        metavar="NAME=TEXT|@FILE",
        help="a prompt to compare, named: 'terse=Sentiment of: {review}'; repeat for each "
        "prompt; @FILE reads the text from a file",
    )
    add("--models", type=_names, required=True, metavar="A,B", help="the models to compare")
    add("--truth", metavar="COLUMN", help="the column of true labels (default: agreement)")
    add("--field", metavar="NAME", help="with --schema: the property compared")
    add("--sample", type=_positive_int, metavar="N", help="score a random sample of N rows")
    add("--seed", type=int, default=0, metavar="N", help="seeds the sample and the intervals")
    add("--encoding", metavar="CODEC", help="text encoding of a CSV or JSONL input")
    add("--results", type=Path, metavar="FILE.csv", help="also write the long frame as CSV")
    add("--quiet", action="store_true", help="no progress bar")
    scoring = parser.add_mutually_exclusive_group(required=True)
    for option in OPTIONS:
        if option.flag is None or option.name in _NOT_HERE:
            continue
        shape = option.name in ("labels", "scale", "schema")
        _add_option(scoring if shape else parser, option)


def _templates(given: list[str]) -> dict[str, str]:
    named: dict[str, str] = {}
    for i, item in enumerate(given):
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or name.strip() != name or "{" in name:
            if len(given) > 1:
                raise ConfigError(
                    f"--template {item[:40]!r}: name each prompt, NAME=TEXT, when there are several"
                )
            name, text = "prompt", item
        if name in named:
            raise ConfigError(f"--template names {name!r} twice")
        named[name] = _text(text, f"template {i + 1}")
    return named


def _shape(args: argparse.Namespace) -> dict[str, Any]:
    if args.labels is not None:
        return {"labels": args.labels}
    if args.scale is not None:
        parts = args.scale.split(",")
        try:
            bounds = tuple(float(p) if any(c in p for c in ".eE") else int(p) for p in parts)
        except ValueError:
            raise ConfigError(f"--score-scale {args.scale!r}: write LO,HI, e.g. 1,5") from None
        return {"scale": bounds}
    try:
        schema = json.loads(args.schema.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read the schema file {args.schema}: {exc}") from None
    return {"schema": schema}


def evals_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``valar-pandas evals``.

    Args:
        args: The parsed command line.
        out: Where the leaderboard goes; default standard output.

    Returns:
        0 every row answered, 1 some rows failed (the report is written all the same).

    Raises:
        ValarError: A usage or configuration error, before any request.
    """
    out = sys.stdout if out is None else out
    templates = _templates(args.template)
    shape = _shape(args)
    options = {
        o.name: getattr(args, o.name)
        for o in OPTIONS
        if o.flag is not None
        and o.name not in (*_NOT_HERE, "labels", "scale", "schema", "store", "budget")
        and getattr(args, o.name) is not None
    }
    if options.get("instructions"):
        options["instructions"] = _text(options["instructions"], "instructions")
    if args.report.is_dir():
        raise ConfigError(f"REPORT {args.report} is a directory; name the .html file to write")
    for written in (args.report, args.results):
        if written is not None and written.resolve() == args.input.resolve():
            raise ConfigError(f"{written} is the input; name another file to write")
    source = open_input(args.input, args.encoding)
    names = list(source.schema.names)
    frame = to_frame(pa.Table.from_batches(list(source.batches(names)), schema=source.schema))
    if "labels" in shape and args.truth in frame.columns:
        # Labels on the command line are text; a file's truth column may have been read as
        # numbers (0, 1, 2): compare them as the text they were written as.
        column = frame[args.truth]
        frame[args.truth] = column.astype(object).where(column.isna(), column.astype(str))
    result = sweep(
        frame,
        templates,
        args.models,
        **shape,
        field=args.field,
        truth=args.truth,
        sample=args.sample,
        seed=args.seed,
        budget=args.budget,
        store=args.store,
        progress=None if args.quiet else "tqdm",
        **options,
    )
    result.to_html(args.report)
    if args.results is not None:
        result.results.to_csv(args.results, index=False)
    print(repr(result), file=out)
    print(f"report: {args.report}", file=out)
    return 1 if int(result.leaderboard["errors"].sum()) else 0
