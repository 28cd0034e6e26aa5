"""The workloads: rows, prompts, emulator latency and faults, and their ``--quick`` forms.

This module is imported by both client processes, so it imports nothing heavy (no pandas,
no valar_pandas): the baseline child must not pay for libraries it does not use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = [
    "MAX_OUTPUT_TOKENS",
    "MODEL",
    "PROMPT_TEMPLATE",
    "SCENARIOS",
    "Faults",
    "Scenario",
    "phrase",
    "prompt",
]

MODEL = "zai-org/GLM-5.1-FP8"
MAX_OUTPUT_TOKENS = 16

# One template for both clients: the baseline fills it with ``str.format``, valar_pandas
# renders it against the ``i`` and ``phrase`` columns. The trailing phrase makes the
# emulator's deterministic answers differ between rows (positive, negative, neutral), so a
# row whose answer landed on the wrong row is caught by the correctness check.
PROMPT_TEMPLATE = (
    "Classify the sentiment of this review as positive, negative, or neutral. "
    "Reply with one word.\n\nReview {i}: Sample review body number {i}. {phrase}"
)
_PHRASES = (
    "Absolutely love it, works perfectly.",
    "Battery died after two days, returned it.",
    "Does the job. Nothing special.",
    "Terrible support, never again.",
    "Great value for the price.",
    "Arrived on time.",
    "Stopped working after a week.",
)


def phrase(i: int) -> str:
    """The review phrase of row ``i``.

    Args:
        i: Row number.

    Returns:
        One of a few fixed phrases, cycling with the row number.
    """
    return _PHRASES[i % len(_PHRASES)]


def prompt(i: int) -> str:
    """The full user prompt of row ``i``, exactly as both clients send it.

    Args:
        i: Row number.

    Returns:
        The rendered prompt.
    """
    return PROMPT_TEMPLATE.format(i=i, phrase=phrase(i))


@dataclass(frozen=True)
class Faults:
    """Transient faults the emulator injects (probabilities per request).

    Attributes:
        rate_429: 429 with ``Retry-After``.
        retry_after: Seconds sent in ``Retry-After`` on 429 and 503.
        rate_500: 500.
        rate_503: 503 with ``Retry-After``.
        drop_after_create: A create's connection closed after the record was made.
    """

    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    drop_after_create: float = 0.0

    @property
    def any(self) -> bool:
        """Whether any fault is injected at all."""
        return any((self.rate_429, self.rate_500, self.rate_503, self.drop_after_create))

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``"3% 429, 3% 500"``."""
        parts = [
            f"{100 * rate:g}% {label}"
            for label, rate in (
                ("429", self.rate_429),
                ("500", self.rate_500),
                ("503", self.rate_503),
                ("drop-after-create", self.drop_after_create),
            )
            if rate
        ]
        if self.rate_429 or self.rate_503:
            parts.append(f"Retry-After {self.retry_after:g} s")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Scenario:
    """One workload, run by both clients on the same rows and the same emulator settings.

    Attributes:
        name: Identifier used on the command line.
        rows: Number of DataFrame rows (all distinct prompts).
        latency_median: Median emulated response latency, seconds (lognormal).
        latency_sigma: Lognormal spread of the latency.
        latency_min: Floor of the latency, seconds.
        completion_window: The window valar_pandas is asked for.
        faults: Faults injected by the emulator.
        fault_free_reference: Also run valar_pandas on a fault-free emulator and check that
            every row's answer is identical.
        purpose: What the scenario is for, shown in the report.
        quick_rows_divisor: How much ``--quick`` divides the rows by.
        in_all: Whether ``--scenario all`` (the default) runs it; the long ones run only
            when named.
    """

    name: str
    rows: int
    latency_median: float
    latency_sigma: float = 0.5
    latency_min: float = 0.0
    completion_window: str = "standard"
    faults: Faults = field(default_factory=Faults)
    fault_free_reference: bool = False
    purpose: str = ""
    quick_rows_divisor: int = 10
    in_all: bool = True

    def quick(self) -> Scenario:
        """The same scenario shrunk about tenfold (rows and latency) for a smoke run."""
        return dataclasses.replace(
            self,
            rows=max(self.rows // self.quick_rows_divisor, 50),
            latency_median=self.latency_median / 10,
            latency_min=self.latency_min / 10,
        )

    def describe(self) -> str:
        """One line: rows, latency law, window and faults."""
        return (
            f"{self.rows:,} rows, lognormal latency median {self.latency_median:g} s "
            f"sigma {self.latency_sigma:g}, window {self.completion_window}, "
            f"faults: {self.faults.describe()}"
        )


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "latency10",
            rows=5_000,
            latency_median=10.0,
            purpose="wall time, client CPU and requests per row at a typical latency",
        ),
        Scenario(
            "latency40",
            rows=3_000,
            latency_median=40.0,
            purpose="requests per row when answers take long",
        ),
        Scenario(
            "memory100k",
            rows=100_000,
            latency_median=0.5,
            purpose="peak RSS and CPU per HTTP request on a large frame",
            quick_rows_divisor=20,  # keeps the whole --quick suite under two minutes
        ),
        Scenario(
            "faults",
            rows=2_000,
            latency_median=2.0,
            faults=Faults(
                rate_429=0.03,
                retry_after=1.0,
                rate_500=0.03,
                rate_503=0.01,
                drop_after_create=0.02,
            ),
            fault_free_reference=True,
            purpose="correctness and cost under 429/500/503 and dropped connections",
        ),
        Scenario(
            "standard150",
            rows=1_000,
            latency_median=150.0,
            purpose="requests per row and wall time at the standard window's latencies",
            in_all=False,  # about 13 minutes a side
        ),
        Scenario(
            "standard300",
            rows=3_000,
            latency_median=300.0,
            purpose="requests per row and wall time at five-minute latencies",
            in_all=False,  # about 35 minutes a side
        ),
    )
}
