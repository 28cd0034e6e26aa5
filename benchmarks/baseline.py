"""The baseline: Valar's "requests at scale" recipe, re-implemented on aiohttp.

The vendor's sample uses ``AsyncOpenAI(http_client=DefaultAioHttpClient())``. ``openai`` is
not a dependency of valar_pandas, so this module reproduces what that client does on the
wire, directly with aiohttp:

* one ``GET /v1/models`` first, as the sample does;
* pass 1: every row's ``POST /v1/responses`` (``background: true``, ``max_output_tokens``)
  launched at once with ``asyncio.gather`` behind ``asyncio.Semaphore(200)``, each with its
  own ``Idempotency-Key`` (a random UUID, as the recipe's text asks; the same key on the
  SDK's retries of that call), collecting the response ids;
* pass 2: for every id, ``GET /v1/responses/{id}`` under a second ``Semaphore(200)``,
  sleeping 1 s between polls, up to 3,600 polls, until ``status == "completed"``; every
  completed Response object is kept, as the sample does, and ``output_text`` is extracted
  at the end.

The OpenAI SDK's default retry behaviour is reproduced per HTTP call: ``max_retries=2``;
retry on connection errors and timeouts, on 408, 409, 429 and any 5xx (an ``x-should-retry``
header overrides); wait ``Retry-After`` (or ``retry-after-ms``) when it is between 0 and
60 s, otherwise ``min(0.5 * 2**n, 8) * (1 - 0.25 * random())`` for the n-th retry. Timeouts
are the SDK's defaults (5 s to connect, 600 s to read) and its pool limit (1,000 connections).

Deviations, so the baseline terminates and can be scored (each is counted and reported):
the sample would raise out of ``gather`` when a call still fails after its retries, and
would poll a ``failed``/``cancelled``/``incomplete`` response until its hour ran out. Here a
create that still fails leaves its row without an answer, a poll that still fails counts as
one poll of the 3,600, and the three other terminal statuses end the row's polling. Progress
bars are left out (valar_pandas runs with ``progress=None`` too), and responses are decoded
with ``json.loads`` rather than into pydantic models, so this baseline spends *less* CPU per
request than the real SDK would.

Run as a child of the harness: ``python -m benchmarks.baseline --base-url ... --rows N
--result FILE``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from .child import ChildArgs, Stopwatch, parse_child_args, write_result
from .scenarios import MAX_OUTPUT_TOKENS, MODEL, prompt

__all__ = ["BaselineStats", "SdkLikeClient", "main", "run_recipe"]

CONCURRENCY = 200
POLL_INTERVAL = 1.0
MAX_POLLS = 3600
# The OpenAI SDK's defaults (openai/_constants.py).
MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 600.0
MAX_CONNECTIONS = 1000
KEEPALIVE_EXPIRY = 5.0
_OTHER_TERMINAL = frozenset({"failed", "cancelled", "incomplete"})


class CallFailed(Exception):
    """An SDK-style call that still failed after its retries (the SDK would raise)."""


@dataclass
class BaselineStats:
    """What the baseline counts about itself.

    Attributes:
        http_requests: Every HTTP request sent, retries included.
        retries: Retries made by the SDK-style retry loop.
        create_failures: Creates that still failed after retries (row left unanswered).
        poll_failures: Polls that still failed after retries.
        other_terminal: Responses that ended failed, cancelled or incomplete.
        timed_out: Responses still not completed after 3,600 polls.
        submit_seconds: Duration of pass 1 (every create answered).
    """

    http_requests: int = 0
    retries: int = 0
    create_failures: int = 0
    poll_failures: int = 0
    other_terminal: int = 0
    timed_out: int = 0
    submit_seconds: float = 0.0


class SdkLikeClient:
    """The HTTP behaviour of ``AsyncOpenAI`` (aiohttp backend) for the calls the recipe makes.

    Args:
        session: The aiohttp session (pool of up to 1,000 connections).
        base_url: API root including ``/v1``.
        stats: Counters to update.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, stats: BaselineStats):
        self._session = session
        self._base = base_url.rstrip("/")
        self._stats = stats

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Make one SDK call: one HTTP request plus up to two retries.

        Args:
            method: ``"GET"`` or ``"POST"``.
            path: Path below the base URL.
            body: JSON body, if any.
            idempotency_key: ``Idempotency-Key`` header, kept for every retry of the call.

        Returns:
            The decoded JSON answer.

        Raises:
            CallFailed: The call failed and no retries remain, or the error is not
                retryable.
        """
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        remaining = MAX_RETRIES
        while True:
            self._stats.http_requests += 1
            try:
                async with self._session.request(
                    method, self._base + path, data=data, headers=headers
                ) as response:
                    raw = await response.read()
                    status = response.status
                    response_headers = response.headers
            except (TimeoutError, aiohttp.ClientError) as exc:
                if remaining <= 0:
                    raise CallFailed(f"{type(exc).__name__}: {exc}") from None
                await self._backoff(remaining, None)
                remaining -= 1
                continue
            if 200 <= status < 300:
                decoded: dict[str, Any] = json.loads(raw)
                return decoded
            if remaining <= 0 or not _should_retry(status, response_headers):
                raise CallFailed(f"HTTP {status}: {raw[:200]!r}")
            await self._backoff(remaining, response_headers)
            remaining -= 1

    async def _backoff(self, remaining: int, headers: Mapping[str, str] | None) -> None:
        self._stats.retries += 1
        await asyncio.sleep(_retry_delay(remaining, headers))


def _should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """The SDK's ``_should_retry``: ``x-should-retry`` first, then 408/409/429/5xx."""
    override = headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    return status in (408, 409, 429) or status >= 500


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The SDK's ``_parse_retry_after_header``: ``retry-after-ms``, seconds, or a date."""
    if headers is None:
        return None
    try:
        return float(headers.get("retry-after-ms", "")) / 1000
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())


