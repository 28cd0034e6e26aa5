"""A spending limit for one run: admit a create only while spend plus what is in flight fits.

Pure accounting, fed by the engine's events; the engine asks :meth:`Budget.admit` before each
create. In-flight requests are reserved at their estimated cost: estimated input tokens and
the output's worst case, ``max_output_tokens`` (reasoning is billed as output and counts
within it); when a request finishes its reservation is replaced by the cost of the usage the
server reported.

Without ``max_output_tokens`` an answer has no known worst case: a reasoning model can spend
thousands of output tokens on one row. The reservation is then the largest output any answer
of this run has used so far (at least the assumed default), so once long answers are seen
every later create is reserved at their length; but the first answers in flight are reserved
at the default, and spend can pass the limit. :attr:`Budget.overspent` says by how much, and
the call warns of it: only ``max_output_tokens`` makes the budget a hard cap.

Runs going on at once can share one limit (a sweep's pairs): each run's budget keeps its own
price, reservations and longest answer, and all of them reserve from and settle into one
:class:`SpendPool`, so spend plus in-flight across every run never passes the pool's limit.

A budget may be a share of a larger one (a Dask partition's grant of its computation's
budget): it is then given ``top_up``, a callable asked for more dollars when a create would
not fit, and ``named``, the larger budget its refusals name. The budget stays pure: the
callable does whatever drawing from the larger pool needs, and answers how much it added.
"""

from __future__ import annotations

from collections.abc import Callable

from .models import Event, Finished, Request
from .prices import DEFAULT_OUTPUT_TOKENS, Price, estimate_input_tokens

__all__ = ["Budget", "SpendPool", "estimated_cost"]


def estimated_cost(request: Request, price: Price, longest: int = 0) -> float:
    """USD a request is expected to cost at most, before it is sent.

    Args:
        request: The request.
        price: The price.
        longest: The most output tokens an answer of the run has used so far: the output
            reserved when the request sets no ``max_output_tokens`` (at least the default).
    """
    cap = request.body.get("max_output_tokens")
    output = int(cap) if cap else max(DEFAULT_OUTPUT_TOKENS, longest)
    return price.cost(estimate_input_tokens(request.body), output)


class SpendPool:
    """One spending limit shared by several budgets (runs going on at once).

    Args:
        limit: The most all the runs together may spend, in USD.

    Attributes:
        limit: The limit, in USD.
        spent: USD of usage reported by finished requests of every run.
        in_flight: USD reserved for created requests of every run not yet finished.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.spent = 0.0
        self.in_flight = 0.0


class Budget:
    """Stop creating requests once spend plus in-flight estimates would pass ``limit`` USD.

    Args:
        limit: The most this run may spend, in USD.
        price: The price of the call's model and window.
        pool: A limit shared with other runs' budgets; admission is then judged on the
            pool's spend and in-flight, and ``limit`` must be the pool's. None for a run of
            its own.
        top_up: When a create would not fit, called with the USD missing; returns the USD
            it adds to the limit (possibly more than asked, or 0.0 when there is none).
        named: The budget a refusal names (the whole budget ``limit`` is a share of);
            ``limit`` when None.

    Attributes:
        spent: USD of usage reported by finished requests in this run.
        in_flight: USD reserved for created requests of this run not yet finished.
        pool: What this run reserves from and settles into (its own, or the shared one).
    """

    def __init__(
        self,
        limit: float,
        price: Price,
        pool: SpendPool | None = None,
        top_up: Callable[[float], float] | None = None,
        named: float | None = None,
    ) -> None:
        if pool is not None and pool.limit != limit:
            raise ValueError("a budget sharing a pool has the pool's limit")
        self.limit = limit
        self.top_up = top_up
        self.named = limit if named is None else named
        self.price = price
        self.pool = pool if pool is not None else SpendPool(limit)
        self.spent = 0.0
        self.in_flight = 0.0
        self.longest = 0
        """The most output tokens one answer of this run has used (reasoning included)."""
        self._reserved: dict[str, float] = {}

    def admit(self, request: Request) -> str | None:
        """Reserve a request's estimated cost, or say why it may not be sent.

        A request already admitted (a batch run handing its requests to background mode)
        is admitted again without a second reservation.

        Returns:
            None when admitted; otherwise the reason, for the row's error column.
        """
        if request.fingerprint in self._reserved:
            return None
        cost = estimated_cost(request, self.price, self.longest)
        pool = self.pool
        short = pool.spent + pool.in_flight + cost - pool.limit
        if short > 0 and self.top_up is not None:
            pool.limit += self.top_up(short)
            self.limit = pool.limit
        if pool.spent + pool.in_flight + cost > pool.limit:
            return (
                f"not sent: the budget of ${self.named:,.4f} would be exceeded "
                f"(spent ${pool.spent:,.4f}, ${pool.in_flight:,.4f} in flight)"
            )
        self._reserved[request.fingerprint] = cost
        self.in_flight += cost
        pool.in_flight += cost
        return None

    def __call__(self, event: Event) -> None:
        """Settle a finished request: release its reservation, add its reported cost."""
        if not isinstance(event, Finished) or event.cached or event.fingerprint is None:
            return
        reserved = self._reserved.pop(event.fingerprint, 0.0)
        cost = self.price.of(event.outcome)
        self.in_flight -= reserved
        self.spent += cost
        self.pool.in_flight -= reserved
        self.pool.spent += cost
        output = event.outcome.output_tokens or 0
        reasoning = event.outcome.reasoning_tokens or 0
        self.longest = max(self.longest, output + reasoning if reasoning > output else output)

    @property
    def overspent(self) -> float:
        """USD spent past the limit (0.0 within it), by every run sharing it.

        Answers longer than reserved: only possible for requests without
        ``max_output_tokens`` (or by the error of the input tokens' estimate).
        """
        return max(self.pool.spent - self.pool.limit, 0.0)
