"""``valar-pandas run IN OUT --dask local:N | tcp://scheduler:8786``: the windows on a cluster.

The command reads and checks the input exactly as without ``--dask`` (every row rendered
before the first request), then sends each window, framed as the stream frames it
(:func:`~valar_pandas._cli.stream.to_frame`), to a Dask worker, where the pandas call runs it
with the worker's one client (:mod:`valar_pandas._dask.partition`). A few windows per worker
are in flight at once; results come back and are written strictly in input order, through
the same output writer, so the file is committed only when complete. Resume is the run
store's, as on one machine: a window is the same call on every run, and each worker answers
from its store what an earlier run (on the cluster or not) received.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections import deque
from typing import Any, Literal

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
from tqdm import tqdm

from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._core.spec import OPTIONS
from .._files import open_output
from .._frame.merge import planned_columns
from .._frame.score_columns import value_columns

__all__ = ["cluster_run", "parse_target"]

_OWN = ("labels", "scale", "schema", "reasons", "retries_on_invalid", "instructions", "into",
        "store", "price", "budget")  # fmt: skip


def parse_target(text: str) -> tuple[str, int | str]:
    """``local:N`` → ("local", N); ``tcp://host:port`` (or ``tls://``) → ("remote", address).

    Raises:
        ConfigError: Anything else.
    """
    if text.startswith("local:"):
        count = text[len("local:") :]
        if count.isdigit() and int(count) >= 1:
            return "local", int(count)
    elif text.startswith(("tcp://", "tls://")) and len(text) > len("tcp://"):
        return "remote", text
    raise ConfigError(
        f"--dask {text!r}: give local:N (N worker processes on this machine) or the "
        "scheduler's address, tcp://HOST:8786"
    )


def _options(
    setup: Any, args: argparse.Namespace, instructions: str | None
) -> tuple[Literal["run", "score"], dict[str, Any]]:
    """The method and the options of ``df.valar.run``/``score`` the command's flags mean."""
    given = {
        o.name: getattr(args, o.name)
        for o in OPTIONS
        if o.flag is not None and o.name not in _OWN and getattr(args, o.name) is not None
    }
    options: dict[str, Any] = {**given, "into": setup.job.options["into"]}
    if instructions is not None:
        options["instructions"] = instructions
    if args.store is not None:
        options["store"] = str(args.store)
    if args.price is not None:
        options["price"] = args.price
    if args.budget is not None:
        options["budget"] = args.budget
    spec = setup.job.spec
    if spec is None:
        return "run", options
    options["reasons"] = spec.reasons
    options["retries_on_invalid"] = args.retries_on_invalid or 0
    if spec.kind == "labels":
        options["labels"] = list(spec.labels)
    elif spec.kind == "scale":
        assert spec.scale is not None
        options["scale"] = list(spec.scale)
    else:
        options["schema"] = json.loads(args.schema.read_text(encoding="utf-8"))
    return "score", options


