"""When the Batch API cannot be used, when items fail, when a batch comes back short.

Against the emulator over loopback: each way a server can refuse batches (403 not enabled,
400 "coming soon" or unavailable, 501 or a 503 saying so on every create) makes
``mode="auto"`` fall back to background mode with a warning and ``mode="batch"`` raise
``BatchUnavailable`` quoting the server; any other 5xx on every create stops the run with the
key kept for a replay; an unknown model is a model error; failed items carry their reason; a
batch that holds fewer items than were sent has the rest sent in background mode, none paid
twice; a fallback's warning comes after the run, never losing a paid answer.
"""

from __future__ import annotations

import dataclasses
import warnings

import pandas as pd
import pytest
from helpers import MODEL, TEMPLATE, echo, words

from valar_pandas import (
    APIError,
    AuthenticationError,
    BatchFallbackWarning,
    BatchUnavailable,
    HttpRequest,
    HttpResponse,
    ValarClient,
)
from valar_pandas._cli.main import main
from valar_pandas._core import batchplan as _batchplan
from valar_pandas._core.batchplan import (
    LIMITS,
    BatchLimits,
    BatchPoll,
    chunk_items,
    is_model_error,
    is_unavailable,
    item_reason,
    make_item,
)
from valar_pandas._core.wire import make_request, response_body
from valar_pandas._policy import RetryPolicy
from valar_pandas._run import compose as _compose
from valar_pandas.emulator import EmulatorConfig, Faults, Latency, _batch_server
from valar_pandas.emulator._batches import validate_batch

QUICK = Latency(median=0.02, sigma=0.3)
BATCH = {"model": MODEL, "mode": "batch", "progress": None}
AUTO = {"model": MODEL, "mode": "auto", "progress": None}
WORDS = {
    "not_enabled": "not enabled for your organisation",
    "coming_soon": "Coming soon",
    "unavailable": "not available for this account",
}
"""The emulator's refusals that say the Batch API cannot be used."""


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """Batches polled from 0.1 s on, auto's threshold at 20, retries within milliseconds."""
    monkeypatch.setattr(_batchplan, "BATCH_POLL", BatchPoll(first=0.1, growth=1.5, cap=0.5))
    monkeypatch.setattr(_batchplan, "AUTO_MIN_REQUESTS", 20)
    monkeypatch.setattr(_compose, "RetryPolicy", lambda: RetryPolicy(base=0.01, cap=0.02))


def batches(**config):
    return {"batch_api": True, "latency": QUICK, "faults": Faults(retry_after=0.01), **config}


@pytest.mark.parametrize("refusal", list(WORDS))
def test_a_refusing_batch_api_makes_auto_fall_back_with_a_warning(serve, refusal):
    emulator, client = serve(**batches(batch_refusal=refusal))
    df = words(30)
    with pytest.warns(BatchFallbackWarning, match=WORDS[refusal]) as caught:
        out = df.valar.run(TEMPLATE, client=client, **AUTO)
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    assert "30 requests go in background mode" in str(caught[0].message)
    assert emulator.stats.requests["POST /v1/responses"] == 30
    assert emulator.stats.inferences == 30 and emulator.stats.batch_creates == 0
    again = df.valar.run(TEMPLATE, client=client, **AUTO)  # the store holds every answer
    assert again.attrs["valar"]["cached"] == 30 and emulator.stats.inferences == 30


@pytest.mark.parametrize("refusal", list(WORDS))
def test_a_refusing_batch_api_is_batch_unavailable_in_batch_mode(serve, refusal):
    emulator, client = serve(**batches(batch_refusal=refusal))
    with pytest.raises(BatchUnavailable, match=WORDS[refusal]) as info:
        words(5).valar.run(TEMPLATE, client=client, **BATCH)
    error = info.value
    assert isinstance(error, APIError) and not isinstance(error, AuthenticationError)
    assert "mode='auto'" in str(error) and "--mode auto" in (error.command or "")
    assert client.api_key.reveal() not in str(error) + repr(error)
    assert str(error).isprintable() and len(str(error)) < 500
    assert emulator.stats.inferences == 0 and emulator.stats.batch_creates == 0


