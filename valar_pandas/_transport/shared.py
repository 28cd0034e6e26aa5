"""The live part of a :class:`~valar_pandas._core.config.ValarClient`: its pools, budget and limit.

A client's settings are pure data (:mod:`valar_pandas._core.config`); what it opens lives here,
made on first use and held by the client (:func:`shared`):

- **one connection pool per event loop.** asyncio transports belong to the loop that opened
  them, so a client has a :class:`Lane` for each loop it is used on. Runs, jobs, the windows of
  ``valar-pandas run`` and server-side cancels all run on the library's own loop
  (:mod:`valar_pandas._run.loop`), so in practice they share one pool, whose connections stay
  open between runs (the loop is registered with :func:`keep_pools_on`). ``arun`` runs on the
  caller's loop, which the library cannot see end: its pool is shared by the runs going on
  there at once and closed when the last of them ends.
- **one limit on requests in flight**, ``client.concurrency``: the pool's own size, across
  every run on the loop.
- **one request budget**, ``client.max_rps``: a token bucket shared by every loop.

Closing (:meth:`Shared.close`, from ``client.close()``) closes every pool; a run still going on
meets a :class:`~valar_pandas._core.errors.ConfigError` that says the client was closed, on its
next request or on the one in flight. A client that is garbage-collected, or still open when
the interpreter exits, is closed on its loops by :func:`weakref.finalize`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from typing import Protocol

from .._core.config import CLOSED, ValarClient
from .._core.endpoint import Endpoint, resolve_base_url
from .._core.errors import ConfigError
from .._core.secret import Secret
from .._policy import TokenBucket
from .conn import Answer, Pool
from .handled import HandlerPool
from .network import Network, network

__all__ = ["HEADERS", "Lane", "Shared", "WirePool", "default_client", "keep_pools_on", "shared"]

HEADERS = (
    b"User-Agent: valar-pandas\r\nAccept: application/json\r\nAccept-Encoding: gzip, deflate\r\n"
)
"""Header lines every request carries (the pool adds ``Host`` and the body's own)."""

_CLOSE_WAIT = 1.0  # seconds to wait for a pool on another thread's loop to close

_kept: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_every: weakref.WeakSet[Shared] = weakref.WeakSet()
_making = threading.Lock()
_closing: set[asyncio.Task[None]] = set()


class WirePool(Protocol):
    """What a lane sends through: the network's :class:`~.conn.Pool`, or a handler."""

    attempts: int

    async def request(
        self,
        method: bytes,
        path: str,
        payload: bytes | None,
        extra: bytes,
        timeout: float,
        cap: int,
        *,
        resend_safe: bool,
    ) -> Answer:
        """Send one request and read the whole answer; ``resend_safe``: may go twice."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...


def keep_pools_on(loop: asyncio.AbstractEventLoop) -> None:
    """Keep the pools opened on ``loop`` between runs (the library's own, long-lived loop)."""
    _kept.add(loop)


class Lane:
    """A client's pool on one event loop, and how many users it has now.

    Attributes:
        loop: The loop the pool's connections belong to; None for a pool of its own.
        pool: The pool.
        users: Transports (:class:`~valar_pandas._transport.http.Http`) using it now.
        retired: No new user joins it; it closes with its last one.
        route: The proxy and SSL settings the pool was built with (None for a handler).
    """

    __slots__ = ("loop", "pool", "retired", "route", "users")

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, pool: WirePool, route: Network | None = None
    ) -> None:
        self.loop = loop
        self.pool = pool
        self.users = 0
        self.retired = False
        self.route = route


class Shared:
    """The pools, the request budget and the limit in flight of one client.

    Args:
        client: The client (not kept: only what opening connections needs is).
    """

    def __init__(self, client: ValarClient) -> None:
        self._endpoint = Endpoint.parse(client.base_url)
        self._secret = client.api_key
        self.limit = client.concurrency
        self.rate = client.max_rps
        self._handler = client.transport
        # The client itself, weakly: its network settings (proxy, SSL context) are built on
        # it once and rebuilt when the environment they come from changes.
        self._client = weakref.ref(client)
        self._lock = threading.Lock()
        self._lanes: dict[asyncio.AbstractEventLoop, Lane] = {}
        self.closed = False
        self._bucket = (
            TokenBucket(self.rate, burst=min(50.0, max(1.0, self.rate)))
            if self.rate is not None
            else None
        )
        self._bucket_lock = threading.Lock()
        _every.add(self)

    def __repr__(self) -> str:
        return (
            f"Shared({self._endpoint.authority!r}, lanes={len(self._lanes)}, closed={self.closed})"
        )

    def route(self) -> Network | None:
        """The client's proxy and SSL settings as the environment now gives them.

        The same object while the environment they were read from is unchanged; None when
        a handler answers in the network's place.
        """
        if self._handler is not None:
            return None
        client = self._client()
        if client is None:  # collected: it is being closed, and so is this
            raise ConfigError(CLOSED)
        return network(client)

    def pool(self, limit: int, route: Network | None = None) -> WirePool:
        """A new pool of at most ``limit`` connections to the client's endpoint.

        Args:
            limit: The most connections.
            route: The settings to build it with; None reads them now.
        """
        if self._handler is not None:
            return HandlerPool(self._handler, self._secret, limit)
        route = route or self.route()
        assert route is not None  # a client without a handler always has a route
        # The key stays in its Secret: the pool asks for the header line as each request
        # leaves, so no local variable or attribute holds it (tracebacks that show locals).
        return Pool(
            self._endpoint, HEADERS, limit, _Bearer(self._secret),
            proxy=route.proxy_for(self._endpoint), ssl_context=route.ssl_context,
        )  # fmt: skip

    def join(self) -> Lane:
        """The client's lane on the running loop, counted as used until :meth:`leave`.

        A kept lane whose pool was built from other proxy or CA settings (the environment
        changed since, e.g. ``HTTPS_PROXY`` or ``SSL_CERT_FILE`` set in a notebook) is retired:
        this run and later ones get a pool built from the settings as they are now.

        Raises:
            ConfigError: The client is closed.
        """
        loop = asyncio.get_running_loop()
        route = self.route()
        stale: Lane | None = None
        with self._lock:
            if self.closed:
                raise ConfigError(CLOSED)
            lane = self._lanes.get(loop)
            if lane is not None and lane.route is not route:
                del self._lanes[loop]
                lane.retired = True  # closes with its last user, if it has any
                stale = lane if lane.users <= 0 else None
                lane = None
            if lane is None:
                lane = self._lanes[loop] = Lane(loop, self.pool(self.limit, route), route)
            lane.users += 1
        if stale is not None:
            task = loop.create_task(stale.pool.close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        return lane

    async def leave(self, lane: Lane, *, retire: bool = False) -> None:
        """Stop using ``lane``; its pool closes with its last user unless its loop is kept.

        Args:
            lane: A lane :meth:`join` gave.
            retire: Later users get a new pool (this one never reached the endpoint); this
                one closes with its last user, kept loop or not.
        """
        with self._lock:
            lane.users -= 1
            lane.retired = lane.retired or retire
            if lane.retired and lane.loop is not None and self._lanes.get(lane.loop) is lane:
                del self._lanes[lane.loop]
            last = lane.users <= 0 and (lane.retired or lane.loop not in _kept)
            if last and lane.loop is not None and self._lanes.get(lane.loop) is lane:
                del self._lanes[lane.loop]
        if last:
            await lane.pool.close()

    def reserve(self, now: float) -> float:
        """Book one request on the client's budget; the seconds to wait before sending it."""
        if self._bucket is None:
            return 0.0
        with self._bucket_lock:
            return self._bucket.reserve(now)

    def _take_all(self) -> list[Lane]:
        with self._lock:
            self.closed = True
            lanes = list(self._lanes.values())
            self._lanes.clear()
        return lanes

    def close(self) -> None:
        """Close every pool, on its own loop; wait briefly for those on other threads."""
        waits = [f for lane in self._take_all() if (f := _close_lane(lane)) is not None]
        concurrent.futures.wait(waits, timeout=_CLOSE_WAIT)

    async def aclose(self) -> None:
        """Close every pool, from a coroutine."""
        waits = [f for lane in self._take_all() if (f := _close_lane(lane)) is not None]
        if waits:
            await asyncio.wait([asyncio.wrap_future(f) for f in waits], timeout=_CLOSE_WAIT)
        await asyncio.sleep(0)  # let a close scheduled on this loop run

    def forget(self) -> None:
        """Drop every lane without closing it (a forked child: the loops are not its own)."""
        self._lock = threading.Lock()
        self._bucket_lock = threading.Lock()
        self._lanes.clear()


def _close_lane(lane: Lane) -> concurrent.futures.Future[None] | None:
    """Close a lane's pool on its loop: at once on this thread's loop, else a future."""
    loop = lane.loop
    if loop is None or loop.is_closed():
        return None
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        task = loop.create_task(lane.pool.close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)
        return None
    if not loop.is_running():
        return None
    try:
        return asyncio.run_coroutine_threadsafe(lane.pool.close(), loop)
    except RuntimeError:  # the loop closed meanwhile
        return None


def shared(client: ValarClient) -> Shared:
    """The live part of ``client``, made on first use.

    Raises:
        ConfigError: The client is closed.
    """
    live: Shared | None = client.__dict__.get("_live")
    if live is None:
        with _making:
            live = client.__dict__.get("_live")
            if live is None:
                live = Shared(client)
                object.__setattr__(client, "_live", live)
                # Closed when the client is collected, or at exit if it is still open.
                weakref.finalize(client, live.close)
    if client.closed or live.closed:
        raise ConfigError(CLOSED)
    return live


class _Bearer:
    """The ``Authorization`` header line, made from the key only when a request is written.

    Args:
        secret: The API key.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: Secret) -> None:
        self._secret = secret

    def __call__(self) -> bytes:
        """The header line, ``Authorization: Bearer <key>`` and CRLF."""
        return b"Authorization: Bearer %s\r\n" % self._secret.reveal().encode("latin-1")

    def __repr__(self) -> str:
        return "Bearer(Secret('***'))"


_defaults: dict[tuple[object, ...], ValarClient] = {}
_defaults_lock = threading.Lock()
_MOST_DEFAULTS = 8


def default_client() -> ValarClient:
    """The client a call without ``client=`` uses: one per process for each environment.

    It is made from ``VALAR_API_KEY`` and ``VALAR_BASE_URL`` on first use and shared by every
    later call that finds the same two values, so their connections, budget and limit are
    shared as a client's are. Should they change, another client is made for the new values
    (a few are kept; the oldest is closed beyond that).

    Returns:
        The shared client.

    Raises:
        ConfigError: As :class:`ValarClient` does (no key, a bad base URL).
    """
    key = (Secret(os.environ.get("VALAR_API_KEY", "").strip()), resolve_base_url(None))
    with _defaults_lock:
        client = _defaults.get(key)
        if client is not None and not client.closed:
            return client
        client = ValarClient()
        _defaults[key] = client
        stale = list(_defaults)[:-_MOST_DEFAULTS]
        dropped = [_defaults.pop(k) for k in stale]
    for old in dropped:
        old.close()
    return client


def _forget_after_fork() -> None:
    """A forked child has none of its parent's loops: its clients open pools afresh."""
    global _making, _defaults_lock
    _making, _defaults_lock = threading.Lock(), threading.Lock()
    for live in list(_every):
        live.forget()


os.register_at_fork(after_in_child=_forget_after_fork)
