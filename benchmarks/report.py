"""The report: a markdown table with notes, and a JSON document with every figure."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .harness import BASELINE, VALAR, ScenarioResult, SideResult
from .processes import REPO_ROOT

__all__ = ["git_commit", "machine", "markdown", "to_json"]

_HEADER = (
    "| scenario | client | rows | wall s | wall ÷ ideal | CPU s | CPU ms/req | HTTP req/row "
    "| peak RSS MB | rows correct | rows failed |"
)
_RULE = "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def git_commit() -> str:
    """The checked-out commit, marked when tracked files have local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" + local changes" if dirty else "")


def machine(git_at_start: str) -> dict[str, Any]:
    """Date, machine and versions, for the report's header.

    Args:
        git_at_start: :func:`git_commit` when the run began (the tree may change under a
            long run when others are working in it).
    """
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "processor": platform.processor() or "?",
        "python": platform.python_version(),
        "valar_pandas": _version("valar-pandas"),
        "git": git_commit(),
        "git_at_start": git_at_start,
        "aiohttp": _version("aiohttp"),
        "httptools": _version("httptools"),
        "pandas": _version("pandas"),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _git_span(meta: dict[str, Any]) -> str:
    start, end = meta["git_at_start"], meta["git"]
    return end if start == end else f"{start} at the start, {end} at the end"


def _side_row(result: ScenarioResult, side: SideResult) -> str:
    ideal = result.ideal_s
    return (
        f"| {result.scenario.name} | {side.label} | {side.rows:,} | {side.wall_s:.1f} "
        f"| {side.wall_s / ideal:.2f} | {side.cpu_s:.2f} | {side.cpu_ms_per_request:.3f} "
        f"| {side.requests_per_row:.2f} | {side.peak_rss_mb:.0f} "
        f"| {side.correct:,}/{side.rows:,} | {side.errors:,} |"
        if ideal > 0
        else f"| {result.scenario.name} | {side.label} | {side.rows:,} | {side.wall_s:.1f} | – "
        f"| {side.cpu_s:.2f} | {side.cpu_ms_per_request:.3f} | {side.requests_per_row:.2f} "
        f"| {side.peak_rss_mb:.0f} | {side.correct:,}/{side.rows:,} | {side.errors:,} |"
    )


def _ratio_row(result: ScenarioResult) -> str:
    ratios = result.ratios()
    if not ratios:
        return f"| {result.scenario.name} | baseline: {result.baseline_skipped} | | | | | | | | | |"

    def cell(key: str) -> str:
        return f"**{ratios[key]:.2f}×**" if key in ratios else "–"

    return (
        f"| {result.scenario.name} | **valar_pandas ÷ baseline** | | {cell('wall_s')} | "
        f"| {cell('cpu_s')} | {cell('cpu_ms_per_request')} | {cell('requests_per_row')} "
        f"| {cell('peak_rss_mb')} | | |"
    )


def _notes(result: ScenarioResult) -> list[str]:
    scenario = result.scenario
    lines = [f"- **{scenario.name}** ({scenario.purpose}): {scenario.describe()}."]
    if result.side(BASELINE) is not None:
        basis = "records created at the rate of the baseline's submission pass"
    else:
        basis = "no baseline ran, so this is the slowest latency alone, a strict lower bound"
    lines.append(
        f"  Ideal wall {result.ideal_s:.1f} s (slowest drawn latency "
        f"{result.max_latency_s:.1f} s; {basis})."
    )
    for side in result.sides:
        detail = ", ".join(
            [
                f"process CPU {side.process_cpu_s:.2f} s",
                f"RSS at start of run {side.rss_before_mb:.0f} MB",
                f"emulator CPU {side.server_cpu_s:.1f} s",
            ]
            + (
                [f"last answer ready → run returned {side.after_last_ready_s:.1f} s"]
                if side.after_last_ready_s is not None
                else []
            )
            + ([f"submission pass {side.submit_s:.1f} s"] if side.submit_s is not None else [])
            + [
                f"{key.replace('_', ' ')} {value:,}"
                for key, value in side.extra.items()
                if isinstance(value, int) and value
            ]
        )
        lines.append(f"  {side.label}: {detail}.")
        first_errors = side.extra.get("first_errors")
        if first_errors:
            lines.append(f"  {side.label} first errors: {'; '.join(first_errors)}")
    if result.differing_from_fault_free is not None:
        lines.append(
            f"  Rows whose valar_pandas answer under faults differs from the fault-free run: "
            f"{result.differing_from_fault_free:,}."
        )
    return lines


def markdown(results: list[ScenarioResult], meta: dict[str, Any], command: str) -> str:
    """Render the results as markdown: header, one table, notes.

    Args:
        results: Every scenario run.
        meta: :func:`machine` output.
        command: The command line that produced the results.

    Returns:
        The markdown text.
    """
    load = meta["load_average"]
    lines = [
        f"valar_pandas benchmarks, {meta['date']}",
        "",
        f"Machine: {meta['platform']}, {meta['cpus']} CPUs, Python {meta['python']}, "
        f"valar_pandas {meta['valar_pandas']} (git {_git_span(meta)}), aiohttp {meta['aiohttp']}, "
        f"httptools {meta.get('httptools', '?')}, pandas {meta['pandas']}"
        + (f"; load average at the end {load[0]:.2f}" if load else "")
        + ".",
        f"Command: `{command}`",
        "",
        _HEADER,
        _RULE,
    ]
    for result in results:
        lines.extend(_side_row(result, side) for side in result.sides)
        if result.side(VALAR) is not None:
            lines.append(_ratio_row(result))
    lines += ["", "Notes:", ""]
    for result in results:
        lines.extend(_notes(result))
    return "\n".join(lines) + "\n"


def to_json(results: list[ScenarioResult], meta: dict[str, Any], command: str) -> dict[str, Any]:
    """Everything measured, as one JSON-ready document.

    Args:
        results: Every scenario run.
        meta: :func:`machine` output.
        command: The command line that produced the results.

    Returns:
        The document.
    """
    return {
        "meta": meta,
        "command": command,
        "scenarios": [result.as_json() for result in results],
    }
