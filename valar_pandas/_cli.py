"""The ``valar-pandas`` command: ``demo`` and ``emulator``.

Exit codes: 0 success, 1 the run finished with failed rows, 2 usage or configuration error
(raised before any request).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._errors import ValarError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="valar-pandas",
        description="Run a language model over every row of a table through Valar.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    commands.add_parser(
        "emulator",
        help="serve the Valar emulator (see 'valar-pandas emulator --help')",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit code.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from .emulator import main as emulator_main

        return emulator_main(args_list[1:], prog="valar-pandas emulator")
    args = _parser().parse_args(args_list)
    try:
        if args.command == "demo":
            from ._demo import DemoSettings, run_demo

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
    except ValarError as exc:
        print(f"valar-pandas: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("valar-pandas: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
