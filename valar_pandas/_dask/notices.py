"""The warnings a partition's call raises, kept per thread for the computation's summary.

``warnings.catch_warnings`` swaps process-wide state (the filters and the function that
shows a warning) and puts back on exit what it found on entry. Two partitions running on one
worker's threads then put back each other's state, and the later to leave leaves the
earlier one's recorder and filters in place for good: a third partition's warnings would go
to a list nobody reads. So a partition never swaps that state: one hook, installed once and
again if something else replaced it, sends a warning raised on a thread that is recording to
that thread's list (:func:`recording`), and any other to where warnings went before. While
any thread records, the carried warnings are shown ``always`` (one filter per kind, put in
front by the first recorder and taken out by the last), so a filter that turns them into
errors, or shows them once per process, does not fail or hide a partition's notice; the
summary says them on the caller's side, under the caller's filters.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

from .._core.errors import BatchFallbackWarning, BudgetWarning, StoreWarning

__all__ = ["CARRIED", "notices", "recording"]

CARRIED = (StoreWarning, BudgetWarning, BatchFallbackWarning)
"""The warnings a partition's totals carry to :func:`valar_pandas.dask.summary`."""

# Said once, when the computation was built, not once per partition; and a partition's
# spend past its grant is not the computation's past its budget (summary() says that).
_QUIET = re.compile(r"budget.* is not a hard cap|.* past its budget")

_local = threading.local()
_lock = threading.Lock()
_previous: Any = warnings.showwarning
_recorders = 0
_ALWAYS = [("always", None, kind, None, 0) for kind in CARRIED]


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    caught: list[warnings.WarningMessage] | None = getattr(_local, "caught", None)
    if caught is None:
        _previous(message, category, filename, lineno, file, line)
    else:
        caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))


@contextmanager
def recording() -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings this thread raises inside the block; other threads' are untouched.

    Other threads' warnings go where they went before; the carried kinds are shown
    ``always`` while any thread records (see the module).
    """
    global _previous, _recorders
    with _lock:
        if warnings.showwarning is not _show:
            _previous = warnings.showwarning
            warnings.showwarning = _show
        if _recorders == 0:
            _filters()[:0] = _ALWAYS
            _mutated()
        _recorders += 1
    caught: list[warnings.WarningMessage] = []
    outer = getattr(_local, "caught", None)
    _local.caught = caught
    try:
        yield caught
    finally:
        _local.caught = outer
        with _lock:
            _recorders -= 1
            if _recorders == 0:
                filters = _filters()
                for entry in _ALWAYS:
                    if entry in filters:
                        filters.remove(entry)
                _mutated()


def _filters() -> list[Any]:
    """The process's filter list itself (typed a sequence, but a list ``filterwarnings`` edits)."""
    return cast(list[Any], warnings.filters)


def _mutated() -> None:
    """Tell the warnings machinery its filters changed (what ``filterwarnings`` does)."""
    changed = getattr(warnings, "_filters_mutated", None)
    if changed is not None:
        changed()


def notices(caught: list[warnings.WarningMessage]) -> list[tuple[str, str]]:
    """The carried warnings as (class name, message); any other is issued again here."""
    said: list[tuple[str, str]] = []
    for seen in caught:
        if issubclass(seen.category, CARRIED):
            if not (issubclass(seen.category, BudgetWarning) and _QUIET.match(str(seen.message))):
                said.append((seen.category.__name__, str(seen.message)))
        else:
            warnings.warn_explicit(seen.message, seen.category, seen.filename, seen.lineno)
    return said
