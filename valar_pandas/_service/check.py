"""``valar_pandas.check()``: a handful of tiny requests that hold an endpoint to its documents.

The requests, their cost and the verdicts are pure (:mod:`valar_pandas._core.check`); this
module sends them on the library's loop through the client's pool (so the key, the base URL,
a proxy and the CAs are read as for a run), waits for the answers and says what it sees.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .._core.check import (
    CHECK_MODEL,
    STRICT_SCHEMA,
    WINDOWS,
    CheckPlan,
    CheckResult,
    CheckRow,
    Probe,
    batch_row,
    plan_check,
    replay_row,
    window_row,
)
from .._core.config import ValarClient
from .._core.errors import ConfigError
from .._core.options import as_real
from .._core.prices import resolve_price
from .._core.wire.responses import TERMINAL, error_summary, parse_response
from .._core.wire.untrusted import decode_json
from .._policy.retry import OVERLOAD, RetryPolicy, parse_retry_after
from .._run.loop import run_sync
from .._scoring.jsonschema import validate
from .._transport.http import Http, Reply, Unreachable

__all__ = ["check"]

Say = Callable[[str], object]
_RETRY = RetryPolicy(attempts=5, overload_attempts=5)
"""A handful of tries: the check is a few tiny requests, not a run to see through."""
_NOTE_EVERY = 30.0  # seconds between "still running" lines on a long wait


@dataclass
class _Watched:
    """One create and its polls, as seen."""

    probe: Probe
    key: str
    create_status: int = 0
    create_error: str = ""
    response_id: str | None = None
    words: list[str] = field(default_factory=list)
    seconds: float = 0.0
    final: str | None = None
    text: str | None = None
    cost: float = 0.0


def check(
    model: str = CHECK_MODEL,
    *,
    client: ValarClient | None = None,
    windows: Iterable[str] | str = WINDOWS,
    timeout: float = 900.0,
    progress: Say | None = print,
) -> CheckResult:
    """Check the configured endpoint against the documents before a real run.

    Sends a handful of tiny requests (well under $0.01; what and how much is said through
    ``progress`` before anything is sent): ``GET /models`` (the key, the model), one
    background request per completion window polled to the end (status words, time), the
    first one again under its ``Idempotency-Key`` (a replay, not a second bill), a strict
    structured output, and ``GET``/an empty ``POST`` on ``/batches`` (is the Batch API there).

    Args:
        model: The model to check: the one you mean to run.
        client: Where to send and with which key; None makes one from ``VALAR_API_KEY``,
            ``VALAR_BASE_URL`` and the environment's proxy and CA settings, as a run does.
        windows: The completion windows to time, ``("asap", "standard")`` or a subset (or
            ``"asap,standard"``). The standard window targets about five minutes per turn.
        timeout: The longest wait, in seconds, for each window's answer; a window still
            running then is a warning, not a failure.
        progress: Called with each line to show (the plan first, then progress); None for
            silence.

    Returns:
        The result: one row per check (expectation, observation, fix); ``result.ok`` is
        False when a required check failed; ``print(result)`` shows the table.

    Raises:
        ConfigError: Bad arguments, or no key: before anything is sent.
    """
    plan = plan_check(model, windows)
    wait = as_real(timeout)
    if wait is None or not 0 < wait < float("inf"):
        raise ConfigError("timeout must be a positive, finite number of seconds")
    own = client is None
    used = ValarClient() if client is None else client
    say: Say = progress if progress is not None else (lambda line: None)
    try:
        say(plan.describe(used.base_url))
        return run_sync(_run(used, plan, wait, say))
    finally:
        if own:
            used.close()


async def _run(client: ValarClient, plan: CheckPlan, timeout: float, say: Say) -> CheckResult:
    http = Http(client, connections=8)
    watched: list[_Watched] = []
    rows: list[CheckRow] = []
    try:
        rows.extend(await _models(http, plan.model))
        if rows[-1].level == "pass":
            run = uuid.uuid4().hex[:16]
            watched = [_Watched(p, f"vpcheck-{run}-{i}") for i, p in enumerate(plan.probes)]
            say("Waiting for the answers (Ctrl-C stops the wait; nothing more is sent)...")
            await asyncio.gather(*(_watch(http, w, plan.model, timeout, say) for w in watched))
            rows.extend(_window(w, timeout) for w in watched[:-1])
            rows.append(await _replay(http, watched[0]))
            rows.append(_strict(watched[-1]))
        else:
            rows.extend(_skipped(plan, rows[-1]))
        rows.append(await _batches(http))
    except Unreachable as exc:
        rows.append(_unreachable(exc))
    finally:
        await http.close()
    spent = (
        None if resolve_price(plan.model, "asap", None) is None else sum(w.cost for w in watched)
    )
    return CheckResult(client.base_url, plan.model, tuple(rows), spent)


async def _send(
    http: Http, method: str, path: str, payload: bytes | None = None, key: str | None = None
) -> Reply:
    """One request, retried as a run retries (a keyed create replays, so this is safe).

    The check sees the last answer itself, 401s and 403s included, so it asks the run's
    :class:`RetryPolicy` what deserves another try rather than going through the exchange,
    which turns those into exceptions.
    """
    attempt = overloads = 0
    while True:
        reply = await http.request(method, path, payload=payload, idempotency_key=key)
        if reply.status in OVERLOAD:
            overloads += 1
        else:
            attempt += 1
        if not _RETRY.should_retry(reply.status, attempt, overloads):
            return reply
        wait = parse_retry_after(reply.retry_after, time.time())
        await asyncio.sleep(_RETRY.delay(attempt, wait, random.random()))


def _json(reply: Reply) -> Any:
    try:
        return decode_json(reply.body)
    except ValueError:
        return None


async def _models(http: Http, model: str) -> list[CheckRow]:
    reply = await _send(http, "GET", "/models")
    expectation = "GET /models answers 200 to the key"
    if reply.status in (401, 403):
        _, message = error_summary(reply.status, reply.body)
        return [
            CheckRow(
                "API key",
                "fail",
                expectation,
                f"refused: {message}",
                "set VALAR_API_KEY to a key from app.valarhq.ai (copied whole, no quotes); "
                "a 403 can also mean the key's organisation has no API access",
            )
        ]
    if reply.status != 200:
        _, message = error_summary(reply.status, reply.body)
        return [
            CheckRow(
                "API key",
                "fail",
                expectation,
                message,
                "VALAR_BASE_URL should be the API root ending in /v1, e.g. "
                "https://api.valarhq.ai/v1",
            )
        ]
    key_row = CheckRow("API key", "pass", expectation, "accepted (HTTP 200)")
    decoded = _json(reply)
    data = decoded.get("data") if isinstance(decoded, dict) else None
    ids = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
    listed = [i for i in ids if isinstance(i, str)]
    expectation = f"{model} in GET /models' data"
    if model in listed:
        return [key_row, CheckRow("model", "pass", expectation, f"listed ({len(listed)} models)")]
    shown = ", ".join(listed[:8]) + (" ..." if len(listed) > 8 else "")
    return [
        key_row,
        CheckRow(
            "model",
            "fail",
            expectation,
            f"not listed; {len(listed)} models are: {shown or 'none'}",
            "choose a listed model (--model / model=), spelled exactly, organisation included",
        ),
    ]


def _skipped(plan: CheckPlan, cause: CheckRow) -> list[CheckRow]:
    why = f"not tried: the {cause.name} check failed"
    names = [p.name for p in plan.probes[:-1]] + ["idempotent replay", "strict structured output"]
    if cause.name == "API key":
        names.insert(0, "model")
    return [CheckRow(name, "skip", "-", why) for name in names]


async def _watch(http: Http, watched: _Watched, model: str, timeout: float, say: Say) -> None:
    """Create one background request and poll it until it ends or the timeout passes."""
    loop = asyncio.get_running_loop()
    probe = watched.probe
    payload = json.dumps(probe.body, separators=(",", ":")).encode()
    started = loop.time()
    reply = await _send(http, "POST", "/responses", payload, watched.key)
    watched.create_status = reply.status
    if reply.status not in (200, 202):
        watched.create_error = error_summary(reply.status, reply.body)[1]
        watched.seconds = loop.time() - started
        return
    parsed = parse_response(_json(reply))
    watched.response_id = parsed.response_id
    watched.words.append(parsed.raw_status)
    say(f"  {probe.name}: {parsed.raw_status}")
    delay, cap = 0.1, (2.0 if probe.window == "asap" else 10.0)
    noted = started
    while parsed.status not in TERMINAL and parsed.response_id is not None:
        now = loop.time()
        if now - started >= timeout:
            break
        await asyncio.sleep(min(delay, timeout - (now - started)))
        delay = min(delay * 1.5, cap)
        got = await _send(http, "GET", f"/responses/{quote(parsed.response_id, safe='')}")
        if got.status != 200:
            continue  # a poll that lags (404) or fails is tried again at the next look
        parsed = parse_response(_json(got))
        now = loop.time()
        if parsed.raw_status not in watched.words:
            watched.words.append(parsed.raw_status)
            say(f"  {probe.name}: {parsed.raw_status} after {now - started:.1f} s")
            noted = now
        elif now - noted >= _NOTE_EVERY:
            say(f"  {probe.name}: still {parsed.raw_status} after {now - started:.0f} s")
            noted = now
    watched.seconds = loop.time() - started
    outcome = parsed.outcome
    if parsed.status in TERMINAL:
        watched.final = parsed.status
    if outcome is not None:
        watched.text = outcome.text
        price = resolve_price(model, probe.window, None)
        watched.cost = 0.0 if price is None else price.of(outcome)


def _window(watched: _Watched, timeout: float) -> CheckRow:
    if watched.create_status not in (200, 202):
        return CheckRow(
            watched.probe.name,
            "fail",
            "202/200 at once with a response id",
            watched.create_error,
            "the window or the model was refused: see the message; every priced model "
            "lists both windows",
        )
    return window_row(
        watched.probe.window,
        watched.create_status,
        watched.words,
        watched.seconds,
        watched.final,
        watched.text,
        timeout,
    )


async def _replay(http: Http, first: _Watched) -> CheckRow:
    if first.response_id is None:
        return CheckRow(
            "idempotent replay", "skip", "-", "not tried: the first create made no response"
        )
    payload = json.dumps(first.probe.body, separators=(",", ":")).encode()
    reply = await _send(http, "POST", "/responses", payload, first.key)
    replay_id = parse_response(_json(reply)).response_id if reply.status in (200, 202) else None
    return replay_row(first.response_id, replay_id, reply.status)


def _strict(watched: _Watched) -> CheckRow:
    name = watched.probe.name
    expectation = "strict: true json_schema accepted; the answer parses and obeys the schema"
    if watched.create_status not in (200, 202):
        return CheckRow(
            name,
            "fail",
            expectation,
            f"refused: {watched.create_error}",
            "the endpoint refuses strict structured outputs, which score() sends; "
            "run() without a schema still works; report it to Valar",
        )
    if watched.final is None:
        return CheckRow(
            name, "warn", expectation, f"not done after {watched.seconds:.0f} s", "run again"
        )
    if watched.final != "completed" or not watched.text:
        return CheckRow(
            name,
            "fail",
            expectation,
            f"ended {watched.final} without an answer",
            "try another model for score(); give it a larger max_output_tokens",
        )
    try:
        answer = json.loads(watched.text)
    except ValueError:
        problems = ["not JSON"]
    else:
        problems = validate(answer, STRICT_SCHEMA)
    if problems:
        return CheckRow(
            name,
            "fail",
            expectation,
            f"answered {watched.text[:40]!r}: {'; '.join(problems)[:80]}",
            "the model does not keep to strict schemas: score(..., retries_on_invalid=2) "
            "re-asks unreadable answers; another model may keep to them",
        )
    return CheckRow(name, "pass", expectation, f"answered {watched.text[:40]!r}: obeys")


async def _batches(http: Http) -> CheckRow:
    listed = await _send(http, "GET", "/batches?limit=1")
    empty = json.dumps({"endpoint": "/v1/responses", "requests": []}).encode()
    created = await _send(http, "POST", "/batches", empty)
    code, message = None, ""
    if created.status != 200:
        code, message = error_summary(created.status, created.body)
    return batch_row(listed.status, created.status, code, message)


def _unreachable(exc: Unreachable) -> CheckRow:
    return CheckRow(
        "endpoint",
        "fail",
        "HTTP answers from the API",
        str(exc.fatal or exc),
        "check VALAR_BASE_URL, the network, and HTTPS_PROXY / SSL_CERT_FILE if a proxy or an "
        "inspecting CA stands in the way",
    )
