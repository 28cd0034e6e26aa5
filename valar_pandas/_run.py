"""The composition root: a planned run → outcomes, wiring transport, engine and display.

It opens the HTTP pool on the running loop, fans engine events out to the display, and
closes both whatever happens. It decides nothing a pure module could decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config import ValarClient
from ._engine import EngineConfig, execute
from ._http import Http
from ._models import Finished, Outcome, Started
from ._options import RunOptions
from ._plan import Plan
from ._policy import PollSchedule
from ._progress import Tally, make_display

__all__ = ["RunReport", "run_plan"]


@dataclass(frozen=True)
class RunReport:
    """What a finished run produced, and what it cost in HTTP requests.

    Attributes:
        outcomes: One outcome per row, in row order.
        tally: The final counts.
        http_requests: HTTP requests sent, retries and polls included.
    """

    outcomes: list[Outcome]
    tally: Tally
    http_requests: int


async def run_plan(plan: Plan, options: RunOptions, client: ValarClient) -> RunReport:
    """Send a plan's requests and gather every row's outcome.

    Args:
        plan: The rows and their distinct requests.
        options: The validated options.
        client: Where to send, with which key.

    Returns:
        The report; rows the run could not finish carry an ``error`` outcome.
    """
    display = make_display(options.progress)
    http = Http(client, options.concurrency)
    display(Started(total=len(plan.rows), unique=len(plan.requests)))
    for row in plan.rows:
        if isinstance(row, Outcome):
            display(Finished(row, 1))
    config = EngineConfig(
        concurrency=options.concurrency,
        background=options.background,
        poll=PollSchedule.for_window(options.completion_window),
    )
    try:
        results = await execute(list(plan.requests.values()), plan.shares, http, config, display)
    finally:
        await http.close()
        display.close()
    return RunReport(plan.outcomes(results), display.tally, http.sent)
