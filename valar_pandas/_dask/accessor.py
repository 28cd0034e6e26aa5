"""``ddf.valar``: the accessor on Dask DataFrames, registered by ``import valar_pandas.dask``.

``run`` and ``score`` are lazy: they check everything the pandas accessor checks (options,
template, columns, key, price) at once, on the frame's ``meta``, and return a Dask DataFrame
with the same partitions and index and the new columns' exact dtypes; nothing is sent until it
is computed. ``requests`` and ``estimate`` compute the frame's partitions but send nothing.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal, Unpack

import dask.dataframe as dd
import pandas as pd
from dask.base import compute
from dask.dataframe.extensions import register_dataframe_accessor
from dask.delayed import delayed

from .._core.errors import BudgetWarning, ConfigError
from .._core.estimate import Estimate
from .._core.options import checked_arguments, validate_options
from .._core.signatures import takes
from .._core.spec import (
    OPTIONS,
    PREVIEW_ROWS,
    EstimateArgs,
    RequestsArgs,
    RunArgs,
    ScoreArgs,
)
from .._frame.merge import planned_columns
from .._frame.score_columns import value_columns
from .._service.call import budget_uncapped, resources
from .._service.preview import estimate_call, preview_requests
from .._service.score import scoring
from .._transport.shared import default_client
from .partition import AT, FINGERPRINT, Work, joined, keyed, offline, ran, ran_keyed
from .shared import Meeting, open_budget
from .worker import config_for

__all__ = ["DaskValarAccessor", "meeting_of"]

_INTO_SCORE = ("score", "The column (or column prefix) for the values.")

_made: dict[str, Meeting] = {}
_SETTLED = frozenset(o.name for o in OPTIONS if o.settled and o.kind in ("execution", "request"))


def meeting_of(frame: dd.DataFrame) -> Meeting:
    """The meeting of a frame ``ddf.valar.run`` or ``.score`` returned.

    Raises:
        ConfigError: ``frame`` is not such a frame (a selection of it is another frame).
    """
    meeting = _made.get(frame._name)
    if meeting is None:
        raise ConfigError(
            "this Dask DataFrame was not returned by ddf.valar.run() or ddf.valar.score(); "
            "pass the frame they returned (not a selection of it)"
        )
    return meeting


def _workers() -> tuple[int, bool]:
    """Worker processes of the distributed client, if there is one (else 1), and whether."""
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return 1, False
    return max(1, len(client.nthreads())), True


@register_dataframe_accessor("valar")
class DaskValarAccessor:
    """Run a language model over every row of a Dask DataFrame: ``ddf.valar.run(...)``."""

    def __init__(self, dask_obj: dd.DataFrame) -> None:
        self._obj = dask_obj

    def _lazy(
        self, method: Literal["run", "score"], template: Any, dedupe: bool,
        options: Mapping[str, Any],
    ) -> dd.DataFrame:  # fmt: skip
        if not isinstance(dedupe, bool):
            raise ConfigError("dedupe must be True or False")
        given = dict(options)
        if method == "score":
            given.setdefault("into", "score")
        client, _, _, rest = resources(given)
        given.pop("client", None)
        spec = scoring(rest, required=True)[0] if method == "score" else None
        workers, distributed = _workers()
        client = client or default_client()
        frame = self._obj
        # Every check of the pandas call, on the empty meta, nothing sent: the options are
        # valid from here on.
        probe = Work(
            method, template, given, config_for(client, 1, None, 1), Meeting("", False, None)
        )
        meta = offline(frame._meta, probe)
        settled = validate_options(**{k: v for k, v in rest.items() if k in _SETTLED})
        config = config_for(client, settled.concurrency, settled.max_rps, workers)
        budget = settled.budget
        capped = given.get("max_output_tokens") is not None
        meeting = Meeting(uuid.uuid4().hex, distributed, budget, capped)
        work = Work(method, template, given, config, meeting)
        if budget is not None and given.get("max_output_tokens") is None:
            warnings.warn(budget_uncapped(), BudgetWarning, stacklevel=3)
        open_budget(meeting)
        if not dedupe:
            out = frame.map_partitions(ran, work, meta=meta, align_dataframes=False)
        else:
            into = str(given.get("into", "output"))
            values = None if spec is None else value_columns(spec, into)
            new = [name for name, _ in planned_columns(into, bool(given.get("details")), values)]
            n = frame.npartitions
            tagged = frame.map_partitions(keyed, work, meta=keyed(frame._meta, work))
            shuffled = tagged.shuffle(on=FINGERPRINT, npartitions=n)
            answered = shuffled.map_partitions(ran_keyed, work, meta=ran_keyed(tagged._meta, work))
            back = answered[[*new, AT]].set_index(
                AT, divisions=tuple(float(i) for i in range(n + 1)), sorted=False
            )
            out = frame.map_partitions(joined, back, new, meta=meta, align_dataframes=False)
        _made[out._name] = meeting
        return out

    @checked_arguments
    @takes(RunArgs)
    def run(
        self, template: Any, *, dedupe: bool = False, **options: Unpack[RunArgs]
    ) -> dd.DataFrame:
        """Ask the model once per row, lazily: the answers as new columns of a Dask DataFrame.

        Everything is checked now, before anything is computed or sent; the result has the
        same partitions, index and columns as ``ddf`` plus those :meth:`ValarAccessor.run`
        adds, with their dtypes in ``meta``. Each partition is run where it is computed, by
        the pandas call, with one client per worker process; ``concurrency`` and ``max_rps``
        are totals for the whole computation, split evenly among the distributed client's
        workers when it is built; ``budget`` is one budget for the whole computation. The
        run's totals are :func:`valar_pandas.dask.summary` of the returned frame, after it
        is computed. ``progress`` is Dask's (its dashboard or ``distributed.progress``):
        the workers draw none.

        Args:
            template: As in :meth:`ValarAccessor.run`.
            dedupe: Shuffle the rows by their request's fingerprint first, so that identical
                prompts in different partitions are sent once, then shuffle the answers back
                to the original partitions and order (two shuffles). Without it such prompts
                are sent once per partition holding them and the server replays all but the
                first: billed once, but a create and its polls each.
            {options}

        Returns:
            The lazy frame.

        Raises:
            ConfigError: Bad option, template, column, key or price; raised at once.

        Example:
            >>> import valar_pandas.dask  # doctest: +SKIP
            >>> out = ddf.valar.run(  # doctest: +SKIP
            ...     "Review: {review}", model="zai-org/GLM-5.1-FP8"
            ... )
            >>> out.to_parquet("answers/")  # doctest: +SKIP
        """
        return self._lazy("run", template, dedupe, options)

    @checked_arguments
    @takes(ScoreArgs, into=_INTO_SCORE)
    def score(
        self, template: Any, *, dedupe: bool = False, **options: Unpack[ScoreArgs]
    ) -> dd.DataFrame:
        """Ask for a label, a score or a JSON object per row, lazily, as typed columns.

        :meth:`ValarAccessor.score` on every partition, as :meth:`run` is
        :meth:`ValarAccessor.run`: a labels column is a ``category`` with exactly the labels
        as categories in every partition and in ``meta``.

        Args:
            template: As in :meth:`ValarAccessor.run`.
            dedupe: As in :meth:`run`.
            {options}

        Returns:
            The lazy frame.

        Raises:
            ConfigError: Bad labels, scale, schema or any :meth:`run` option; raised at once.
        """
        return self._lazy("score", template, dedupe, options)

    @checked_arguments
    @takes(RequestsArgs)
    def requests(self, template: Any, **options: Unpack[RequestsArgs]) -> pd.DataFrame:
        """The requests :meth:`run` (or :meth:`score`) would send for the first ``n`` rows.

        As :meth:`ValarAccessor.requests`: the first ``n`` rows are computed (across as many
        partitions as needed), nothing is sent.

        Args:
            template: As in :meth:`ValarAccessor.run`.
            {options}

        Returns:
            See :meth:`ValarAccessor.requests`.
        """
        given: dict[str, Any] = dict(options)
        n = given.pop("n", PREVIEW_ROWS)
        preview_requests(self._obj._meta, template, n, given)  # bad options, before computing
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Insufficient elements", UserWarning)
            head = self._obj.compute() if n is None else self._obj.head(int(n), npartitions=-1)
        return preview_requests(head, template, n, given)

    @checked_arguments
    @takes(EstimateArgs)
    def estimate(self, template: Any, **options: Unpack[EstimateArgs]) -> Estimate:
        """How many requests :meth:`run` (or :meth:`score`) would send and what they would cost.

        Each partition is estimated where it is computed, its cache hits read from the run
        store that worker would use; nothing is sent. Identical prompts in different
        partitions count once per partition (as :meth:`run` without ``dedupe`` sends them;
        the server bills the first only), so the cost is an upper bound for them.

        Args:
            template: As in :meth:`ValarAccessor.run`.
            {options}

        Returns:
            The :class:`Estimate` of the whole frame.
        """
        given: dict[str, Any] = dict(options)
        client = given.pop("client", None)
        if client is not None:
            if given.get("base_url") is not None:
                raise ConfigError(
                    "give client= or base_url=, not both: the client names its endpoint"
                )
            given["base_url"] = client.base_url
        first = estimate_call(self._obj._meta, template, **given)  # checks, nothing computed
        parts = [delayed(estimate_call)(p, template, **given) for p in self._obj.to_delayed()]
        estimates: tuple[Estimate, ...] = compute(*parts)
        return _sum(first, estimates)


def _sum(first: Estimate, estimates: tuple[Estimate, ...]) -> Estimate:
    """The estimates of the partitions added up."""
    counted = ("rows", "requests", "cache_hits", "skipped", "to_send", "input_tokens",
               "output_tokens", "images")  # fmt: skip
    totals = {name: sum(getattr(e, name) for e in estimates) for name in counted}
    costs = [e.cost_usd for e in estimates]
    cost = None if first.cost_usd is None else sum(c or 0.0 for c in costs)
    return replace(first, **totals, cost_usd=cost)
