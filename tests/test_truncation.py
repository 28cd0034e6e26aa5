"""Truncated answers: never a success, whatever the status says, and not re-paid on a re-run.

A response that carries ``incomplete_details`` is incomplete even when its status reads
``completed`` (the emulator's ``truncation="completed"`` mode answers that way). Its row error
names the reason and the cap; its partial text is in ``<into>_partial`` with ``details=True``;
``retry_failed`` does not ask the same body again, while a larger cap (a new body) is asked.
"""

from __future__ import annotations

import json
import urllib.request

import pandas as pd
import pytest
from helpers import FAST, MODEL

from valar_pandas._cli.main import main
from valar_pandas._core.wire import parse_response
from valar_pandas.emulator import Faults, Latency
from valar_pandas.emulator._cli import _config, _parser

CUT = "incomplete: max_output_tokens: the answer was cut at the output cap; raise max_output_tokens"
QUICK = Latency(median=0.02, sigma=0.0)


def _message(text: str) -> dict[str, object]:
    return {"type": "message", "content": [{"type": "output_text", "text": text}]}


# -- reading a Response object ------------------------------------------------------------------


@pytest.mark.parametrize("status", ["completed", "COMPLETED", "incomplete", None, "finished"])
@pytest.mark.parametrize(
    "details",
    [{"reason": "max_output_tokens"}, "max_output_tokens", {"type": "length"}, ["length"]],
    ids=["object", "string", "no-reason", "list"],
)
def test_incomplete_details_make_any_finished_status_incomplete(status, details):
    obj = {"id": "r", "status": status, "incomplete_details": details, "output": [_message("pa")]}
    outcome = parse_response(obj).outcome
    assert outcome is not None and not outcome.ok
    assert (outcome.status, outcome.text) == ("incomplete", "pa")
    assert outcome.error is not None and outcome.error.startswith("incomplete: ")


@pytest.mark.parametrize("details", [None, {}, [], "", "  ", {"reason": None}, [None]], ids=repr)
def test_a_completed_answer_with_empty_incomplete_details_is_a_success(details):
    obj = {
        "id": "r",
        "status": "completed",
        "incomplete_details": details,
        "output": [_message("a")],
    }
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.ok and outcome.text == "a"


@pytest.mark.parametrize("details", [None, {}, []], ids=repr)
def test_an_incomplete_status_is_incomplete_whatever_its_details_hold(details):
    obj = {
        "id": "r",
        "status": "incomplete",
        "incomplete_details": details,
        "output": [_message("pa")],
    }
    outcome = parse_response(obj).outcome
    assert outcome is not None and (outcome.status, outcome.text) == ("incomplete", "pa")


@pytest.mark.parametrize("status", ["queued", "in_progress", "pending", "running"])
def test_incomplete_details_on_a_running_response_keep_it_polled(status):
    parsed = parse_response({"id": "r", "status": status, "incomplete_details": {"reason": "x"}})
    assert parsed.outcome is None and parsed.status in ("queued", "running")


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_failed_or_cancelled_verdict_keeps_its_own_status(status):
    obj = {"id": "r", "status": status, "incomplete_details": {"reason": "max_output_tokens"}}
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.status == status


@pytest.mark.parametrize(
    ("sent", "echoed", "said"),
    [
        ({"max_output_tokens": 16}, 99, f"{CUT} (now 16)"),  # the request's own cap wins
        (None, 32, f"{CUT} (now 32)"),  # else the cap the response echoes
        ({}, 32, f"{CUT} (not set, so the server's default applied)"),
        (None, None, f"{CUT} (not set, so the server's default applied)"),
        (None, "lots", CUT),  # an echo that is not a cap names the option alone
    ],
)
def test_the_error_names_the_cap_the_request_was_sent_with(sent, echoed, said):
    obj = {
        "id": "r",
        "status": "completed",
        "incomplete_details": {"reason": "max_output_tokens"},
        "max_output_tokens": echoed,
    }
    outcome = parse_response(obj, sent).outcome
    assert outcome is not None and outcome.error == said


