"""Run one scenario: each client in turn, each against a fresh emulator process.

For every side the harness starts the emulator (same latency law, faults and seed), runs the
client process to completion, stops the emulator, and scores the answers against the
emulator's deterministic ones. Clients never run concurrently, so each has the machine's
second core to itself while the emulator uses the first.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from valar_pandas.emulator import Emulator, EmulatorConfig, Latency, answer_text

from .processes import EmulatorSettings, run_client, serve_emulator
from .scenarios import MODEL, Faults, Scenario, prompt

__all__ = ["HarnessOptions", "ScenarioResult", "SideResult", "run_scenario"]

BASELINE = "baseline"
VALAR = "valar_pandas"
VALAR_NO_FAULTS = "valar_pandas, no faults"


@dataclass(frozen=True)
class HarnessOptions:
    """How to run scenarios.

    Attributes:
        seed: Emulator seed (latencies and faults), the same for every side.
        skip_baseline: Do not run the baseline.
        child_timeout: Seconds before a client process is killed; None picks one from the
            scenario's size.
        valar_max_rps: valar_pandas's ``max_rps`` (``"none"`` or a number); None keeps the
            library's default.
    """

    seed: int = 0
    skip_baseline: bool = False
    child_timeout: float | None = None
    valar_max_rps: str | None = None


@dataclass
class SideResult:
    """One client's measurements on one scenario.

    Attributes:
        label: ``baseline``, ``valar_pandas`` or ``valar_pandas, no faults``.
        rows: Rows sent.
        wall_s: Wall time of the run phase (measured in the client).
        cpu_s: CPU seconds of the run phase, all threads (measured in the client).
        process_cpu_s: CPU seconds of the whole client process, startup and imports included
            (``wait4``).
        peak_rss_mb: Peak RSS of the client process (``wait4``).
        rss_before_mb: RSS when the run phase began (interpreter, imports, input frame).
        http_requests: HTTP requests the client sent, retries and polls included.
        errors: Rows without an answer.
        correct: Rows whose answer equals the emulator's deterministic answer.
        server_cpu_s: The emulator process's CPU seconds over the whole side.
        submit_s: Baseline only: duration of its submission pass.
        extra: Client-specific counters.
        after_last_ready_s: Seconds from the last answer being ready on the emulator to
            the run phase's end (None when the emulator could not tell).
    """

    label: str
    rows: int
    wall_s: float
    cpu_s: float
    process_cpu_s: float
    peak_rss_mb: float
    rss_before_mb: float
    http_requests: int
    errors: int
    correct: int
    server_cpu_s: float
    submit_s: float | None
    extra: dict[str, Any]
    outputs: list[str | None] = field(repr=False)
    after_last_ready_s: float | None = None

    @property
    def cpu_ms_per_request(self) -> float:
        """Run-phase CPU milliseconds per HTTP request."""
        return 1000 * self.cpu_s / max(self.http_requests, 1)

    @property
    def requests_per_row(self) -> float:
        """HTTP requests per row."""
        return self.http_requests / max(self.rows, 1)

    def as_json(self) -> dict[str, Any]:
        """Everything but the per-row outputs, plus the derived figures."""
        data = {key: value for key, value in vars(self).items() if key != "outputs"}
        data["cpu_ms_per_request"] = self.cpu_ms_per_request
        data["requests_per_row"] = self.requests_per_row
        return data


@dataclass
class ScenarioResult:
    """Every side of one scenario, and what compares them.

    Attributes:
        scenario: The scenario as run (after ``--quick`` and overrides).
        sides: The sides in the order they ran.
        baseline_skipped: Why the baseline did not run, if it did not.
        max_latency_s: The slowest response latency the emulator draws for this many rows.
        ideal_s: Estimated best possible wall time (see :func:`ideal_wall`).
        differing_from_fault_free: Rows whose answer under faults differs from the answer of
            the fault-free run (None when there is no fault-free run).
    """

    scenario: Scenario
    sides: list[SideResult]
    baseline_skipped: str | None
    max_latency_s: float
    ideal_s: float
    differing_from_fault_free: int | None

    def side(self, label: str) -> SideResult | None:
        """The side with this label, if it ran."""
        return next((side for side in self.sides if side.label == label), None)

    def ratios(self) -> dict[str, float]:
        """valar_pandas / baseline for each comparable figure (empty without a baseline)."""
        base, ours = self.side(BASELINE), self.side(VALAR)
        if base is None or ours is None:
            return {}
        pairs = {
            "wall_s": (ours.wall_s, base.wall_s),
            "cpu_s": (ours.cpu_s, base.cpu_s),
            "cpu_ms_per_request": (ours.cpu_ms_per_request, base.cpu_ms_per_request),
            "requests_per_row": (ours.requests_per_row, base.requests_per_row),
            "peak_rss_mb": (ours.peak_rss_mb, base.peak_rss_mb),
        }
        return {key: a / b for key, (a, b) in pairs.items() if b}

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-row outputs)."""
        scenario = vars(self.scenario).copy()
        scenario["faults"] = vars(self.scenario.faults).copy()
        return {
            "scenario": scenario,
            "baseline_skipped": self.baseline_skipped,
            "max_latency_s": self.max_latency_s,
            "ideal_s": self.ideal_s,
            "differing_from_fault_free": self.differing_from_fault_free,
            "sides": [side.as_json() for side in self.sides],
            "ratios_valar_over_baseline": self.ratios(),
        }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _default_timeout(scenario: Scenario) -> float:
    return 180.0 + 0.03 * scenario.rows + 40.0 * scenario.latency_median


