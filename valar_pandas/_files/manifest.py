"""Which parts of a directory output are ours: the manifests written into the directory.

``_manifest.json`` is written last and lists a complete result's parts and rows;
``_manifest.partial.json``, kept while a run writes, lists every part the run may have left.
A directory holding neither is not ours, and nothing in it is touched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .atomic import WRITER, create_temp, discard, settle

__all__ = ["MANIFEST", "PARTIAL", "contents", "missing_folders", "own_parts", "write_json"]

MANIFEST = "_manifest.json"
"""Written last into a directory output: its parts, their rows and the total."""
PARTIAL = "_manifest.partial.json"
"""Kept in a directory output while a run writes it: every part name it may have written."""
_PART = re.compile(r"part-\d{5}\.parquet")


def missing_folders(path: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` would create for ``path``, deepest first."""
    made: list[Path] = []
    while not path.exists() and path != path.parent:
        made.append(path)
        path = path.parent
    return made


def contents(parts: list[Any], *, complete: bool) -> dict[str, Any]:
    """A manifest of ours listing ``parts`` (names, or dicts with ``file`` and ``rows``)."""
    return {"writer": WRITER, "complete": complete, "parts": parts}


def own_parts(folder: Path) -> set[str] | None:
    """The part names our records in ``folder`` list; None when it holds no record of ours.

    A record file that is not ours (another tool's ``_manifest.json``) makes the whole
    folder not ours.
    """
    own: set[str] = set()
    found = False
    for name in (MANIFEST, PARTIAL):
        try:
            record = json.loads((folder / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        parts = _listed(record)
        if parts is None:
            return None
        own |= parts
        found = True
    return own if found else None


def _listed(record: Any) -> set[str] | None:
    """The parts a manifest of ours lists, or None when it is not one of ours."""
    if not isinstance(record, dict) or not isinstance(record.get("complete"), bool):
        return None
    parts = record.get("parts")
    if not isinstance(parts, list):
        return None
    names: set[str] = set()
    for part in parts:
        name = part.get("file") if isinstance(part, dict) else part
        if not isinstance(name, str) or not _PART.fullmatch(name):
            return None
        names.add(name)
    return names


def write_json(path: Path, value: Any, mode: int) -> None:
    """Write ``value`` as JSON to ``path`` whole (a temporary file renamed), with ``mode``."""
    file, tmp = create_temp(path)
    try:
        file.write((json.dumps(value, indent=1) + "\n").encode("utf-8"))
        settle(file, tmp, path, mode)
    except BaseException:
        discard(file, tmp)
        raise