def cluster_run(setup: Any, args: argparse.Namespace, instructions: str | None) -> dict[str, Any]:
    """Run the command's windows on a Dask cluster; returns the totals for the summary.

    Args:
        setup: The command's checked setup (:class:`~valar_pandas._cli.run.Setup`).
        args: The parsed command line.
        instructions: The instructions' text (read from ``@FILE``), or None.

    Raises:
        ConfigError: The dask extra is missing, or ``--dask`` is not understood.
    """
    kind, where = parse_target(args.dask)
    try:
        from distributed import Client

        from .._dask.partition import Work, answered, offline
        from .._dask.shared import Meeting, open_budget
        from .._dask.worker import config_for
    except ImportError:
        raise ConfigError('--dask needs the dask extra: pip install "valar-pandas[dask]"') from None
    from .stream import to_arrow, to_frame

    method, options = _options(setup, args, instructions)
    client = ValarClient()  # the key and base URL from the environment, checked now
    output = open_output(args.output, args.input)
    cluster = _local_cluster(int(where)) if kind == "local" else None
    try:
        try:
            dask = Client(cluster if cluster is not None else where)
        except (OSError, TimeoutError) as exc:  # nothing was sent: a usage error, exit 2
            raise ConfigError(f"--dask {args.dask}: cannot reach the scheduler ({exc})") from None
        with dask:
            workers = max(1, len(dask.nthreads()))
            config = config_for(client, setup.options.concurrency, setup.options.max_rps, workers)
            meeting = Meeting(uuid.uuid4().hex, True, args.budget)
            work = Work(method, setup.job.template, options, config, meeting)
            into = setup.job.options["into"]
            values = None if setup.job.spec is None else value_columns(setup.job.spec, into)
            new = [n for n, _ in planned_columns(into, bool(args.details), values)]
            empty = to_frame(setup.source.schema.empty_table().select(list(setup.job.render)))
            offline(empty, work)  # the worker's call checked here, before any request
            open_budget(meeting)
            totals = _run(dask, setup, work, new, output, answered, to_frame, to_arrow)
        output.commit()
    except BaseException:
        output.abort()
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return totals


def _run(
    dask: Any, setup: Any, work: Any, new: list[str], output: Any, answered: Any,
    to_frame: Any, to_arrow: Any,
) -> dict[str, Any]:  # fmt: skip
    """Send the windows, a few per worker at once, and write each in input order."""
    in_flight = 3 * max(1, len(dask.nthreads()))
    totals: dict[str, Any] = {"rows": 0, "failed": 0, "skipped": 0, "cached": 0,
                              "first_error": None, "input_tokens": 0, "output_tokens": 0,
                              "reasoning_tokens": 0, "spent_usd": 0.0, "http_requests": 0,
                              "invalid_retries": 0, "windows": 0}  # fmt: skip
    running: deque[tuple[pa.Table, Any]] = deque()
    tables = enumerate(setup.tables())
    bar = tqdm(total=setup.rows, desc="valar-pandas", disable=setup.args.quiet, unit="row")
    try:
        while True:
            while len(running) < in_flight:
                item = next(tables, None)
                if item is None:
                    break
                index, table = item
                frame = to_frame(table.select(list(setup.job.render)))
                first = index * setup.args.window_rows
                frame.index = pd.RangeIndex(first, first + len(frame))
                future = dask.submit(answered, frame, work, pure=False)
                running.append((table.select(list(setup.job.keep)), future))
            if not running:
                return totals
            table, future = running.popleft()
            out, counts = future.result()
            for name in new:
                arrow = to_arrow(out[name].array)
                if name in table.column_names:
                    table = table.set_column(table.column_names.index(name), name, arrow)
                else:
                    table = table.append_column(name, arrow)
            output.write(table)
            errors = out[f"{work.options['into']}_error"]
            failed = int(counts.get("failed", 0))
            totals["rows"] += len(out)
            totals["failed"] += failed
            totals["skipped"] += int(errors.notna().sum()) - failed
            if totals["first_error"] is None and failed:
                totals["first_error"] = str(errors.dropna().iloc[0])
            for name in ("cached", "input_tokens", "output_tokens", "reasoning_tokens",
                         "http_requests", "invalid_retries"):  # fmt: skip
                totals[name] += int(counts.get(name, 0))
            totals["spent_usd"] += counts.get("spent_usd") or 0.0
            totals["windows"] += 1
            bar.update(len(out))
    finally:
        bar.close()
        for _, future in running:
            future.cancel()


def _local_cluster(workers: int) -> Any:
    """The command's own cluster: ``workers`` processes, no dashboard and no profiler.

    Dask's statistical profiler feeds the dashboard's profile page, which this cluster does
    not serve; left on, it is most of Dask's CPU at rest (docs/dask.md, "What it costs").
    The setting is read when the workers start, so it reaches every worker process.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=3, dashboard_address=None)
