"""A table larger than memory, in windows: plan each, run a few at once, write them in order.

The input is cut into windows of a fixed number of rows. Each window is prepared exactly as
``df.valar.run`` prepares a frame (:func:`~valar_pandas._service.call.prepare_call`: the same
template, options and requests, so the CLI and the accessor share the run store) and handed
to :func:`~valar_pandas._run.compose.run_plan`. A few windows run at once on the library's loop, so
the slow tail of one window overlaps the next ones instead of idling the client; results are
written strictly in input order, each window as soon as it and every window before it are
done. Memory holds at most ``in_flight`` windows, however long the file.

Resume comes from the run store: a window is planned the same way on every run, so its
finished rows are answered from the store and rows an earlier run created are re-attached.
Windows running at once share the store's claims: a body two windows ask is sent by the
window that claimed it first, and awaited by the other (see
:func:`~valar_pandas._run.compose.run_plan`), in batch mode as in background mode. The windows also
share what the command asked, so ``retry_failed`` re-asks a failed body once per command, not once
per window. A scoring run re-asks the rows of a window whose reply could not be read
(``--retries-on-invalid``) as soon as the window's first round ends, as ``df.valar.score`` does
(:mod:`valar_pandas._service.score`).

A window becomes a frame by :func:`to_frame`, whose column types follow the file's declared
arrow types alone, never the values a window happens to hold: an integer column is a nullable
integer column (``Int64``) whether or not the window holds a null, so ``3`` never becomes
``3.0`` and a 19-digit id never passes through a float. A row's prompt is thus the same at any
window size, and the same as ``df.valar.run`` sends for the frame pandas reads from the file.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
from pandas.api.extensions import ExtensionArray

from .._core.budget import Budget
from .._core.config import ValarClient
from .._core.prompt import CompiledTemplate
from .._display.tally import Display
from .._files import Output
from .._frame.rows import render_rows
from .._run.compose import RunReport, run_plan
from .._scoring import ScoreSpec
from .._service.call import Call, PriceArg, prepare_call
from .._service.score import Reasks, reask, score_columns
from .._store import RunStore

__all__ = [
    "StreamSettings",
    "Totals",
    "Window",
    "check_windows",
    "finish_window",
    "prepare_window",
    "stream",
    "to_arrow",
    "to_frame",
]

_FIXED = {"Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.bool_()}


@dataclass(frozen=True)
class StreamSettings:
    """What every window of one run shares.

    Attributes:
        template: The prompt template (a format string naming columns).
        options: Run options for :func:`~valar_pandas._service.call.prepare_call`.
        price: A price override, or None for the shipped table.
        spec: The scoring spec of a scoring run, else None.
        keep: The input columns carried into the output, in order.
        render: The input columns the template reads.
        window_rows: Rows per window (every window but the last is full).
        retries: Most re-asks of a row whose scoring reply could not be read.
    """

    template: str
    options: dict[str, Any]
    price: PriceArg
    spec: ScoreSpec | None
    keep: tuple[str, ...]
    render: tuple[str, ...]
    window_rows: int
    retries: int = 0

    @property
    def read(self) -> list[str]:
        """Every input column a window needs: those kept, then those only rendered."""
        return [*self.keep, *(c for c in self.render if c not in self.keep)]


@dataclass(frozen=True)
class Window:
    """One window, planned and not yet sent.

    Attributes:
        index: Its position in the input, from 0.
        table: The input columns it carries into the output.
        call: The prepared call: options, plan and price.
    """

    index: int
    table: pa.Table
    call: Call


@dataclass
class Totals:
    """What a streamed run did, window by window.

    Attributes:
        rows: Rows written.
        failed: Rows that failed (skipped rows are not failures).
        first_error: The first failed row's error.
        http_requests: HTTP requests sent, retries and polls included.
        windows: Windows written.
        invalid_retries: Rows re-asked because their scoring reply could not be read.
        notices: What the command is to warn of once it ends (rows the Batch API did not
            run, sent in background mode).
    """

    rows: int = 0
    failed: int = 0
    first_error: str | None = None
    http_requests: int = 0
    windows: int = 0
    invalid_retries: int = 0
    notices: list[str] = field(default_factory=list)


def prepare_window(job: StreamSettings, index: int, table: pa.Table) -> Window:
    """Render and plan one window; nothing is sent.

    Args:
        job: The run.
        index: The window's position.
        table: The window's rows (the columns of :attr:`StreamSettings.read`).

    Returns:
        The window.

    Raises:
        ConfigError: A row cannot be rendered (the error names the row within the window).
    """
    frame = to_frame(table.select(list(job.render)))
    first = index * job.window_rows
    frame.index = pd.RangeIndex(first, first + len(frame))  # errors name the file's row
    call = prepare_call(frame, job.template, job.price, **job.options)
    return Window(index, table.select(list(job.keep)), call)


def check_windows(template: CompiledTemplate, tables: Iterator[pa.Table], window_rows: int) -> None:
    """Render every row of every window with ``template``; nothing is planned or sent.

    Windows are framed and rendered exactly as :func:`prepare_window` frames and renders
    them, so a row that passes here renders the same way when its window is sent.

    Args:
        template: The part of the run's template that can fail
            (:meth:`~valar_pandas._core.prompt.CompiledTemplate.fallible`).
        tables: The input's windows of the columns it reads, in order.
        window_rows: Rows per window (every window but the last is full).

    Raises:
        ConfigError: A row cannot be rendered; the error names its row in the file.
    """
    for index, table in enumerate(tables):
        frame = to_frame(table)
        first = index * window_rows
        frame.index = pd.RangeIndex(first, first + len(frame))
        render_rows(frame, template, "empty")


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A window as a frame whose column types depend only on the table's schema.

    pandas' default conversion picks a type from the values: an integer column holding a
    null becomes ``float64`` (``3.0``, and ids above 2**53 lose digits), a boolean one
    ``object``, and list items become float arrays when any item is null. Here integers
    become pandas' nullable integers, booleans ``boolean`` (both as
    ``pd.read_parquet(path, dtype_backend="numpy_nullable")`` reads them), and nested
    values (lists, structs, maps) Arrow-backed, so they read as Python lists and dicts.
    Every other type converts as pandas converts it, pandas' own metadata included.

    Args:
        table: Input columns, as read.

    Returns:
        The frame to render.
    """
    frame: pd.DataFrame = table.to_pandas(types_mapper=_declared)
    return frame


