"""The :class:`Emulator`: its state, its deterministic decisions, and how it is served.

Owns the configuration in force, the record store, the seeded random generators (latency and
transient faults), the deterministic outcome of a body (failed / incomplete / completed), and
the two ways of serving the app (in the caller's loop, or on its own thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import math
import random
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aiohttp import web

from ._answers import (
    answer_for,
    canonical_json,
    input_texts,
    input_tokens,
    is_pairwise_judge,
    structured_for,
)
from ._config import EmulatorConfig
from ._reasoning import REASONING_TOKENS, PrefixCache, effort_of
from ._server import build_app
from ._state import Record, Stats, Store
from ._structured import requested_schema

__all__ = ["Emulator"]

_FAILURE_REASONS = (
    "The inference backend ran out of memory while generating this response.",
    "The inference worker handling this response crashed before it finished.",
    "Generation timed out on the inference backend.",
)
_TRANSIENT = ("429", "500", "502", "503")
_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}

Outcome = tuple[str, str]


def _window(body: Mapping[str, Any]) -> str:
    """A create's completion window: its ``metadata.completion_window``, else ``standard``."""
    metadata = body.get("metadata")
    window = metadata.get("completion_window") if isinstance(metadata, dict) else None
    return window if isinstance(window, str) else "standard"


