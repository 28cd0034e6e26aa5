"""Configuration of the emulator: latency, injected faults and the server's switches.

Everything here is a frozen dataclass so a test can swap a whole configuration between
requests with ``dataclasses.replace`` and the server reads it afresh on every request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from ._reasoning import EFFORTS

__all__ = [
    "BATCH_FAILURE_DETAILS",
    "BATCH_REFUSALS",
    "DEFAULT_API_KEY",
    "DEFAULT_MODELS",
    "HOSTILE",
    "IMAGE_MODELS",
    "REALISTIC_LATENCY",
    "REASONING_MODELS",
    "STATUS_WORDS",
    "WINDOWS",
    "EmulatorConfig",
    "Faults",
    "Latency",
]

Vocabulary = Literal["pending", "queued"]
Truncation = Literal["incomplete", "completed"]

DEFAULT_API_KEY = "sk-emulator"

#: The eight model ids on Valar's pricing page (valar-api.md §10).
DEFAULT_MODELS: tuple[str, ...] = (
    "deepseek-ai/DeepSeek-V4-Pro",
    "deepseek-ai/DeepSeek-V4-Flash",
    "moonshotai/Kimi-K2.6",
    "zai-org/GLM-5.1-FP8",
    "openai/gpt-oss-120b",
    "Qwen/Qwen3.5-397B-A17B",
    "google/gemma-4-31B-it",
    "MiniMaxAI/MiniMax-M2.7",
)

#: The completion windows (valar-api.md §7); a create without one runs on ``standard``.
WINDOWS: tuple[str, ...] = ("asap", "standard")

#: The models that take images: the pricing page's models the vendor documents as
#: multimodal (its images guide uses Kimi-K2.6; no other model is said to take images).
IMAGE_MODELS: tuple[str, ...] = ("moonshotai/Kimi-K2.6",)

#: The pricing page's models that reason: all but Gemma 4 (gpt-oss, DeepSeek V4, Kimi K2.6,
#: GLM 5.1, Qwen 3.5 and MiniMax M2.7 are reasoning models).
REASONING_MODELS: tuple[str, ...] = tuple(m for m in DEFAULT_MODELS if "gemma" not in m)

#: Non-terminal status words per vocabulary: (initial, running).
STATUS_WORDS: dict[str, tuple[str, str]] = {
    "pending": ("pending", "running"),
    "queued": ("queued", "in_progress"),
}


def _check_probability(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")


def _check_seconds(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number of seconds ≥ 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Latency:
    """How long an emulated response takes, drawn per response from a lognormal law.

    A response's latency is ``max(minimum, median * exp(sigma * N(0, 1)))`` seconds, drawn from
    a generator seeded by :attr:`EmulatorConfig.seed`. ``Latency()`` and :meth:`fast` are the
    fast law for tests and demos (0.2 s median); :data:`REALISTIC_LATENCY` holds the laws the
    emulator uses by default, one per completion window.

    Attributes:
        median: Median latency in seconds.
        sigma: Spread of the underlying normal law; 0 makes every response take ``median``.
        minimum: Floor in seconds.
    """

    median: float = 0.2
    sigma: float = 0.5
    minimum: float = 0.0

    def __post_init__(self) -> None:
        _check_seconds("Latency.median", self.median)
        _check_seconds("Latency.sigma", self.sigma)
        _check_seconds("Latency.minimum", self.minimum)

    @classmethod
    def fast(cls) -> Latency:
        """The fast law for tests and demos: 0.2 s median, whatever the window.

        Returns:
            ``Latency(median=0.2, sigma=0.5, minimum=0.0)``.
        """
        return cls(median=0.2, sigma=0.5, minimum=0.0)


#: The default latency by completion window, as the vendor describes them (valar-api.md §7):
#: ``asap`` runs at once ("seconds"), ``standard`` "targets roughly five minutes per turn".
REALISTIC_LATENCY: Mapping[str, Latency] = MappingProxyType(
    {
        "asap": Latency(median=4.0, sigma=0.5, minimum=1.0),
        "standard": Latency(median=300.0, sigma=0.4, minimum=30.0),
    }
)


BATCH_REFUSALS = ("not_enabled", "coming_soon", "unavailable", "overloaded", "server_error")
"""How the batch endpoints can refuse: :attr:`EmulatorConfig.batch_refusal`."""

BATCH_FAILURE_DETAILS = ("status", "result", "none")
"""Where a failed batch item's reason shows: :attr:`EmulatorConfig.batch_failure_detail`."""

