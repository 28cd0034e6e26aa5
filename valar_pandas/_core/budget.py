"""A spending limit for one run: admit a create only while spend plus what is in flight fits.

Pure accounting, fed by the engine's events; the engine asks :meth:`Budget.admit` before each
create. In-flight requests are reserved at their estimated cost (estimated input tokens and
``max_output_tokens``, or the assumed default); when a request finishes its reservation is
replaced by the cost of the usage the server reported.
"""

from __future__ import annotations

from .models import Event, Finished, Request
from .prices import DEFAULT_OUTPUT_TOKENS, Price, estimate_input_tokens

__all__ = ["Budget", "estimated_cost"]


def estimated_cost(request: Request, price: Price) -> float:
    """USD a request is expected to cost at most, before it is sent."""
    output = request.body.get("max_output_tokens") or DEFAULT_OUTPUT_TOKENS
    return price.cost(estimate_input_tokens(request.body), int(output))


class Budget:
    """Stop creating requests once spend plus in-flight estimates would pass ``limit`` USD.

    Args:
        limit: The most this run may spend, in USD.
        price: The price of the call's model and window.

    Attributes:
        spent: USD of usage reported by finished requests in this run.
        in_flight: USD reserved for created requests not yet finished.
    """

    def __init__(self, limit: float, price: Price) -> None:
        self.limit = limit
        self.price = price
        self.spent = 0.0
        self.in_flight = 0.0
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
        cost = estimated_cost(request, self.price)
        if self.spent + self.in_flight + cost > self.limit:
            return (
                f"not sent: the budget of ${self.limit:,.4f} would be exceeded "
                f"(spent ${self.spent:,.4f}, ${self.in_flight:,.4f} in flight)"
            )
        self._reserved[request.fingerprint] = cost
        self.in_flight += cost
        return None

    def __call__(self, event: Event) -> None:
        """Settle a finished request: release its reservation, add its reported cost."""
        if not isinstance(event, Finished) or event.cached or event.fingerprint is None:
            return
        self.in_flight -= self._reserved.pop(event.fingerprint, 0.0)
        self.spent += self.price.of(event.outcome)
