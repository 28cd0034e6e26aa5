"""Frames and expectations shared by the end-to-end tests."""

from __future__ import annotations

import pandas as pd

TEMPLATE = "item {i} {word}"
MODEL = "zai-org/GLM-5.1-FP8"
FAST = {"model": MODEL, "completion_window": "asap", "progress": None}


def words(n: int) -> pd.DataFrame:
    """A frame whose prompts the emulator echoes back: ``Echo: item <i> <word>``."""
    vocabulary = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu"]
    return pd.DataFrame({"i": range(n), "word": [vocabulary[i % 8] for i in range(n)]})


def echo(frame: pd.DataFrame) -> list[str]:
    """What the emulator answers for TEMPLATE on each row of ``frame``."""
    return [f"Echo: item {i} {w}" for i, w in zip(frame["i"], frame["word"], strict=True)]