HOSTILE = ("surrogate_text", "surrogate_id", "nested_json", "retry_after_date", "raw_body")
"""The hostile replies :class:`Faults` can send."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Faults the emulator injects; every rate defaults to 0 (a perfect server).

    Attributes:
        rate_429: Probability that an API request is answered 429 before anything happens.
        retry_after: Seconds sent in the ``Retry-After`` header of 429 and 503 answers.
        rate_500: Probability of a 500 answer before anything happens.
        rate_502: Probability of a 502 answer before anything happens.
        rate_503: Probability of a 503 answer (with ``Retry-After``) before anything happens.
        drop_after_create: Probability that a create which made a new response record then
            closes the connection without sending any HTTP response.
        failed: Fraction of responses that end ``failed``; decided by a hash of the seed and the
            request body, so the same body always gets the same outcome.
        invalid_structured: Fraction of structured (``json_schema``) answers that are invalid:
            bad JSON, a label outside the enum, or a number out of range. Decided by a hash of
            the seed and the body, like ``failed``; the response still ends ``completed``.
        redirect_to: When set, every API request is answered ``301`` with ``Location`` this
            URL followed by the request's path (a server that moved).
        not_json: Every API request is answered ``200`` with an HTML page (a web server, or a
            proxy's login page, where the API should be).
        hang: Every API request is read and never answered (a server that accepts and stalls).
        inflate_to: When positive, every finished Response object is sent gzip-compressed
            and padded so that it inflates to at least this many bytes.
        usage_tokens: When not None, the ``output_tokens`` that finished Response objects
            report in their ``usage`` (any JSON value, e.g. ``10**30`` or ``-1``).
        hostile: A hostile reply, or None: ``"surrogate_text"`` (answers end in half an
            emoji, a lone surrogate, ``U+D83D``), ``"surrogate_id"`` (finished responses,
            and created batches, carry an id holding one), ``"nested_json"`` (finished
            responses are 200 KB of nested ``[``), ``"retry_after_date"`` (every other API
            request is answered 429 with ``Retry-After`` a date in the year
            99999999999999999999), ``"raw_body"``
            (finished responses are sent uncompressed, padded to 1 GiB).
        echo_key: Every create is answered ``400`` with an error message that quotes the
            bearer key it was sent and holds terminal escape sequences (a careless server).
        disobey_schema: Fraction of structured (``json_schema``) answers that ignore the
            schema's shape: valid JSON with a property left out, an undeclared property
            added, or the whole answer wrapped in another object. Drawn per attempt like
            ``invalid_structured`` but apart from it (``invalid_structured`` spoils values
            inside the right shape and wins when both are drawn); the response still ends
            ``completed``, even when the format asked for ``"strict": true``.
    """

    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    drop_after_create: float = 0.0
    failed: float = 0.0
    invalid_structured: float = 0.0
    redirect_to: str | None = None
    not_json: bool = False
    hang: bool = False
    inflate_to: int = 0
    usage_tokens: int | float | str | None = None
    hostile: str | None = None
    echo_key: bool = False
    disobey_schema: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "rate_429",
            "rate_500",
            "rate_502",
            "rate_503",
            "drop_after_create",
            "failed",
            "invalid_structured",
            "disobey_schema",
        ):
            _check_probability(f"Faults.{name}", getattr(self, name))
        _check_seconds("Faults.retry_after", self.retry_after)
        if self.rate_429 + self.rate_500 + self.rate_502 + self.rate_503 > 1.0 + 1e-9:
            raise ValueError("Faults: rate_429 + rate_500 + rate_502 + rate_503 must be ≤ 1")
        if self.redirect_to is not None and not self.redirect_to.startswith(
            ("http://", "https://")
        ):
            raise ValueError("Faults.redirect_to must be an http:// or https:// URL")
        if not isinstance(self.inflate_to, int) or self.inflate_to < 0:
            raise ValueError("Faults.inflate_to must be a whole number of bytes ≥ 0")
        if self.hostile is not None and self.hostile not in HOSTILE:
            raise ValueError(f"Faults.hostile must be one of {', '.join(HOSTILE)}, or None")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes the emulator's behaviour.

    Attributes:
        api_key: The one bearer key accepted; any other key gets 401.
        vocabulary: ``"pending"`` (pending → running → terminal) or ``"queued"``
            (queued → in_progress → terminal).
        background_create_status: HTTP status of a background create, 202 or 200.
        latency: One law for how long every response takes, whatever its window (e.g.
            ``Latency.fast()`` for tests and demos); None (the default) draws each response
            from ``latency_by_window`` by its ``metadata.completion_window``.
        faults: What goes wrong, and how often.
        seed: Seeds latency and transient faults, and salts the deterministic ``failed`` draw.
        models: Model ids served by ``GET /v1/models`` and accepted on create.
        cancel_supported: Whether ``POST /v1/responses/{id}/cancel`` exists (else 404).
            Off by default: the vendor documents no cancel.
        batch_api: Whether the four ``/v1/batches`` endpoints exist (else they answer 404,
            as on a server where the Batch API is not available). Off by default: the
            vendor calls the Batch API "coming soon".
        batch_max_requests: Most items one batch may hold (the contract's 100,000).
        batch_max_bytes: A batch create body must stay under this many bytes (256 MB,
            256,000,000 bytes).
        batch_refusal: With ``batch_api`` on, how the batch endpoints refuse, or None:
            ``"not_enabled"`` (403 on every batch route, "not enabled for your
            organisation", while the key works on ``/v1/responses``), ``"coming_soon"``
            (400 on every batch route, the vendor's "Coming soon" words),
            ``"unavailable"`` (400, "the Batch API is not available for this account"),
            ``"overloaded"`` (503 with ``Retry-After`` on every ``POST /v1/batches``) or
            ``"server_error"`` (500 on every ``POST /v1/batches``).
        batch_failure_detail: Where a ``FAILED`` item's reason shows: ``"status"`` (in its
            ``request_status`` entry as ``error``, and in its result), ``"result"`` (only in
            the Response object ``GET /v1/batches/{id}/{custom_id}`` answers) or ``"none"``
            (nowhere: the status entry is bare and the result answers 404).
        batch_drop_items: The last this many items of every batch are silently dropped on
            create: never run nor billed, missing from ``request_counts`` and from the
            status map (a server that lost part of a batch).
        unknown_model_status: The HTTP status of a create (or batch item) naming a model the
            server does not serve: 400, or 404 as OpenAI answers; the code is
            ``model_not_found`` either way.
        latency_by_window: The law per completion window when ``latency`` is None; windows
            left out keep :data:`REALISTIC_LATENCY`'s (``asap`` 4 s median, ``standard``
            300 s). A create without a window, and every batch item, runs on ``standard``.
        idempotency: Whether ``Idempotency-Key`` replays the first create; False makes a
            server that ignores the header, so every create is a new, billed inference.
        truncation: How an answer cut at ``max_output_tokens`` is reported: ``"incomplete"``
            (status ``incomplete``) or ``"completed"`` (status ``completed`` with
            ``incomplete_details: {"reason": "max_output_tokens"}`` and the partial text, as
            a server may say it).
        reasoning_models: The models that reason: their answers spend reasoning tokens
            (by effort, see ``_reasoning.REASONING_TOKENS``), reported in
            ``usage.output_tokens_details.reasoning_tokens``, counted in ``output_tokens``
            and within ``max_output_tokens``; a cap they fill leaves no text at all. By
            default every model of the pricing page but Gemma.
        reasoning_default: The effort a reasoning model uses when the body sets no
            ``reasoning.effort``. ``"none"`` by default, so answers stay as short as
            requests without ``reasoning`` expect; a real reasoning model may reason
            unasked (``"medium"`` is closer to one).
        cache_block: Block size, in tokens, of the prefix cache: a request whose
            instructions this emulator saw before on the same model reports them in
            ``usage.input_tokens_details.cached_tokens``, in whole blocks; 0 turns it off.
        strict_schemas: Enforce strict mode's rules: a create whose ``text.format`` is a
            ``json_schema`` sent with ``"strict": true`` and a schema breaking them (an object
            without ``additionalProperties: false``, a property missing from ``required``, a
            refused keyword) is answered 400 with OpenAI's message naming where. Off by
            default, as in earlier versions; the vendor does not document whether it checks.
        image_models: The models that take ``input_image`` parts (the vendor documents image
            input on multimodal models only, naming ``moonshotai/Kimi-K2.6``); an image sent
            to any other model is answered 400 "model '<id>' does not support image input".
        model_errors: Model id → the share (0–1) of its labelling answers that are wrong:
            for such a model, a structured answer holding an ``enum`` of two options or more
            has its first ``enum`` value moved to the next option for that share of request
            bodies, drawn by a stable hash of the body (so a prompt's wording changes which
            rows a model gets wrong, and a replay or a re-run repeats its answers). Empty by
            default: every model answers alike.
        judge_position_bias: The share (0–1) of pairwise judge prompts (``Question:``,
            ``Answer 1:``, ``Answer 2:``) on which the emulated judge prefers the first
            answer whatever the answers hold, drawn by a stable hash of the body; 0 by
            default (the judge prefers the answer naming the question's sentiment).
    """

    api_key: str = DEFAULT_API_KEY
    vocabulary: Vocabulary = "pending"
    background_create_status: int = 202
    latency: Latency | None = None
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    cancel_supported: bool = False
    batch_api: bool = False
    batch_max_requests: int = 100_000
    batch_max_bytes: int = 256_000_000
    batch_refusal: str | None = None
    batch_failure_detail: str = "result"
    batch_drop_items: int = 0
    unknown_model_status: int = 400
    latency_by_window: Mapping[str, Latency] = field(default_factory=lambda: REALISTIC_LATENCY)
    idempotency: bool = True
    truncation: Truncation = "incomplete"
    reasoning_models: tuple[str, ...] = REASONING_MODELS
    reasoning_default: str = "none"
    cache_block: int = 16
    strict_schemas: bool = False
    image_models: tuple[str, ...] = IMAGE_MODELS
    model_errors: Mapping[str, float] = field(default_factory=dict)
    judge_position_bias: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("EmulatorConfig.api_key must be a non-empty string")
        if self.vocabulary not in STATUS_WORDS:
            raise ValueError(
                f"EmulatorConfig.vocabulary must be 'pending' or 'queued', got {self.vocabulary!r}"
            )
        if self.background_create_status not in (200, 202):
            raise ValueError(
                "EmulatorConfig.background_create_status must be 200 or 202, "
                f"got {self.background_create_status!r}"
            )
        if self.latency is not None and not isinstance(self.latency, Latency):
            raise TypeError("EmulatorConfig.latency must be a Latency or None")
        laws = self.latency_by_window
        if not isinstance(laws, Mapping) or not all(
            window in WINDOWS and isinstance(law, Latency) for window, law in laws.items()
        ):
            raise ValueError(
                "EmulatorConfig.latency_by_window must map windows "
                f"({', '.join(WINDOWS)}) to a Latency each, got {laws!r}"
            )
        object.__setattr__(
            self, "latency_by_window", MappingProxyType({**REALISTIC_LATENCY, **laws})
        )
        if not isinstance(self.idempotency, bool):
            raise TypeError(f"EmulatorConfig.idempotency must be a bool, got {self.idempotency!r}")
        if not isinstance(self.faults, Faults):
            raise TypeError("EmulatorConfig.faults must be a Faults")
        if not isinstance(self.seed, int):
            raise TypeError(f"EmulatorConfig.seed must be an int, got {self.seed!r}")
        models = tuple(self.models)
        if not models or not all(isinstance(m, str) and m for m in models):
            raise ValueError("EmulatorConfig.models must be a non-empty sequence of model ids")
        object.__setattr__(self, "models", models)
        for name in ("batch_max_requests", "batch_max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EmulatorConfig.{name} must be a positive int, got {value!r}")
        if self.truncation not in ("incomplete", "completed"):
            raise ValueError(
                "EmulatorConfig.truncation must be 'incomplete' or 'completed', "
                f"got {self.truncation!r}"
            )

        given: object = self.reasoning_models  # a str would pass as a tuple of letters
        if isinstance(given, str):
            raise ValueError("EmulatorConfig.reasoning_models must be a sequence of model ids")
        reasoning = tuple(self.reasoning_models)
        if not all(isinstance(m, str) and m for m in reasoning):
            raise ValueError("EmulatorConfig.reasoning_models must be a sequence of model ids")
        object.__setattr__(self, "reasoning_models", reasoning)
        if self.reasoning_default not in EFFORTS:
            raise ValueError(
                f"EmulatorConfig.reasoning_default must be one of {', '.join(EFFORTS)}, "
                f"got {self.reasoning_default!r}"
            )
        block = self.cache_block
        if not isinstance(block, int) or isinstance(block, bool) or block < 0:
            raise ValueError(f"EmulatorConfig.cache_block must be an int ≥ 0, got {block!r}")

        if not isinstance(self.strict_schemas, bool):
            raise TypeError("EmulatorConfig.strict_schemas must be True or False")
        images = tuple(self.image_models)
        if not all(isinstance(m, str) and m for m in images):
            raise ValueError("EmulatorConfig.image_models must be a sequence of model ids")
        object.__setattr__(self, "image_models", images)
        errors = self.model_errors
        if not isinstance(errors, Mapping) or not all(
            isinstance(m, str) and isinstance(r, int | float) and not isinstance(r, bool)
            and 0.0 <= r <= 1.0
            for m, r in errors.items()
        ):  # fmt: skip
            raise ValueError("EmulatorConfig.model_errors must map model ids to shares 0–1")
        object.__setattr__(
            self, "model_errors", MappingProxyType({m: float(r) for m, r in errors.items()})
        )
        lean = self.judge_position_bias
        if isinstance(lean, bool) or not isinstance(lean, int | float) or not 0 <= lean <= 1:
            raise ValueError("EmulatorConfig.judge_position_bias must be a share 0–1")

        if self.batch_refusal is not None and self.batch_refusal not in BATCH_REFUSALS:
            raise ValueError(
                f"EmulatorConfig.batch_refusal must be one of {', '.join(BATCH_REFUSALS)}, "
                f"or None; got {self.batch_refusal!r}"
            )
        if self.batch_failure_detail not in BATCH_FAILURE_DETAILS:
            raise ValueError(
                "EmulatorConfig.batch_failure_detail must be one of "
                f"{', '.join(BATCH_FAILURE_DETAILS)}; got {self.batch_failure_detail!r}"
            )
        drop = self.batch_drop_items
        if not isinstance(drop, int) or isinstance(drop, bool) or drop < 0:
            raise ValueError(f"EmulatorConfig.batch_drop_items must be an int ≥ 0, got {drop!r}")
        if self.unknown_model_status not in (400, 404):
            raise ValueError(
                "EmulatorConfig.unknown_model_status must be 400 or 404, "
                f"got {self.unknown_model_status!r}"
            )

    def latency_for(self, window: str) -> Latency:
        """The law a response on a completion window takes its latency from.

        Args:
            window: ``"asap"`` or ``"standard"``; anything else is taken as ``standard``.

        Returns:
            ``latency`` when set, else that window's law from ``latency_by_window``.
        """
        if self.latency is not None:
            return self.latency
        return self.latency_by_window.get(window, self.latency_by_window["standard"])
