"""Best-effort cancellation of the responses a stopped run leaves running on the server.

Used only when the caller asks for it (``job.cancel(server=True)``): an interrupt, or a
plain cancel, leaves those responses to finish so the same call collects them for free,
while a row cancelled here is asked again, and paid again, by the next identical call.

Valar does not document ``POST /v1/responses/{id}/cancel`` (early vendor pages list it,
later ones do not), so this is a courtesy, never a requirement: it runs detached from the
run it follows, so a stopped call returns at once; every failure is ignored once the
exchange (:mod:`valar_pandas._transport.exchange`) has retried it as it retries any call, overload
control included; and when the first answers say the route does not exist (404, 405, 501)
it stops asking.

A cancel that succeeds is a server verdict, recorded in the run store like any other, so a
later run asks that row afresh instead of re-attaching to a response that will never
answer. A response that had already finished answers the cancel with its result, which is
recorded too: the row is then served from the store without paying again. A row whose
cancel was not answered keeps its response id, and a later run re-attaches to it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from .._core.config import ValarClient
from .._core.errors import ValarError
from .._core.models import SERVER_VERDICTS, Outcome
from .._core.wire import decode_json, parse_response
from .._policy import RetryPolicy
from .._store import RunStore
from .._transport.exchange import Exchange
from .._transport.http import Http, Reply

__all__ = ["CancelReport", "cancel_responses", "drain", "spawn"]

UNSUPPORTED = frozenset({404, 405, 501})
"""Statuses meaning the server has no cancel route (or does not know the response)."""
_GIVE_UP_AFTER = 3
"""Consecutive 'unsupported' answers, before any success, after which the rest are skipped."""
_CONNECTIONS = 16
_TIMEOUT = 10.0

CancelReport = Counter[str]
"""Counts by result: ``cancelled``, ``finished`` (it had already ended), ``unsupported``,
``failed`` (no usable answer) and ``skipped`` (not asked, the route being absent)."""

_pending: set[asyncio.Task[CancelReport]] = set()


def classify(status: int | None, verdict: str | None) -> str:
    """Name the result of one cancel request.

    Args:
        status: The HTTP status, or None when no answer arrived.
        verdict: The response's status in the answer's body, if it could be read.

    Returns:
        ``"cancelled"``, ``"finished"``, ``"unsupported"`` or ``"failed"``.
    """
    if status is None:
        return "failed"
    if status in UNSUPPORTED:
        return "unsupported"
    if 200 <= status < 300 and verdict == "cancelled":
        return "cancelled"
    if 200 <= status < 300 and verdict in SERVER_VERDICTS:
        return "finished"
    return "failed"


async def cancel_responses(
    client: ValarClient,
    inflight: Mapping[str, str],
    *,
    store: Path | None,
    endpoint: str,
    retry: RetryPolicy | None = None,
) -> CancelReport:
    """Ask the server to cancel each response, recording the verdicts it answers with.

    Args:
        client: Where to send, with which key.
        inflight: Fingerprint → response id of the rows left unanswered.
        store: The run store's path, or None to record nothing.
        endpoint: The base URL the store namespaces rows by.
        retry: When to retry each cancel; None for the policy every call uses.

    Returns:
        Counts by result.
    """
    report: CancelReport = Counter()
    if not inflight:
        return report
    http = Http(client)  # the client's pool: no new connections, within its budget
    exchange = Exchange(http, retry or RetryPolicy(), _CONNECTIONS, lambda _: None)
    opened = RunStore(store) if store is not None else None
    work = iter(inflight.items())
    strikes = 0

    async def worker() -> None:
        nonlocal strikes
        for fingerprint, response_id in work:
            if strikes >= _GIVE_UP_AFTER:
                report["skipped"] += 1
                continue
            status, outcome = None, None
            path = f"/responses/{quote(response_id, safe='')}/cancel"
            try:
                answer = await exchange.call("POST", path, timeout=_TIMEOUT, read=_verdict)
            except ValarError:  # a rejected key, an unusable endpoint: nothing to record
                answer = "failed"
            if not isinstance(answer, str):
                status, outcome = answer.status, answer.value
            result = classify(status, outcome.status if outcome is not None else None)
            report[result] += 1
            if result == "unsupported" and not (report["cancelled"] or report["finished"]):
                strikes += 1
            if outcome is not None and result in ("cancelled", "finished") and opened:
                opened.finished(endpoint, fingerprint, outcome)

    try:
        await asyncio.gather(*(worker() for _ in range(min(_CONNECTIONS, len(inflight)))))
    finally:
        await http.close()
        if opened is not None:
            opened.close()
    return report


def _verdict(reply: Reply) -> Outcome | None:
    """The outcome a cancel's answer carries, if it is a final one.

    Raises:
        ValueError: The body is not JSON (unreadable: worth another try).
    """
    return parse_response(decode_json(reply.body)).outcome


def spawn(
    client: ValarClient, inflight: Mapping[str, str], *, store: Path | None, endpoint: str
) -> asyncio.Task[CancelReport] | None:
    """Start :func:`cancel_responses` detached on the running loop.

    Returns:
        The task (also kept alive by this module until it ends), or None if nothing to do.
    """
    if not inflight:
        return None
    task = asyncio.get_running_loop().create_task(
        cancel_responses(client, dict(inflight), store=store, endpoint=endpoint)
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


async def drain() -> None:
    """Wait for every detached cancellation on this loop to end."""
    loop = asyncio.get_running_loop()
    tasks = [t for t in _pending if t.get_loop() is loop]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
