"""A real HTTP proxy for the tests: proxy.py from PyPI, run in a subprocess on 127.0.0.1."""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunningProxy:
    """A proxy.py process and what it logged."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the proxy has logged no new connection for half a second.

        Call it before stopping a TLS server the proxy tunnels to: the proxy closes its side
        of each tunnel after the client does, and a server stopped first would be left with
        TLS closes that never finish.
        """
        deadline = time.monotonic() + timeout
        count = -1
        while time.monotonic() < deadline:
            now = len(self.seen(settle=0.5))
            if now == count:
                return
            count = now

    def mark(self) -> int:
        """The number of lines logged so far, once earlier tests' connections have ended.

        A client keeps its connections open until it is closed or collected: an earlier
        test's client collected during this one would add its line to this test's count.
        """
        gc.collect()  # clients nobody holds are closed now, not in the middle of this test
        self.settle()
        return len(self.seen(settle=0))

    def seen(self, settle: float = 0.3) -> list[str]:
        """The access log's lines: one per client connection the proxy has finished."""
        time.sleep(settle)  # the line is written when the proxy closes the connection
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "access_log" in line]


@contextlib.contextmanager
def running_proxy(folder: Path, *extra: str) -> Iterator[RunningProxy]:
    """Start proxy.py on a free port of 127.0.0.1; stopped on exit."""
    port_file, log = folder / "port", folder / "proxy.log"
    command = [
        sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
        "--log-file", str(log), "--log-level", "INFO", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy.py did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield RunningProxy(int(port_file.read_text()), log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
