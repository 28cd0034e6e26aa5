"""Command line: ``python -m valar_pandas.emulator`` (also ``valar-pandas emulator``).

Owns argument parsing and the serve-until-signalled loop; prints one line with the base URL
and the key to use, then serves until SIGINT or SIGTERM and exits cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ._config import (
    BATCH_FAILURE_DETAILS,
    BATCH_REFUSALS,
    DEFAULT_API_KEY,
    EmulatorConfig,
    Faults,
    Latency,
)
from ._emulator import Emulator

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a local emulator of the Valar Responses API (background mode, "
        "Idempotency-Key replays, the Batch API, scripted faults). Nothing leaves this machine.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    add("--port", type=int, default=8080, help="TCP port; 0 picks a free one (default 8080)")
    add("--api-key", default=DEFAULT_API_KEY, help="the one bearer key accepted")
    add(
        "--vocabulary",
        choices=("pending", "queued"),
        default="pending",
        help="status words: pending/running or queued/in_progress",
    )
    add(
        "--create-status",
        type=int,
        choices=(202, 200),
        default=202,
        help="HTTP status of a background create",
    )
    add("--latency-median", type=float, default=0.2, help="median seconds per response")
    add("--latency-sigma", type=float, default=0.5, help="lognormal spread of the latency")
    add("--latency-min", type=float, default=0.0, help="minimum seconds per response")
    add("--rate-429", type=float, default=0.0, help="probability of a 429 per API request")
    add("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429 and 503")
    add("--rate-500", type=float, default=0.0, help="probability of a 500 per API request")
    add("--rate-502", type=float, default=0.0, help="probability of a 502 per API request")
    add("--rate-503", type=float, default=0.0, help="probability of a 503 per API request")
    add(
        "--drop-after-create",
        type=float,
        default=0.0,
        help="probability that a create's connection is dropped after the record is made",
    )
    add("--failed", type=float, default=0.0, help="fraction of responses that end failed")
    add(
        "--invalid-structured",
        type=float,
        default=0.0,
        help="fraction of json_schema answers that are invalid (bad JSON, label, or range)",
    )
    add("--seed", type=int, default=0, help="seed for latency and faults")
    add(
        "--no-cancel",
        action="store_true",
        help="answer 404 to POST /v1/responses/{id}/cancel (the default; wins over --cancel)",
    )
    add(
        "--no-batch-api",
        action="store_true",
        help="answer 404 on the /v1/batches endpoints, as a server without the Batch API "
        "(the default; wins over --batch-api)",
    )
    add(
        "--batch-api",
        action="store_true",
        help="serve the Batch API (/v1/batches); off by default, as the vendor calls it "
        "'coming soon'",
    )
    add(
        "--cancel",
        action="store_true",
        help="serve POST /v1/responses/{id}/cancel; off by default, as the vendor documents "
        "no cancel",
    )
    add(
        "--batch-refusal",
        choices=BATCH_REFUSALS,
        default=None,
        help="with --batch-api, refuse batches: not_enabled (403), coming_soon or "
        "unavailable (400), overloaded (503 on every create), server_error (500 on every "
        "create)",
    )
    add(
        "--batch-failure-detail",
        choices=BATCH_FAILURE_DETAILS,
        default="result",
        help="where a FAILED batch item's reason shows: status (its status entry and its "
        "result), result (only its result; the default), none (nowhere; its result is 404)",
    )
    add(
        "--batch-drop-items",
        type=int,
        default=0,
        help="drop the last N items of every batch: never run, missing from request_counts "
        "and the status map",
    )
    add(
        "--unknown-model-status",
        type=int,
        choices=(400, 404),
        default=400,
        help="HTTP status of a request naming an unknown model (code model_not_found)",
    )
    return parser  # fmt: skip


def _config(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        api_key=args.api_key,
        vocabulary=args.vocabulary,
        background_create_status=args.create_status,
        latency=Latency(
            median=args.latency_median, sigma=args.latency_sigma, minimum=args.latency_min
        ),
        faults=Faults(
            rate_429=args.rate_429,
            retry_after=args.retry_after,
            rate_500=args.rate_500,
            rate_502=args.rate_502,
            rate_503=args.rate_503,
            drop_after_create=args.drop_after_create,
            failed=args.failed,
            invalid_structured=args.invalid_structured,
        ),
        seed=args.seed,
        cancel_supported=args.cancel and not args.no_cancel,
        batch_api=args.batch_api and not args.no_batch_api,
        batch_refusal=args.batch_refusal,
        batch_failure_detail=args.batch_failure_detail,
        batch_drop_items=args.batch_drop_items,
        unknown_model_status=args.unknown_model_status,
    )


async def _serve(emulator: Emulator, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Where the loop cannot take signals (Windows: NotImplementedError; off the main
        # thread: RuntimeError) the defaults stay: Ctrl-C raises KeyboardInterrupt, which
        # main() turns into a clean exit, and SIGTERM ends the process as usual.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with emulator.serve(host, port) as base_url:
        print(
            f"Valar emulator serving at {base_url}  (api key: {emulator.config.api_key}; "
            "Ctrl-C to stop)",
            flush=True,
        )
        await stop.wait()


def main(argv: Sequence[str] | None = None, prog: str = "python -m valar_pandas.emulator") -> int:
    """Run the emulator from the command line until SIGINT or SIGTERM.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.
        prog: The program name shown in help and usage messages.

    Returns:
        The exit code: 0 after a clean stop, 2 for a bad configuration, 1 if the server
        could not start (e.g. the port is taken).
    """
    args = _parser(prog).parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        emulator = Emulator(_config(args))
    except (ValueError, TypeError) as exc:
        print(f"valar emulator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(emulator, args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"valar emulator: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
