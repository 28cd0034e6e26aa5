"""``python -m benchmarks.dask_cluster``: ``ddf.valar.run`` on a local Dask cluster.

Each measurement starts a fresh emulator in its own process (so no run is answered by an
earlier one's records), then runs one client process: the single-process pandas accessor,
or ``ddf.valar.run`` on a ``distributed.LocalCluster`` of 1 or 2 worker processes (4 threads
and 4 partitions each), on the same rows. The client reports its wall time for the run and
the CPU seconds of every process it used (the driver, with the scheduler in it, and each
worker), measured with ``getrusage`` around the run, the workers having imported the library
first as the single process has; beside it, what the idle cluster's processes burn in the
same wall time (measured for 10 s before the run); the emulator reports the HTTP requests
it received and the inferences it billed. Every answer is checked against the emulator's
deterministic one, in row order::

    python -m benchmarks.dask_cluster --rows 20000

A second table repeats identical prompts (``--distinct`` prompts over the rows) on 2
workers with no store shared by the workers (``store=False``: each worker on its own, as
with a store per worker on several machines), without and with ``dedupe=True``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .scenarios import MAX_OUTPUT_TOKENS, MODEL, PROMPT_TEMPLATE, phrase

__all__ = ["main"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_REST_S = 10.0


def _warm() -> None:
    import valar_pandas.dask  # noqa: F401


def serve(args: argparse.Namespace) -> int:
    """The emulator process: print its URL and key, serve until SIGTERM, write its stats."""
    from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

    emulator = Emulator(EmulatorConfig(latency=Latency(args.latency_median, args.latency_sigma)))
    stop = False

    def stopped(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, stopped)
    with emulator.run_in_thread(host="127.0.0.1", port=0) as url:
        print(f"{url} {emulator.config.api_key}", flush=True)
        while not stop:
            time.sleep(0.05)
    stats = emulator.stats
    Path(args.stats).write_text(
        json.dumps(
            {"http": stats.total_requests, "inferences": stats.inferences,
             "creates": stats.requests["POST /v1/responses"], "cpu_s": _cpu()}
        ),
        encoding="utf-8",
    )  # fmt: skip
    return 0


def _frame(rows: int, distinct: int) -> Any:
    import pandas as pd

    ids = [i % distinct for i in range(rows)]
    return pd.DataFrame({"i": ids, "phrase": [phrase(i) for i in ids]})


def client(args: argparse.Namespace) -> int:
    """The client process: one run, checked row by row; prints its figures as JSON."""
    import pandas as pd

    import valar_pandas
    from valar_pandas.emulator import answer_text

    frame = _frame(args.rows, args.distinct)
    key, url = os.environ["VALAR_API_KEY"], os.environ["VALAR_BASE_URL"]
    options: dict[str, Any] = {
        "model": MODEL, "max_output_tokens": MAX_OUTPUT_TOKENS,
        "store": False if args.store == "none" else args.store,
    }  # fmt: skip
    figures: dict[str, Any] = {}
    if args.workers == 0:
        cpu, wall = _cpu(), time.monotonic()
        out = frame.valar.run(PROMPT_TEMPLATE, progress=None, **options)
        figures["wall_s"], figures["cpu_s"] = time.monotonic() - wall, _cpu() - cpu
        totals = out.attrs["valar"]
    else:
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        import valar_pandas.dask

        env = {"VALAR_API_KEY": key, "VALAR_BASE_URL": url}
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=4, dashboard_address=None, env=env
            ) as cluster,
            Client(cluster) as dask_client,
        ):
            ddf = dd.from_pandas(frame, npartitions=4 * args.workers, sort=False)
            # As the single process has imported the library before it is measured, so have
            # the workers; then the cluster's own CPU at rest, which any Dask work pays.
            dask_client.run(_warm)
            rest = sum(dask_client.run(_cpu).values()) + _cpu()
            time.sleep(_REST_S)
            figures["idle_cpu_per_s"] = (
                sum(dask_client.run(_cpu).values()) + _cpu() - rest
            ) / _REST_S
            before = sum(dask_client.run(_cpu).values()) + _cpu()
            wall = time.monotonic()
            lazy = ddf.valar.run(PROMPT_TEMPLATE, dedupe=args.dedupe, **options)
            out = lazy.compute()
            figures["wall_s"] = time.monotonic() - wall
            figures["cpu_s"] = sum(dask_client.run(_cpu).values()) + _cpu() - before
            totals = valar_pandas.dask.summary(lazy)
    want = [
        answer_text({"model": MODEL, "input": [{"role": "user", "content": p}]})
        for p in (
            PROMPT_TEMPLATE.format(i=i, phrase=f)
            for i, f in zip(frame.i, frame.phrase, strict=True)
        )
    ]
    figures["rows_correct"] = int(
        (out["output"].reset_index(drop=True) == pd.Series(want, dtype="str")).sum()
    )
    figures["http_requests"] = totals["http_requests"]
    print(json.dumps(figures), flush=True)
    return 0


def _measure(args: argparse.Namespace, workers: int, distinct: int, dedupe: bool, store: str):  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="valar-dask-") as tmp:
        stats = Path(tmp) / "stats.json"
        emulator = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.dask_cluster", "serve", "--stats", str(stats),
             "--latency-median", repr(args.latency_median),
             "--latency-sigma", repr(args.latency_sigma)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert emulator.stdout is not None
        url, key = emulator.stdout.readline().split()
        env = {**os.environ, "VALAR_API_KEY": key, "VALAR_BASE_URL": url}
        if not args.worker_profile:  # Dask's statistical profiler off, driver and workers
            env["DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"] = "False"
        store_arg = "none" if store == "none" else str(Path(tmp) / "store.sqlite3")
        argv = [
            sys.executable, "-m", "benchmarks.dask_cluster", "client",
            "--rows", str(args.rows), "--distinct", str(distinct), "--workers", str(workers),
            "--store", store_arg, *(["--dedupe"] if dedupe else []),
        ]  # fmt: skip
        print(f"[dask] workers={workers} distinct={distinct} dedupe={dedupe} store={store} ...",
              file=sys.stderr, flush=True)  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(60)
        if done.returncode != 0:
            raise SystemExit(f"client failed: {done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        server = json.loads(stats.read_text(encoding="utf-8"))
    rows = args.rows
    idle = figures.get("idle_cpu_per_s", 0.0) * figures["wall_s"]
    return {
        "workers": workers, "distinct": distinct, "dedupe": dedupe, "store": store,
        "rows_correct": figures["rows_correct"], "wall_s": round(figures["wall_s"], 1),
        "rows_per_s": round(rows / figures["wall_s"]),
        "cpu_ms_per_row": round(1000 * figures["cpu_s"] / rows, 3),
        "http_per_row": round(server["http"] / rows, 4),
        "idle_ms_per_row": round(1000 * idle / rows, 3),
        "creates": server["creates"], "inferences": server["inferences"],
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements and print two markdown tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_cluster")
    parser.add_argument("role", nargs="?", choices=("bench", "serve", "client"), default="bench")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--distinct", type=int, default=0, help="0: every row distinct")
    parser.add_argument("--workers", type=int, default=0, help="0: the pandas accessor")
    parser.add_argument("--store", default="none")
    parser.add_argument("--dedupe", action="store_true")
    parser.add_argument("--stats")
    parser.add_argument("--latency-median", type=float, default=0.5)
    parser.add_argument("--latency-sigma", type=float, default=0.5)
    parser.add_argument("--duplicates", type=int, default=3000, help="distinct prompts, table 2")
    parser.add_argument(
        "--no-worker-profile",
        dest="worker_profile",
        action="store_false",
        help="turn off Dask's statistical profiler (distributed.worker.profile.enabled)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures")
    args = parser.parse_args(argv)
    if args.role == "serve":
        return serve(args)
    if args.role == "client":
        args.distinct = args.distinct or args.rows
        return client(args)
    results = [_measure(args, w, args.rows, False, "local") for w in (0, 1, 2)]
    single = results[0]
    print("| client | rows/s | CPU ms/row (all processes) | of which Dask at rest | HTTP req/row "
          "| rows correct | req/row vs single | CPU/row vs single |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        name = "pandas accessor" if r["workers"] == 0 else f"dask, {r['workers']} worker(s)"
        print(
            f"| {name} | {r['rows_per_s']:,} | {r['cpu_ms_per_row']} | {r['idle_ms_per_row']} "
            f"| {r['http_per_row']} "
            f"| {r['rows_correct']:,}/{args.rows:,} "
            f"| {r['http_per_row'] / single['http_per_row']:.3f} "
            f"| {r['cpu_ms_per_row'] / single['cpu_ms_per_row']:.2f} |"
        )
    dupes = [_measure(args, 2, args.duplicates, d, "none") for d in (False, True)]
    print()
    print("| 2 workers, no shared store | creates | inferences billed | HTTP req/row | rows/s |")
    print("|---|--:|--:|--:|--:|")
    for r in dupes:
        name = "dedupe=True (fingerprint shuffle)" if r["dedupe"] else "no shuffle"
        print(f"| {name} | {r['creates']:,} | {r['inferences']:,} | {r['http_per_row']} "
              f"| {r['rows_per_s']:,} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results + dupes, indent=2) + "\n", encoding="utf-8")
    ok = all(r["rows_correct"] == args.rows for r in results + dupes)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
