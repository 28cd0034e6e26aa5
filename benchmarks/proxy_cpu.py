"""CPU per request of the client process, direct and through an HTTP proxy (proxy.py).

The emulator (TLS with a ``trustme`` CA, and plain HTTP) and proxy.py each run in their own
process, so only the client's own work is counted: ``getrusage`` of this process around
``REQUESTS`` background creates sent ``CONCURRENCY`` at a time over one client's pool.

Usage: ``python -m benchmarks.proxy_cpu`` (needs the ``test`` extra: trustme, proxy.py).
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

from valar_pandas import ValarClient
from valar_pandas._transport.http import Http

REQUESTS = 4000
CONCURRENCY = 32
KEY = "sk-bench"
PAYLOAD = json.dumps(
    {"model": "zai-org/GLM-5.1-FP8", "input": "item 1 apple", "background": True}
).encode()

_SERVER = """
import ssl, sys
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency
context = None
if sys.argv[1] != "-":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[1])
emulator = Emulator(EmulatorConfig(api_key=sys.argv[2], latency=Latency(median=0.0, sigma=0.0)))
with emulator.run_in_thread(host="localhost", port=0, ssl_context=context) as url:
    print(url, flush=True)
    sys.stdin.read()
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(client: ValarClient) -> float:
    http = Http(client, CONCURRENCY)
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with slots:
            reply = await http.request("POST", "/responses", payload=PAYLOAD)
            assert reply.status < 300, reply

    try:
        await asyncio.gather(*(one(i) for i in range(200)))  # warm: connections and tunnels
        began = _cpu()
        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        return (_cpu() - began) / REQUESTS * 1000
    finally:
        await http.close()


def main() -> None:
    """Print the client's CPU milliseconds per request for each route."""
    folder = Path(tempfile.mkdtemp())
    ca = trustme.CA()
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "server.pem")
    )
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", _SERVER, arg, KEY], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for arg in (str(folder / "server.pem"), "-")
    ]
    proxy = subprocess.Popen(
        [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
         "--port-file", str(folder / "port"), "--num-workers", "1", "--num-acceptors", "1",
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        tls_url, plain_url = (s.stdout.readline().decode().strip() for s in servers)  # type: ignore[union-attr]
        while not (folder / "port").exists() or not (folder / "port").read_text().strip():
            time.sleep(0.05)
        via = f"http://127.0.0.1:{(folder / 'port').read_text().strip()}"
        ca_file = str(folder / "ca.pem")
        routes = {
            "https direct": ValarClient(KEY, tls_url, verify=ca_file, trust_env=False),
            "https via CONNECT": ValarClient(KEY, tls_url, verify=ca_file, proxy=via),
            "http direct": ValarClient(KEY, plain_url, trust_env=False),
            "http via proxy": ValarClient(KEY, plain_url, proxy=via),
        }
        for name, client in routes.items():
            print(f"{name:>18}: {asyncio.run(_measure(client)):.3f} ms CPU per request")
    finally:
        for process in (*servers, proxy):
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