def _retry_delay(remaining: int, headers: Mapping[str, str] | None) -> float:
    """The SDK's ``_calculate_retry_timeout``."""
    after = _retry_after(headers)
    if after is not None and 0 < after <= 60:
        return after
    retries_made = MAX_RETRIES - remaining
    nominal = min(INITIAL_RETRY_DELAY * 2.0**retries_made, MAX_RETRY_DELAY)
    return max(nominal * (1 - 0.25 * random.random()), 0.0)


def _output_text(response: Mapping[str, Any]) -> str:
    """The recipe's extraction: every ``output_text`` part of every output item, joined."""
    return "".join(
        part.get("text", "")
        for item in response.get("output") or []
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


async def run_recipe(
    base_url: str, api_key: str, rows: int, stats: BaselineStats
) -> list[str | None]:
    """Run the recipe over ``rows`` prompts.

    Args:
        base_url: API root including ``/v1``.
        api_key: Bearer key.
        rows: Number of rows (row ``i`` is :func:`benchmarks.scenarios.prompt` ``(i)``).
        stats: Counters to fill.

    Returns:
        Each row's output text, or None where the row got no completed answer.
    """
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT, connect=READ_TIMEOUT
    )
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_EXPIRY)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"Authorization": f"Bearer {api_key}"},
    ) as session:
        client = SdkLikeClient(session, base_url, stats)
        await client.call("GET", "/models")  # the recipe lists the models first

        submit_sem = asyncio.Semaphore(CONCURRENCY)

        async def submit(i: int) -> str | None:
            content = prompt(i)
            async with submit_sem:
                try:
                    response = await client.call(
                        "POST",
                        "/responses",
                        {
                            "model": MODEL,
                            "input": [{"role": "user", "content": content}],
                            "max_output_tokens": MAX_OUTPUT_TOKENS,
                            "background": True,
                        },
                        idempotency_key=str(uuid.uuid4()),
                    )
                except CallFailed:
                    stats.create_failures += 1
                    return None
            response_id: str = response["id"]
            return response_id

        started = time.perf_counter()
        response_ids = list(await asyncio.gather(*[submit(i) for i in range(rows)]))
        stats.submit_seconds = time.perf_counter() - started

        completed: dict[str, dict[str, Any]] = {}
        poll_sem = asyncio.Semaphore(CONCURRENCY)

        async def poll(response_id: str) -> None:
            for _ in range(MAX_POLLS):
                async with poll_sem:
                    try:
                        response = await client.call("GET", f"/responses/{response_id}")
                    except CallFailed:
                        stats.poll_failures += 1
                        response = None
                if response is not None:
                    status = response.get("status")
                    if status == "completed":
                        completed[response_id] = response
                        return
                    if status in _OTHER_TERMINAL:
                        stats.other_terminal += 1
                        return
                await asyncio.sleep(POLL_INTERVAL)
            stats.timed_out += 1

        await asyncio.gather(*[poll(rid) for rid in response_ids if rid is not None])

    outputs: list[str | None] = []
    for rid in response_ids:
        response = completed.get(rid) if rid is not None else None
        outputs.append(None if response is None else _output_text(response))
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the baseline as a child process and write its result file.

    Args:
        argv: Arguments without the program name.

    Returns:
        The exit code.
    """
    args: ChildArgs = parse_child_args("python -m benchmarks.baseline", argv)
    stats = BaselineStats()
    with Stopwatch() as watch:
        outputs = asyncio.run(run_recipe(args.base_url, args.api_key, args.rows, stats))
    write_result(
        args.result,
        {
            "client": "baseline",
            "wall_s": watch.wall,
            "cpu_s": watch.cpu,
            "ended": watch.ended,
            "rss_before_mb": watch.rss_before,
            "http_requests": stats.http_requests,
            "errors": sum(1 for text in outputs if text is None),
            "submit_s": stats.submit_seconds,
            "extra": {
                "retries": stats.retries,
                "create_failures": stats.create_failures,
                "poll_failures": stats.poll_failures,
                "other_terminal": stats.other_terminal,
                "timed_out": stats.timed_out,
            },
            "outputs": outputs,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
