"""Planning: identical bodies collapse into one request; skips carry their reason."""

from valar_pandas._core.models import Outcome
from valar_pandas._core.options import validate_options
from valar_pandas._core.plan import Skip, plan_requests


def test_identical_rows_share_one_request():
    options = validate_options(model="m")
    plan = plan_requests(["a", "b", "a", Skip("missing value in 'x'"), "a"], options)
    assert len(plan.requests) == 2
    assert plan.rows[0] == plan.rows[2] == plan.rows[4] != plan.rows[1]
    assert plan.shares[plan.rows[0]] == 3  # type: ignore[index]
    assert plan.skipped == 1
    skipped = plan.rows[3]
    assert isinstance(skipped, Outcome) and skipped.status == "skipped"
    assert skipped.error == "skipped: missing value in 'x'"


def test_salt_changes_every_key():
    a = plan_requests(["x"], validate_options(model="m"))
    b = plan_requests(["x"], validate_options(model="m", salt="2"))
    assert a.rows != b.rows


def test_outcomes_spread_back_and_unfinished_rows_say_so():
    plan = plan_requests(["a", "b", "a"], validate_options(model="m"))
    done = Outcome("completed", text="A")
    outcomes = plan.outcomes({plan.rows[0]: done})  # type: ignore[dict-item]
    assert outcomes[0] is done and outcomes[2] is done
    assert outcomes[1].status == "error" and "stopped" in (outcomes[1].error or "")


def test_request_carries_options():
    options = validate_options(
        model="m",
        instructions="sys",
        max_output_tokens=4,
        temperature=0.2,
        completion_window="asap",
    )
    plan = plan_requests(["hi"], options)
    (request,) = plan.requests.values()
    assert request.body["input"][0] == {"role": "system", "content": "sys"}
    assert request.body["max_output_tokens"] == 4
    assert request.body["metadata"] == {"completion_window": "asap"}
