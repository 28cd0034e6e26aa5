"""The Batch API path: create batches within the limits, then watch them to the end.

The first batch is created before anything else runs, so a Batch API that cannot be used is
known before any work starts: :class:`BatchUnavailable` is raised, quoting the server, or,
when a ``fallback`` is given (``mode="auto"``), every request goes to it instead, with a
:class:`BatchFallbackWarning`. Cannot be used means: the route is absent (404, 405, 501),
batches are not enabled (403, when the same key works on ``/v1/responses``), a 400 says they
are "coming soon" or not available, or every try of the first create met a 501, or a 503
that says the Batch API is unavailable. Any other server error on every try stops the run
with :class:`APIError` and the batch's key kept: a proxy's 502 or 504 may hide a batch the
server accepted, and the same call again replays that create. An unknown model is the run's
error, never "absent". Rows of a create replayed from an earlier run are never sent another
way.

Each create carries the chunk's content-addressed ``Idempotency-Key`` (retries replay, never
duplicate) and is announced by a :class:`BatchPlanned` event before it is sent and a
:class:`BatchCreated` event after, so the run store can re-attach to the batch after a
crash. Watching and fetching live in ``batchwatch``. Events are the background engine's, so
progress, the run store and the budget work unchanged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from .._core.batchplan import (
    Chunk,
    chunk_items,
    is_model_error,
    is_unavailable,
    make_item,
    rebuild,
    says_unavailable,
    server_words,
)
from .._core.errors import APIError, BatchUnavailable
from .._core.log import child
from .._core.models import BatchCreated, BatchLost, BatchPlanned, Event, Outcome, Request, Submitted
from .._core.wire import error_summary, usable_id
from .._transport.exchange import Admission, Exchange
from .._transport.http import Http
from .batchwatch import BatchConfig, Resend, Session, Watch, request_counts

__all__ = ["BatchConfig", "execute_batches"]

Fallback = Callable[[Sequence[Request]], Awaitable[dict[str, Outcome]]]
log = child("batch")
_FORBIDDEN = frozenset({403})
_KEY_CHECK = "/responses/resp_valar_pandas_key_check"
"""A response no one has: a 404 there says the key works on ``/v1/responses``."""
_BUG = (
    "the server holds a different batch under this batch's Idempotency-Key; "
    "this is a bug in valar_pandas, please report it"
)


class _Creator:
    """Creates a run's batches, and starts watching each one the server accepts."""

    def __init__(self, session: Session, replays: frozenset[str] = frozenset()) -> None:
        self.session = session
        self.accepted = 0
        self.replays = replays  # keys of creates an earlier run may have had accepted

    async def create(self, chunk: Chunk) -> Watch | None:
        """Create one batch: its watch, or None when the server refused it (items ended).

        Raises:
            BatchUnavailable: No batch was accepted yet and the Batch API cannot be used.
            AuthenticationError: The server rejected the API key.
            APIError: No batch was accepted yet and the server rejected this one, or
                answered every try with a server error that does not say the Batch API is
                unavailable (the server may hold the batch: its key stays planned).
        """
        session = self.session
        first = not self.accepted
        items = tuple((item.fingerprint, item.custom_id) for item in chunk.items)
        session.emit(BatchPlanned(chunk.key, session.config.label, items))
        seen: list[int | None] = []
        # The body may be up to 256 MB: the upload gets the long timeout.
        answer = await session.send(
            "POST", "/batches", chunk.payload, chunk.key, timeout=session.http.realtime_timeout,
            keep=_FORBIDDEN if first else frozenset(), seen=seen,
        )  # fmt: skip
        if isinstance(answer, str):
            statuses = [s for s in seen if s is not None and s >= 500]
            if first and statuses and len(statuses) == len(seen):
                self.persistent(chunk, statuses[-1], len(seen), answer)
            self.refuse(chunk, answer)
            return None
        obj = answer.value
        batch_id = obj.get("id") if isinstance(obj, dict) else None
        if answer.status < 300 and isinstance(batch_id, str) and usable_id(batch_id):
            self.accepted += 1
            session.emit(BatchCreated(chunk.key, batch_id))
            for fingerprint, _ in items:
                session.emit(Submitted(fingerprint, None, session.shares.get(fingerprint, 1)))
            watch = Watch(batch_id, chunk.key, {c: f for f, c in items}, session.now())
            watch.sent, watch.whole, watch.counts = len(items), True, request_counts(obj)
            return watch
        code, reason = error_summary(answer.status, answer.body)
        if answer.status < 300:
            reason = f"HTTP {answer.status}: the server sent no usable batch id"
        elif first and is_unavailable(answer.status, code, reason):
            if answer.status == 403:
                await self.check_key(chunk)
            self.unavailable(chunk, answer.status, code, reason)
        elif code == "idempotency_error":
            reason = f"{reason}: {_BUG}"
        elif first:
            session.emit(BatchLost(chunk.key, rekey=False))  # refused: nothing was created
            model = " (the model is the run's, not the Batch API's)" if is_model_error(
                answer.status, code, reason
            ) else ""  # fmt: skip
            raise APIError(
                f"the server rejected the batch, so the run stopped: {reason}{model}",
                status_code=answer.status,
                code=code,
            )
        self.refuse(chunk, reason)
        return None

    async def check_key(self, chunk: Chunk) -> None:
        """After a 403 on the first create: a key refused on ``/v1/responses`` too is at fault.

        Raises:
            AuthenticationError: ``/v1/responses`` rejects the key as well.
        """
        try:
            await self.session.send("GET", _KEY_CHECK)
        except APIError:
            self.session.emit(BatchLost(chunk.key, rekey=False))
            raise

    def persistent(self, chunk: Chunk, status: int, tries: int, answer: str) -> None:
        """Every try of the first create met a server error.

        Only an answer that says the Batch API is unavailable (501, or a 503 saying so) is
        taken as "no batch was created". Any other 5xx may come from a proxy in front of a
        server that accepted the batch, so the run stops with the batch's key still
        planned: the same call again replays that create and nothing is paid twice.

        Raises:
            BatchUnavailable: The answer says the Batch API is unavailable.
            APIError: Otherwise.
        """
        said = f"every one of {tries} tries was answered HTTP {status}"
        if says_unavailable(status, answer):
            self.unavailable(chunk, status, None, f"{said}; {answer}")
        words = server_words(answer)
        why = (
            f"the first batch got no answer but server errors ({said}: {words}), so the run "
            "stopped. The server may still have created the batch; its Idempotency-Key is "
            "kept in the run store, so running the same call again replays that create and "
            "pays for nothing twice"
        )
        raise APIError(
            f"{why}; or use mode='background'",
            status_code=status,
            command=f"{why}; or use --mode background",
        )

    def unavailable(self, chunk: Chunk, status: int, code: str | None, reason: str) -> None:
        """The first create showed the Batch API cannot be used: nothing was created.

        A replayed create (an earlier run may have had it accepted) keeps its key planned.

        Raises:
            BatchUnavailable: Always, quoting the server's words.
        """
        if chunk.key not in self.replays:
            self.session.emit(BatchLost(chunk.key, rekey=False))
        words = server_words(reason)
        if status == 403:
            said = f"the Batch API is not enabled for this API key's organisation ({words})"
        elif status >= 500 and status != 501:  # 501: the route is absent
            said = f"the Batch API did not accept the first batch ({words})"
        else:
            said = f"the Batch API is not available on this server ({words})"
        raise BatchUnavailable(
            f"{said}; use mode='auto' to fall back to background mode automatically, or "
            "mode='background'",
            status_code=status,
            code=code,
            command=f"{said}; use --mode auto to fall back to background mode automatically, "
            "or --mode background",
        )

    def refuse(self, chunk: Chunk, reason: str) -> None:
        for item in chunk.items:
            error = f"batch not created: {reason}"
            self.session.finish(item.fingerprint, Outcome("error", error=error))

    async def create_rest(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            watch = await self.create(chunk)
            if watch is not None:
                self.session.spawn(self.session.watch(watch, self.session.first_delay(watch)))


def _split(
    session: Session,
    requests: Sequence[Request],
    attach: Mapping[str, tuple[str, str, str]],
    gate: Callable[[Request], str | None] | None,
) -> tuple[list[tuple[Watch, float]], list[Request]]:
    """Re-attached batches to watch, and the new requests the gate admits."""
    watches: dict[str, Watch] = {}
    fresh: list[Request] = []
    admission = Admission(gate)
    for request in requests:
        fingerprint = request.fingerprint
        if fingerprint in attach:
            key, batch_id, cid = attach[fingerprint]
            watch = watches.setdefault(batch_id, Watch(batch_id, key, {}, session.now()))
            watch.items[cid] = fingerprint
            watch.sent += 1  # the batch may hold more: items of rows not in this call
            continue
        refusal = admission.refuse(request)
        if refusal is not None:
            session.finish(fingerprint, Outcome("skipped", error=refusal))
        else:
            fresh.append(request)
    return [(watch, 0.0) for watch in watches.values()], fresh


def _replays(
    requests: Sequence[Request],
    replay: Mapping[str, tuple[str | None, Sequence[tuple[str, str]]]],
) -> tuple[list[Chunk], list[Request]]:
    """The creates to send again as they were, and the requests left to pack anew."""
    if not replay:
        return [], list(requests)
    by_fingerprint = {r.fingerprint: r for r in requests}
    chunks: list[Chunk] = []
    covered: set[str] = set()
    for key, (label, items) in replay.items():
        if not all(fp in by_fingerprint for fp, _ in items):
            continue
        chunk = rebuild(key, label, [(by_fingerprint[fp], cid) for fp, cid in items])
        if chunk is not None:
            chunks.append(chunk)
            covered.update(fp for fp, _ in items)
    return chunks, [r for r in requests if r.fingerprint not in covered]


async def _adopt(session: Session, send: Fallback, requests: Sequence[Request]) -> None:
    """Send requests another way and take their outcomes (that way announced them)."""
    session.adopt(await send(requests))


async def execute_batches(
    requests: Sequence[Request],
    shares: Mapping[str, int],
    http: Http,
    config: BatchConfig,
    emit: Callable[[Event], None],
    *,
    positions: Mapping[str, int],
    attach: Mapping[str, tuple[str, str, str]] | None = None,
    gate: Callable[[Request], str | None] | None = None,
    fallback: Fallback | None = None,
    replay: Mapping[str, tuple[str | None, Sequence[tuple[str, str]]]] | None = None,
    exchange: Exchange | None = None,
    resend: Resend | None = None,
    notices: list[str] | None = None,
    now: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> dict[str, Outcome]:
    """Send requests through the Batch API and wait for every outcome.

    Args:
        requests: The distinct requests to send (or to re-attach).
        shares: How many rows each fingerprint fills (for progress counts).
        http: The transport.
        config: Concurrency, label, poll schedule, limits and retries.
        emit: Receives every event, on the event loop's thread.
        positions: Fingerprint → row position its ``custom_id`` comes from.
        attach: Fingerprint → (batch key, batch id, custom_id) for requests an earlier run
            put in a batch the server accepted: that batch is polled, not created again.
        gate: Asked for each new request before any batch is created; a returned reason
            skips it and every later one (a budget).
        fallback: Where to send the requests when the Batch API is absent; None raises.
        replay: Batch key → (label, (fingerprint, custom_id) of each item) of batches an
            earlier run planned, and may have created, with no id recorded. Each is sent
            again exactly as it was, before any new batch, so the server replays the batch
            it holds; a batch that cannot be rebuilt byte for byte is packed anew.
        exchange: The run's exchange, shared with its other paths (one set of slots and
            one overload control per run); None makes one from ``config``.
        resend: Where to send, in background mode, items a batch shows it does not hold
            (see ``batchwatch.short_of``: ``request_counts`` below the items sent, or with
            no count a non-empty map of final items that lacks them); None ends
            them as errors that a re-run sends again.
        notices: Receives what the caller should be warned of (a
            :class:`BatchFallbackWarning` each), once the run has returned; warned here, on
            the loop, a filter turning warnings into errors would lose paid answers.
        now: Monotonic clock, in seconds.
        rand: Uniform random numbers for jitter.

    Returns:
        The outcome of every request, by fingerprint.

    Raises:
        BatchUnavailable: The Batch API cannot be used and there is no ``fallback``.
        AuthenticationError: The server rejected the API key.
        EndpointError: The endpoint cannot be used (certificate, DNS, refused, redirect,
            answers that are not the API's, no answers at all).
        APIError: The server rejected the first batch.
    """
    total = len({r.fingerprint for r in requests})
    by_fingerprint = {r.fingerprint: r for r in requests}
    session = Session(
        shares, http, config, emit, now, rand, total, exchange, by_fingerprint, resend, notices
    )
    everything = requests
    replayed, requests = _replays(requests, replay or {})
    creator = _Creator(session, frozenset(chunk.key for chunk in replayed))
    watches, fresh = _split(session, requests, attach or {}, gate)
    items = [make_item(r, positions.get(r.fingerprint, i)) for i, r in enumerate(fresh)]
    chunks, oversize = chunk_items(items, config.label, config.limits)
    chunks = replayed + chunks
    for item in oversize:
        error = f"too large for one batch ({len(item.line):,} bytes as an item)"
        session.finish(item.fingerprint, Outcome("error", error=error))
    first: Watch | None = None
    if chunks:
        try:
            first = await creator.create(chunks[0])
        except BatchUnavailable as exc:
            if fallback is None:
                raise
            # Every request not yet ended goes to background mode, but those in batches an
            # earlier run created (still watched) and those in creates it may have had
            # accepted (replayed): a batch may run those, so they are never sent another way.
            said = str(exc).split("; use mode=")[0]
            held = {fp for watch, _ in watches for fp in watch.items.values()}
            for chunk in replayed:
                for item in chunk.items:
                    error = (
                        f"batch not re-sent: {said}; an earlier run may have created it, so "
                        "this row is not sent another way: the same call again re-sends that "
                        "create under the same Idempotency-Key"
                    )
                    session.finish(item.fingerprint, Outcome("error", error=error))
            held |= session.results.keys()
            rest = [r for r in everything if r.fingerprint not in held]
            if rest:
                log.warning("%s: %d requests go in background mode instead", said, len(rest))
                notice = f"{said}: {len(rest):,} requests go in background mode instead"
                session.notices.append(notice)
            await session.drive(watches, _adopt(session, fallback, rest))
            return session.results
    if first is not None:
        watches.append((first, session.first_delay(first)))
    await session.drive(watches, creator.create_rest(chunks[1:]))
    return session.results