def _declared(kind: pa.DataType) -> Any:
    """The pandas dtype for an arrow type whose default conversion depends on the values."""
    types = pa.types
    if types.is_integer(kind):
        prefix = "UInt" if types.is_unsigned_integer(kind) else "Int"
        return pd.api.types.pandas_dtype(f"{prefix}{kind.bit_width}")
    if types.is_boolean(kind):
        return pd.BooleanDtype()
    if types.is_nested(kind):
        return pd.ArrowDtype(kind)
    return None


def finish_window(
    job: StreamSettings, window: Window, report: RunReport
) -> tuple[pa.Table, list[str]]:
    """The window's output table and the errors of its failed rows.

    New columns replace input columns of the same name in place (as ``DataFrame.assign``
    does) and are appended otherwise.

    Args:
        job: The run.
        window: The window.
        report: What running its plan gave.

    Returns:
        The table to write, and each failed row's error.
    """
    values: dict[str, ExtensionArray] | None = None
    errors: list[str | None] | None = None
    if job.spec is not None:
        values, errors = score_columns(job.spec, report.outcomes, window.call.options.into)
    columns, failed = window.call.columns(report, values, errors)
    table = window.table
    for name, array in columns.items():
        arrow = to_arrow(array)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arrow)
        else:
            table = table.append_column(name, arrow)
    return table, failed


def to_arrow(values: ExtensionArray) -> pa.Array:
    """One output column as an arrow array whose type depends only on its dtype.

    Text is ``large_string`` (as pandas writes it), labels a dictionary of exactly the
    labels, ``Int64``/``Float64``/``boolean`` their arrow types; values a schema leaves
    untyped (lists, nested objects) are written as JSON text. Every window of a run so
    gets the same schema.

    Args:
        values: A column built by the merge.

    Returns:
        The arrow array.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return pa.array(values)
    fixed = _FIXED.get(str(dtype))
    if fixed is not None:
        return pa.array(values, type=fixed)
    if isinstance(dtype, pd.StringDtype):
        return pa.array(values, type=pa.large_string())
    return pa.array(
        [None if v is None else json.dumps(v, ensure_ascii=False) for v in values],
        type=pa.large_string(),
    )


async def stream(
    tables: Iterator[pa.Table],
    job: StreamSettings,
    client: ValarClient,
    store: RunStore | None,
    display: Display,
    budget: Budget | None,
    output: Output,
    in_flight: int,
    prepared: Sequence[Window] = (),
) -> Totals:
    """Run every window, at most ``in_flight`` at once, and write each in input order.

    Windows are read and planned on a worker thread while others run; a window's result is
    written as soon as it and every window before it are done. If the coroutine is
    cancelled or a window fails, the windows still running are cancelled (their rows stay
    in the run store for a re-run) and nothing more is written.

    Args:
        tables: The input's windows, in order (after any in ``prepared``).
        job: The run.
        client: Where to send.
        store: The run store, or None.
        display: One display for every window.
        budget: One budget for every window, or None.
        output: Where results go.
        in_flight: Most windows running at once.
        prepared: Windows already planned (the first ones), sent before ``tables``.

    Returns:
        The totals.
    """
    totals = Totals()
    ready = deque(prepared)
    numbered = enumerate(tables, start=len(ready))

    def next_window() -> Window | None:
        item = next(numbered, None)
        return None if item is None else prepare_window(job, *item)

    async def run_window(call: Call) -> tuple[RunReport, int]:
        report = await run_plan(
            call.plan, call.options, client, store, call.price, display, budget, asked=asked
        )
        if job.spec is None or not job.retries:
            return report, 0
        reasks = Reasks(job.spec, call, job.retries, report)
        await reask(reasks, client, store, budget, asked)
        return reasks.report(store), reasks.asked

    running: deque[tuple[Window, asyncio.Task[tuple[RunReport, int]]]] = deque()
    asked: set[str] = set()  # what the command asked: retry_failed re-asks a failure once
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < in_flight:
                window = ready.popleft() if ready else await asyncio.to_thread(next_window)
                if window is None:
                    exhausted = True
                    break
                task = asyncio.create_task(run_window(window.call))
                running.append((window, task))
            if not running:
                return totals
            window, task = running[0]
            report, reasked = await task
            running.popleft()
            table, failed = finish_window(job, window, report)
            output.write(table)
            totals.rows += table.num_rows
            totals.failed += len(failed)
            totals.first_error = totals.first_error or (failed[0] if failed else None)
            totals.http_requests += report.http_requests
            totals.windows += 1
            totals.invalid_retries += reasked
            totals.notices += report.notices
    finally:
        for _, task in running:
            task.cancel()
        await asyncio.gather(*(task for _, task in running), return_exceptions=True)
