"""``python -m benchmarks``: run the scenarios and print the comparison table.

Run from the repository root. Each scenario starts the emulator in its own process, then runs
the baseline (the vendor's recipe) and valar_pandas, each in its own process, one after the
other, on the same rows with the same emulator settings, and reports every figure next to
the baseline's from the same invocation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .harness import HarnessOptions, ScenarioResult, run_scenario
from .processes import ChildFailed
from .report import git_commit, machine, markdown, to_json
from .scenarios import SCENARIOS, Scenario

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark valar_pandas against Valar's at-scale recipe on the local "
        "emulator. Scenarios: "
        + "; ".join(f"{s.name}: {s.describe()}" for s in SCENARIOS.values()),
    )
    add = parser.add_argument
    add(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        help="scenario to run; repeat for several (default: all, which is every scenario "
        "but the long standard150 and standard300)",
    )
    add(
        "--quick",
        action="store_true",
        help="smoke run, under two minutes: rows /10 (memory100k /20), latency /10",
    )
    add("--rows", type=int, help="override the number of rows")
    add("--latency-median", type=float, help="override the median latency, seconds")
    add("--latency-sigma", type=float, help="override the lognormal sigma")
    add("--window", choices=("standard", "asap"), help="override valar_pandas's window")
    add("--seed", type=int, default=0, help="emulator seed (default 0)")
    add(
        "--skip-baseline",
        nargs="*",
        metavar="SCENARIO",
        help="do not run the baseline for these scenarios (all selected ones if none named)",
    )
    add(
        "--max-rps",
        type=_max_rps,
        metavar="N|none",
        help="valar_pandas's max_rps (default: the library's); 'none' for no request budget",
    )
    add("--child-timeout", type=float, help="seconds before a client process is killed")
    add("--output", type=Path, help="also write the markdown report to this file")
    add("--json", type=Path, metavar="FILE", help="also write every figure as JSON ('-': stdout)")
    return parser


def _max_rps(text: str) -> str:
    if text == "none":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("a positive number of requests a second, or 'none'")
    return text


def _selected(args: argparse.Namespace) -> list[Scenario]:
    names = args.scenario or ["all"]
    every = [name for name, scenario in SCENARIOS.items() if scenario.in_all]
    chosen = list(dict.fromkeys(every + names if "all" in names else names))
    chosen = [name for name in chosen if name != "all"]
    scenarios = []
    for name in chosen:
        scenario = SCENARIOS[name].quick() if args.quick else SCENARIOS[name]
        overrides = {
            "rows": args.rows,
            "latency_median": args.latency_median,
            "latency_sigma": args.latency_sigma,
            "completion_window": args.window,
        }
        scenario = dataclasses.replace(
            scenario, **{k: v for k, v in overrides.items() if v is not None}
        )
        scenarios.append(scenario)
    return scenarios


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: children are stopped


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit code: 0 when every scenario ran, 1 when a child failed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    skip = args.skip_baseline
    for name in skip or []:
        if name not in SCENARIOS:
            print(f"--skip-baseline: unknown scenario {name!r}", file=sys.stderr)
            return 2
    command = shlex.join(["python", "-m", "benchmarks", *argv])
    git_at_start = git_commit()
    results: list[ScenarioResult] = []
    failed = False
    for scenario in _selected(args):
        options = HarnessOptions(
            seed=args.seed,
            skip_baseline=skip is not None and (not skip or scenario.name in skip),
            child_timeout=args.child_timeout,
            valar_max_rps=args.max_rps,
        )
        try:
            results.append(run_scenario(scenario, options))
        except ChildFailed as exc:
            print(f"[{scenario.name}] failed: {exc}", file=sys.stderr)
            failed = True
    meta = machine(git_at_start)
    report = markdown(results, meta, command)
    print(report)
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    if args.json:
        document = json.dumps(to_json(results, meta, command), indent=2)
        if str(args.json) == "-":
            print(document)
        else:
            args.json.write_text(document + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
