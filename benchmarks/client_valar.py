"""The valar_pandas side: one ``df.valar.run`` call over the scenario's rows, public API only.

Run as a child of the harness: ``python -m benchmarks.client_valar --base-url ... --rows N
--result FILE``. The frame is built before the clock starts (it is the user's input); the
measured phase is the ``run`` call itself: rendering, planning, every HTTP exchange and the
merge into the result frame. The call uses the library's defaults (``--max-rps`` aside, when
the harness is given one); the harness points
``VALAR_PANDAS_STORE`` at an empty file in a fresh temporary directory, so a library version
with a run store keeps its default behaviour (writing every request down) but can never answer
from an earlier run, nor touch the user's own store.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

import valar_pandas  # noqa: F401  (registers the df.valar accessor)
from valar_pandas import ValarClient

from .child import Stopwatch, parse_child_args, write_result
from .scenarios import MAX_OUTPUT_TOKENS, MODEL, PROMPT_TEMPLATE, phrase

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run valar_pandas as a child process and write its result file.

    Args:
        argv: Arguments without the program name.

    Returns:
        The exit code.
    """
    args = parse_child_args("python -m benchmarks.client_valar", argv)
    frame = pd.DataFrame({"i": range(args.rows), "phrase": [phrase(i) for i in range(args.rows)]})
    budget: dict[str, float | None] = {}
    if args.max_rps is not None:
        budget["max_rps"] = None if args.max_rps == "none" else float(args.max_rps)
    # The client's budget is the ceiling of the run's: a budget given here is given to both.
    client = ValarClient(api_key=args.api_key, base_url=args.base_url, **budget)
    with Stopwatch() as watch:
        out = frame.valar.run(
            PROMPT_TEMPLATE,
            model=MODEL,
            max_output_tokens=MAX_OUTPUT_TOKENS,
            completion_window=args.window,
            progress=None,
            client=client,
            **budget,
        )
    outputs = [None if pd.isna(text) else str(text) for text in out["output"]]
    totals = dict(out.attrs["valar"])
    write_result(
        args.result,
        {
            "client": "valar_pandas",
            "wall_s": watch.wall,
            "cpu_s": watch.cpu,
            "ended": watch.ended,
            "rss_before_mb": watch.rss_before,
            "http_requests": int(totals["http_requests"]),
            "errors": int(out["output_error"].notna().sum()),
            "submit_s": None,
            "extra": {
                "attrs": {
                    key: value.item() if hasattr(value, "item") else value
                    for key, value in totals.items()
                },
                "first_errors": out["output_error"].dropna().head(5).tolist(),
            },
            "outputs": outputs,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
