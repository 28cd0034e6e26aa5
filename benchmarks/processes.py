"""Child processes: the emulator and the two clients, measured with ``wait4``, never orphaned.

Every child gets its own session (so a terminal's Ctrl-C reaches only the harness, which then
shuts the children down in order) and, on Linux, a parent-death signal (so a harness killed
with SIGKILL still takes its children with it). Clients are reaped with ``os.wait4``, which
returns the child's own CPU time and peak RSS, untouched by the emulator or the harness.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .scenarios import Faults

__all__ = [
    "READY_FILE_ENV",
    "REPO_ROOT",
    "ChildFailed",
    "ChildUsage",
    "EmulatorHandle",
    "EmulatorSettings",
    "run_client",
    "serve_emulator",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_FILE_ENV = "VALAR_BENCH_READY_FILE"  # where the emulator notes its last answer's time
_PR_SET_PDEATHSIG = 1
_URL = re.compile(r"(http://127\.0\.0\.1:\d+/v1)")
_KEY = re.compile(r"api key: ([^;\s]+)")
_STOP_GRACE = 10.0


class ChildFailed(RuntimeError):
    """A child process failed, timed out or printed nothing usable."""


@dataclass(frozen=True)
class ChildUsage:
    """What ``wait4`` reports about a finished child.

    Attributes:
        returncode: Exit code (negative: killed by that signal).
        wall_s: Seconds from spawn to reaping, as seen by the harness.
        cpu_s: User + system CPU seconds of the whole process.
        maxrss_mb: Peak resident set size in MB.
    """

    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float


@dataclass(frozen=True)
class EmulatorSettings:
    """The emulator's command-line settings for one run.

    Attributes:
        latency_median: Median response latency, seconds.
        latency_sigma: Lognormal spread.
        latency_min: Latency floor, seconds.
        faults: Injected faults.
        seed: Seed for latencies and faults.
    """

    latency_median: float
    latency_sigma: float
    latency_min: float
    faults: Faults
    seed: int

    def argv(self) -> list[str]:
        """The emulator CLI arguments (loopback, a free port)."""
        f = self.faults
        return [
            "--host", "127.0.0.1", "--port", "0",
            "--latency-median", repr(self.latency_median),
            "--latency-sigma", repr(self.latency_sigma),
            "--latency-min", repr(self.latency_min),
            "--rate-429", repr(f.rate_429),
            "--retry-after", repr(f.retry_after),
            "--rate-500", repr(f.rate_500),
            "--rate-503", repr(f.rate_503),
            "--drop-after-create", repr(f.drop_after_create),
            "--seed", str(self.seed),
        ]  # fmt: skip


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc_name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _spawn(
    argv: Sequence[str],
    stdout: int | None,
    stderr: int,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # our own interpreter and modules
        list(argv),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env={**os.environ, **env} if env else None,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # safe: the harness is single-threaded
    )


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float, float] | None:
    """Wait for ``proc`` up to ``timeout`` seconds with ``wait4``.

    Returns:
        ``(returncode, cpu_s, maxrss_mb)``, or None if it is still running.
    """
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            maxrss = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
            return proc.returncode, cpu, maxrss
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, float, float]:
    """Stop a child: SIGINT, then SIGKILL to its process group after a grace period."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        reaped = _reap(proc, _STOP_GRACE)
        if reaped is not None:
            return reaped
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        reaped = _reap(proc, _STOP_GRACE)
        if reaped is not None:
            return reaped
    return proc.returncode if proc.returncode is not None else -9, 0.0, 0.0


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return ""


@dataclass
class EmulatorHandle:
    """A running emulator process.

    Attributes:
        base_url: The URL it printed, ending in ``/v1``.
        api_key: The key it printed.
        cpu_s: The emulator's own CPU seconds, known once it has stopped.
        last_ready: When its last answer became ready (``time.monotonic``), known once it
            has stopped cleanly; None if it created nothing or was killed.
    """

    base_url: str
    api_key: str
    cpu_s: float = 0.0
    last_ready: float | None = None


@contextlib.contextmanager
def serve_emulator(settings: EmulatorSettings, workdir: Path) -> Iterator[EmulatorHandle]:
    """Run the emulator in its own process for the ``with`` block.

    It runs as ``python -m benchmarks.emulator_timed`` (``python -m valar_pandas.emulator``
    that also reports when its last answer was ready). On exit the emulator gets SIGINT (its
    clean shutdown), then SIGKILL after 10 s.

    Args:
        settings: Latency law, faults and seed.
        workdir: Directory for the emulator's stderr log.

    Yields:
        The handle with the URL and key the emulator printed; ``cpu_s`` is set on exit.

    Raises:
        ChildFailed: The emulator exited or printed no URL within 30 s.
    """
    log = workdir / "emulator.stderr"
    ready_file = workdir / "emulator.ready"
    ready_file.unlink(missing_ok=True)
    with open(log, "wb") as err:
        proc = _spawn(
            [sys.executable, "-m", "benchmarks.emulator_timed", *settings.argv()],
            subprocess.PIPE,
            err.fileno(),
            {READY_FILE_ENV: str(ready_file)},
        )
    handle: EmulatorHandle | None = None
    try:
        assert proc.stdout is not None
        line = _read_line(proc.stdout, 30.0)
        url, key = _URL.search(line), _KEY.search(line)
        if url is None or key is None:
            raise ChildFailed(f"the emulator printed no URL: {line!r} {_tail(log)}")
        handle = EmulatorHandle(url.group(1), key.group(1))
        yield handle
    finally:
        _, cpu, _ = _stop(proc)
        if handle is not None:
            handle.cpu_s = cpu
            with contextlib.suppress(OSError, ValueError):
                handle.last_ready = float(ready_file.read_text(encoding="utf-8"))
        if proc.stdout is not None:
            proc.stdout.close()


def _read_line(stream: object, timeout: float) -> str:
    fileno = stream.fileno()  # type: ignore[attr-defined]
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fileno, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(fileno, 4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.decode("utf-8", "replace")


def run_client(
    argv: Sequence[str], timeout: float, workdir: Path, env: Mapping[str, str] | None = None
) -> ChildUsage:
    """Run one client process to completion and measure it.

    Args:
        argv: The command (``python -m benchmarks.<client> ...``).
        timeout: Seconds after which the client is killed.
        workdir: Directory for the client's stdout/stderr log.
        env: Environment variables to add to the harness's own.

    Returns:
        The child's exit code, wall time, CPU and peak RSS.

    Raises:
        ChildFailed: The client timed out or exited non-zero.
    """
    with tempfile.NamedTemporaryFile(dir=workdir, suffix=".log", delete=False) as log_file:
        log = Path(log_file.name)
        started = time.monotonic()
        proc = _spawn(argv, log_file.fileno(), log_file.fileno(), env)
    try:
        reaped = _reap(proc, timeout)
        if reaped is None:
            _stop(proc)
            raise ChildFailed(f"{argv[2]} did not finish within {timeout:.0f} s: {_tail(log)}")
    finally:
        if proc.returncode is None:
            _stop(proc)
    returncode, cpu, maxrss = reaped
    if returncode != 0:
        raise ChildFailed(f"{argv[2]} exited with {returncode}: {_tail(log)}")
    return ChildUsage(returncode, time.monotonic() - started, cpu, maxrss)