def test_a_403_on_batches_names_the_organisation_not_the_key(serve):
    _, client = serve(**batches(batch_refusal="not_enabled"))
    with pytest.raises(BatchUnavailable) as info:
        words(5).valar.run(TEMPLATE, client=client, **BATCH)
    assert info.value.status_code == 403
    assert "not enabled for this API key's organisation" in str(info.value)
    assert "VALAR_API_KEY" not in str(info.value)


def test_a_403_everywhere_is_still_the_key():
    """A key refused on /v1/responses as well is the key's fault, not the Batch API's."""
    seen: list[tuple[str, str]] = []

    async def forbidden(request: HttpRequest) -> HttpResponse:
        seen.append((request.method, request.path))
        return HttpResponse(403, json={"error": {"message": "This key has been revoked."}})

    client = ValarClient(api_key="sk-revoked-0123456789", transport=forbidden)
    for mode in ("batch", "auto"):
        with pytest.raises(AuthenticationError, match="revoked"):
            words(30).valar.run(TEMPLATE, client=client, store=None, **{**AUTO, "mode": mode})
    assert seen[:2] == [("POST", "/batches"), ("GET", "/responses/resp_valar_pandas_key_check")]
    assert ("POST", "/responses") not in seen


@pytest.mark.parametrize(("refusal", "status"), [("overloaded", 503), ("server_error", 500)])
@pytest.mark.parametrize("mode", ["batch", "auto"])
def test_a_5xx_on_every_create_stops_the_run_and_a_re_run_replays_it(serve, refusal, status, mode):
    """A server error may hide a batch the server accepted: no fallback, the key is kept."""
    emulator, client = serve(**batches(batch_refusal=refusal))
    df = words(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchFallbackWarning)
        with pytest.raises(APIError, match=f"HTTP {status}") as info:
            df.valar.run(TEMPLATE, client=client, **{**AUTO, "mode": mode})
    error = info.value
    assert not isinstance(error, BatchUnavailable) and error.status_code == status
    assert "same call again replays that create" in str(error) and "mode='background'" in str(error)
    assert "--mode background" in (error.command or "")
    assert client.api_key.reveal() not in str(error) + repr(error)
    assert emulator.stats.requests.get("POST /v1/responses", 0) == 0
    assert emulator.stats.inferences == 0
    creates = emulator.stats.requests["POST /v1/batches"]
    emulator.config = dataclasses.replace(emulator.config, batch_refusal=None)
    out = df.valar.run(TEMPLATE, client=client, **{**AUTO, "mode": mode})
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    assert emulator.stats.requests["POST /v1/batches"] == creates + 1  # the same create
    assert emulator.stats.batch_creates == 1 and emulator.stats.inferences == 30


@pytest.mark.parametrize(
    ("status", "body", "unavailable"),
    [
        (503, {"error": {"message": "The Batch API is not available on this server."}}, True),
        (503, {"error": {"message": "Nope", "code": "batches_unavailable"}}, True),
        (503, {"error": {"message": "Batches: coming soon"}}, True),
        (503, "<html><h1>503 Service Temporarily Unavailable</h1></html>", False),
        (503, {"error": {"message": "The batch service is temporarily unavailable"}}, False),
        (502, "<html><h1>502 Bad Gateway</h1></html>", False),
        (504, {"error": {"message": "The Batch API is not available"}}, False),
    ],
)  # fmt: skip
def test_a_5xx_on_every_create_is_unavailable_only_when_it_says_so(status, body, unavailable):
    seen: list[str] = []

    async def answer(request: HttpRequest) -> HttpResponse:
        seen.append(f"{request.method} {request.path}")
        if isinstance(body, str):
            return HttpResponse(status, body=body.encode(), headers={"Retry-After": "0"})
        return HttpResponse(status, json=body, headers={"Retry-After": "0"})

    client = ValarClient(api_key="sk-test-0123456789", transport=answer)
    with pytest.raises(APIError) as info:
        words(5).valar.run(TEMPLATE, client=client, store=None, **BATCH)
    assert isinstance(info.value, BatchUnavailable) is unavailable
    assert info.value.status_code == status
    assert set(seen) == {"POST /batches"}