class Emulator:
    """A local, in-memory Valar server (Responses API, background mode, idempotency, faults).

    Args:
        config: Behaviour of the server; the defaults are a fault-free server whose
            responses take as long as the vendor's windows (``asap`` seconds, ``standard``
            minutes); ``EmulatorConfig(latency=Latency.fast())`` answers in a fraction of a
            second. Assign ``emulator.config`` later to change behaviour between requests.

    Attributes:
        stats: Counters of requests, inferences and injected faults.
        clock: Monotonic clock used for response progress; replaceable in tests.
        store: Every response record by id, and the idempotency reservations.
        prefixes: The instruction prefixes seen, for ``cached_tokens``.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self._config = config if config is not None else EmulatorConfig()
        self.stats = Stats()
        self.clock: Callable[[], float] = time.monotonic
        self.store = Store()
        self.prefixes = PrefixCache()
        self._seed(self._config.seed)
        self._serving: contextlib.AbstractContextManager[str] | None = None

    def _seed(self, seed: int) -> None:
        self._latency_rng = random.Random(f"valar-emulator-latency:{seed}")
        self._fault_rng = random.Random(seed)

    @property
    def config(self) -> EmulatorConfig:
        """The configuration in force; read afresh on every request."""
        return self._config

    @config.setter
    def config(self, config: EmulatorConfig) -> None:
        if not isinstance(config, EmulatorConfig):
            raise TypeError("Emulator.config must be an EmulatorConfig")
        if config.seed != self._config.seed:
            self._seed(config.seed)
        self._config = config

    # -- deterministic decisions -------------------------------------------------------------

    def _outcome(
        self,
        body: Mapping[str, Any],
        canonical: bytes,
        texts: tuple[str, str, str],
        attempt: str | None = None,
    ) -> Outcome:
        config = self._config
        if config.faults.failed > 0.0:
            digest = hashlib.sha256(b"%d:" % config.seed + canonical).digest()
            if int.from_bytes(digest[:8], "big") / 2.0**64 < config.faults.failed:
                return "failed", _FAILURE_REASONS[digest[8] % len(_FAILURE_REASONS)]
        schema = requested_schema(body)
        if schema is None:
            text = answer_for(texts[0], texts[1])
        else:
            biased = False
            lean = config.judge_position_bias
            if lean > 0.0 and is_pairwise_judge(texts[0]):
                drawn = hashlib.sha256(b"judge-position:%d:" % config.seed + canonical).digest()
                biased = int.from_bytes(drawn[:8], "big") / 2.0**64 < lean
            answer = structured_for(schema, texts[0], biased)
            text = answer.text()
            mistaken = answer.mistaken()
            slip = config.model_errors.get(str(body.get("model")), 0.0)
            if slip > 0.0 and mistaken is not None:
                # Drawn per body, not per attempt: a model's mistakes are its own and stable.
                drawn = hashlib.sha256(b"model-errors:%d:" % config.seed + canonical).digest()
                if int.from_bytes(drawn[:8], "big") / 2.0**64 < slip:
                    text = mistaken
            rate = config.faults.invalid_structured
            if rate > 0.0:
                # Drawn per attempt (the idempotency key), as a real model samples afresh:
                # a replay repeats its answer, a re-ask under a new key draws again.
                tried = b"" if attempt is None else attempt.encode() + b"\n"
                salted = b"invalid-structured:%d:" % config.seed + tried + canonical
                drawn = hashlib.sha256(salted).digest()
                if int.from_bytes(drawn[:8], "big") / 2.0**64 < rate:
                    text = answer.invalid(drawn[8])[1]
            rate = config.faults.disobey_schema
            if rate > 0.0 and text == answer.text():
                tried = b"" if attempt is None else attempt.encode() + b"\n"
                salted = b"disobey-schema:%d:" % config.seed + tried + canonical
                drawn = hashlib.sha256(salted).digest()
                if int.from_bytes(drawn[:8], "big") / 2.0**64 < rate:
                    text = answer.disobey(drawn[8])[1]
        limit = body.get("max_output_tokens")
        if isinstance(limit, int) and limit >= 1:
            room = limit - self.reasoning_tokens(body)  # reasoning comes first, within the cap
            if room <= 0:
                return "completed", ""  # every token went to reasoning: no text at all
            words = text.split()
            if len(words) > room:
                return "incomplete", " ".join(words[:room])
        return "completed", text

    def reasoning_tokens(self, body: Mapping[str, Any]) -> int:
        """Reasoning tokens the model of a (validated) body spends before any cap.

        A model of :attr:`EmulatorConfig.reasoning_models` spends the tokens of the effort
        the body asks for (:attr:`EmulatorConfig.reasoning_default` when it names none);
        any other model spends none, whatever the body asks.
        """
        config = self._config
        if body.get("model") not in config.reasoning_models:
            return 0
        return REASONING_TOKENS[effort_of(body, config.reasoning_default)]

    def expected_outcome(self, body: Mapping[str, Any], key: str | None = None) -> Outcome:
        """What the server will answer for a request body, under the current configuration.

        Args:
            body: A request body for ``POST /v1/responses``, exactly as it will be sent.
            key: Its ``Idempotency-Key`` (for a batch item, ``"<batch key>/<custom_id>"``),
                or None for a create without one: ``invalid_structured`` and ``disobey_schema``
                are drawn per key.

        Returns:
            ``("completed", text)``, ``("failed", reason)`` or ``("incomplete", partial_text)``
            (cancellation aside); ``("completed", "")`` when a reasoning model spent the whole
            ``max_output_tokens`` reasoning, and its response holds no text. A structured
            answer chosen by ``Faults.invalid_structured``
            or ``Faults.disobey_schema`` comes back ``completed`` with its
            invalid text.
        """
        return self._outcome(body, canonical_json(body), input_texts(body), key)

    # -- used by the request handlers --------------------------------------------------------

    def sample_latency(self, window: str = "standard") -> float:
        """Draw one response latency from the law configured for a completion window.

        Args:
            window: The response's completion window (``EmulatorConfig.latency``, when set,
                applies whatever the window).

        Returns:
            Seconds, at least the law's ``minimum``.
        """
        law = self._config.latency_for(window)
        drawn = law.median * math.exp(law.sigma * self._latency_rng.gauss(0.0, 1.0))
        return max(law.minimum, drawn)

    def draw_fault(self) -> str | None:
        """Decide whether this API request is answered with a transient error.

        Returns:
            ``"429"``, ``"500"``, ``"502"``, ``"503"`` or None.
        """
        faults = self._config.faults
        rates = (faults.rate_429, faults.rate_500, faults.rate_502, faults.rate_503)
        if not any(rates):
            return None
        draw = self._fault_rng.random()
        for kind, rate in zip(_TRANSIENT, rates, strict=True):
            if draw < rate:
                return kind
            draw -= rate
        return None

    def draw_drop(self) -> bool:
        """Decide whether the connection of a create that made a new record is dropped.

        Returns:
            True to drop it.
        """
        rate = self._config.faults.drop_after_create
        return rate > 0.0 and self._fault_rng.random() < rate

    def drop_connection(self, request: web.BaseRequest) -> bool:
        """Maybe drop a create's connection after it made something new (a configured fault).

        Args:
            request: The create whose connection to close.

        Returns:
            True when the connection was closed and no answer must be sent.
        """
        if not self.draw_drop():
            return False
        self.stats.faults["drop"] += 1
        if request.transport is not None:
            request.transport.close()
        return True

    def create_record(
        self, body: dict[str, Any], canonical: bytes, digest: str, attempt: str | None = None
    ) -> Record:
        """Create (and bill) a new response record for a validated body.

        Args:
            body: The validated request body.
            canonical: Its canonical JSON.
            digest: SHA-256 hex digest of ``canonical``.
            attempt: What tells this inference from another of the same body: the create's
                ``Idempotency-Key``, or ``"<batch key>/<custom_id>"``; None when unkeyed.

        Returns:
            The new record, already stored.
        """
        texts = input_texts(body)
        outcome, text = self._outcome(body, canonical, texts, attempt)
        limit = body.get("max_output_tokens")
        reasoning = 0 if outcome == "failed" else self.reasoning_tokens(body)
        if isinstance(limit, int) and limit >= 1:
            reasoning = min(reasoning, limit)
        words = 0 if outcome == "failed" else len(text.split())
        prefix = texts[1]
        cached = self.prefixes.cached(
            body["model"], prefix, len(prefix) // 4, self._config.cache_block
        )
        record = Record(
            id="resp_" + uuid.uuid4().hex,
            owner=self._config.api_key,
            created_at=int(time.time()),
            t0=self.clock(),
            latency=self.sample_latency(_window(body)),
            background=bool(body.get("background", False)),
            model=body["model"],
            metadata=body.get("metadata") or {},
            max_output_tokens=body.get("max_output_tokens"),
            temperature=body.get("temperature"),
            outcome=outcome,
            text=text,
            input_tokens=input_tokens(texts[2]),
            output_tokens=words + reasoning,
            reasoning_tokens=reasoning,
            cached_tokens=cached,
            reasoning=body.get("reasoning"),
            truncation=self._config.truncation,
        )
        self.store.records[record.id] = record
        self.stats.inferences += 1
        self.stats.inferences_by_body[digest] += 1
        return record

    # -- serving ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """Build the aiohttp application serving this emulator's state.

        Returns:
            A new application; all applications built from one emulator share its state.
        """
        return build_app(self)

    @asynccontextmanager
    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> AsyncIterator[str]:
        """Serve the emulator in the running event loop.

        Args:
            host: Interface to bind (a name, e.g. ``"localhost"``, is kept in the URL, so a
                certificate for that name verifies).
            port: TCP port; 0 picks a free one.
            ssl_context: Serve HTTPS with this server context; None for plain HTTP.

        Yields:
            The base URL, e.g. ``"http://127.0.0.1:54321/v1"``.
        """
        runner = web.AppRunner(
            self.app(), handle_signals=False, access_log=None, shutdown_timeout=0.25
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=ssl_context)
            await site.start()
            bound_port = runner.addresses[0][1]
            shown = _WILDCARD_HOSTS.get(host, host)
            shown = f"[{shown}]" if ":" in shown else shown
            scheme = "http" if ssl_context is None else "https"
            yield f"{scheme}://{shown}:{bound_port}/v1"
        finally:
            server = runner.server
            held = [h.transport for h in server.connections] if server is not None else []
            await runner.cleanup()
            # A client that keeps its connections between runs still holds some: a TLS
            # connection's orderly close waits for the client's reply, which this loop, about
            # to end, might never read, leaving its socket unclosed. Cut what is left.
            for transport in held:
                if transport is not None:
                    transport.abort()
            await asyncio.sleep(0)  # the aborted sockets close on the next turn of the loop

    @contextmanager
    def run_in_thread(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> Iterator[str]:
        """Serve the emulator on its own thread and event loop for the ``with`` block.

        Args:
            host: Interface to bind.
            port: TCP port; 0 picks a free one.
            ssl_context: Serve HTTPS with this server context; None for plain HTTP.

        Yields:
            The base URL, e.g. ``"http://127.0.0.1:54321/v1"``.
        """
        ready: concurrent.futures.Future[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]]
        ready = concurrent.futures.Future()

        async def main() -> None:
            stop = asyncio.Event()
            try:
                async with self.serve(host, port, ssl_context) as url:
                    ready.set_result((url, asyncio.get_running_loop(), stop))
                    await stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                raise

        def target() -> None:
            asyncio.run(main())

        def stop_late(started: concurrent.futures.Future[Any]) -> None:
            if not started.cancelled() and started.exception() is None:
                _, late_loop, late_stop = started.result()
                late_loop.call_soon_threadsafe(late_stop.set)

        thread = threading.Thread(target=target, name="valar-emulator", daemon=True)
        thread.start()
        try:
            url, loop, stop = ready.result()
        except BaseException:
            ready.add_done_callback(stop_late)  # interrupted while starting: stop once up
            thread.join()
            raise
        try:
            yield url
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a background thread until :meth:`stop`.

        For notebooks, where a ``with`` block cannot span cells.

        Args:
            host: Interface to bind.
            port: TCP port; 0 picks a free one.

        Returns:
            The base URL.

        Raises:
            RuntimeError: This emulator is already serving through :meth:`start`.
        """
        if self._serving is not None:
            raise RuntimeError("this emulator is already serving; call stop() first")
        serving = self.run_in_thread(host, port)
        url = serving.__enter__()
        self._serving = serving
        return url

    def stop(self) -> None:
        """Stop serving what :meth:`start` started; does nothing if nothing is serving."""
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.__exit__(None, None, None)
