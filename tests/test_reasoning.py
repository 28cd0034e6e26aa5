"""Reasoning models and pass-through body fields: options, bodies, usage, estimate, budget.

Against the emulator over real loopback sockets: a reasoning model spends reasoning tokens
(by effort) within ``max_output_tokens``, and reports them in ``usage``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import urllib.error
import urllib.request
import warnings
from typing import Any

import pandas as pd
import pytest
from helpers import TEMPLATE, echo, words

from valar_pandas import BudgetWarning, ConfigError, Price
from valar_pandas._cli.main import main
from valar_pandas._core.estimate import count_requests
from valar_pandas._core.models import Finished, Outcome, Started
from valar_pandas._core.options import validate_options
from valar_pandas._core.plan import plan_requests
from valar_pandas._core.wire import parse_response
from valar_pandas._display.tally import Tally, status_line
from valar_pandas._store import RunStore
from valar_pandas.emulator import EmulatorConfig, Latency

GLM = "zai-org/GLM-5.1-FP8"  # a reasoning model
GEMMA = "google/gemma-4-31B-it"  # not one
NOW = {"completion_window": "asap", "progress": None}
QUICK = Latency(median=0.0, sigma=0.0)


# -- options: checked before any request ------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"reasoning": "huge"}, "unknown reasoning effort 'huge'"),
        ({"reasoning": 3}, "reasoning must be an effort"),
        ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning has 'summary'"),
        ({"reasoning": {}}, "reasoning is empty"),
        ({"reasoning": {"generate_summary": "long"}}, "unknown reasoning generate_summary"),
        ({"extra_body": {"model": "x"}}, "may not set 'model': the library sets it from model="),
        ({"extra_body": {"max_output_tokens": 9}}, "from max_output_tokens="),
        ({"extra_body": {"reasoning": {"effort": "low"}}}, "from reasoning="),
        ({"extra_body": {"metadata": {"a": "b"}}}, "from completion_window="),
        ({"extra_body": {"stream": True}}, "never streamed"),
        ({"extra_body": {"background": False}}, "from mode="),
        ({"extra_body": {"top_p": math.nan}}, "JSON values only"),
        ({"extra_body": {"user": object()}}, "JSON values only"),
        ({"extra_body": {1: "x"}}, "keys must be field names"),
        ({"extra_body": {"user": "\ud83d"}}, "JSON values only"),
        ({"extra_body": {"top_p": 1.5}}, "top_p must be a number from 0 to 1"),
        ({"extra_body": {"user": "u" * 257}}, "at most 256 characters"),
        ({"extra_body": {"prompt_cache_key": 7}}, "prompt_cache_key must be text"),
        ({"extra_body": ["top_p"]}, "extra_body must be a mapping"),
    ],
)
def test_bad_reasoning_and_extra_body_are_refused_before_any_request(serve, given, said):
    emulator, client = serve()
    with pytest.raises(ConfigError, match=re.escape(said)):
        words(3).valar.run(TEMPLATE, client=client, model=GLM, **NOW, **given)
    assert emulator.stats.total_requests == 0


def test_text_is_the_librarys_when_scoring(serve):
    emulator, client = serve()
    with pytest.raises(ConfigError, match="may not set 'text' when scoring"):
        words(2).valar.score(
            TEMPLATE, client=client, model=GLM, labels=["a", "b"],
            extra_body={"text": {"format": {"type": "text"}}}, **NOW,
        )  # fmt: skip
    assert emulator.stats.total_requests == 0
    # Outside scoring, text is the caller's to set.
    asked = words(1).valar.requests(TEMPLATE, model=GLM, extra_body={"text": {"x": 1}})
    assert asked["body"].iloc[0]["text"] == {"x": 1}


# -- bodies and fingerprints ----------------------------------------------------------------


def _fingerprint(**options: Any) -> str:
    return str(words(1).valar.requests(TEMPLATE, model=GLM, **options)["fingerprint"].iloc[0])


def test_reasoning_and_extra_fields_are_in_the_body_and_the_fingerprint():
    body = (
        words(1)
        .valar.requests(
            TEMPLATE,
            model=GLM,
            reasoning={"effort": "low", "generate_summary": "concise"},
            extra_body={"top_p": 0.5, "user": "team-a", "prompt_cache_key": "items"},
        )["body"]
        .iloc[0]
    )
    assert body["reasoning"] == {"effort": "low", "generate_summary": "concise"}
    assert (body["top_p"], body["user"], body["prompt_cache_key"]) == (0.5, "team-a", "items")
    assert body["model"] == GLM and body["background"] is True
    plain = _fingerprint()
    low, high = _fingerprint(reasoning="low"), _fingerprint(reasoning="high")
    assert len({plain, low, high}) == 3
    assert _fingerprint(reasoning="low") == low == _fingerprint(reasoning={"effort": "low"})
    a = _fingerprint(extra_body={"top_p": 0.5, "user": "u"})
    assert a != plain and a == _fingerprint(extra_body={"user": "u", "top_p": 0.5})
    assert a != _fingerprint(extra_body={"top_p": 0.6, "user": "u"})
    assert _fingerprint(extra_body={}) == plain  # nothing extra is nothing sent


def test_extra_body_is_copied_when_the_call_starts():
    extra: dict[str, Any] = {"user": "before"}
    options = validate_options(model=GLM, extra_body=extra)
    extra["user"] = "after"
    plan = plan_requests(["x"], options)
    assert next(iter(plan.requests.values())).body["user"] == "before"


def test_the_estimate_sizes_the_same_requests_as_the_plan():
    options = validate_options(
        model=GLM, reasoning="high", extra_body={"top_p": 0.2, "user": "v"}, salt="s"
    )
    prompts = ["a", "b", "a", "ü"]
    planned = plan_requests(prompts, options)
    assert list(count_requests(prompts, options).fingerprints()) == list(planned.requests)


# -- usage: reasoning tokens end to end -------------------------------------------------------


def test_reasoning_tokens_in_details_summary_spend_and_store(serve):
    _, client = serve(latency=QUICK)
    df = words(6)
    out = df.valar.run(TEMPLATE, client=client, model=GLM, reasoning="low", details=True, **NOW)
    assert out["output"].tolist() == echo(df) and out["output_error"].isna().all()
    # The emulator's low effort: 32 reasoning tokens, within the output tokens.
    assert out["output_reasoning_tokens"].tolist() == [32] * 6
    assert str(out["output_reasoning_tokens"].dtype) == "Int64"
    answer_words = [len(t.split()) for t in out["output"]]
    assert out["output_output_tokens"].tolist() == [w + 32 for w in answer_words]
    valar = out.attrs["valar"]
    assert valar["reasoning_tokens"] == 6 * 32
    assert valar["output_tokens"] == sum(answer_words) + 6 * 32
    # Spend: reasoning is billed as output (usage.output_tokens includes it).
    price = Price(0.15, 0.60, 0.03)  # GLM's table, the asap window aside: override it
    priced = df.valar.run(
        TEMPLATE, client=client, model=GLM, reasoning="low", price=price, salt="p", **NOW
    )
    expected = (priced.attrs["valar"]["input_tokens"] * 0.15 + valar["output_tokens"] * 0.60) / 1e6
    assert priced.attrs["valar"]["spent_usd"] == pytest.approx(expected)
    # The store keeps them: the same call again is served from it, details and all.
    again = df.valar.run(TEMPLATE, client=client, model=GLM, reasoning="low", details=True, **NOW)
    assert again.attrs["valar"]["http_requests"] == 0
    assert again["output_reasoning_tokens"].tolist() == [32] * 6
    with RunStore() as store:
        assert store.info()["reasoning_tokens"] == 2 * 6 * 32


def test_a_model_that_does_not_reason_reports_none(serve):
    _, client = serve(latency=QUICK)
    out = words(2).valar.run(
        TEMPLATE, client=client, model=GEMMA, reasoning="high", details=True, **NOW
    )
    assert out["output_reasoning_tokens"].tolist() == [0, 0]
    assert out.attrs["valar"]["reasoning_tokens"] == 0


def test_the_tally_and_status_line_show_reasoning():
    tally = Tally(price=Price(1.0, 10.0))
    tally.add(Started(2, 2))
    tally.add(Finished("a", Outcome("completed", "x", None, "r", 10, 140, 0, 128), 1))
    tally.add(Finished("b", Outcome("completed", "y", None, "s", 10, 20, 0, None), 1))
    assert tally.reasoning_tokens == 128 and tally.output_tokens == 160
    assert "reasoning=128" in tally.summary()
    assert "(128 reasoning)" in status_line(tally, tally.started_at + 1, final=True)


@pytest.mark.parametrize(
    ("usage", "reasoning", "cached"),
    [
        ({"output_tokens_details": {"reasoning_tokens": 7}}, 7, None),
        ({"input_tokens_details": {"reasoning_tokens": 5, "cached_tokens": 3}}, 5, 3),
        ({"completion_tokens_details": {"reasoning_tokens": 4}}, 4, None),
        ({"prompt_tokens_details": {"cached_tokens": 2}}, None, 2),
        (
            {
                "output_tokens_details": {"reasoning_tokens": 9},
                "input_tokens_details": {"reasoning_tokens": 0},
            },
            9,
            None,
        ),
        ({}, None, None),
    ],
)
def test_reasoning_tokens_are_read_wherever_the_contract_puts_them(usage, reasoning, cached):
    obj = {
        "id": "resp_1",
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
        "usage": {"input_tokens": 10, "output_tokens": 12, **usage},
    }
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.ok
    assert (outcome.reasoning_tokens, outcome.cached_tokens) == (reasoning, cached)


def test_an_impossible_reasoning_count_is_not_kept():
    obj = {
        "id": "resp_1",
        "status": "completed",
        "output": "hi",
        "usage": {"output_tokens": 3, "output_tokens_details": {"reasoning_tokens": -1}},
    }
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.status == "error"
    assert "reasoning_tokens = -1" in (outcome.error or "")


# -- an empty answer names the cap and reasoning -----------------------------------------------


def test_an_answer_spent_on_reasoning_names_the_cap(serve):
    _, client = serve(latency=QUICK)
    out = words(2).valar.run(
        TEMPLATE, client=client, model=GLM, reasoning="medium", max_output_tokens=16,
        details=True, **NOW,
    )  # fmt: skip
    assert out["output"].isna().all()
    assert out["output_reasoning_tokens"].tolist() == [16, 16]
    error = out["output_error"].iloc[0]
    assert error.startswith("completed without any output text")
    assert "16 reasoning tokens" in error and "max_output_tokens=16" in error
    assert "raise max_output_tokens or lower reasoning=" in error


def test_an_empty_answer_under_a_cap_names_the_cap_even_without_reasoning_counts():
    obj = {"id": "r", "status": "completed", "output": [], "max_output_tokens": 8,
           "usage": {"input_tokens": 3, "output_tokens": 8}}  # fmt: skip
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.status == "incomplete"  # the cap was spent
    assert "under the cap max_output_tokens=8" in (outcome.error or "")
    assert "reasoning" in (outcome.error or "")
    bare = parse_response({"id": "r", "status": "completed", "output": []}).outcome
    assert bare is not None and bare.error == "completed without any output text"


def test_an_answer_with_room_left_under_its_cap_is_a_failure_asked_again():
    obj = {"id": "r", "status": "completed", "output": [], "max_output_tokens": 64,
           "usage": {"input_tokens": 3, "output_tokens": 0}}  # fmt: skip
    outcome = parse_response(obj).outcome
    assert outcome is not None and outcome.status == "failed"


def test_rows_whose_cap_went_to_reasoning_are_not_paid_for_again(serve):
    emulator, client = serve(latency=QUICK)
    ask = dict(client=client, model=GLM, reasoning="medium", max_output_tokens=16, **NOW)
    first = words(3).valar.run(TEMPLATE, **ask)
    assert first["output"].isna().all() and emulator.stats.inferences == 3
    again = words(3).valar.run(TEMPLATE, **ask)  # retry_failed=True by default
    assert again["output_error"].tolist() == first["output_error"].tolist()
    assert emulator.stats.inferences == 3
    words(3).valar.run(TEMPLATE, **{**ask, "max_output_tokens": 400})
    assert emulator.stats.inferences == 6  # a larger cap is a new request


# -- estimate and budget ----------------------------------------------------------------------


def test_without_a_cap_the_estimate_says_it_is_a_lower_bound():
    df = words(10)
    est = df.valar.estimate(TEMPLATE, model=GLM, reasoning="high")
    assert est.lower_bound and est.reasoning == "high"
    assert est.output_tokens == 10 * 256 and est.output_assumed_per_request == 256
    shown = repr(est)
    assert "output tokens  ≥" in shown and "cost           at least ~$" in shown
    assert "LOWER BOUND" in shown and "reasoning='high' is billed as output" in shown
    capped = df.valar.estimate(TEMPLATE, model=GLM, reasoning="high", max_output_tokens=600)
    assert not capped.lower_bound and capped.output_tokens == 10 * 600  # the worst case
    assert "LOWER BOUND" not in repr(capped) and "output tokens  ≤" in repr(capped)
    assert capped.to_dict()["lower_bound"] is False and est.to_dict()["lower_bound"] is True


def test_the_command_estimate_says_lower_bound_too(serve_cli, tmp_path, capsys):
    serve_cli()
    words(5).to_parquet(tmp_path / "in.parquet")
    args = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--model", GLM,
            "--template", TEMPLATE, "--reasoning", "xhigh", "--estimate"]  # fmt: skip
    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "LOWER BOUND" in shown and "reasoning='xhigh'" in shown


def test_the_budget_reserves_the_longest_answer_seen_when_there_is_no_cap(serve):
    emulator, client = serve(latency=QUICK)
    # Output at $1,000 per 1M: a reserved default answer (256 tokens) is $0.256, a high-effort
    # answer (512 reasoning + 4 words) $0.516. One create at a time, each answered before the
    # next is admitted: the second would pass $1 at the real length.
    price = Price(input=0.0, output=1_000.0)
    with pytest.warns(BudgetWarning) as warned:
        out = words(5).valar.run(
            TEMPLATE, client=client, model=GLM, reasoning="high", budget=1.0, price=price,
            mode="realtime", concurrency=1, progress=None,
        )  # fmt: skip
    # Said before anything is sent; and nothing was spent past the budget.
    said = [str(w.message) for w in warned]
    assert said == [
        "budget= without max_output_tokens is not a hard cap: each answer is reserved at 256 "
        "output tokens (or the longest answer seen so far) and a longer one, a reasoning "
        "model's above all, is paid for in full; set max_output_tokens to make the budget a "
        "hard cap"
    ]
    assert emulator.stats.inferences == 1
    assert out.attrs["valar"]["spent_usd"] == pytest.approx(0.516)
    assert "budget_overspent_usd" not in out.attrs["valar"]
    assert out["output_error"].iloc[1].startswith("not sent: the budget of $1.0000")


def test_answers_longer_than_reserved_are_warned_of(serve):
    emulator, client = serve(latency=Latency(median=0.2, sigma=0.0))
    price = Price(input=0.0, output=1_000.0)
    with pytest.warns(BudgetWarning) as warned:
        out = words(10).valar.run(
            TEMPLATE, client=client, model=GLM, reasoning="high", budget=1.0, price=price,
            **NOW,
        )  # fmt: skip
    first, passed = (str(w.message) for w in warned)
    assert first.startswith("budget= without max_output_tokens is not a hard cap")
    assert passed == (
        "this call spent $1.5480, $0.5480 past its budget: answers cost more than reserved for "
        "them, as no max_output_tokens capped them (a reasoning model's reasoning is billed as "
        "output); set max_output_tokens to make the budget a hard cap"
    )
    # Three default reservations ($0.256 each) fit before any answer; each answer cost $0.516.
    assert emulator.stats.inferences == 3
    assert out.attrs["valar"]["budget_overspent_usd"] == pytest.approx(3 * 0.516 - 1.0)
    # With a cap the reservation is the worst case: the budget holds.
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        capped = words(10).valar.run(
            TEMPLATE, client=client, model=GLM, reasoning="high", budget=1.0, price=price,
            max_output_tokens=600, salt="capped", **NOW,
        )  # fmt: skip
    assert capped.attrs["valar"]["spent_usd"] <= 1.0


# -- the command line -------------------------------------------------------------------------


def test_the_command_sends_reasoning_and_extra_fields_like_the_accessor(serve_cli, tmp_path):
    emulator = serve_cli(latency=QUICK)
    df = words(4)
    df.to_parquet(tmp_path / "in.parquet")
    (tmp_path / "extra.json").write_text(json.dumps({"top_p": 0.5, "user": "cli"}))
    args = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--model", GLM,
            "--template", TEMPLATE, "--completion-window", "asap", "--reasoning", "low",
            "--extra-body", f"@{tmp_path / 'extra.json'}", "--details", "--quiet"]  # fmt: skip
    assert main(args) == 0
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert got["output_reasoning_tokens"].tolist() == [32] * 4
    paid = emulator.stats.inferences
    again = df.valar.run(
        TEMPLATE, model=GLM, reasoning="low", extra_body={"user": "cli", "top_p": 0.5}, **NOW
    )
    assert again.attrs["valar"]["cached"] == 4 and emulator.stats.inferences == paid


def test_the_command_refuses_an_owned_field_before_any_request(serve_cli, tmp_path, capsys):
    emulator = serve_cli()
    words(2).to_parquet(tmp_path / "in.parquet")
    base = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--model", GLM,
            "--template", TEMPLATE]  # fmt: skip
    assert main([*base, "--extra-body", '{"max_output_tokens": 5}']) == 2
    said = capsys.readouterr().err
    assert "--extra-body may not set 'max_output_tokens'" in said
    assert "the command sets it from --max-output-tokens" in said
    with pytest.raises(SystemExit) as exited:
        main([*base, "--extra-body", "[1, 2]"])
    assert exited.value.code == 2 and "must be a JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--reasoning", "lots"])
    assert emulator.stats.total_requests == 0
    assert not (tmp_path / "out.parquet").exists()


# -- the emulator's usage fields --------------------------------------------------------------


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/responses",
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer sk-emulator", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _ask(model: str = GLM, **fields: Any) -> dict[str, Any]:
    return {"model": model, "input": [{"role": "user", "content": "say one two"}], **fields}


@pytest.mark.parametrize(
    ("effort", "tokens"),
    [("none", 0), ("minimal", 8), ("low", 32), ("medium", 128), ("high", 512), ("xhigh", 2048)],
)
def test_the_emulator_reasons_by_effort_within_the_output(serve, effort, tokens):
    _, client = serve(latency=QUICK)
    status, body = _post(client.base_url, _ask(reasoning={"effort": effort}))
    assert status == 200 and body["status"] == "completed"
    usage = body["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == tokens
    assert usage["output_tokens"] == tokens + 4  # "Echo: say one two"
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    kinds = [item["type"] for item in body["output"]]
    assert kinds == (["reasoning", "message"] if tokens else ["message"])
    assert body["reasoning"] == {"effort": effort}


def test_the_emulators_cap_holds_reasoning_and_text_together(serve):
    _, client = serve(latency=QUICK)
    _, spent = _post(client.base_url, _ask(reasoning={"effort": "low"}, max_output_tokens=32))
    assert spent["status"] == "completed" and [i["type"] for i in spent["output"]] == ["reasoning"]
    assert spent["usage"]["output_tokens"] == 32
    assert spent["usage"]["output_tokens_details"]["reasoning_tokens"] == 32
    _, cut = _post(client.base_url, _ask(reasoning={"effort": "low"}, max_output_tokens=34))
    assert cut["status"] == "incomplete" and cut["usage"]["output_tokens"] == 34
    assert cut["output"][1]["content"][0]["text"] == "Echo: say"
    _, plain = _post(client.base_url, _ask(GEMMA, reasoning={"effort": "xhigh"}))
    assert plain["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


def test_the_emulators_reasoning_default_and_models_are_configurable(serve):
    _, client = serve(latency=QUICK, reasoning_default="medium", reasoning_models=(GEMMA,))
    _, glm = _post(client.base_url, _ask())
    _, gemma = _post(client.base_url, _ask(GEMMA))
    assert glm["usage"]["output_tokens_details"]["reasoning_tokens"] == 0
    assert gemma["usage"]["output_tokens_details"]["reasoning_tokens"] == 128
    with pytest.raises(ValueError, match="reasoning_default"):
        EmulatorConfig(reasoning_default="lots")
    with pytest.raises(ValueError, match="reasoning_models"):
        EmulatorConfig(reasoning_models="zai-org/GLM-5.1-FP8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_block"):
        EmulatorConfig(cache_block=-1)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning": {"effort": "max"}}, "reasoning.effort"),
        ({"reasoning": {"generate_summary": "all"}}, "reasoning.generate_summary"),
        ({"reasoning": {"effort": "low", "budget": 3}}, "reasoning.budget"),
        ({"reasoning": "low"}, "reasoning"),
        ({"top_p": 2}, "top_p"),
        ({"top_p": "0.5"}, "top_p"),
        ({"user": 5}, "user"),
        ({"user": "u" * 257}, "user"),
        ({"prompt_cache_key": ["k"]}, "prompt_cache_key"),
    ],
)
def test_the_emulator_refuses_bad_reasoning_and_pass_through_fields(serve, fields, param):
    emulator, client = serve(latency=QUICK)
    status, body = _post(client.base_url, _ask(**fields))
    assert status == 400 and body["error"]["param"] == param
    assert emulator.stats.inferences == 0
    ok, _ = _post(client.base_url, _ask(top_p=0.3, user="u", prompt_cache_key="k"))
    assert ok == 200


def test_the_emulator_reports_cached_tokens_for_instructions_seen_before(serve):
    _, client = serve(latency=QUICK)
    system = {"role": "system", "content": "You are a careful assistant. " * 5}  # 145 chars
    first_body = {"model": GLM, "input": [system, {"role": "user", "content": "a b"}]}
    _, first = _post(client.base_url, first_body)
    again = {**first_body, "input": [system, {"role": "user", "content": "c"}]}
    _, second = _post(client.base_url, again)
    _, other = _post(client.base_url, {**first_body, "model": GEMMA})
    assert first["usage"]["input_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["input_tokens_details"]["cached_tokens"] == 32  # 36 tokens: 2 blocks
    assert other["usage"]["input_tokens_details"]["cached_tokens"] == 0  # another model's cache
    _, replayed = _post(client.base_url, first_body)  # seen: the first body's prefix too
    assert replayed["usage"]["input_tokens_details"]["cached_tokens"] == 32


def test_the_emulators_prefix_cache_can_be_turned_off(serve):
    _, client = serve(latency=QUICK, cache_block=0)
    system = {"role": "system", "content": "You are a careful assistant. " * 5}
    body = {"model": GLM, "input": [system, {"role": "user", "content": "a b"}]}
    for _ in range(2):
        _, answer = _post(client.base_url, body)
        assert answer["usage"]["input_tokens_details"]["cached_tokens"] == 0


# -- the run store ----------------------------------------------------------------------------


def test_a_version_4_store_gains_reasoning_tokens_and_keeps_its_answers(tmp_path):
    from valar_pandas._store.schema import _MIGRATIONS

    endpoint = "http://127.0.0.1:1/v1"
    path = tmp_path / "v4.sqlite3"
    with sqlite3.connect(path) as db:
        for version in (1, 2, 3, 4):
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("PRAGMA user_version = 4")
        db.execute(
            "INSERT INTO requests (endpoint, fingerprint, idempotency_key, state, status, text,"
            " input_tokens, output_tokens, created_at, updated_at)"
            " VALUES (?, 'old', 'k1', 'done', 'completed', 'hi', 3, 4, 1.0, 1.0)",
            (endpoint,),
        )
    with RunStore(path) as store:
        assert store.schema_version == 5
        old = store.lookup(endpoint, ["old"])["old"].outcome
        assert old is not None and old.text == "hi" and old.output_tokens == 4
        assert old.reasoning_tokens is None  # not reported then: unknown, not zero
        info = store.info()
        assert info["reasoning_tokens"] == 0 and info["reasoning_unreported"] == 1


def test_the_command_warns_when_answers_pass_the_budget(serve_cli, tmp_path, capsys):
    emulator = serve_cli(latency=Latency(median=0.2, sigma=0.0))
    words(10).to_parquet(tmp_path / "in.parquet")
    args = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--model", GLM,
            "--template", TEMPLATE, "--completion-window", "asap", "--reasoning", "high",
            "--budget", "1", "--price", "0,1000", "--quiet"]  # fmt: skip
    assert main(args) == 1  # the rows past the budget are not sent
    said = capsys.readouterr().err
    assert "warning: --budget without --max-output-tokens is not a hard cap" in said
    assert "warning: this call spent $1.5480, $0.5480 past its budget" in said
    assert "set --max-output-tokens to make the budget a hard cap" in said
    assert emulator.stats.inferences == 3


def test_scoring_takes_reasoning_and_extra_fields_too(serve):
    _, client = serve(latency=QUICK)
    df = pd.DataFrame({"review": ["Absolutely love it, works perfectly", "Broke in a day"]})
    asked = df.valar.requests(
        "Review: {review}", model=GLM, labels=["positive", "negative"], reasoning="minimal",
        extra_body={"user": "scorer"},
    )  # fmt: skip
    body = asked["body"].iloc[0]
    assert body["reasoning"] == {"effort": "minimal"} and body["user"] == "scorer"
    assert body["text"]["format"]["type"] == "json_schema"
    out = df.valar.score(
        "Review: {review}", client=client, model=GLM, labels=["positive", "negative"],
        reasoning="minimal", extra_body={"user": "scorer"}, details=True, **NOW,
    )  # fmt: skip
    assert out["score"].tolist() == ["positive", "negative"]
    assert out["score_reasoning_tokens"].tolist() == [8, 8]


def test_reasoning_is_billed_once_within_the_output_and_never_lost():
    price = Price(input=1.0, output=10.0)
    within = Outcome("completed", "x", None, "r", 100, 50, 0, 40)  # 40 of the 50 reasoning
    assert price.of(within) == pytest.approx((100 + 50 * 10) / 1e6)
    apart = Outcome("completed", "x", None, "r", 100, 10, 0, 40)  # cannot include them
    assert price.of(apart) == pytest.approx((100 + 50 * 10) / 1e6)


def test_an_overspend_under_a_cap_does_not_blame_a_missing_cap():
    from valar_pandas._service.call import budget_passed

    capped = budget_passed(1.5, 0.5, capped=True)
    assert "max_output_tokens" not in capped and "characters / 4" in capped
    assert "set max_output_tokens" in budget_passed(1.5, 0.5, capped=False)
