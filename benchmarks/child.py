"""What both client processes share: their command line, their clocks, their report file.

A client process measures its own run phase (wall clock and CPU of every thread, from just
before the first request to the last answer in hand) and writes one JSON file the harness
reads. The harness adds what only the parent can see: the whole process's CPU and peak RSS
from ``wait4``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ChildArgs", "Stopwatch", "parse_child_args", "rss_mb", "write_result"]


@dataclass(frozen=True)
class ChildArgs:
    """The arguments every client process takes.

    Attributes:
        base_url: The emulator's base URL, ending in ``/v1``.
        api_key: The emulator's key.
        rows: Number of rows to send.
        window: The completion window (used by valar_pandas only; the recipe sends none).
        result: Where to write the JSON result.
        max_rps: valar_pandas's request budget as given (``"none"`` or a number); None keeps
            the library's default. The recipe has no such budget and ignores it.
    """

    base_url: str
    api_key: str
    rows: int
    window: str
    result: Path
    max_rps: str | None = None


def parse_child_args(prog: str, argv: Sequence[str] | None = None) -> ChildArgs:
    """Parse a client process's command line.

    Args:
        prog: Program name for help messages.
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--window", default="standard", choices=("standard", "asap"))
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--max-rps")
    args = parser.parse_args(argv)
    return ChildArgs(args.base_url, args.api_key, args.rows, args.window, args.result, args.max_rps)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Current resident set size of this process in MB (``/proc``; 0.0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class Stopwatch:
    """Wall clock and process CPU over a block: ``with Stopwatch() as sw: ...``.

    Attributes:
        wall: Seconds elapsed inside the block.
        cpu: User + system CPU seconds of the whole process (all threads) inside the block.
        rss_before: Resident set size in MB when the block started.
        ended: ``time.monotonic()`` when the block ended (the clock the emulator's record
            times are on).
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.rss_before = 0.0
        self.ended = 0.0
        self._t0 = 0.0
        self._c0 = 0.0

    def __enter__(self) -> Stopwatch:
        self.rss_before = rss_mb()
        self._c0 = _cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        self.ended = time.monotonic()
        self.cpu = _cpu() - self._c0


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write a client's result where the harness expects it (atomically).

    Args:
        path: The ``--result`` path.
        result: JSON-serialisable measurements and the per-row outputs.
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    tmp.replace(path)
