"""Ten runs one after another: one client for all of them, or a client (and pool) per run.

``python -m benchmarks.consecutive [--runs 10] [--rows 100] [--plain]`` starts the emulator
in a process of its own, serving HTTPS with a certificate from a throwaway ``trustme`` CA
(trusted through ``SSL_CERT_FILE``), then times ``--runs`` consecutive ``df.valar.run`` calls
of ``--rows`` rows each, twice: once on one ``ValarClient`` (its connections opened once and
reused) and once with a new client per run, closed after it (a pool, and TLS handshakes, per
run: what every run did before the client owned its connections). The rows differ from run to
run (a salt per run), so the run store answers none of them. Prints the wall and CPU time of
each way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

import valar_pandas  # noqa: F401  (registers the df.valar accessor)
from valar_pandas import ValarClient

__all__ = ["main"]

_SERVER = """
import ssl, sys
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(sys.argv[1]) if sys.argv[1] else None
emulator = Emulator(EmulatorConfig(latency=Latency(median=float(sys.argv[2]), sigma=0.3)))
with emulator.run_in_thread(ssl_context=context if sys.argv[1] else None) as url:
    print(url, emulator.config.api_key, flush=True)
    sys.stdin.read()
"""


def _runs(
    client_for: Callable[[int], ValarClient], runs: int, rows: int, tag: str
) -> tuple[float, float]:
    """Time ``runs`` runs; ``client_for(i)`` gives each run's client. Wall and CPU seconds."""
    frame = pd.DataFrame({"t": [f"row {i}" for i in range(rows)]})
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(runs):
        client = client_for(i)
        out = frame.valar.run(
            "say {t}", model="zai-org/GLM-5.1-FP8", completion_window="asap", progress=None,
            client=client, salt=f"{tag}-{i}", store=None,
        )  # fmt: skip
        assert out["output"].notna().all()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print it.

    Args:
        argv: Arguments without the program name.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.consecutive")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05, help="median seconds a response")
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of HTTPS")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        chain = ""
        if not args.plain:
            import trustme  # the benchmark's own need: a CA that lives for this run only

            ca = trustme.CA()
            served = ca.issue_cert("127.0.0.1")
            chain = str(Path(scratch) / "server.pem")
            served.private_key_and_cert_chain_pem.write_to_path(chain)
            ca.cert_pem.write_to_path(str(Path(scratch) / "ca.pem"))
            os.environ["SSL_CERT_FILE"] = str(Path(scratch) / "ca.pem")
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, chain, str(args.latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            url, key = server.stdout.readline().split()
            if not args.plain:
                url = url.replace("http://", "https://")
            _runs(lambda i: ValarClient(api_key=key, base_url=url), 1, 10, "warm")
            with ValarClient(api_key=key, base_url=url) as one:
                shared = _runs(lambda i: one, args.runs, args.rows, "shared")
            opened: list[ValarClient] = []

            def fresh(i: int) -> ValarClient:
                if opened:
                    opened.pop().close()
                opened.append(ValarClient(api_key=key, base_url=url))
                return opened[-1]

            each = _runs(fresh, args.runs, args.rows, "each")
            for client in opened:
                client.close()
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(10)
    scheme = "http" if args.plain else "https"
    print(f"{args.runs} runs of {args.rows} rows, {scheme}, latency median {args.latency} s")
    for name, (wall, cpu) in (("one client", shared), ("a client per run", each)):
        print(f"  {name:<18} wall {wall:6.2f} s   CPU {cpu:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
