"""Logging under ``valar_pandas``: a line per run at INFO, store faults at WARNING, never a key."""

from __future__ import annotations

import asyncio
import logging

import pytest
from helpers import FAST, MODEL, TEMPLATE, echo, words

from valar_pandas import AuthenticationError, RunStore, ValarClient
from valar_pandas._core.options import validate_options
from valar_pandas._core.plan import plan_requests
from valar_pandas._run.compose import run_plan

KEY = "sk-logcheck-Zq7Xw93LmPv"
WRONG = "sk-wrongkey-Hk4Rt82NsQe"


def _everything_in(record: logging.LogRecord) -> str:
    """Every text a handler could write of a record: message, template, arguments, traceback."""
    return "\n".join(
        [
            record.getMessage(),
            str(record.msg),
            repr(record.args),
            record.exc_text or "",
            logging.Formatter().format(record),
            record.stack_info or "",
        ]
    )


def test_the_package_logger_is_silent_until_the_application_configures_logging():
    handlers = logging.getLogger("valar_pandas").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


def test_a_run_logs_one_line_at_info_and_no_record_holds_the_key(serve, caplog, tmp_path):
    _, client = serve(api_key=KEY)
    caplog.set_level(logging.DEBUG, logger="valar_pandas")
    df = words(40)
    path = tmp_path / "s.sqlite3"
    first = df.valar.run(TEMPLATE, client=client, store=path, **FAST)
    df.valar.run(TEMPLATE, client=client, store=path, **FAST)  # every row from the store
    wrong = ValarClient(api_key=WRONG, base_url=client.base_url)
    with pytest.raises(AuthenticationError):
        words(3).valar.run(TEMPLATE, client=wrong, store=path, salt="again", **FAST)
    assert first["output"].tolist() == echo(df)

    runs = [
        r.getMessage()
        for r in caplog.records
        if r.name == "valar_pandas.run" and r.levelno == logging.INFO
    ]
    assert len(runs) == 3, runs
    sent, cached, refused = runs
    assert sent.startswith("run done: 40 rows, 40 distinct requests (0 from the store, 40 sent")
    assert f"model={MODEL}" in sent and "0 rows failed" in sent
    assert cached.startswith("run done: 40 rows, 40 distinct requests (40 from the store, 0 sent")
    assert "0 HTTP requests" in cached
    assert refused.startswith("run raised AuthenticationError: 3 rows")
    assert caplog.records  # the check below looks at something
    for record in caplog.records:
        text = _everything_in(record)
        for secret in (KEY, WRONG):
            assert secret not in text and secret[3:] not in text, record


def test_a_store_that_cannot_be_written_is_logged_at_warning_and_every_answer_kept(
    serve, caplog, tmp_path
):
    emulator, client = serve(api_key=KEY)
    caplog.set_level(logging.DEBUG, logger="valar_pandas")
    options = validate_options(**FAST)
    prompts = [f"item {i}" for i in range(20)]
    plan = plan_requests(prompts, options)

    async def run() -> list[str | None]:
        with RunStore(tmp_path / "s.sqlite3") as store:
            store._db.execute("PRAGMA query_only = 1")  # every write is refused
            report = await run_plan(plan, options, client, store, None)
        return [outcome.text for outcome in report.outcomes]

    texts = asyncio.run(run())
    assert texts == [f"Echo: {prompt}" for prompt in prompts]
    assert emulator.stats.inferences == 20
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not claim 20 requests" in m and "read-only" in m for m in warned), warned
    assert any("could not record 20 answers" in m for m in warned), warned
    assert all(
        r.name == "valar_pandas.store" for r in caplog.records if r.levelno >= logging.WARNING
    )
    for record in caplog.records:
        assert KEY not in _everything_in(record)