def test_rows_of_a_replayed_create_are_never_sent_another_way(serve, tmp_path):
    """A create an interrupted run may have had accepted, refused on replay: kept, not resent."""
    from test_once import _interrupted_create

    emulator, client = serve(latency=QUICK, faults=Faults(drop_after_create=1.0), batch_api=True)
    path, df = tmp_path / "s.sqlite3", words(30)
    _interrupted_create(emulator, client, path, df)  # the server holds the batch: 30 paid
    emulator.config = dataclasses.replace(emulator.config, batch_refusal="coming_soon")
    out = df.valar.run(TEMPLATE, client=client, store=path, **AUTO)
    assert out["output_error"].str.contains("same Idempotency-Key").all()
    assert emulator.stats.requests.get("POST /v1/responses", 0) == 0
    assert emulator.stats.inferences == 30
    emulator.config = dataclasses.replace(emulator.config, batch_refusal=None)
    again = df.valar.run(TEMPLATE, client=client, store=path, **AUTO)
    assert again["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 30 and emulator.stats.batch_creates == 1


def test_a_5xx_then_success_on_the_first_create_is_not_unavailable(serve):
    emulator, client = serve(**batches(faults=Faults(rate_503=0.5, retry_after=0.01), seed=3))
    out = words(25).valar.run(TEMPLATE, client=client, **BATCH)
    assert out["output"].tolist() == echo(words(25))
    assert emulator.stats.batch_creates == 1 and emulator.stats.inferences == 25


@pytest.mark.parametrize("mode", ["batch", "auto"])
def test_an_unknown_model_answered_404_is_a_model_error_not_an_absent_batch_api(serve, mode):
    emulator, client = serve(**batches(unknown_model_status=404))
    options = {**AUTO, "mode": mode, "model": "no-such/model"}
    with pytest.raises(APIError, match="does not exist") as info:
        words(30).valar.run(TEMPLATE, client=client, **options)
    assert not isinstance(info.value, BatchUnavailable)
    assert info.value.status_code == 404 and info.value.code == "model_not_found"
    assert "model" in str(info.value) and "base URL" not in str(info.value)
    assert emulator.stats.requests.get("POST /v1/responses", 0) == 0
    assert emulator.stats.inferences == 0


def test_an_unknown_model_in_background_mode_does_not_blame_the_base_url(serve):
    _, client = serve(unknown_model_status=404, latency=QUICK)
    with pytest.raises(APIError, match="does not exist") as info:
        words(30).valar.run(TEMPLATE, client=client, model="no-such/model", progress=None)
    assert "base URL" not in str(info.value)


@pytest.mark.parametrize("detail", ["status", "result", "none"])
def test_failed_items_carry_their_reason_in_the_error_column(serve, detail):
    emulator, client = serve(
        **batches(faults=Faults(failed=0.3), seed=11, batch_failure_detail=detail)
    )
    df = words(60)
    out = df.valar.run(TEMPLATE, client=client, **BATCH)
    failed = out["output_error"].notna()
    assert 5 <= failed.sum() <= 35
    (batch,) = emulator.store.batches.values()
    reasons = {r.text for r in batch.items.values() if r.outcome == "failed"}
    errors = out.loc[failed, "output_error"]
    assert errors.str.startswith("failed: ").all()
    if detail == "none":
        assert errors.str.contains("no reason given").all()
    else:
        assert all(any(reason in e for reason in reasons) for e in errors)
    fetches = emulator.stats.requests["GET /v1/batches/{id}/{custom_id}"]
    answered = len(df) - failed.sum()
    # A reason in the status entry costs no fetch; otherwise the item's result is asked once.
    assert fetches == (answered if detail == "status" else len(df))
    assert out.loc[~failed, "output"].tolist() == [
        e for e, f in zip(echo(df), failed, strict=True) if not f
    ]


@pytest.mark.parametrize("mode", ["batch", "auto"])
def test_items_a_batch_does_not_hold_are_sent_in_background_once(serve, mode):
    emulator, client = serve(**batches(batch_drop_items=4))
    df = words(30)
    with pytest.warns(BatchFallbackWarning, match="does not hold 4 of the items"):
        out = df.valar.run(TEMPLATE, client=client, **{**BATCH, "mode": mode})
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    (batch,) = emulator.store.batches.values()
    assert len(batch.items) == 26
    assert emulator.stats.requests["POST /v1/responses"] == 4
    assert emulator.stats.inferences == 30  # 26 in the batch, 4 in background: none twice
    assert sorted(emulator.stats.inferences_by_body.values()) == [1] * 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = df.valar.run(TEMPLATE, client=client, **{**BATCH, "mode": mode})
    assert again.attrs["valar"]["cached"] == 30 and emulator.stats.inferences == 30


@pytest.fixture
def unfinished_404(monkeypatch):
    """A server with no result for an item until it ends: 404, as for an unknown item."""
    original = _batch_server._BatchRoutes.result

    async def result(self, request):
        batch = self._owned(request)
        record = batch.items.get(request.match_info["custom_id"]) if batch else None
        if record is not None and self._status(record) in ("queued", "pending", "running"):
            return _batch_server._not_found("A result")
        return await original(self, request)

    monkeypatch.setattr(_batch_server._BatchRoutes, "result", result)


def _shown(monkeypatch, keep):
    """Make the server's status maps list only the entries ``keep(poll, status)`` admits."""
    original, polls = _batch_server.status_body, [0]

    def status_body(batch, status, reasons=False):
        body = original(batch, status, reasons)
        polls[0] += 1
        body["request_status"] = {
            cid: entry
            for cid, entry in body["request_status"].items()
            if keep(polls[0], entry["status"])
        }
        return body

    monkeypatch.setattr(_batch_server, "status_body", status_body)


def test_an_empty_status_map_is_waited_for_not_taken_for_a_short_batch(
    serve, monkeypatch, unfinished_404
):
    """A server still validating lists no items: none is sent again, none paid twice."""
    _shown(monkeypatch, lambda poll, status: poll > 3)
    emulator, client = serve(**batches(latency=Latency(median=1.5, sigma=0.0)))
    df = words(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchFallbackWarning)
        out = df.valar.run(TEMPLATE, client=client, store=False, **BATCH)
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    assert emulator.stats.requests.get("POST /v1/responses", 0) == 0
    assert emulator.stats.inferences == 10


def test_a_status_map_without_unstarted_items_is_not_a_short_batch(
    serve, monkeypatch, unfinished_404
):
    """A map of finished items only, request_counts whole: the rest are still waited for."""
    _shown(monkeypatch, lambda poll, status: status in ("COMPLETED", "FAILED", "CANCELLED"))
    emulator, client = serve(**batches(latency=Latency(median=1.0, sigma=0.8), seed=5))
    df = words(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchFallbackWarning)
        out = df.valar.run(TEMPLATE, client=client, store=False, **BATCH)
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    assert emulator.stats.requests.get("POST /v1/responses", 0) == 0
    assert emulator.stats.inferences == 12


@pytest.mark.parametrize("mode", ["batch", "auto"])
def test_a_fallback_warning_raised_as_an_error_loses_no_paid_answer(serve, mode):
    """Under simplefilter("error") the warning comes after the run, carrying the frame."""
    emulator, client = serve(**batches(batch_drop_items=2))
    df = words(25)  # auto's threshold is 20 here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BatchFallbackWarning, match="does not hold 2 of the items") as info:
            df.valar.run(TEMPLATE, client=client, store=False, **{**BATCH, "mode": mode})
    out = info.value.frame
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    assert out.attrs["valar"]["rows"] == 25
    assert emulator.stats.inferences == 25  # 23 in the batch, 2 in background: all in .frame


def test_a_fallback_of_auto_raised_as_an_error_comes_after_the_run(serve):
    emulator, client = serve(**batches(batch_refusal="coming_soon"))
    df = words(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BatchFallbackWarning, match="Coming soon") as info:
            df.valar.run(TEMPLATE, client=client, store=False, **AUTO)
    assert info.value.frame["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 30


def test_the_command_warns_of_a_short_batch_after_writing_every_row(serve_cli, tmp_path, capsys):
    emulator = serve_cli(**batches(batch_drop_items=2))
    words(12).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL, "--template",
            TEMPLATE, "--mode", "batch", "--quiet"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under python -W error: nothing is raised mid-run
        assert main(argv) == 0
    assert "valar-pandas: warning: batch " in capsys.readouterr().err
    assert pd.read_parquet(out)["output"].tolist() == echo(words(12))
    assert emulator.stats.inferences == 12


def test_items_a_batch_sent_again_are_counted_once_by_the_progress(serve):
    _, client = serve(**batches(batch_drop_items=3))
    with pytest.warns(BatchFallbackWarning):
        job = words(20).valar.submit(TEMPLATE, client=client, **BATCH)
        job.result(timeout=60)
    counts = job.status()
    assert counts["submitted"] == 20 and counts["running"] == 0 and counts["done"] == 20


def test_items_a_batch_does_not_hold_end_at_once_when_nothing_can_resend(serve, monkeypatch):
    """Without a way to resend, the lost items end at once (not at the 24 h deadline)."""
    emulator, client = serve(**batches(batch_drop_items=2))
    original = _compose.execute_batches

    async def no_resend(*args, **kw):
        return await original(*args, **{**kw, "resend": None})

    monkeypatch.setattr(_compose, "execute_batches", no_resend)
    out = words(10).valar.run(TEMPLATE, client=client, **BATCH)
    lost = out["output_error"].notna()
    assert lost.sum() == 2 and out.loc[lost, "output_error"].str.contains("re-run").all()
    assert out.loc[lost, "output_error"].str.contains("does not hold 2 of the items").all()
    assert emulator.stats.inferences == 8


def test_the_batch_size_limit_is_256_000_000_bytes():
    assert LIMITS.max_bytes == 256_000_000  # "under 256 MB": not 268,435,456 (MiB)
    assert EmulatorConfig().batch_max_bytes == 256_000_000
    body = {"endpoint": "/v1/responses", "requests": [{"custom_id": "a", "params": {}}]}
    assert validate_batch(body, 256_000_000, (MODEL,), 10, 256_000_000) is not None
    too_big = validate_batch(body, 256_000_000, (MODEL,), 10, EmulatorConfig().batch_max_bytes)
    assert too_big is not None and too_big.code == "batch_too_large"


def test_a_body_one_byte_under_the_limit_fits_and_one_at_the_limit_splits():
    items = [make_item(make_request(response_body(MODEL, f"text {i}")), i) for i in range(2)]
    (one,), _ = chunk_items(items, None, BatchLimits(max_bytes=10**9))
    size = len(one.payload)
    (fits,), _ = chunk_items(items, None, BatchLimits(max_bytes=size + 1))
    assert len(fits.payload) == size  # size < limit: one batch
    split, _ = chunk_items(items, None, BatchLimits(max_bytes=size))
    assert len(split) == 2  # size == limit is not "under"


@pytest.mark.parametrize(
    ("status", "code", "message", "absent", "model"),
    [
        (403, "permission_denied", "HTTP 403: not enabled for your organisation", True, False),
        (400, None, "HTTP 400: Coming soon. The Batches API isn\u2019t generally available", True,
         False),
        (400, None, "HTTP 400: The Batch API is not available for this account.", True, False),
        (400, None, "HTTP 400: This feature is currently unavailable", True, False),
        (404, "model_not_found", "HTTP 404 model_not_found: The model 'x' does not exist", False,
         True),
        (404, None, "HTTP 404: The model 'x' does not exist or you do not have access", False,
         True),
        (400, "model_not_found", "HTTP 400: requests[0].params: The model 'x'", False, True),
        (400, None, "HTTP 400: requests[3].params: image input is not available", False, False),
        (404, None, "HTTP 404: Route POST /v1/batches not found.", True, False),
        (503, None, "HTTP 503: overloaded", False, False),
    ],
)  # fmt: skip
def test_what_an_answer_to_a_batch_create_means(status, code, message, absent, model):
    assert is_unavailable(status, code, message) is absent
    assert is_model_error(status, code, message) is model


def test_a_failed_items_reason_is_read_from_every_shape_of_entry():
    shapes = {
        "a": {"status": "FAILED", "error": {"message": "out of memory", "code": "oom"}},
        "b": {"status": "FAILED", "error": "worker crashed"},
        "c": {"status": "FAILED", "error_message": "timed out"},
        "d": {"status": "FAILED", "reason": "bad\x1b[2J input"},
        "e": {"status": "FAILED"},
        "f": "FAILED",
    }
    body = {"request_status": shapes}
    assert [item_reason(body, cid) for cid in shapes] == [
        "out of memory (oom)",
        "worker crashed",
        "timed out",
        "bad\\x1b[2J input",
        None,
        None,
    ]
