"""``valar-pandas run INPUT OUTPUT``: a file in, a file out, at any size, resumable.

Everything is checked before the first request (options, template, columns, input, output,
key, store, price); the input is then streamed in windows (:mod:`valar_pandas._cli.stream`), and
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
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa  # type: ignore[import-untyped]

from .._core.budget import Budget
from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._core.options import RunOptions
from .._core.prices import Price
from .._core.prompt import compile_template
from .._core.scrub import printable
from .._core.spec import OPTIONS, defaults
from .._display.progress import Judged, make_display
from .._display.tally import Tally, close_display
from .._files import Input, open_input, open_output, windows
from .._run.loop import run_sync
from .._scoring import ScoreSpec, make_spec, reply_judge
from .._service.call import budget_passed, budget_uncapped, open_store, prepare_call
from .._service.score import score_request_options, strict_notice
from .._store import RunStore
from .args import IN_FLIGHT, add_run_parser, joined_values
from .preview import dry_run, estimate_run
from .stream import StreamSettings, Totals, check_windows, prepare_window, stream, to_frame

__all__ = ["add_run_parser", "joined_values", "run_command"]

_OWN = ("labels", "scale", "schema", "reasons", "retries_on_invalid", "instructions", "into")
"""Options the command reads itself before they reach the run: the scoring ones, the
instructions (``@FILE``) and ``into`` (whose default depends on scoring)."""


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
    reasons = bool(args.reasons)
    if args.labels is not None:
        return make_spec(labels=args.labels, reasons=reasons)
    if args.scale is not None:
        parts = args.scale.split(",")
        try:
            bounds = [float(p) if any(c in p for c in ".eE") else int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--score-scale {args.scale!r}: write LO,HI, e.g. 1,5") from None
        return make_spec(scale=bounds, reasons=reasons)
    if args.schema is not None:
        try:
            schema = json.loads(args.schema.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"cannot read the schema file {args.schema}: {exc}") from None
        return make_spec(schema=schema, reasons=reasons)
    scoring_only = (("--reasons", args.reasons), ("--retries-on-invalid", args.retries_on_invalid))
    for flag, given in scoring_only:
        if given:
            raise ConfigError(
                f"{flag} applies to a scoring run: give --score-labels, --score-scale or --schema"
            )
    return None


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything checked before the first request: the input, the run, its windows."""

    source: Input
    job: StreamSettings
    rows: int
    windows: int
    in_flight: int
    options: RunOptions
    price: Price | None
    args: argparse.Namespace

    def tables(self) -> Iterator[pa.Table]:
        """The input's windows of the columns the run reads, from the start."""
        schema = pa.schema([self.source.schema.field(c) for c in self.job.read])
        batches = self.source.batches(self.job.read)
        return windows(batches, schema, self.args.window_rows, self.args.limit)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (those with a flag), by option name."""
    return {
        o.name: getattr(args, o.name)
        for o in OPTIONS
        if o.flag is not None and o.name not in _OWN and getattr(args, o.name) is not None
    }


def _setup(args: argparse.Namespace) -> Setup:
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
    given = {**defaults(["concurrency", "max_rps"]), **_given(args)}
    given.pop("store", None)  # opened by the command itself
    price, budget = given.pop("price", None), given.pop("budget", None)
    in_flight = min(IN_FLIGHT, count)
    # Each window may use the whole of --concurrency and --max-rps: the command's one client
    # holds them for every window together, so a slow window leaves its share to the others.
    options: dict[str, Any] = {
        **given,
        "into": args.into or ("output" if spec is None else "score"),
        "progress": None,
    }
    if spec is None:
        options["instructions"] = instructions
    else:
        options |= score_request_options(spec, instructions, warn=False)
        notice = strict_notice(spec, f"--schema {args.schema}")
        if notice is not None:
            print(f"valar-pandas: warning: {notice}", file=sys.stderr)
    retries = args.retries_on_invalid or 0
    job = StreamSettings(template, options, price, spec, keep, render, args.window_rows, retries)
    empty = to_frame(source.schema.empty_table().select(list(render)))
    checked = prepare_call(empty, template, price, budget=budget, **options)
    fallible = compiled.fallible()
    if fallible is not None:  # every row renders before the first request, not mid-run
        read = [str(c) for c in fallible.columns]
        schema = pa.schema([source.schema.field(c) for c in read])
        cut = windows(source.batches(read), schema, args.window_rows, args.limit)
        check_windows(fallible, cut, args.window_rows)
    return Setup(source, job, rows, count, in_flight, checked.options, checked.price, args)


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
        return dry_run(setup, out)
    if args.estimate:
        return estimate_run(setup, out)
    if args.dask is not None:
        return _on_cluster(setup, args, out)
    # One client for the command: one pool, one --concurrency and one --max-rps for every
    # window, and its connections closed when the command ends.
    client = ValarClient(concurrency=setup.options.concurrency, max_rps=setup.options.max_rps)
    output = open_output(args.output, args.input)
    store: RunStore | None = None
    started, cpu = time.perf_counter(), time.process_time()
    try:
        store = open_store(args.store, setup.options)
        tables = setup.tables()
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
            if setup.options.max_output_tokens is None:
                print(f"valar-pandas: warning: {budget_uncapped(flags=True)}", file=sys.stderr)
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
        for notice in totals.notices:
            print(f"valar-pandas: warning: {notice}", file=sys.stderr)
        if budget is not None and budget.overspent:
            print(
                "valar-pandas: warning: "
                + budget_passed(
                    budget.spent, budget.overspent, setup.options.max_output_tokens is not None
                ).replace("max_output_tokens", "--max-output-tokens"),
                file=sys.stderr,
            )
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
        client.close()
        if store is not None:
            store.close()
    summary = _summary(setup, args, totals, display.tally, started, cpu)
    if args.json:
        print(json.dumps(summary), file=out)
    elif not args.quiet:
        _print_summary(summary, out)
    return 0 if summary["answered"] == summary["rows"] else 1


def _summary(
    setup: Setup,
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
        "reasoning_tokens": tally.reasoning_tokens,
        "spent_usd": round(tally.spent, 9) if setup.price is not None else None,
        "http_requests": totals.http_requests,
        "invalid_retries": totals.invalid_retries,
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
        f"Tokens: {s['input_tokens']:,} in, {s['output_tokens']:,} out"
        + (f" ({s['reasoning_tokens']:,} reasoning)" if s["reasoning_tokens"] else "")
        + f"   cost: {spent}",
        f"HTTP requests: {s['http_requests']:,} ({s['requests_per_row']:.2f} per row)   "
        f"wall time: {s['wall_s']:,.1f} s",
        f"Wrote {s['output']}",
    ]
    if s["first_error"]:
        lines.insert(1, f"First error: {printable(' '.join(s['first_error'].split()))}")
    print("\n".join(lines), file=out)


def _on_cluster(setup: Setup, args: argparse.Namespace, out: TextIO) -> int:
    """``--dask``: the windows run on a Dask cluster (:mod:`valar_pandas._cli.cluster`)."""
    from .cluster import cluster_run

    if args.budget is not None and setup.options.max_output_tokens is None:
        print(f"valar-pandas: warning: {budget_uncapped(flags=True)}", file=sys.stderr)
    instructions = _text(args.instructions, "instructions") if args.instructions else None
    started, cpu = time.perf_counter(), time.process_time()
    try:
        t = cluster_run(setup, args, instructions)
    except KeyboardInterrupt:
        print(
            "valar-pandas: interrupted. Every answer received so far is kept in the workers' "
            "run stores: re-run the same command to resume without paying twice.",
            file=sys.stderr,
        )
        return 130
    rows = t["rows"]
    summary = {
        "input": str(args.input),
        "output": str(args.output),
        "rows": rows,
        "answered": rows - t["failed"] - t["skipped"],
        **{k: t[k] for k in ("failed", "skipped", "cached", "first_error")},
        **{k: t[k] for k in ("input_tokens", "output_tokens", "reasoning_tokens")},
        "spent_usd": round(t["spent_usd"], 9) if setup.price is not None else None,
        "http_requests": t["http_requests"],
        "invalid_retries": t["invalid_retries"],
        "requests_per_row": t["http_requests"] / rows if rows else 0.0,
        "windows": t["windows"],
        "wall_s": round(time.perf_counter() - started, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }
    if args.json:
        print(json.dumps(summary), file=out)
    elif not args.quiet:
        _print_summary(summary, out)
    return 0 if summary["answered"] == summary["rows"] else 1
