"""What a call would send and cost, computed before anything is sent. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ._models import Request
from ._prices import (
    DEFAULT_OUTPUT_TOKENS,
    PRICES_AS_OF,
    PRICES_SOURCE,
    Price,
    estimate_input_tokens,
)

__all__ = ["Estimate", "estimate"]


@dataclass(frozen=True)
class Estimate:
    """The expected size and cost of a call.

    Attributes:
        rows: Rows in the frame.
        requests: Distinct requests (identical rows share one).
        cache_hits: Requests the run store already answered: free.
        skipped: Rows that will not be sent (missing values, callable returned None).
        to_send: Requests that will be sent (and billed).
        input_tokens: Estimated input tokens of the requests to send (no tokenizer:
            characters / 4, plus 4 per message).
        output_tokens: Output tokens assumed for the requests to send.
        output_assumed_per_request: ``max_output_tokens``, or the default when unset.
        cost_usd: Estimated cost in USD, or None when the model has no known price.
        model: The model id.
        completion_window: The window the price is for.
        price: The price used (USD per 1M tokens), or None.
        prices_as_of: The date of the shipped price table.
        prices_source: Where the shipped prices come from.
    """

    rows: int
    requests: int
    cache_hits: int
    skipped: int
    to_send: int
    input_tokens: int
    output_tokens: int
    output_assumed_per_request: int
    cost_usd: float | None
    model: str
    completion_window: str
    price: Price | None
    prices_as_of: str = PRICES_AS_OF
    prices_source: str = PRICES_SOURCE

    def to_dict(self) -> dict[str, object]:
        """The estimate as a plain dict."""
        return asdict(self)

    def __repr__(self) -> str:
        cost = (
            "unknown (no price for this model; pass price=)"
            if self.cost_usd is None
            else (f"${self.cost_usd:,.4f}")
        )
        lines = [
            f"Estimate for {self.model} ({self.completion_window} window)",
            f"  rows            {self.rows:>12,}",
            f"  requests        {self.requests:>12,}   (identical rows are sent once)",
            f"  cache hits      {self.cache_hits:>12,}   (answered by the run store, free)",
            f"  skipped rows    {self.skipped:>12,}",
            f"  to send         {self.to_send:>12,}",
            f"  input tokens   ~{self.input_tokens:>12,}   (characters / 4, no tokenizer)",
            f"  output tokens  ≤{self.output_tokens:>12,}   "
            f"({self.output_assumed_per_request:,} per request)",
            f"  cost           ~{cost}",
        ]
        if self.price is not None:
            lines.append(
                f"  price: ${self.price.input}/1M input, ${self.price.output}/1M output "
                f"(table of {self.prices_as_of}, {self.prices_source}, unless overridden)"
            )
        return "\n".join(lines)


def estimate(
    *,
    rows: int,
    requests: int,
    cache_hits: int,
    skipped: int,
    to_send: list[Request],
    max_output_tokens: int | None,
    model: str,
    completion_window: str,
    price: Price | None,
) -> Estimate:
    """Add up the tokens and cost of the requests a call would send.

    Returns:
        The estimate.
    """
    per_request = max_output_tokens or DEFAULT_OUTPUT_TOKENS
    tokens_in = sum(estimate_input_tokens(r.body) for r in to_send)
    tokens_out = per_request * len(to_send)
    cost = price.cost(tokens_in, tokens_out) if price is not None else None
    return Estimate(
        rows=rows,
        requests=requests,
        cache_hits=cache_hits,
        skipped=skipped,
        to_send=len(to_send),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        output_assumed_per_request=per_request,
        cost_usd=cost,
        model=model,
        completion_window=completion_window,
        price=price,
    )
