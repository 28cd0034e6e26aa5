"""A local emulator of the Valar Responses API, for tests, demos and offline work.

It is an independent second implementation of the contract in ``valar-api.md``: background
responses polled by id (with either status vocabulary), realtime responses, Idempotency-Key
replays, and scripted faults (429/500/502/503, dropped connections, failed responses). It
imports nothing from the rest of ``valar_pandas``.

Example:
    >>> from valar_pandas.emulator import Emulator, EmulatorConfig, Latency
    >>> fast = EmulatorConfig(latency=Latency.fast())  # 0.2 s; the default takes the windows' time
    >>> with Emulator(fast).run_in_thread() as base_url:  # doctest: +SKIP
    ...     ...  # point a client at base_url with api key "sk-emulator"
"""

from __future__ import annotations

from ._answers import answer_text
from ._cli import main
from ._config import REALISTIC_LATENCY, EmulatorConfig, Faults, Latency
from ._emulator import Emulator
from ._state import Stats

__all__ = [
    "REALISTIC_LATENCY",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "Latency",
    "Stats",
    "answer_text",
    "main",
]
