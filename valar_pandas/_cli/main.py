"""The ``valar-pandas`` command: ``run``, ``check``, ``demo``, ``store``, ``emulator``, ``evals``.

Exit codes: 0 success, 1 the run finished with failed rows, 2 usage or configuration error
(raised before any request), 130 interrupted (Ctrl-C), 143 stopped by SIGTERM (``run``
winds down on SIGTERM as on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from .._core.errors import StoreError, ValarError, for_command
from .._core.scrub import printable
from .check import add_check_parser, check_command
from .evals import add_evals_parser, evals_command
from .run import add_run_parser, joined_values, run_command

if TYPE_CHECKING:
    from .._store import RunStore

__all__ = ["main"]

_SIBLINGS = ("-wal", "-shm", "-journal")  # the files SQLite keeps beside a database


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="valar-pandas",
        description="Run a language model over every row of a table through Valar.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(commands)
    add_check_parser(commands)
    add_evals_parser(commands)

    demo = commands.add_parser(
        "demo",
        help="score ~2,000 synthetic reviews on the built-in emulator",
        description="Start the built-in Valar emulator on loopback, classify the sentiment "
        "of synthetic product reviews with df.valar.run, write parquet, print a summary.",
    )
    demo.add_argument("--rows", type=int, default=2000, help="reviews to score (default 2000)")
    demo.add_argument(
        "--output", type=Path, default=Path("demo-output.parquet"), help="parquet file to write"
    )
    demo.add_argument(
        "--latency", type=float, default=1.5, help="median seconds per emulated response"
    )
    demo.add_argument(
        "--no-faults", action="store_true", help="do not inject 429s, 503s and dropped connections"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    store = commands.add_parser(
        "store",
        help="inspect or clear the run store",
        description="The run store remembers every request so re-runs are free and "
        "interrupted runs resume. Default location: VALAR_PANDAS_STORE or the user cache "
        "directory.",
    )
    store.add_argument("action", choices=["info", "list", "clear"], help="what to do")
    store.add_argument("--store", type=Path, default=None, help="store file (default: see above)")
    store.add_argument("--limit", type=int, default=20, help="rows to list (default 20)")
    store.add_argument(
        "--older-than",
        type=_age,
        default=None,
        metavar="AGE",
        help="with clear: only rows not updated for AGE, e.g. 30d, 12h, 45m, 90s",
    )

    commands.add_parser(
        "emulator",
        help="serve the Valar emulator (see 'valar-pandas emulator --help')",
        add_help=False,
    )
    return parser


def _age(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    number, unit = text[:-1], text[-1:].lower()
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age like 30d, 12h, 45m or 90s"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError("an age cannot be negative")
    return value


def _when(stamp: object) -> str:
    if not isinstance(stamp, int | float):
        return "-"
    return datetime.fromtimestamp(stamp).isoformat(sep=" ", timespec="seconds")


def _store_command(action: str, path: Path | None, limit: int, older_than: float | None) -> int:
    from .._store import RunStore, default_store_path

    path = path if path is not None else default_store_path()
    if not path.exists():  # never create a store just to describe it
        print(f"no run store at {path}")
        return 0
    try:
        store = RunStore(path)
    except ValarError as exc:  # damaged, another program's, or newer: say so, or remove it
        if action == "clear":
            return _remove_store(path, older_than, exc)
        raise
    with store:
        try:
            return _store_action(store, action, limit, older_than)
        except StoreError as exc:
            if action != "clear":
                raise
            failure: ValarError = exc
    return _remove_store(path, older_than, failure)


def _store_action(store: RunStore, action: str, limit: int, older_than: float | None) -> int:
    if action == "info":
        info = store.info()
        print(f"store:          {info['path']} (schema {info['schema_version']})")
        print(f"size:           {info['bytes']:,} bytes")
        print(f"rows:           {info['rows']:,}  by state: {info['by_state'] or {}}")
        print(f"finished:       {info['by_status'] or {}}")
        print(f"batches:        {info['batches']:,}")
        print(
            f"tokens:         {info['input_tokens']:,} in, {info['output_tokens']:,} out "
            f"({info['reasoning_tokens']:,} of them reasoning"
            + (
                f"; not reported for {info['reasoning_unreported']:,} rows)"
                if info.get("reasoning_unreported")
                else ")"
            )
        )
        print(f"oldest, newest: {_when(info['oldest'])}, {_when(info['newest'])}")
    elif action == "list":
        for row in list(store.rows(limit)):  # read whole first: a damaged file fails here
            text = str(row["text"] if row["text"] is not None else row["error"] or "")
            text = " ".join(text.split())[:60]
            # Answers and errors are the server's words: controls are shown, never obeyed.
            print(
                printable(
                    f"{_when(row['updated_at'])}  {str(row['fingerprint'])[:12]}  "
                    f"{row['state']:<9} {row['status'] or '-':<10} {row['model'] or '-'}  "
                    f"{text}"
                )
            )
    else:
        deleted = store.clear(older_than)
        print(f"deleted {deleted:,} rows from {store.path}")
    return 0


def _remove_store(path: Path, older_than: float | None, failure: ValarError) -> int:
    """``store clear`` on a file that is no usable store: remove it and SQLite's siblings."""
    if older_than is not None:
        raise ValarError(
            f"{for_command(failure)} --older-than needs rows it can read; "
            f"`valar-pandas store clear --store {path}` without it removes the whole file."
        )
    removed = []
    for file in (path, *(path.with_name(path.name + s) for s in _SIBLINGS)):
        if file.is_file() or file.is_symlink():
            file.unlink()
            removed.append(file.name)
    print(f"valar-pandas: {for_command(failure)}", file=sys.stderr)
    print(f"{path} was not a usable run store; removed {', '.join(removed) or 'nothing'}")
    return 0


@contextlib.contextmanager
def _terminate_like_ctrl_c() -> Iterator[list[int]]:
    """While inside, SIGTERM ends the command as Ctrl-C does, cleanly, instead of at once.

    Python's default for SIGTERM ends the process on the spot: no output clean-up, and the
    run store misses the ids of the last tick. Raising ``KeyboardInterrupt`` instead takes
    the interrupt's path (ids written, nothing cancelled on the server). Only the main
    thread may set a handler; elsewhere nothing changes.

    Yields:
        The signals received (empty unless SIGTERM arrived).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit code.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from ..emulator import main as emulator_main

        return emulator_main(args_list[1:], prog="valar-pandas emulator")
    args = _parser().parse_args(joined_values(args_list))
    try:
        if args.command == "run":
            with _terminate_like_ctrl_c() as terminated:
                code = run_command(args)
            return 128 + signal.SIGTERM if terminated and code == 130 else code
        if args.command == "demo":
            from .demo import DemoSettings, run_demo

            if args.rows < 1 or args.latency < 0:
                raise SystemExit("valar-pandas demo: --rows must be ≥ 1 and --latency ≥ 0")
            settings = DemoSettings(
                rows=args.rows,
                output=args.output,
                latency=args.latency,
                faults=not args.no_faults,
                progress=not args.quiet,
            )
            scored = run_demo(settings, sys.stdout)
            return 1 if scored["sentiment_error"].notna().any() else 0
        if args.command == "check":
            return check_command(args)
        if args.command == "store":
            return _store_command(args.action, args.store, args.limit, args.older_than)
        if args.command == "evals":
            return evals_command(args)
    except ValarError as exc:
        print(f"valar-pandas: {for_command(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("valar-pandas: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
