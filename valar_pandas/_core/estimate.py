"""What a call would send and cost, computed before anything is sent. Pure.

:func:`count_requests` sizes a call's rows without building them: a row's request is only
fingerprinted and measured, then dropped, so a preview of a million rows holds one hash and
one count per distinct request, not a million request bodies. For the common row, a
rendered prompt, the canonical body is spliced around the prompt's JSON text instead of
serialising the whole body again; the bytes hashed are the bytes :func:`make_request` would
send (the tests hold the two equal).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence, Set
from dataclasses import asdict, dataclass, field
from json.encoder import encode_basestring
from typing import Any

from .models import Request
from .options import RunOptions
from .plan import Skip, build_request, request_body
from .prices import (
    DEFAULT_OUTPUT_TOKENS,
    PRICES_AS_OF,
    PRICES_SOURCE,
    Price,
    measure_input,
    text_tokens,
)
from .wire import make_request

__all__ = [
    "Counted",
    "Estimate",
    "Sizer",
    "Sizes",
    "count_requests",
    "estimate",
    "request_size",
]


@dataclass(frozen=True)
class Sizes:
    """The requests to send, added up.

    Attributes:
        requests: How many.
        input_tokens: Their estimated input tokens.
        images: Their image parts.
    """

    requests: int
    input_tokens: int
    images: int

    @classmethod
    def of(cls, requests: Sequence[Request]) -> Sizes:
        """Add up requests by the rule ``budget=`` uses."""
        tokens = images = 0
        for request in requests:
            chars, messages, pictures, picture_tokens = measure_input(request.body)
            tokens += text_tokens(chars, messages) + picture_tokens
            images += pictures
        return cls(len(requests), tokens, images)


_SENTINEL = "\ue000valar-prompt\ue001"


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
            characters / 4, plus 4 per message, plus each image by OpenAI's tile rule).
        output_tokens: Output tokens assumed for the requests to send: the worst case when
            ``max_output_tokens`` caps each answer (reasoning included), else an assumption.
        output_assumed_per_request: ``max_output_tokens``, or the default when unset.
        cost_usd: Estimated cost in USD, or None when the model has no known price. With
            ``max_output_tokens`` set, the output's worst case; without it, a lower bound
            (see ``lower_bound``).
        model: The model id.
        completion_window: The window the price is for.
        price: The price used (USD per 1M tokens), or None.
        prices_as_of: The date of the shipped price table.
        prices_source: Where the shipped prices come from.
        images: Image parts in the requests to send (their tokens are in
            ``input_tokens``, estimated by OpenAI's per-image tile rule).
        lower_bound: True when no ``max_output_tokens`` caps the answers: the output tokens
            are the assumed default per request, and an answer (a reasoning model's above
            all, whose reasoning is billed as output) can be far longer, so the cost can
            be several times the estimate.
        reasoning: The reasoning effort asked for, or None.
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
    images: int = 0
    lower_bound: bool = False
    reasoning: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The estimate as a plain dict."""
        return asdict(self)

    def __repr__(self) -> str:
        return self.render()

    def render(self, price_hint: str = "pass price=") -> str:
        """The estimate as a table, as ``repr`` shows it.

        Args:
            price_hint: How to give a price when the model has none, in the caller's words
                (the command says ``give --price INPUT,OUTPUT``).

        Returns:
            The table.
        """
        cost = (
            f"unknown (no price for this model; {price_hint})"
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
            *(
                [f"  images         {self.images:>12,}   (in input tokens: OpenAI's tile rule)"]
                if self.images
                else []
            ),
            f"  output tokens  {'≥' if self.lower_bound else '≤'}{self.output_tokens:>12,}   "
            f"({self.output_assumed_per_request:,} per request"
            + (", assumed: no max_output_tokens)" if self.lower_bound else ", the cap)"),
            # The input side is itself an estimate (characters / 4), so a lower bound on the
            # output makes the cost "at least about", not a guaranteed minimum.
            f"  cost           "
            f"{'at least ~' if self.lower_bound and self.cost_usd is not None else '~'}{cost}",
        ]
        if self.lower_bound:
            why = (
                f"reasoning={self.reasoning!r} is billed as output, "
                if self.reasoning not in (None, "none")
                else "a reasoning model's reasoning is billed as output, "
            )
            lines.append(
                "  LOWER BOUND: no max_output_tokens caps the answers, so "
                f"{self.output_assumed_per_request:,} output tokens a request are assumed; "
                f"{why}so the cost can be several times this. Set max_output_tokens for a "
                "worst case."
            )
        if self.price is not None:
            lines.append(
                f"  price: ${self.price.input}/1M input, ${self.price.output}/1M output "
                f"(table of {self.prices_as_of}, {self.prices_source}, unless overridden)"
            )
        return "\n".join(lines)


def request_size(request: Request) -> tuple[int, int]:
    """A request's estimated input tokens (the rule ``budget=`` uses) and image parts."""
    chars, messages, images, image_tokens = measure_input(request.body)
    return text_tokens(chars, messages) + image_tokens, images


