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
from dataclasses import replace

from ._config import (
    BATCH_FAILURE_DETAILS,
    BATCH_REFUSALS,
    DEFAULT_API_KEY,
    IMAGE_MODELS,
    REALISTIC_LATENCY,
    REASONING_MODELS,
    EmulatorConfig,
    Faults,
    Latency,
)
from ._emulator import Emulator
from ._reasoning import EFFORTS

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
    add(
        "--latency-median",
        type=float,
        default=None,
        help="median seconds per response, whatever the window (one law for every window; "
        "sigma 0.5 and minimum 0 unless given)",
    )
    add("--latency-sigma", type=float, default=None, help="lognormal spread of that one law")
    add("--latency-min", type=float, default=None, help="minimum seconds of that one law")
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
    add(
        "--latency-profile",
        choices=("realistic", "fast"),
        default="realistic",
        help="realistic: latency by completion window (asap ~4 s, standard ~300 s median); "
        "fast: 0.2 s median for every window, for tests and demos (default realistic)",
    )
    add(
        "--asap-latency",
        type=float,
        default=None,
        metavar="SECONDS",
        help="median seconds of an asap response in the realistic profile (default 4)",
    )
    add(
        "--standard-latency",
        type=float,
        default=None,
        metavar="SECONDS",
        help="median seconds of a standard response in the realistic profile (default 300)",
    )
    add(
        "--ignore-idempotency",
        action="store_true",
        help="ignore Idempotency-Key headers: every create is a new, billed inference",
    )
    add(
        "--truncation",
        choices=("incomplete", "completed"),
        default="incomplete",
        help="how an answer cut at max_output_tokens is reported: status incomplete, or "
        "completed with incomplete_details (default incomplete)",
    )
    add(
        "--reasoning-models",
        type=_model_list,
        default=REASONING_MODELS,
        metavar="A,B",
        help="models that spend reasoning tokens, within max_output_tokens (default: every "
        "model of the pricing page but Gemma; '' for none)",
    )
    add(
        "--reasoning-default",
        choices=EFFORTS,
        default="none",
        help="the effort a reasoning model uses when a request sets none (default none)",
    )
    add(
        "--cache-block",
        type=int,
        default=16,
        metavar="TOKENS",
        help="prefix-cache block, in tokens, for cached_tokens of repeated instructions "
        "(0: off; default 16)",
    )
    add(
        "--strict-schemas",
        action="store_true",
        help="answer 400 to a json_schema format sent with strict: true whose schema breaks "
        "strict mode's rules (all properties required, additionalProperties false, ...)",
    )
    add(
        "--disobey-schema",
        type=float,
        default=0.0,
        help="fraction of json_schema answers that ignore the schema's shape "
        "(a property left out, an undeclared one added, or the answer wrapped)",
    )
    add(
        "--image-models",
        default=",".join(IMAGE_MODELS),
        help="comma-separated models that take input_image parts; images sent to any other "
        f"model are answered 400 (default {','.join(IMAGE_MODELS)}; empty for none)",
    )
    add(
        "--model-errors",
        type=_shares,
        default={},
        metavar="MODEL=SHARE,...",
        help="for each model, the share (0-1) of its labelling answers that are wrong (the "
        "first enum value moved to the next option); default none",
    )
    add(
        "--judge-position-bias",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of pairwise judge prompts on which the judge prefers the first answer, "
        "whatever it holds (default 0)",
    )
    return parser  # fmt: skip


def _shares(text: str) -> dict[str, float]:
    shares: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, sep, share = item.rpartition("=")
        try:
            shares[model] = float(share)
        except ValueError:
            model = ""
        if not sep or not model:
            raise argparse.ArgumentTypeError(f"{item!r}: write MODEL=SHARE, e.g. m=0.2")
    return shares


def _model_list(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _config(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        api_key=args.api_key,
        vocabulary=args.vocabulary,
        background_create_status=args.create_status,
        latency=_one_law(args),
        faults=Faults(
            rate_429=args.rate_429,
            retry_after=args.retry_after,
            rate_500=args.rate_500,
            rate_502=args.rate_502,
            rate_503=args.rate_503,
            drop_after_create=args.drop_after_create,
            failed=args.failed,
            invalid_structured=args.invalid_structured,
            disobey_schema=args.disobey_schema,
        ),
        seed=args.seed,
        cancel_supported=args.cancel and not args.no_cancel,
        batch_api=args.batch_api and not args.no_batch_api,
        latency_by_window=_by_window(args),
        idempotency=not args.ignore_idempotency,
        truncation=args.truncation,
        reasoning_models=args.reasoning_models,
        reasoning_default=args.reasoning_default,
        cache_block=args.cache_block,
        strict_schemas=args.strict_schemas,
        image_models=tuple(m.strip() for m in args.image_models.split(",") if m.strip()),
        batch_refusal=args.batch_refusal,
        batch_failure_detail=args.batch_failure_detail,
        batch_drop_items=args.batch_drop_items,
        unknown_model_status=args.unknown_model_status,
        model_errors=args.model_errors,
        judge_position_bias=args.judge_position_bias,
    )


def _one_law(args: argparse.Namespace) -> Latency | None:
    """The one law for every window: from ``--latency-*``, or the fast profile; else None."""
    given = {
        "median": args.latency_median,
        "sigma": args.latency_sigma,
        "minimum": args.latency_min,
    }
    chosen = {name: value for name, value in given.items() if value is not None}
    if not chosen and args.latency_profile == "realistic":
        return None
    return replace(Latency.fast(), **chosen)


def _by_window(args: argparse.Namespace) -> dict[str, Latency]:
    """The realistic profile, with the medians ``--asap-latency``/``--standard-latency`` give."""
    medians = {"asap": args.asap_latency, "standard": args.standard_latency}
    laws = {}
    for window, median in medians.items():
        if median is not None:  # the floor keeps its share of the median
            law = REALISTIC_LATENCY[window]
            laws[window] = replace(law, median=median, minimum=law.minimum * median / law.median)
    return laws


def _pace(config: EmulatorConfig) -> str:
    """The latency in force, in a few words, for the line printed at start."""
    if config.latency is not None:
        return f"{config.latency.median:g} s median, every window"
    laws = config.latency_by_window
    return ", ".join(f"{w} {laws[w].median:g} s median" for w in ("asap", "standard"))


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
            f"latency: {_pace(emulator.config)}; Ctrl-C to stop)",
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