def expected_answers(rows: int) -> list[str]:
    """The emulator's deterministic answer for every row's prompt.

    Args:
        rows: Number of rows.

    Returns:
        Row ``i``'s expected output text at index ``i``.
    """
    return [
        answer_text({"model": MODEL, "input": [{"role": "user", "content": prompt(i)}]})
        for i in range(rows)
    ]


def sampled_latencies(scenario: Scenario, seed: int) -> list[float]:
    """The latencies the emulator will give the first ``rows`` records it creates.

    The emulator draws one latency per record it creates, in creation order, from a
    generator seeded by ``seed``; a fresh :class:`Emulator` with the same settings makes the
    same draws through its public ``sample_latency``. Replays and faults draw none.
    """
    emulator = Emulator(
        EmulatorConfig(
            latency=Latency(
                median=scenario.latency_median,
                sigma=scenario.latency_sigma,
                minimum=scenario.latency_min,
            ),
            seed=seed,
        )
    )
    return [emulator.sample_latency() for _ in range(scenario.rows)]


def ideal_wall(latencies: list[float], submit_s: float | None) -> float:
    """Estimated wall time of a client that learns of every answer the instant it is ready.

    Records are created at the rate the baseline's submission pass achieved on this machine
    (``submit_s`` for all rows; the k-th record created at ``k * submit_s / rows``) and the
    k-th record created gets the k-th latency drawn, so the last answer is ready at
    ``max_k(k * submit_s / rows + L_k)``. Without a baseline run the submission time is
    unknown and the estimate falls back to the slowest latency alone, a strict lower bound.

    Args:
        latencies: Latencies in the order the emulator draws them.
        submit_s: The baseline's submission-pass duration, if it ran.

    Returns:
        Seconds.
    """
    if not latencies:
        return 0.0
    step = (submit_s or 0.0) / len(latencies)
    return max((k + 1) * step + latency for k, latency in enumerate(latencies))


