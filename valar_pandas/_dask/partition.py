"""What runs on each partition: the pandas call itself, with the worker's client.

A partition is run by the pandas accessor (:class:`~valar_pandas._accessor.ValarAccessor`),
so it plans, resumes, sends and merges exactly as a frame does; what this module adds is the
worker's long-lived client (:func:`.worker.worker_client`), its share of the limits, its
grant of the computation's budget and the record of its totals. An empty partition (and the
``meta`` Dask asks for) goes through the same accessor with a client that refuses to send,
so its columns and dtypes are the ones a real partition gets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._accessor import ValarAccessor
from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._core.handler import HttpRequest, HttpResponse
from .._core.spec import EstimateArgs, names_of
from .._frame.merge import attach
from .._run.compose import SHARED_BUDGET
from .._service.call import Template, prepare_call, resources
from .._service.preview import estimate_call
from .._service.score import scoring
from .notices import notices, recording
from .shared import Meeting, grant, handles, record, settle
from .worker import WorkerConfig, in_right_process, worker_client

__all__ = [
    "AT",
    "FINGERPRINT",
    "Work",
    "answered",
    "joined",
    "keyed",
    "offline",
    "ran",
    "ran_keyed",
]

FINGERPRINT = "__valar_fingerprint"
"""The column a ``dedupe=True`` computation shuffles on: each row's request fingerprint."""
AT = "__valar_at"
"""Where a row came from: its partition number plus its position / the partition's length."""

_ESTIMATE_NAMES = frozenset(names_of(EstimateArgs)) - {"client", "base_url"}


@dataclass(frozen=True)
class Work:
    """One call as every partition runs it.

    Attributes:
        method: ``"run"`` or ``"score"``.
        template: The template.
        options: The options as given, without ``client``.
        config: The workers' client settings and shares of the limits.
        meeting: Where the partitions share the budget and their totals.
    """

    method: Literal["run", "score"]
    template: Template
    options: dict[str, Any]
    config: WorkerConfig
    meeting: Meeting


def _refuse(request: HttpRequest) -> HttpResponse:
    raise AssertionError("an offline call sent a request")  # pragma: no cover - never sends


def offline(part: pd.DataFrame, work: Work) -> pd.DataFrame:
    """The frame a partition of no rows gives: the columns and dtypes, nothing sent or stored."""
    client = ValarClient(api_key="offline", base_url=work.config.base_url, transport=_refuse)
    given = {**work.options, "client": client, "store": False, "progress": None}
    with recording() as caught:  # nothing is sent: its budget notices are not news
        out: pd.DataFrame = getattr(ValarAccessor(part), work.method)(work.template, **given)
    notices(caught)
    out.attrs = {}
    return out


def ran(
    part: pd.DataFrame, work: Work, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Run the call on one partition with this worker's client; its totals are recorded."""
    out, totals = answered(part, work)
    if totals:
        record(work.meeting, (partition_info or {}).get("number", 0), totals)
    return out


def ran_keyed(
    part: pd.DataFrame, work: Work, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    """:func:`ran` on a shuffled partition, without the internal columns.

    A callable template gets every column, so the call sees the rows as the caller's frame
    holds them (nor does a ``RowErrors`` frame carry them); :data:`AT` is kept for the way back.
    """
    out = ran(part.drop(columns=[FINGERPRINT, AT]), work, partition_info)
    out[AT] = part[AT].to_numpy()
    return out


def answered(part: pd.DataFrame, work: Work) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The partition with its answers, and the run's totals (none for an empty partition)."""
    if len(part) == 0:
        return offline(part, work), {}
    if not in_right_process(work.config):
        raise ConfigError(
            "df.valar on Dask runs on the threaded scheduler or a distributed cluster "
            "(distributed.Client), not on the multiprocessing scheduler: its processes "
            "share no limits, budget or summary"
        )
    if not work.meeting.distributed and os.getpid() != work.config.driver:
        raise ConfigError(
            "this df.valar call was built before a distributed Client existed, and runs on "
            "its workers: its concurrency, max_rps, budget and summary would not be shared. "
            "Build the call (ddf.valar.run / score) after creating the distributed Client"
        )
    client = worker_client(work.config)
    given = {
        **work.options,
        "client": client,
        "progress": None,
        "concurrency": work.config.concurrency,
        "max_rps": work.config.max_rps,
    }
    meeting, drawn = work.meeting, [0.0]
    shared = None
    if meeting.budget is not None:
        pool = handles(meeting)
        wanted = _cost(part, work, client)
        drawn[0] = grant(meeting, wanted, pool)
        given["budget"] = max(drawn[0], 1e-9)  # nothing left: nothing is admitted

        def top_up(short: float) -> float:
            more = grant(meeting, max(short, wanted / 4), pool)
            drawn[0] += more
            return more

        shared = SHARED_BUDGET.set((top_up, meeting.budget))
    spent: float | None = None  # unknown (the call raised): all that was drawn is kept
    try:
        with recording() as caught:
            out: pd.DataFrame = getattr(ValarAccessor(part), work.method)(work.template, **given)
        totals = dict(out.attrs.get("valar", {}))
        totals.pop("budget_overspent_usd", None)
        said = notices(caught)
        if said:
            totals["notices"] = said
        spent = totals.get("spent_usd") or 0.0
    finally:
        if shared is not None:
            SHARED_BUDGET.reset(shared)
            settle(meeting, drawn[0], drawn[0] if spent is None else spent, pool)
    out.attrs = {}
    return out, totals


def _cost(part: pd.DataFrame, work: Work, client: ValarClient) -> float:
    """What sending this partition's uncached requests would cost, by the budget's rule."""
    given = {k: v for k, v in work.options.items() if k in _ESTIMATE_NAMES}
    estimate = estimate_call(part, work.template, client=client, **given)
    return estimate.cost_usd or 0.0


def fingerprints(part: pd.DataFrame, work: Work) -> list[str]:
    """Each row's request fingerprint ("" for a row that is not sent)."""
    _, _, price, rest = resources(work.options)
    if work.method == "score":
        _, _, rest = scoring({"into": "score", **rest}, required=True)
    call = prepare_call(part, work.template, price, **rest)
    return [row if isinstance(row, str) else "" for row in call.plan.rows]


def keyed(
    part: pd.DataFrame, work: Work, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The partition with each row's fingerprint and origin (partition, position)."""
    number = (partition_info or {}).get("number", 0)
    out = part.copy(deep=False)
    out[FINGERPRINT] = pd.array(fingerprints(part, work) if len(part) else [], dtype="str")
    out[AT] = number + np.arange(len(part), dtype="float64") / max(len(part), 1)
    return out


def joined(part: pd.DataFrame, back: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The original partition with the new columns its rows got in the shuffled run."""
    back = back.sort_index(kind="stable")
    if len(back) != len(part):  # pragma: no cover - the shuffle back is by exact divisions
        raise RuntimeError("a partition came back from the shuffle with other rows")
    return attach(part, {c: back[c].array for c in columns})
