"""``valar-pandas run INPUT OUTPUT``: a file in, a file out, at any size, resumable.

Everything is checked before the first request (options, template, columns, input, output,
key, store, price); the input is then streamed in windows (:mod:`valar_pandas._stream`), and
the output is committed only when complete (:mod:`valar_pandas._files`). Re-running the same
command after a crash or Ctrl-C resumes from the run store.

Exit codes: 0 every row answered; 1 some rows failed (the output is still written, with the
reasons in ``<into>_error``); 2 a usage or configuration error, reported before any request
(or the server refused the run as a whole: a rejected key, an unknown model); 130
interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa  # type: ignore[import-untyped]

from ._accessor import open_store, prepare_call, score_request_options
from ._budget import Budget
from ._config import ValarClient, resolve_base_url
from ._errors import ConfigError
from ._estimate import Estimate
from ._files import Input, open_input, open_output, windows
from ._loop import run_sync
from ._options import DEFAULT_MAX_RPS, MIN_MAX_RPS, MODES, RunOptions
from ._prices import Price
from ._progress import Judged, Tally, close_display, make_display
from ._prompt import compile_template
from ._run import prepare_work
from ._score import ScoreSpec, make_spec, reply_judge
from ._scrub import printable
from ._store import RunStore
from ._stream import Job, Totals, Window, check_windows, prepare_window, stream, to_frame

__all__ = ["add_run_parser", "joined_values", "run_command"]

WINDOW_ROWS = 20_000
"""Rows per window by default: planned, sent and written together."""
IN_FLIGHT = 3
"""Windows running at once: the tail of one overlaps the next ones."""
_SHOWN_REQUESTS = 3

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or not math.isfinite(value):
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


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name; write a,b,c")
    return names


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
    add("--model", required=True, help="model id, e.g. zai-org/GLM-5.1-FP8")
    add("--into", help="output column (default 'output', or 'score' when scoring)")
    add("--mode", choices=MODES, default="background", help="how to send (default background)")
    add(
        "--completion-window",
        choices=("standard", "asap"),
        help="standard (cheaper) or asap; default asap in realtime mode, else standard",
    )
    add("--max-output-tokens", type=_positive_int, metavar="N", help="cap on each answer")
    add(
        "--instructions",
        metavar="TEXT|@FILE",
        help="system instructions sent before every prompt; @FILE reads them from a file",
    )
    add(
        "--columns",
        type=_names,
        metavar="A,B",
        help="input columns to carry into the output, in this order (default: all); "
        "the template may still name others",
    )
    add(
        "--concurrency",
        type=_positive_int,
        default=200,
        metavar="N",
        help="most HTTP requests in flight, shared by the windows running (default 200)",
    )
    add(
        "--max-rps",
        type=_rate,
        default=DEFAULT_MAX_RPS,
        metavar="N",
        help="most HTTP requests a second, shared by the windows running "
        f"(default {DEFAULT_MAX_RPS:,.0f}; at least {MIN_MAX_RPS})",
    )
    add(
        "--budget",
        type=_positive_float,
        metavar="USD",
        help="most US dollars the whole run may spend; rows past it are not sent",
    )
    add(
        "--price",
        type=_price,
        metavar="INPUT,OUTPUT",
        help="US dollars per million input and output tokens, for a model the price table "
        "lacks (or to override it); --budget needs a price",
    )
    add(
        "--retry-failed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask again, once, the rows the server failed in an earlier run (default: on)",
    )
    add(
        "--store",
        type=Path,
        metavar="PATH",
        help="run store file (default VALAR_PANDAS_STORE or the user cache directory)",
    )
    scoring = run.add_mutually_exclusive_group()
    scoring.add_argument(
        "--score-labels",
        type=_names,
        metavar="A,B,C",
        help="answer with one of these labels: a category column",
    )
    scoring.add_argument(
        "--score-scale",
        metavar="LO,HI",
        help="answer with a number in [LO, HI]: integer for whole bounds",
    )
    scoring.add_argument(
        "--schema",
        type=Path,
        metavar="FILE.json",
        help="answer with a JSON object matching this schema: one column per property",
    )
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


def _text(value: str, what: str) -> str:
    """The option's text, or the file it names with a leading ``@``."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None


def _spec(args: argparse.Namespace) -> ScoreSpec | None:
    if args.score_labels is not None:
        return make_spec(labels=args.score_labels)
    if args.score_scale is not None:
        parts = args.score_scale.split(",")
        try:
            bounds = [float(p) if any(c in p for c in ".eE") else int(p) for p in parts]
        except ValueError:
            raise ConfigError(
                f"--score-scale {args.score_scale!r}: write LO,HI, e.g. 1,5"
            ) from None
        return make_spec(scale=bounds)
    if args.schema is not None:
        try:
            schema = json.loads(args.schema.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"cannot read the schema file {args.schema}: {exc}") from None
        return make_spec(schema=schema)
    return None


