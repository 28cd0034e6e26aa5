"""``python -m benchmarks.estimate``: ``df.valar.estimate()`` and ``requests()`` on a big frame.

Each measurement runs in a fresh interpreter: it builds a frame of N rows (the scenarios'
``i`` and ``phrase`` columns and prompt template), then times one call and reads how much
its peak resident memory rose above what the frame already held (the kernel's high-water
mark, reset just before the call where Linux allows, else ``ru_maxrss``). The run store is a
fresh file, so every request counts as one to send. ``--against DIR`` measures a second
source tree (say an older checkout: ``git archive <rev> valar_pandas | tar -x -C DIR``) in
the same invocation and prints the ratios::

    python -m benchmarks.estimate --rows 1000000 --against /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .scenarios import MAX_OUTPUT_TOKENS, MODEL, PROMPT_TEMPLATE

__all__ = ["main", "measure"]

CALLS = ("estimate", "requests")

_CHILD = r"""
import gc, json, os, resource, sys, time

import pandas as pd

import valar_pandas
print(json.dumps({"package": valar_pandas.__file__}))
from benchmarks.scenarios import MAX_OUTPUT_TOKENS, MODEL, PROMPT_TEMPLATE, phrase

call, rows, store = sys.argv[1], int(sys.argv[2]), sys.argv[3]
df = pd.DataFrame({"i": range(rows), "phrase": [phrase(i) for i in range(rows)]})
df["phrase"] = df["phrase"].astype("str")
template = PROMPT_TEMPLATE
gc.collect()


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current RSS
except OSError:
    pass
before = rss_kb()
start = time.perf_counter()
if call == "estimate":
    result = df.valar.estimate(template, model=MODEL, max_output_tokens=MAX_OUTPUT_TOKENS,
                               store=store)
    shown = {"to_send": result.to_send, "input_tokens": result.input_tokens}
else:
    result = df.valar.requests(template, model=MODEL, max_output_tokens=MAX_OUTPUT_TOKENS)
    shown = {"bodies": len(result)}
seconds = time.perf_counter() - start
print(json.dumps({"call": call, "rows": rows, "seconds": round(seconds, 3),
                  "extra_mb": round((peak_kb() - before) / 1024, 1), **shown}))
"""


def measure(call: str, rows: int, source: Path | None = None) -> dict[str, object]:
    """Run one call on ``rows`` rows in a fresh interpreter and return its figures.

    Args:
        call: ``"estimate"`` or ``"requests"``.
        rows: Rows in the frame.
        source: A folder holding the ``valar_pandas`` package to measure instead of the
            installed one.

    Returns:
        ``{"call", "rows", "seconds", "extra_mb", ...}``.
    """
    root = Path(__file__).resolve().parent.parent
    paths = [str(source)] if source is not None else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(root)])}
    with tempfile.TemporaryDirectory() as folder:
        store = str(Path(folder) / "store.sqlite3")
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, call, str(rows), store],
            env=env,
            cwd=folder,  # not the repository: the package imported is the one asked for
            capture_output=True,
            text=True,
            check=True,
        )
    lines = done.stdout.strip().splitlines()
    figures: dict[str, object] = {**json.loads(lines[0]), **json.loads(lines[-1])}
    return figures


def _line(call: str, rows: int, mine: dict[str, object], other: object) -> str:
    def figures(f: dict[str, object]) -> str:
        return f"{float(str(f['seconds'])):7.2f} s  +{float(str(f['extra_mb'])):7.1f} MB"

    line = f"{call:9} {rows:>10,} rows: {figures(mine)}"
    if isinstance(other, dict):
        ratio = float(str(other["seconds"])) / max(float(str(mine["seconds"])), 1e-9)
        line += f"   against: {figures(other)}   ({ratio:.1f}x the time)"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print one line per call (and the ratios with ``--against``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.estimate")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument("--call", action="append", choices=CALLS, help="default: both")
    parser.add_argument("--against", type=Path, help="another source tree, measured alike")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    results = []
    for call in args.call or CALLS:
        mine = measure(call, args.rows)
        row: dict[str, object] = {"this": mine}
        if args.against is not None:
            theirs = measure(call, args.rows, args.against)
            row["against"] = theirs
        results.append(row)
        if not args.json:
            print(_line(call, args.rows, mine, row.get("against")), flush=True)
    if args.json:
        print(json.dumps({"model": MODEL, "max_output_tokens": MAX_OUTPUT_TOKENS,
                          "template": PROMPT_TEMPLATE, "results": results}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
