"""How a sweep names its prompt × model pairs, shared by its tables and its pictures."""

from __future__ import annotations

import pandas as pd

__all__ = ["Key", "keys_of", "name_of"]

Key = tuple[str, str]


def name_of(key: Key) -> str:
    """How a prompt × model pair is named in tables and pictures: ``prompt · model``."""
    return f"{key[0]} · {key[1]}"


def keys_of(board: pd.DataFrame) -> list[Key]:
    """The pairs of a leaderboard, in its order."""
    return [(str(p), str(m)) for p, m in zip(board["prompt"], board["model"], strict=True)]
