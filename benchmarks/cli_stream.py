"""``python -m benchmarks.cli_stream``: ``valar-pandas run`` over a large parquet file.

Writes an input of N short rows (the scenarios' prompts), starts the emulator in its own
process, runs ``python -m valar_pandas run IN OUT ... --quiet --json`` in another, measured
with ``wait4`` (whole-process CPU and peak RSS, interpreter and imports included), then
checks the output row by row against the emulator's deterministic answers, streaming, and
in input order. Several sizes in one invocation show whether peak RSS stays flat::

    python -m benchmarks.cli_stream --rows 100000 --rows 1000000

Everything is written to a fresh temporary directory (``--workdir`` to choose where, created
if missing: the run store of a million rows takes several hundred MB).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from valar_pandas.emulator import answer_text

from .processes import EmulatorSettings, run_client, serve_emulator
from .scenarios import MAX_OUTPUT_TOKENS, MODEL, PROMPT_TEMPLATE, Faults, phrase, prompt

__all__ = ["main"]

_CHUNK = 100_000


def write_input(path: Path, rows: int) -> None:
    """Write ``rows`` rows of ``i`` and ``phrase`` to a parquet file, a chunk at a time."""
    schema = pa.schema([("i", pa.int64()), ("phrase", pa.large_string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, _CHUNK):
            ids = range(start, min(start + _CHUNK, rows))
            writer.write_table(
                pa.table({"i": list(ids), "phrase": [phrase(i) for i in ids]}, schema=schema)
            )


def check_output(path: Path, rows: int) -> tuple[int, int]:
    """Stream the output: rows in input order and answers equal to the emulator's.

    Returns:
        ``(rows correct, rows read)``.
    """
    correct = seen = 0
    with pq.ParquetFile(path) as reader:
        for batch in reader.iter_batches(batch_size=50_000, columns=["i", "output"]):
            for i, text in zip(
                batch.column("i").to_pylist(), batch.column("output").to_pylist(), strict=True
            ):
                body = {"model": MODEL, "input": [{"role": "user", "content": prompt(seen)}]}
                correct += int(i == seen and text == answer_text(body))
                seen += 1
    return correct, seen


def run_size(rows: int, workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    """Measure one size; returns the figures."""
    source, target = workdir / "input.parquet", workdir / "output.parquet"
    print(f"[cli_stream] {rows:,} rows: writing the input ...", file=sys.stderr, flush=True)
    write_input(source, rows)
    settings = EmulatorSettings(args.latency_median, args.latency_sigma, 0.0, Faults(), args.seed)
    store = workdir / "store.sqlite3"
    argv = [
        sys.executable, "-m", "valar_pandas", "run", str(source), str(target),
        "--model", MODEL, "--template", PROMPT_TEMPLATE,
        "--max-output-tokens", str(MAX_OUTPUT_TOKENS),
        "--completion-window", args.window, "--store", str(store), "--quiet", "--json",
    ]  # fmt: skip
    print(f"[cli_stream] {rows:,} rows: running ...", file=sys.stderr, flush=True)
    with serve_emulator(settings, workdir) as emulator:
        env = {"VALAR_API_KEY": emulator.api_key, "VALAR_BASE_URL": emulator.base_url}
        usage = run_client(argv, 600.0 + 0.01 * rows, workdir, env)
    log = max(workdir.glob("*.log"), key=lambda p: p.stat().st_mtime)
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1])
    correct, seen = check_output(target, rows)
    result: dict[str, object] = {
        "rows": rows,
        "rows_correct": correct,
        "rows_read_back": seen,
        "failed": summary["failed"],
        "wall_s": summary["wall_s"],
        "process_wall_s": round(usage.wall_s, 1),
        "process_cpu_s": round(usage.cpu_s, 1),
        "cpu_ms_per_row": round(1000 * usage.cpu_s / rows, 3),
        "peak_rss_mb": round(usage.maxrss_mb, 1),
        "http_requests_per_row": round(summary["requests_per_row"], 3),
        "emulator_cpu_s": round(emulator.cpu_s, 1),
        "store_mb": round(sum(p.stat().st_size for p in workdir.glob("store.sqlite3*")) / 1e6, 1),
        "output_mb": round(target.stat().st_size / 1e6, 1),
    }
    print(f"[cli_stream] {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement for each ``--rows`` and print a markdown table.

    Returns:
        0 when every row of every size came back right, else 1.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_stream")
    parser.add_argument("--rows", type=int, action="append", help="rows; repeat for several")
    parser.add_argument("--latency-median", type=float, default=0.5)
    parser.add_argument("--latency-sigma", type=float, default=0.5)
    parser.add_argument("--window", choices=("standard", "asap"), default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", type=Path, help="where to put input, output and store (created if missing)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures")
    args = parser.parse_args(argv)
    sizes = args.rows or [100_000]
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="valar-cli-", dir=args.workdir) as tmp:
            results.append(run_size(rows, Path(tmp), args))
    header = (
        "| rows | wall s | CPU s | CPU ms/row | peak RSS MB | HTTP req/row | rows correct "
        "| store MB |"
    )
    print(header)
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['wall_s']} | {r['process_cpu_s']} | {r['cpu_ms_per_row']} "
            f"| {r['peak_rss_mb']} | {r['http_requests_per_row']} "
            f"| {r['rows_correct']:,}/{r['rows']:,} | {r['store_mb']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    ok = all(r["rows_correct"] == r["rows"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