def test_without_any_cap_known_the_error_names_the_option():
    obj = {"id": "r", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.error == CUT


def test_a_content_filter_stop_says_so():
    obj = {"id": "r", "status": "completed", "incomplete_details": {"reason": "content_filter"}}
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.status == "incomplete" and outcome.error is not None
    assert outcome.error.startswith("incomplete: content_filter: the server's content filter")


# -- end to end, against the emulator ---------------------------------------------------------


def _frame() -> pd.DataFrame:
    # "Echo: say <q>": 2, 3, 5 and 7 words; a cap of 3 cuts the last two.
    return pd.DataFrame({"q": ["", "a", "a b c", "a b c d e"]})


RUNS = {
    "realtime": FAST,
    "background": {"model": MODEL, "completion_window": "standard", "progress": None},
    "batch": {"model": MODEL, "mode": "batch", "progress": None},
}


@pytest.mark.parametrize("truncation", ["incomplete", "completed"])
@pytest.mark.parametrize("mode", list(RUNS))
def test_a_cut_answer_is_a_row_error_with_its_partial_text_in_details(serve, truncation, mode):
    emulator, client = serve(truncation=truncation, latency=QUICK, batch_api=True)
    out = _frame().valar.run(
        "say {q}", client=client, max_output_tokens=3, details=True, **RUNS[mode]
    )
    assert out["output"].tolist()[:2] == ["Echo: say", "Echo: say a"]
    assert out["output"].iloc[2:].isna().all()  # a cut answer is not an answer
    assert out["output_status"].tolist() == ["completed"] * 2 + ["incomplete"] * 2
    assert out["output_error"].iloc[:2].isna().all()
    assert out["output_error"].iloc[2:].tolist() == [f"{CUT} (now 3)"] * 2
    assert out["output_partial"].iloc[:2].isna().all()
    assert out["output_partial"].iloc[2:].tolist() == ["Echo: say a", "Echo: say a"]
    assert out.attrs["valar"]["failed"] == 2
    if mode == "batch":
        assert emulator.stats.batch_creates == 1
    else:
        assert emulator.stats.requests["POST /v1/responses"] == 4


def test_the_completed_mode_reports_completed_with_incomplete_details(serve):
    emulator, client = serve(truncation="completed")
    body = {"model": MODEL, "input": "say a b c d", "max_output_tokens": 2}
    request = urllib.request.Request(
        f"{client.base_url}/responses",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {emulator.config.api_key}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        reply = json.load(answer)
    assert reply["status"] == "completed"
    assert reply["incomplete_details"] == {"reason": "max_output_tokens"}
    assert reply["output"][0]["content"][0]["text"] == "Echo: say"


def test_a_rerun_pays_nothing_for_cut_rows_and_a_larger_cap_asks_again(serve):
    emulator, client = serve(truncation="completed", latency=QUICK)
    df = _frame()
    first = df.valar.run("say {q}", client=client, max_output_tokens=3, details=True, **FAST)
    assert first["output_status"].tolist() == ["completed"] * 2 + ["incomplete"] * 2
    assert emulator.stats.inferences == 4

    estimate = df.valar.estimate("say {q}", client=client, max_output_tokens=3, model=MODEL,
                                 completion_window="asap")  # fmt: skip
    assert (estimate.cache_hits, estimate.to_send) == (4, 0)  # the estimate agrees: free
    again = df.valar.run("say {q}", client=client, max_output_tokens=3, details=True, **FAST)
    assert emulator.stats.inferences == 4  # the same bodies: nothing sent, nothing paid
    assert emulator.stats.requests["POST /v1/responses"] == 4
    assert again["output_error"].tolist() == first["output_error"].tolist()
    assert again["output_partial"].tolist() == first["output_partial"].tolist()
    assert again["output"].iloc[2:].isna().all()  # still not stored as a success

    larger = df.valar.run("say {q}", client=client, max_output_tokens=8, details=True, **FAST)
    assert emulator.stats.inferences == 8  # a new cap is a new body: every row asked
    assert larger["output"].tolist() == ["Echo: say", "Echo: say a", "Echo: say a b c",
                                         "Echo: say a b c d e"]  # fmt: skip
    assert larger["output_error"].isna().all()


def test_retry_failed_asks_failed_rows_again_but_not_cut_ones(serve):
    # A quarter of the bodies fail (deterministically), the long ones are cut.
    emulator, client = serve(faults=Faults(failed=0.25), seed=3)
    df = pd.DataFrame({"q": [f"row {i}" + " w" * (i % 3) * 4 for i in range(40)]})
    first = df.valar.run("say {q}", client=client, max_output_tokens=5, details=True, **FAST)
    statuses = first["output_status"].value_counts().to_dict()
    failed, cut = statuses.get("failed", 0), statuses.get("incomplete", 0)
    assert failed and cut and statuses.get("completed", 0)
    paid = emulator.stats.inferences
    df.valar.run("say {q}", client=client, max_output_tokens=5, **FAST)
    assert emulator.stats.inferences == paid + failed  # the failed ones, not the cut ones


def test_the_command_reports_cut_rows_and_does_not_pay_for_them_twice(serve_cli, tmp_path):
    emulator = serve_cli(truncation="completed", latency=QUICK)
    _frame().to_csv(tmp_path / "in.csv", index=False)
    argv = ["run", str(tmp_path / "in.csv"), str(tmp_path / "out.parquet"), "--template",
            "say {q}", "--max-output-tokens", "3", "--details", "--quiet", "--model", MODEL,
            "--completion-window", "asap"]  # fmt: skip
    main(argv)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["output_status"].tolist() == ["completed"] * 2 + ["incomplete"] * 2
    assert out["output_partial"].iloc[2:].tolist() == ["Echo: say a", "Echo: say a"]
    assert out["output"].iloc[2:].isna().all()
    main(argv)
    assert emulator.stats.inferences == 4


def test_the_emulator_command_takes_the_truncation_mode():
    assert _config(_parser("x").parse_args([])).truncation == "incomplete"
    assert _config(_parser("x").parse_args(["--truncation", "completed"])).truncation == (
        "completed"
    )
    with pytest.raises(SystemExit):
        _parser("x").parse_args(["--truncation", "sometimes"])


@pytest.mark.parametrize("mode", list(RUNS))
def test_the_cap_is_named_when_the_server_does_not_echo_it(serve, monkeypatch, mode):
    from valar_pandas.emulator import _batch_server, _server, _state

    def quiet(record, status):  # a server whose Response objects leave the cap out
        obj = _state.render(record, status)
        obj.pop("max_output_tokens", None)
        return obj

    monkeypatch.setattr(_server, "render", quiet)
    monkeypatch.setattr(_batch_server, "render", quiet)
    _, client = serve(latency=QUICK, batch_api=True)
    out = _frame().valar.run("say {q}", client=client, max_output_tokens=3, **RUNS[mode])
    assert out["output_error"].iloc[2:].tolist() == [f"{CUT} (now 3)"] * 2