def estimate(
    *,
    rows: int,
    requests: int,
    cache_hits: int,
    skipped: int,
    to_send: Sequence[Request] | Sizes,
    max_output_tokens: int | None,
    model: str,
    completion_window: str,
    price: Price | None,
    reasoning: str | None = None,
) -> Estimate:
    """Add up the tokens and cost of the requests a call would send.

    With ``max_output_tokens`` set, every answer is assumed to use the whole cap (reasoning
    counts within it): the output's worst case. Without it, the default per request is
    assumed and the estimate is marked a lower bound.

    Args:
        rows: Rows in the frame.
        requests: Distinct requests.
        cache_hits: Requests the run store answers.
        skipped: Rows not sent.
        to_send: The requests to send, or their sizes added up.
        max_output_tokens: The cap on each answer, or None for the assumed default.
        model: The model id.
        completion_window: The window the price is for.
        price: The price, or None when unknown.
        reasoning: The reasoning effort asked for (named in the lower bound's warning).

    Returns:
        The estimate.
    """
    per_request = max_output_tokens or DEFAULT_OUTPUT_TOKENS
    sent = to_send if isinstance(to_send, Sizes) else Sizes.of(to_send)
    tokens_in = sent.input_tokens
    tokens_out = per_request * sent.requests
    cost = price.cost(tokens_in, tokens_out) if price is not None else None
    return Estimate(
        rows=rows,
        requests=requests,
        cache_hits=cache_hits,
        skipped=skipped,
        to_send=sent.requests,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        output_assumed_per_request=per_request,
        cost_usd=cost,
        model=model,
        completion_window=completion_window,
        price=price,
        images=sent.images,
        lower_bound=max_output_tokens is None,
        reasoning=reasoning,
    )


@dataclass
class Counted:
    """A call's rows, sized without keeping their requests.

    Attributes:
        rows: Rows seen.
        skipped: Rows that will not be sent.
        sizes: Per distinct request (by the 32 bytes of its fingerprint, in first-seen
            order), its estimated input tokens, images included.
        images: Image parts per fingerprint, for the requests that have any.
    """

    rows: int = 0
    skipped: int = 0
    sizes: dict[bytes, int] = field(default_factory=dict)
    images: dict[bytes, int] = field(default_factory=dict)

    def fingerprints(self) -> Iterator[str]:
        """The distinct requests' fingerprints, as hex (as the run store keys them)."""
        return (digest.hex() for digest in self.sizes)

    def to_send(self, answered: Set[str]) -> Sizes:
        """The total size of the distinct requests the store has not ``answered``."""
        if not answered:
            return Sizes(len(self.sizes), sum(self.sizes.values()), sum(self.images.values()))
        skip = {bytes.fromhex(fp) for fp in answered}
        kept = [digest for digest in self.sizes if digest not in skip]
        return Sizes(
            len(kept),
            sum(self.sizes[digest] for digest in kept),
            sum(self.images.get(digest, 0) for digest in kept),
        )


class Sizer:
    """Sizes rows' requests as :func:`~valar_pandas._core.plan.plan_requests` would build them.

    For a rendered prompt, the canonical body is the call's fixed JSON around the prompt's
    JSON text, so only that text is encoded and hashed. Anything else (messages, images)
    takes the general path: the request is built, measured and dropped.

    Args:
        options: The validated run options.
    """

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.counted = Counted()
        self._salt = None if options.salt is None else b"\x00salt\x00" + options.salt.encode()
        body = request_body(_SENTINEL, options)
        marker = encode_basestring(_SENTINEL)
        before, hit, after = make_request(body).payload.decode().partition(marker)
        # Only when the sentinel's text appears once: a model id or instructions holding it
        # (they cannot, in practice) leave every row to the general path.
        self._splice = bool(hit) and marker not in after
        self._before, self._after = before, after
        chars, messages, _, _ = measure_input(body)
        self._chars = chars - len(_SENTINEL)
        self._messages = messages

    def add(self, inputs: Iterable[str | list[dict[str, Any]] | Skip], offset: int) -> None:
        """Size the next rows.

        Args:
            inputs: Per row, its rendered prompt, its messages, or a :class:`Skip`.
            offset: The position of the first of them in the frame, for error messages.

        Raises:
            ConfigError: A row cannot be sent as JSON (as :func:`plan_requests` says it).
        """
        counted, options = self.counted, self.options
        sizes = counted.sizes
        # The loop is the whole cost of a large preview: names are bound locally, and the
        # token rule (text_tokens: ceil(chars / 4) + 4 per message) is inlined.
        splice = self._splice
        # The hash of the bytes before the prompt, copied for each row.
        start = hashlib.sha256(self._before.encode())
        after = self._after.encode() + (self._salt or b"")
        fixed, per_messages = self._chars + 3, 4 * self._messages
        quote = encode_basestring
        rows = 0
        for rows, item in enumerate(inputs, 1):
            if splice and type(item) is str:
                digest = start.copy()
                try:
                    digest.update(quote(item).encode())
                except UnicodeEncodeError:  # a lone surrogate: the general path says so
                    build_request(offset + rows - 1, item, options)
                    raise
                digest.update(after)
                sizes[digest.digest()] = (fixed + len(item)) // 4 + per_messages
            elif isinstance(item, Skip):
                counted.skipped += 1
            else:
                request = build_request(offset + rows - 1, item, options)
                key = bytes.fromhex(request.fingerprint)
                if key not in sizes:
                    tokens, images = request_size(request)
                    sizes[key] = tokens
                    if images:
                        counted.images[key] = images
        counted.rows += rows


def count_requests(
    inputs: Iterable[str | list[dict[str, Any]] | Skip], options: RunOptions
) -> Counted:
    """Size every row's request as :func:`~valar_pandas._core.plan.plan_requests` would build it.

    Args:
        inputs: Per row, its rendered prompt, its messages, or a :class:`Skip`.
        options: The validated run options.

    Returns:
        Rows, skips, and each distinct request's fingerprint and size.

    Raises:
        ConfigError: A row cannot be sent as JSON (as :func:`plan_requests` raises it).
    """
    sizer = Sizer(options)
    sizer.add(inputs, 0)
    return sizer.counted
