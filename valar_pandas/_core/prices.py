"""What tokens cost: the shipped price table, tokenizer-free estimates and spend. Pure.

Prices are USD per million tokens, per completion window, from Valar's pricing page
(https://docs.valarhq.ai/pricing) as read on the date in :data:`PRICES_AS_OF`. Pass
``price=`` to a call to override them (a new model, a negotiated rate).

Input tokens are estimated without a tokenizer as ``ceil(characters / 4)`` plus 4 tokens per
message: within about 20 % for English prose on current tokenizers, which is what an estimate
before pressing enter needs. Image parts add OpenAI's per-image tile estimate (see
:mod:`~valar_pandas._core.images`). Spend uses the usage the server reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .images import image_tokens, is_image_part
from .models import Outcome

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "PRICES",
    "PRICES_AS_OF",
    "PRICES_SOURCE",
    "Price",
    "estimate_input_tokens",
    "measure_input",
    "resolve_price",
    "text_tokens",
]

PRICES_AS_OF = "2026-11-01"
PRICES_SOURCE = "https://docs.valarhq.ai/pricing"
DEFAULT_OUTPUT_TOKENS = 256
"""Output tokens assumed per row when ``max_output_tokens`` is not set."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens.

    Attributes:
        input: Uncached input tokens.
        output: Output tokens (reasoning included).
        cached_input: Input tokens served from the prefix cache; defaults to ``input``.
    """

    input: float
    output: float
    cached_input: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise ConfigError(f"price {name} must be a non-negative number of USD per 1M")

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """USD for one request's usage."""
        cached = min(max(cached_tokens, 0), input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (input_tokens - cached) * self.input
            + cached * cached_rate
            + output_tokens * self.output
        ) / 1e6

    def of(self, outcome: Outcome) -> float:
        """USD for an outcome's reported usage (zero when none was reported).

        Reasoning tokens are billed as output and are part of ``output_tokens`` (the
        contract's ``output_tokens_details.reasoning_tokens`` details them), so they are not
        added again; but a server reporting more reasoning tokens than output tokens cannot
        be counting them in, and then both are billed.
        """
        output = outcome.output_tokens or 0
        reasoning = outcome.reasoning_tokens or 0
        if reasoning > output:
            output += reasoning
        return self.cost(outcome.input_tokens or 0, output, outcome.cached_tokens or 0)


# model → window → price. Valar lists Standard and Now ("asap") rates for every model.
PRICES: Mapping[str, Mapping[str, Price]] = {
    "deepseek-ai/DeepSeek-V4-Pro": {
        "standard": Price(0.90, 2.30, 0.15),
        "asap": Price(1.60, 4.10, 0.15),
    },
    "deepseek-ai/DeepSeek-V4-Flash": {
        "standard": Price(0.135, 0.21, 0.015),
        "asap": Price(0.243, 0.378, 0.027),
    },
    "moonshotai/Kimi-K2.6": {
        "standard": Price(0.45, 0.30, 0.20),
        "asap": Price(0.90, 3.60, 0.20),
    },
    "zai-org/GLM-5.1-FP8": {
        "standard": Price(0.15, 0.60, 0.03),
        "asap": Price(1.30, 4.40, 0.26),
    },
    "openai/gpt-oss-120b": {
        "standard": Price(0.04, 0.30, 0.02),
        "asap": Price(0.06, 0.40, 0.03),
    },
    "Qwen/Qwen3.5-397B-A17B": {
        "standard": Price(0.25, 0.75, 0.05),
        "asap": Price(0.45, 1.35, 0.09),
    },
    "google/gemma-4-31B-it": {
        "standard": Price(0.18, 0.30, 0.10),
        "asap": Price(0.36, 0.60, 0.20),
    },
    "MiniMaxAI/MiniMax-M2.7": {
        "standard": Price(0.15, 0.60, 0.03),
        "asap": Price(0.27, 1.08, 0.054),
    },
}


def resolve_price(
    model: str, window: str, override: Price | Mapping[str, Any] | None
) -> Price | None:
    """The price that applies to a call.

    Args:
        model: The model id.
        window: ``"standard"`` or ``"asap"``.
        override: A :class:`Price`, or a mapping with ``input``, ``output`` and optionally
            ``cached_input`` (USD per 1M tokens), that replaces the table.

    Returns:
        The price, or None when the model is not in the table and no override was given.

    Raises:
        ConfigError: The override is malformed.
    """
    if override is not None:
        if isinstance(override, Price):
            return override
        if isinstance(override, Mapping):
            unknown = set(override) - {"input", "output", "cached_input"}
            if unknown or not {"input", "output"} <= set(override):
                raise ConfigError(
                    "price must have 'input' and 'output' (and optionally 'cached_input'), "
                    "in USD per million tokens"
                )
            return Price(**override)
        raise ConfigError("price must be a valar_pandas.Price or a mapping")
    return PRICES.get(model, {}).get(window)


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """Estimate a request body's input tokens without a tokenizer.

    The one rule behind ``estimate()`` and ``budget=``.

    Args:
        body: A ``POST /v1/responses`` body.

    Returns:
        ``ceil(characters / 4)`` over every text part, plus 4 per message, plus each image
        part's estimate (:func:`~valar_pandas._core.images.image_tokens`: OpenAI's tile rule).
    """
    chars, messages, _, images = measure_input(body)
    return text_tokens(chars, messages) + images


def text_tokens(chars: int, messages: int) -> int:
    """Estimated tokens of ``chars`` characters of text in ``messages`` messages."""
    return -(-chars // 4) + 4 * messages


def measure_input(body: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """What a body's input holds, for :func:`estimate_input_tokens`.

    Args:
        body: A ``POST /v1/responses`` body.

    Returns:
        Characters of text, messages, image parts, and the estimated tokens of the images.
    """
    messages = body.get("input")
    if isinstance(messages, str):
        return len(messages), 1, 0, 0
    chars = 0
    count = 0
    images = 0
    image_total = 0
    for message in messages if isinstance(messages, list) else ():
        count += 1
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping):
                    continue
                text = part.get("text")
                if isinstance(text, str):
                    chars += len(text)
                elif is_image_part(part):
                    images += 1
                    image_total += image_tokens(part)
    return chars, count, images, image_total