def _run_side(
    label: str,
    module: str,
    scenario: Scenario,
    faults: Faults,
    options: HarnessOptions,
    expected: list[str],
    workdir: Path,
) -> SideResult:
    settings = EmulatorSettings(
        scenario.latency_median, scenario.latency_sigma, scenario.latency_min, faults, options.seed
    )
    timeout = options.child_timeout or _default_timeout(scenario)
    result_path = workdir / f"{label.replace(', ', '-').replace(' ', '-')}.json"
    _log(f"[{scenario.name}] {label}: {scenario.rows:,} rows ...")
    with serve_emulator(settings, workdir) as emulator:
        flags = {
            "--base-url": emulator.base_url,
            "--api-key": emulator.api_key,
            "--rows": str(scenario.rows),
            "--window": scenario.completion_window,
            "--result": str(result_path),
        }
        if module == "benchmarks.client_valar" and options.valar_max_rps is not None:
            flags["--max-rps"] = options.valar_max_rps
        argv = [sys.executable, "-m", module, *(item for pair in flags.items() for item in pair)]
        store = workdir / f"store-{result_path.stem}" / "store.sqlite3"
        store.parent.mkdir()
        usage = run_client(argv, timeout, workdir, {"VALAR_PANDAS_STORE": str(store)})
    data = json.loads(result_path.read_text(encoding="utf-8"))
    outputs: list[str | None] = data["outputs"]
    served_from_store = (data["extra"].get("attrs") or {}).get("cached") or 0
    if served_from_store:  # would make the run meaningless; the fresh store should prevent it
        data["extra"]["rows_served_from_store"] = served_from_store
    correct = sum(1 for got, want in zip(outputs, expected, strict=True) if got == want)
    side = SideResult(
        label=label,
        rows=scenario.rows,
        wall_s=data["wall_s"],
        cpu_s=data["cpu_s"],
        process_cpu_s=usage.cpu_s,
        peak_rss_mb=usage.maxrss_mb,
        rss_before_mb=data["rss_before_mb"],
        http_requests=data["http_requests"],
        errors=data["errors"],
        correct=correct,
        server_cpu_s=emulator.cpu_s,
        submit_s=data["submit_s"],
        extra=data["extra"],
        outputs=outputs,
        after_last_ready_s=(
            data["ended"] - emulator.last_ready
            if emulator.last_ready is not None and "ended" in data
            else None
        ),
    )
    _log(
        f"[{scenario.name}] {label}: wall {side.wall_s:.1f} s, CPU {side.cpu_s:.2f} s, "
        f"{side.requests_per_row:.2f} req/row, peak RSS {side.peak_rss_mb:.0f} MB, "
        f"{correct:,}/{scenario.rows:,} correct"
        + (
            f", returned {side.after_last_ready_s:.1f} s after the last answer was ready"
            if side.after_last_ready_s is not None
            else ""
        )
    )
    return side


def run_scenario(scenario: Scenario, options: HarnessOptions) -> ScenarioResult:
    """Run every side of a scenario, one after another.

    Args:
        scenario: The workload.
        options: Seed, timeouts, whether to skip the baseline.

    Returns:
        The measurements and comparisons.

    Raises:
        ChildFailed: A client or the emulator failed or timed out.
    """
    expected = expected_answers(scenario.rows)
    sides: list[SideResult] = []
    with tempfile.TemporaryDirectory(prefix=f"valar-bench-{scenario.name}-") as tmp:
        workdir = Path(tmp)
        if not options.skip_baseline:
            sides.append(
                _run_side(
                    BASELINE,
                    "benchmarks.baseline",
                    scenario,
                    scenario.faults,
                    options,
                    expected,
                    workdir,
                )
            )
        sides.append(
            _run_side(
                VALAR,
                "benchmarks.client_valar",
                scenario,
                scenario.faults,
                options,
                expected,
                workdir,
            )
        )
        differing: int | None = None
        if scenario.fault_free_reference and scenario.faults.any:
            reference = _run_side(
                VALAR_NO_FAULTS,
                "benchmarks.client_valar",
                scenario,
                Faults(),
                options,
                expected,
                workdir,
            )
            sides.append(reference)
            faulted = sides[-2].outputs
            differing = sum(1 for a, b in zip(faulted, reference.outputs, strict=True) if a != b)
    baseline = next((side for side in sides if side.label == BASELINE), None)
    latencies = sampled_latencies(scenario, options.seed)
    return ScenarioResult(
        scenario=scenario,
        sides=sides,
        baseline_skipped="skipped with --skip-baseline" if options.skip_baseline else None,
        max_latency_s=max(latencies, default=0.0),
        ideal_s=ideal_wall(latencies, baseline.submit_s if baseline else None),
        differing_from_fault_free=differing,
    )