@dataclasses.dataclass(frozen=True)
class _Setup:
    source: Input
    job: Job
    rows: int
    windows: int
    in_flight: int
    options: RunOptions
    price: Price | None


def _setup(args: argparse.Namespace) -> _Setup:
    """Check everything that needs no key, no output and no request."""
    template = _text(args.template, "template")
    instructions = _text(args.instructions, "instructions") if args.instructions else None
    spec = _spec(args)
    source = open_input(args.input, args.encoding)
    names = list(source.schema.names)
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:  # columns are read by name: which of them would be meant is unknowable
        raise ConfigError(
            f"{args.input} has more than one column named {repeated[0]!r}; give each column "
            "of the file its own name"
        )
    compiled = compile_template(template, names)
    render = tuple(str(c) for c in compiled.columns)
    source.check_text(render)
    keep = tuple(args.columns) if args.columns is not None else tuple(names)
    unknown = [c for c in keep if c not in names]
    if unknown:
        raise ConfigError(
            f"--columns names {', '.join(repr(c) for c in unknown)}, not in {args.input}. "
            f"Available columns: {', '.join(repr(c) for c in names[:20])}"
        )
    if len(set(keep)) != len(keep):
        raise ConfigError("--columns names a column more than once")
    rows = source.rows if args.limit is None else min(source.rows, args.limit)
    count = max(1, math.ceil(rows / args.window_rows))
    in_flight = min(IN_FLIGHT, count)
    while in_flight > 1 and args.max_rps / in_flight < MIN_MAX_RPS:
        in_flight -= 1  # each window's share of --max-rps stays at or above the floor
    options: dict[str, Any] = {
        "model": args.model,
        "into": args.into or ("output" if spec is None else "score"),
        "max_output_tokens": args.max_output_tokens,
        "completion_window": args.completion_window,
        "mode": args.mode,
        "retry_failed": args.retry_failed,
        "concurrency": max(1, args.concurrency // in_flight),
        "max_rps": args.max_rps / in_flight,
        "progress": None,
    }
    if spec is None:
        options["instructions"] = instructions
    else:
        options |= score_request_options(spec, instructions)
    job = Job(template, options, args.price, spec, keep, render, args.window_rows)
    empty = to_frame(source.schema.empty_table().select(list(render)))
    checked = prepare_call(empty, template, args.price, budget=args.budget, **options)
    fallible = compiled.fallible()
    if fallible is not None:  # every row renders before the first request, not mid-run
        read = [str(c) for c in fallible.columns]
        schema = pa.schema([source.schema.field(c) for c in read])
        cut = windows(source.batches(read), schema, args.window_rows, args.limit)
        check_windows(fallible, cut, args.window_rows)
    return _Setup(source, job, rows, count, in_flight, checked.options, checked.price)


def _tables(setup: _Setup, args: argparse.Namespace) -> Iterator[pa.Table]:
    schema = pa.schema([setup.source.schema.field(c) for c in setup.job.read])
    batches = setup.source.batches(setup.job.read)
    return windows(batches, schema, args.window_rows, args.limit)


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``valar-pandas run``.

    Args:
        args: The parsed command line.
        out: Where the summary goes; default standard output.

    Returns:
        The exit code: 0 every row answered, 1 some failed or were held back by the budget,
        130 interrupted.

    Raises:
        ValarError: A usage or configuration error (before any request), or the server
            refused the run as a whole; the caller reports it and exits with 2.
    """
    out = sys.stdout if out is None else out
    if args.dry_run and args.estimate:
        raise ConfigError("give --dry-run or --estimate, not both")
    setup = _setup(args)
    if args.dry_run:
        return _dry_run(setup, args, out)
    if args.estimate:
        return _estimate(setup, args, out)
    client = ValarClient()
    output = open_output(args.output, args.input)
    store: RunStore | None = None
    started, cpu = time.perf_counter(), time.process_time()
    try:
        store = open_store(args.store, setup.options)
        tables = _tables(setup, args)
        first = prepare_window(setup.job, 0, next(tables))  # a bad row stops us here
        display = make_display(
            None if args.quiet else "tqdm", setup.price, desc="valar-pandas", total=setup.rows
        )
        if setup.job.spec is not None:  # an unreadable reply is a failed row on the bar too
            display = Judged(display, reply_judge(setup.job.spec))
        budget: Budget | None = None
        if args.budget is not None:
            assert setup.price is not None  # prepare_call refuses a budget without a price
            budget = Budget(args.budget, setup.price)
        try:
            totals = run_sync(
                stream(
                    tables, setup.job, client, store, display, budget, output,
                    setup.in_flight, prepared=[first],
                )
            )  # fmt: skip
        finally:
            close_display(display)
        output.commit()
        if store is not None and store.fault is not None:  # every answer is in the output
            print(
                f"valar-pandas: warning: {store.fault.message(str(args.output), command=True)}",
                file=sys.stderr,
            )
    except KeyboardInterrupt:
        output.abort()
        print(
            "valar-pandas: interrupted. Every answer received so far is kept in the run "
            "store: re-run the same command to resume without paying twice.",
            file=sys.stderr,
        )
        return 130
    except BaseException:
        output.abort()
        raise
    finally:
        if store is not None:
            store.close()
    summary = _summary(setup, args, totals, display.tally, started, cpu)
    if args.json:
        print(json.dumps(summary), file=out)
    elif not args.quiet:
        _print_summary(summary, out)
    return 0 if summary["answered"] == summary["rows"] else 1


def _summary(
    setup: _Setup,
    args: argparse.Namespace,
    totals: Totals,
    tally: Tally,
    started: float,
    cpu: float,
) -> dict[str, Any]:
    rows = totals.rows
    return {
        "input": str(args.input),
        "output": str(args.output),
        "rows": rows,
        "answered": rows - totals.failed - tally.skipped,
        "failed": totals.failed,
        "skipped": tally.skipped,
        "cached": tally.cached,
        "first_error": totals.first_error,
        "input_tokens": tally.input_tokens,
        "output_tokens": tally.output_tokens,
        "spent_usd": round(tally.spent, 9) if setup.price is not None else None,
        "http_requests": totals.http_requests,
        "requests_per_row": totals.http_requests / rows if rows else 0.0,
        "windows": totals.windows,
        "wall_s": round(time.perf_counter() - started, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }


def _print_summary(s: dict[str, Any], out: TextIO) -> None:
    spent = (
        "unknown (no price for this model; give --price INPUT,OUTPUT)"
        if s["spent_usd"] is None
        else f"${s['spent_usd']:,.4f}"
    )
    lines = [
        f"Rows: {s['rows']:,}   answered: {s['answered']:,}   failed: {s['failed']:,}"
        + (f"   not sent (budget): {s['skipped']:,}" if s["skipped"] else "")
        + f"   from the run store: {s['cached']:,}",
        f"Tokens: {s['input_tokens']:,} in, {s['output_tokens']:,} out   cost: {spent}",
        f"HTTP requests: {s['http_requests']:,} ({s['requests_per_row']:.2f} per row)   "
        f"wall time: {s['wall_s']:,.1f} s",
        f"Wrote {s['output']}",
    ]
    if s["first_error"]:
        lines.insert(1, f"First error: {printable(' '.join(s['first_error'].split()))}")
    print("\n".join(lines), file=out)


def _planned(setup: _Setup, args: argparse.Namespace) -> Iterator[Window]:
    for index, table in enumerate(_tables(setup, args)):
        yield prepare_window(setup.job, index, table)


def _dry_run(setup: _Setup, args: argparse.Namespace, out: TextIO) -> int:
    shown: list[dict[str, Any]] = []
    rows = requests = skipped = 0
    for window in _planned(setup, args):
        plan = window.call.plan
        rows += len(plan.rows)
        requests += len(plan.requests)
        skipped += plan.skipped
        for position, row in enumerate(plan.rows):
            if len(shown) >= _SHOWN_REQUESTS:
                break
            if isinstance(row, str):
                shown.append({"row": position, "body": dict(plan.requests[row].body)})
    if args.json:
        result = {"rows": rows, "requests": requests, "skipped": skipped, "first": shown}
        print(json.dumps(result), file=out)
        return 0
    print(f"Dry run: nothing is sent. {args.input} ({setup.source.kind}) → {args.output}", file=out)
    for item in shown:
        print(
            f"\nrow {item['row']}:\n{json.dumps(item['body'], indent=2, ensure_ascii=False)}",
            file=out,
        )
    print(
        f"\nrows {rows:,}   requests {requests:,} (identical rows in a window are sent once)"
        f"   skipped {skipped:,}   windows {setup.windows:,} of up to {args.window_rows:,} rows",
        file=out,
    )
    return 0


def _estimate(setup: _Setup, args: argparse.Namespace, out: TextIO) -> int:
    endpoint = resolve_base_url()
    total: Estimate | None = None
    store: RunStore | None = None
    try:
        for window in _planned(setup, args):
            call = window.call
            if store is None:
                store = open_store(args.store, setup.options)
            work = prepare_work(call.plan, call.options, store, endpoint)
            part = call.estimate(work)
            total = part if total is None else _add(total, part)
    finally:
        if store is not None:
            store.close()
    assert total is not None  # windows() yields at least one window
    if args.json:
        print(json.dumps(total.to_dict()), file=out)
    else:
        print(total.render(price_hint="give --price INPUT,OUTPUT"), file=out)
    return 0


def _add(a: Estimate, b: Estimate) -> Estimate:
    cost = None if a.cost_usd is None or b.cost_usd is None else a.cost_usd + b.cost_usd
    return dataclasses.replace(
        a,
        rows=a.rows + b.rows,
        requests=a.requests + b.requests,
        cache_hits=a.cache_hits + b.cache_hits,
        skipped=a.skipped + b.skipped,
        to_send=a.to_send + b.to_send,
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cost_usd=cost,
        images=a.images + b.images,
    )
