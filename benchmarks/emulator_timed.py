"""``python -m benchmarks.emulator_timed``: the emulator, noting when its last answer is ready.

The same command line as ``python -m valar_pandas.emulator``. Every record the emulator
creates reaches its final status at its creation instant plus its drawn latency, on the
emulator's clock (``time.monotonic``, the system-wide monotonic clock on Linux, which the
client processes read too). On a clean stop this writes the latest such instant to the file
named by ``VALAR_BENCH_READY_FILE``, so the harness can tell how long after the last answer
was ready each client returned.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from valar_pandas.emulator import Emulator, main

from .processes import READY_FILE_ENV

__all__ = ["serve"]


def serve(argv: list[str] | None = None) -> int:
    """Run the emulator until stopped, then write when its last answer was ready.

    Args:
        argv: Emulator arguments; default ``sys.argv[1:]``.

    Returns:
        The emulator's exit code.
    """
    latest: list[float] = []
    create = Emulator.create_record

    def create_record(self: Emulator, *args: Any, **kwargs: Any) -> Any:
        record = create(self, *args, **kwargs)
        ready = record.t0 + record.latency
        if not latest or ready > latest[0]:
            latest[:] = [ready]
        return record

    Emulator.create_record = create_record  # type: ignore[method-assign]
    code = main(sys.argv[1:] if argv is None else argv, prog="python -m benchmarks.emulator_timed")
    target = os.environ.get(READY_FILE_ENV)
    if target and latest:
        Path(target).write_text(repr(latest[0]), encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(serve())
