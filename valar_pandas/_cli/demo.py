"""``valar-pandas demo``: the whole product on the built-in emulator, in one command.

Starts the emulator on loopback (with a light mix of rate limits, 503s and connections
dropped after the server created the response), classifies the sentiment of ~2,000
synthetic product reviews, writes the result to parquet and prints what it cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from .._core.config import ValarClient
from ..emulator import Emulator, EmulatorConfig, Faults, Latency

__all__ = ["DEMO_MODEL", "DEMO_TEMPLATE", "DemoSettings", "run_demo"]

DEMO_MODEL = "zai-org/GLM-5.1-FP8"
DEMO_TEMPLATE = (
    "Classify the sentiment of this product review as positive, negative, or neutral. "
    "Reply with one word.\n\nReview: {review}"
)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs.

    Attributes:
        rows: How many synthetic reviews to score.
        output: Where to write the result.
        latency: Median seconds the emulated model takes per response.
        faults: Inject rate limits, 503s and dropped connections.
        progress: Show a progress bar.
        concurrency: Most requests in flight.
    """

    rows: int = 2000
    output: Path = Path("demo-output.parquet")
    latency: float = 1.5
    faults: bool = True
    progress: bool = True
    concurrency: int = 200


def run_demo(settings: DemoSettings, out: TextIO) -> pd.DataFrame:
    """Run the demo and print its summary to ``out``.

    Args:
        settings: What to run.
        out: Where the summary goes.

    Returns:
        The scored frame (also written to ``settings.output``).
    """
    import valar_pandas  # noqa: F401  (registers df.valar)

    from .reviews import make_reviews

    faults = (
        Faults(rate_429=0.02, retry_after=1.0, rate_503=0.01, drop_after_create=0.01)
        if settings.faults
        else Faults()
    )
    config = EmulatorConfig(
        latency=Latency(median=settings.latency, sigma=0.5, minimum=0.05), faults=faults
    )
    emulator = Emulator(config)
    reviews = make_reviews(settings.rows)
    with emulator.run_in_thread(host="127.0.0.1", port=0) as base_url:
        print(
            f"valar-pandas demo: running against the LOCAL Valar emulator at {base_url}\n"
            f"(no real API is called and nothing is billed). Scoring {len(reviews):,} "
            f"synthetic product reviews with {DEMO_MODEL}.",
            file=out,
        )
        started = time.perf_counter()
        scored: pd.DataFrame = reviews.valar.run(
            DEMO_TEMPLATE,
            model=DEMO_MODEL,
            into="sentiment",
            max_output_tokens=16,
            concurrency=settings.concurrency,
            progress="tqdm" if settings.progress else None,
            store=False,  # the emulator's answers have no place in the user's run store
            client=ValarClient(api_key=config.api_key, base_url=base_url),
        )
        wall = time.perf_counter() - started
    scored.to_parquet(settings.output)
    _summary(scored, emulator, wall, settings.output, out)
    return scored


def _summary(
    scored: pd.DataFrame, emulator: Emulator, wall: float, path: Path, out: TextIO
) -> None:
    info = scored.attrs["valar"]
    rows = len(scored)
    errors = int(scored["sentiment_error"].notna().sum())
    labels = scored["sentiment"].str.strip().str.lower().value_counts()
    shown = " · ".join(f"{label} {count:,}" for label, count in labels.items())
    ok = scored["sentiment_error"].isna()
    agree = (scored.loc[ok, "sentiment"].str.strip().str.lower() == scored.loc[ok, "label"]).mean()
    faults = emulator.stats.faults
    injected = ", ".join(f"{n} × {kind}" for kind, n in sorted(faults.items())) or "none"
    per_row = info["http_requests"] / rows if rows else 0.0
    print(
        f"\nRows: {rows:,}   answered: {rows - errors:,}   errors: {errors:,}\n"
        f"Sentiment: {shown}\n"
        f"Agreement with the generator's intended label: {agree:.1%}\n"
        f"Faults injected by the emulator: {injected}\n"
        f"Distinct requests: {info['requests']:,}   inferences billed by the emulator: "
        f"{emulator.stats.inferences:,} (each request paid for once)\n"
        f"HTTP requests: {info['http_requests']:,} ({per_row:.2f} per row)   "
        f"tokens: {info['input_tokens'] + info['output_tokens']:,}\n"
        f"Wall time: {wall:.1f} s\n"
        f"Wrote {path}",
        file=out,
    )
