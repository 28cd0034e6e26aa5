"""``valar-pandas check``: hold the configured endpoint to the documents before a real run."""

from __future__ import annotations

import argparse
import sys

from .._core.check import CHECK_MODEL, WINDOWS, check_windows
from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._service.check import check

__all__ = ["add_check_parser", "check_command"]


def add_check_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check`` subcommand to the command's subparsers.

    Args:
        commands: The ``valar-pandas`` subparsers.
    """
    parser = commands.add_parser(
        "check",
        help="check your key and endpoint with a few tiny requests (well under $0.01)",
        description="Send a handful of tiny requests to the configured endpoint "
        "(VALAR_API_KEY, VALAR_BASE_URL, proxy and CA settings, as `run` reads them) and "
        "compare what comes back with the documents: the key, the model, background "
        "requests per completion window, an Idempotency-Key replay, a strict structured "
        "output, the Batch API. What it sends and its cost are printed first. Exit 0 when "
        "every required check passes, 1 otherwise.",
    )
    add = parser.add_argument
    add("--model", default=CHECK_MODEL, help=f"the model to check (default {CHECK_MODEL})")
    add(
        "--windows",
        default=",".join(WINDOWS),
        help="completion windows to time: asap, standard or asap,standard (default both; "
        "standard targets about five minutes per turn)",
    )
    add(
        "--timeout",
        type=float,
        default=900.0,
        help="most seconds to wait for each window's answer (default 900)",
    )
    add("--base-url", default=None, help="the API root (default VALAR_BASE_URL or Valar's)")


def check_command(args: argparse.Namespace) -> int:
    """Run ``valar-pandas check``.

    Args:
        args: The parsed arguments.

    Returns:
        0 when every required check passed, 1 otherwise.

    Raises:
        ConfigError: Bad arguments or no key, before any request.
    """
    windows = check_windows(args.windows)
    if not args.timeout > 0:
        raise ConfigError("--timeout must be a positive number of seconds")
    with ValarClient(base_url=args.base_url) as client:
        result = check(
            args.model,
            client=client,
            windows=windows,
            timeout=args.timeout,
            progress=lambda line: print(line, flush=True),
        )
    print()
    print(result.table())
    sys.stdout.flush()
    return result.exit_code
