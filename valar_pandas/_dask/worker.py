"""What a Dask worker process keeps between partitions: one client per connection setting.

A :class:`~valar_pandas.ValarClient` cannot be pickled (its key is a
:class:`~valar_pandas._core.secret.Secret`, which refuses), so the computation carries a
:class:`WorkerConfig` instead: the client's settings, the key sealed in a :class:`SealedKey`
(pickled on purpose, masked in every repr) and each worker's share of the limits. Each worker
process builds one client per configuration on first use (:func:`worker_client`) and every
partition it runs afterwards reuses it, with its connections and its limits, on the process's
one library loop thread (:mod:`valar_pandas._run.loop`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field

from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._core.secret import Secret

__all__ = ["SealedKey", "WorkerConfig", "config_for", "in_right_process", "worker_client"]


class SealedKey:
    """The API key on its way to the workers: pickled on purpose, never shown.

    Its repr is masked, and Dask's tokenizer sees only a SHA-256 digest of it, so neither a
    task's name nor a repr of the graph holds the key.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def secret(self) -> Secret:
        """The key as a :class:`Secret`, for the worker's client."""
        return Secret(self._value)

    def __repr__(self) -> str:
        return "SealedKey('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealedKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("SealedKey", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        return (SealedKey, (self._value,))

    def __dask_tokenize__(self) -> str:
        return hashlib.sha256(self._value.encode()).hexdigest()


@dataclass(frozen=True)
class WorkerConfig:
    """A client's settings as they travel to the workers, and each worker's share of limits.

    Attributes:
        base_url: The API root.
        key: The API key, sealed.
        timeout: Seconds for one exchange of a background call.
        realtime_timeout: Seconds for one realtime call.
        max_response_bytes: The cap on one answer.
        trust_env: Whether the workers' proxy variables are read.
        verify: ``True``, a CA path on the workers or ``"system"``.
        concurrency: Requests in flight per worker process (the total split among workers).
        max_rps: Requests a second per worker process, or None.
        driver: The process id of the process that built the computation.
    """

    base_url: str
    key: SealedKey = field(repr=False)
    timeout: float
    realtime_timeout: float
    max_response_bytes: int
    trust_env: bool
    verify: bool | str
    concurrency: int
    max_rps: float | None
    driver: int = field(compare=False)


def config_for(
    client: ValarClient, concurrency: int, max_rps: float | None, workers: int
) -> WorkerConfig:
    """The worker configuration for ``client``, the totals split among ``workers`` processes.

    The totals are the smaller of the run's and the client's ``concurrency`` and
    ``max_rps`` (a pandas call runs within both), split among the workers.

    Args:
        client: The caller's client (or the default one).
        concurrency: The run's total requests in flight.
        max_rps: The run's total requests a second, or None.
        workers: Worker processes sharing the totals (1 without a distributed cluster).

    Raises:
        ConfigError: A client setting that cannot travel to another process: a
            ``transport=`` function, an explicit ``proxy=`` or an ``ssl.SSLContext``.
    """
    if client.transport is not None:
        raise ConfigError("a client with transport= cannot be used on Dask workers")
    if client.proxy is not None:
        raise ConfigError(
            "a client with proxy= cannot be used on Dask workers: set HTTPS_PROXY in the "
            "workers' environment instead"
        )
    if not isinstance(client.verify, bool | str):
        raise ConfigError(
            "a client with verify=<ssl.SSLContext> cannot be used on Dask workers: give the "
            "path of the CA file (present on every worker) or 'system'"
        )
    # The client's limits hold too, as for a pandas call: the smaller of each pair is split.
    concurrency = min(concurrency, client.concurrency)
    rates = [rate for rate in (max_rps, client.max_rps) if rate is not None]
    max_rps = min(rates) if rates else None
    share = None if max_rps is None else max(max_rps / workers, 0.1)
    return WorkerConfig(
        base_url=client.base_url,
        key=SealedKey(client.api_key.reveal()),
        timeout=client.timeout,
        realtime_timeout=client.realtime_timeout,
        max_response_bytes=client.max_response_bytes,
        trust_env=client.trust_env,
        verify=client.verify,
        concurrency=max(1, concurrency // workers),
        max_rps=share,
        driver=os.getpid(),
    )


_clients: dict[WorkerConfig, ValarClient] = {}
_making = threading.Lock()


def worker_client(config: WorkerConfig) -> ValarClient:
    """This process's client for ``config``: made on first use, reused by every partition."""
    with _making:
        client = _clients.get(config)
        if client is None or client.closed:
            client = ValarClient(
                api_key=config.key.secret(),
                base_url=config.base_url,
                timeout=config.timeout,
                realtime_timeout=config.realtime_timeout,
                max_response_bytes=config.max_response_bytes,
                concurrency=config.concurrency,
                max_rps=config.max_rps,
                trust_env=config.trust_env,
                verify=config.verify,
            )
            _clients[config] = client
        return client


def in_right_process(config: WorkerConfig) -> bool:
    """Whether this process may run a partition: a distributed worker, or the driver itself.

    Dask's multiprocessing scheduler starts a pool of processes that no limit, budget or
    summary can be shared with; the threaded scheduler runs in the driver, and a distributed
    worker is known to the scheduler.
    """
    if os.getpid() == config.driver:
        return True
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - the dask extra installs distributed
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True
