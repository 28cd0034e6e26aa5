"""Retry and poll arithmetic. Pure: time and randomness are passed in."""

import bisect
import itertools

import pytest

from valar_pandas._policy import (
    ColdStart,
    Health,
    PollSchedule,
    RetryPolicy,
    explain,
    parse_retry_after,
    suggest_base_url,
)


@pytest.mark.parametrize(
    ("status", "attempt", "overloads", "expected"),
    [
        (None, 1, 0, True),
        (408, 1, 0, True),
        (429, 0, 1, True),
        (500, 1, 0, True),
        (502, 1, 0, True),
        (503, 0, 1, True),
        (504, 1, 0, True),
        (400, 1, 0, False),
        (401, 1, 0, False),
        (404, 1, 0, False),
        (409, 1, 0, True),
        (422, 1, 0, False),
        (501, 1, 0, False),
        (502, 7, 0, True),
        (502, 8, 0, False),
        (None, 8, 0, False),
        # overload answers have their own budget: other failures do not use it up, nor
        # do they use up the other failures' budget
        (429, 7, 19, True),
        (503, 7, 19, True),
        (429, 0, 20, False),
        (503, 8, 1, True),
        (500, 7, 19, True),
        (500, 8, 0, False),
    ],
)
def test_should_retry(status, attempt, overloads, expected):
    policy = RetryPolicy(attempts=8, overload_attempts=20)
    assert policy.should_retry(status, attempt, overloads) is expected


@pytest.mark.parametrize(
    ("attempt", "retry_after", "rand", "expected"),
    [
        (1, None, 0.0, 0.05),
        (1, None, 1.0, 0.5),
        (3, None, 1.0, 2.0),
        (20, None, 1.0, 30.0),
        (1, 7.0, 0.0, 7.0),
        (1, 7.0, 1.0, 7.7),
        (1, 999.0, 0.0, 120.0),
        (1, -3.0, 0.5, 0.0),
    ],
    ids=["min", "first", "third", "capped", "retry-after", "ra-jitter", "ra-capped", "ra-neg"],
)
def test_retry_delay(attempt, retry_after, rand, expected):
    delay = RetryPolicy(base=0.5, cap=30.0).delay(attempt, retry_after, rand)
    assert delay == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0.25", 0.25),
        (" 10 ", 10.0),
        ("0", 0.0),
        ("-2", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),
        ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=40.0) == expected


def test_poll_schedule_grows_to_cap_with_jitter():
    s = PollSchedule(first=2.0, growth=2.0, cap=10.0, deadline=100.0)
    assert [s.next_delay(n, 0.5) for n in range(5)] == pytest.approx([2, 4, 8, 10, 10])
    assert s.next_delay(0, 0.0) == pytest.approx(1.8)
    assert s.next_delay(0, 1.0) == pytest.approx(2.2)


@pytest.mark.parametrize(("window", "first", "cap"), [("asap", 1.0, 5.0), ("standard", 3.0, 30.0)])
def test_schedule_per_window(window, first, cap):
    s = PollSchedule.for_window(window)
    assert (s.first, s.cap) == (first, cap)
    assert s.deadline > 20 * 60


def test_standard_window_polls_far_less_than_once_a_second():
    s = PollSchedule.for_window("standard")
    elapsed, polls = 0.0, 0
    while elapsed < 300:  # the standard window's five-minute target
        elapsed += s.next_delay(polls, 0.5)
        polls += 1
    assert polls <= 20  # the vendor's recipe asks ~300 times


# -- the learnt poll planner, AIMD and the rate budget --------------------------------------

from valar_pandas._policy import Aimd, LatencyModel, PollPlanner, TokenBucket  # noqa: E402


def _model(latencies, created=0.0, now=100.0, pending_created=()):
    model = LatencyModel()
    for latency in latencies:
        model.started(created)
        model.finished(created, latency, latency)
    for c in pending_created:
        model.started(c)
    return model


def test_model_quantiles_of_complete_data():
    model = _model([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert model.fraction_done(5, now=100) == pytest.approx(0.5)
    assert model.quantile(0.5, now=100) == 5
    assert model.quantile(0.95, now=100) == 10
    assert model.quantile(0.5, now=100) is not None


def test_model_corrects_for_pending_rows_older_than_the_age():
    # 5 done quickly, 5 still pending at age 50: only half are done by age 5, not all.
    model = _model([1, 2, 3, 4, 5], pending_created=[50.0] * 5, now=100.0)
    assert model.fraction_done(5, now=100.0) == pytest.approx(0.5)
    assert model.quantile(0.9, now=100.0) is None  # not enough known yet


def test_model_ignores_pending_rows_too_young_to_say():
    model = _model([1, 2, 3, 4, 5], pending_created=[99.0] * 5, now=100.0)
    assert model.fraction_done(5, now=100.0) == 1.0  # they are only 1 s old


def test_model_records_three_quarters_along_the_interval():
    model = LatencyModel()
    model.started(0.0)
    model.finished(0.0, 4.0, 8.0)
    assert model.quantile(1.0, now=10.0) == 7.0


PLANNER = PollPlanner.from_schedule(PollSchedule(first=3.0, growth=1.5, cap=30.0, deadline=1e4))


def _plan(model, age, scout=False, outstanding=1000, now=1000.0, polls=1):
    return PLANNER.plan(
        age=age, polls=polls, scout=scout, model=model, now=now, outstanding=outstanding, rand=0.5
    )


def test_scouts_poll_geometrically_by_age():
    cold = LatencyModel()
    assert _plan(cold, 0.0, scout=True, polls=0) == (pytest.approx(3.0), True)
    assert _plan(cold, 10.0, scout=True) == (pytest.approx(5.0), True)  # 50 % of the age
    # no absolute cap: a scout of a five-minute run is not asked every 30 s
    assert _plan(cold, 1000.0, scout=True) == (pytest.approx(500.0), True)
    # once the model is warm, scouts report finer (25 % of the age)
    assert _plan(_model(UNIFORM), 10.0, scout=True) == (pytest.approx(2.5), True)
    # in the endgame a scout is one of the rows the run waits for
    assert _plan(_model(UNIFORM), 100.0, scout=True, outstanding=10) == (pytest.approx(6.0), True)
    # but not before any answer is seen: a run of a dozen rows would be polled densely for
    # its whole first latency, which none of them is likely to have passed
    assert _plan(cold, 100.0, scout=True, outstanding=10) == (pytest.approx(50.0), True)


@pytest.mark.parametrize(
    ("total", "scouts"),
    [
        (5000, [0, 40, 80, 440]),  # one in forty, twelve of them
        (100_000, [0, 40, 440]),
        (400, [0, 20, 220]),  # a twentieth of the rows apart
        (100, [0, 5, 55]),
        (12, list(range(12))),  # a run of a dozen rows or fewer: every row scouts
        (13, list(range(12))),
    ],
)
def test_a_dozen_scouts_spread_over_the_first_rows(total, scouts):
    chosen = [i for i in range(total) if PLANNER.is_scout(i, total)]
    assert len(chosen) == min(total, 12)
    assert set(scouts) <= set(chosen)
    assert all(i < 12 * 40 for i in chosen)


def test_other_rows_wait_for_free_until_the_model_is_warm():
    watching = LatencyModel()
    watching.started(0.0)
    assert _plan(watching, 0.0, polls=0) == (pytest.approx(3.0), False)
    # with no scout to learn from, a row polls as a scout instead of waiting forever
    assert _plan(LatencyModel(), 0.0, polls=0) == (pytest.approx(3.0), True)
    assert _plan(_model([1.0] * 5, pending_created=[0.0]), 10.0) == (pytest.approx(5.0), False)


UNIFORM = [float(x) for x in range(1, 101)]  # scouts done uniformly over 1..100 s


@pytest.mark.parametrize(
    ("latencies", "age", "expected"),
    [
        # nine in ten are done by 90 s, the median is 50 s: 90 × (90/50)^0.5 = 120.7 s
        (UNIFORM, 0.0, 120.75),
        (UNIFORM, 100.0, 20.75),
        # a narrow curve stretches little: 54 × (54/50)^0.5 = 56.1 s
        ([float(x) for x in range(45, 56)], 0.0, 56.12),
        # a wide one at most by half: 100 × min(1.5, (100/1)^0.5)
        ([1.0] * 5 + [100.0] * 5, 0.0, 150.0),
    ],
)
def test_a_row_is_first_polled_past_the_stretched_nine_in_ten_point(latencies, age, expected):
    assert _plan(_model(latencies), age, polls=0) == (pytest.approx(expected, abs=0.01), True)


def test_a_row_first_polled_past_that_point_is_handled_as_late():
    # 130 s is past 120.7 s: overdue (older than every completion), a quarter of the age,
    # longer than the standard window's 30 s cap on cold polls
    assert _plan(_model(UNIFORM), 130.0, polls=0) == (pytest.approx(32.5), True)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (0.0, 80.0),  # 80 % are done by 80 s: however far off, no cap
        (50.0, 40.0),  # 80 % of the rest by 90 s
        (80.0, 16.0),  # 80 % of the 20 % left are done by 96 s
        (92.0, 7.0),  # late (past 90 %): 80 % of the rest by 99 s, under 25 % of the age
        (150.0, 37.5),  # overdue (older than any completion): a late row, 25 % of its age
        (400.0, 100.0),  # ... with no absolute cap: minutes-long rows are not asked often
    ],
)
def test_a_polled_row_polls_again_when_most_of_the_rest_should_be_done(age, expected):
    assert _plan(_model(UNIFORM), age) == (pytest.approx(expected), True)


@pytest.mark.parametrize(
    ("outstanding", "age", "expected"),
    [
        (20, 60.0, 7.2),  # the endgame begins (20 rows left): 12 % of the age
        (10, 60.0, 3.6),  # half the rows left: half the share
        (5, 60.0, 1.8),
        (3, 60.0, 1.2),  # never under 2 % of the age ...
        (1, 60.0, 1.2),
        (1, 20.0, 0.5),  # ... nor under half the shortest gap
        (1, 1e6, 30.0),  # never beyond the cap
        (21, 60.0, 32.0),  # not yet the endgame: the planner's usual gap
    ],
)
def test_endgame_tightens_gaps_as_rows_run_out(outstanding, age, expected):
    got = _plan(_model(UNIFORM), age, outstanding=outstanding)
    assert got == (pytest.approx(expected), True)


@pytest.mark.parametrize(
    ("due_in", "outstanding", "expected"),
    [
        (100.0, 5, 18.0),  # 3 % of a 600 s row's age: sooner than planned
        (10.0, 5, None),  # already sooner: kept
        (100.0, 21, None),  # not the endgame: kept
    ],
)
def test_regroup_brings_planned_looks_sooner_in_the_endgame(due_in, outstanding, expected):
    got = PLANNER.regroup(age=600.0, due_in=due_in, outstanding=outstanding)
    assert got == (None if expected is None else pytest.approx(expected))


TAIL = [float(x) for x in range(101, 201)]  # tail scouts done uniformly over 101..200 s


def _tail(latencies=(), running=()):
    model = _model(latencies)
    for created in running:
        model.started(created)
    return model


@pytest.mark.parametrize(
    ("tail", "age", "polls", "tail_scout", "outstanding", "expected"),
    [
        # still running at its first poll, the tail scouts not yet telling: wait, for free
        ("running", 60.0, 1, False, 1000, (30.0, False)),
        # a tail scout: polled at a quarter of its age from the start
        ("running", 60.0, 1, True, 1000, (15.0, True)),
        # once the tail scouts have spoken: one look past their own stretched nine-in-ten
        # point, 190 × (190/150)^0.5 = 213.8 s, not a quarter of the age over and over
        ("learnt", 120.0, 1, False, 1000, (93.84, True)),
        # after that look, the tail's curve: 80 % of the rest are done by 190 s
        ("learnt", 150.0, 2, False, 1000, (40.0, True)),
        # no tail scout running and none learnt: a late row polls as a scout would
        ("empty", 60.0, 1, False, 1000, (15.0, True)),
        # in the endgame nothing waits: 6 % of the age with 10 rows left
        ("running", 60.0, 1, False, 10, (3.6, True)),
    ],
)
def test_late_rows_are_decided_from_the_tail_scouts(
    tail, age, polls, tail_scout, outstanding, expected
):
    models = {
        "running": _tail(running=[0.0] * 12),
        "learnt": _tail(TAIL),
        "empty": LatencyModel(),
    }
    got = PLANNER.plan(
        age=age,
        polls=polls,
        scout=False,
        model=_model(UNIFORM),
        now=1000.0,
        outstanding=outstanding,
        rand=0.5,
        tail=models[tail],
        tail_scout=tail_scout,
    )
    assert got == (pytest.approx(expected[0], abs=0.01), expected[1])


@pytest.mark.parametrize(
    ("age", "polls", "scout", "tail_scout", "expected"),
    [
        (150.0, 1, False, False, 0.5),  # a late row waiting: half the tail is done by 150 s
        (120.0, 1, False, False, 0.8),  # a fifth are done by 120 s
        (300.0, 1, False, False, 1 / 101),  # past every tail completion: at least 1 in n + 1
        (300.0, 0, False, False, 1.0),  # not yet polled: its first look is planned anyway
        (300.0, 2, False, False, 1.0),  # polled in the tail's stage already: watched
        (300.0, 1, True, False, 1.0),  # a scout
        (300.0, 1, False, True, 1.0),  # a tail scout
    ],
)
def test_rows_probably_still_running(age, polls, scout, tail_scout, expected):
    got = PLANNER.still_running(
        age=age, polls=polls, scout=scout, tail=_tail(TAIL), tail_scout=tail_scout, now=1000.0
    )
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("polls", "scout", "taken", "expected"),
    [
        (1, False, 0, True),  # found running at its first poll
        (1, False, 11, True),
        (1, False, 12, False),  # a dozen already
        (2, False, 0, False),  # running after its second poll: already late before
        (1, True, 0, False),  # a scout stays a scout
    ],
)
def test_the_first_dozen_rows_running_at_their_first_poll_scout_the_tail(
    polls, scout, taken, expected
):
    assert PLANNER.is_tail_scout(polls=polls, scout=scout, taken=taken) is expected


@pytest.mark.parametrize(
    ("running", "outstanding", "fewest", "expected"),
    [
        (4.2, 40, 1001, 5),  # 40 rows outstanding, about 5 probably running: the endgame
        (20.0, 40, 1001, 20),
        (20.5, 40, 1001, None),  # 21 rows probably running: not yet
        (4.2, 5, 1001, None),  # no fewer than the rows outstanding: the usual endgame
        (4.2, 40, 5, None),  # no new low since the last such regroup
        (0.3, 40, 1001, 1),  # at least one row
    ],
)
def test_the_endgame_begins_from_the_rows_probably_running(running, outstanding, fewest, expected):
    got = PLANNER.endgame_from(running, outstanding=outstanding, fewest=fewest)
    assert got == expected


def test_rows_wait_on_older_running_scouts_and_poll_once_older_than_all():
    ten = [float(x) for x in range(1, 11)]
    waiting = _model(ten, pending_created=[50.0] * 10, now=100.0)
    assert _plan(waiting, 10.0, now=100.0) == (pytest.approx(5.0), False)  # re-check at 50 %
    young = _model(ten, pending_created=[95.0] * 10, now=100.0)
    assert _plan(young, 60.0, now=100.0) == (pytest.approx(15.0), True)


def test_gaps_never_go_under_the_minimum():
    assert _plan(_model([0.1] * 20, now=5.0), 0.1, now=5.0) == (pytest.approx(1.0), True)


# The planner driven as the poller drives it, on a simulated clock (benchmarks/simulate.py):
# rows created at 1,000 a second, lognormal latencies, seed 0. Requests per row count the
# create; the ideal is the last answer ready. The real scenarios are in benchmarks/.
@pytest.mark.parametrize(
    ("rows", "law", "max_per_row", "max_ratio"),
    [
        (1000, "150", 2.3, 1.05),  # the standard window's latencies
        (3000, "300", 2.2, 1.05),  # five minutes a turn
        (3000, "40", 2.2, 1.02),
        (5000, "10", 2.2, 1.02),
        (2000, "2", 2.1, 1.05),
        (2000, "0.5*10+0.5*300", 2.5, 1.02),  # a mix of short and long answers
        (2000, "40:0.25", 2.2, 1.05),  # narrow: every answer ready within a short span
        (100, "150", 4.5, 1.05),  # a small run does not make every row a scout
        # a fifth of slow answers among fast ones: the slow ones are a tail of their own
        (2000, "0.8*2+0.2*150", 2.4, 1.02),
        # runs of the endgame's size or smaller: no dense endgame before the first answer
        (20, "150", 20.0, 1.05),
        (12, "150", 30.0, 1.05),
        (20, "3", 4.0, 1.1),
    ],
)
def test_simulated_runs_poll_little_and_notice_the_last_answer_soon(
    rows, law, max_per_row, max_ratio
):
    from benchmarks.simulate import parse_law, simulate

    result = simulate(rows, parse_law(law), seed=0)
    assert result.per_row <= max_per_row
    assert result.ratio <= max_ratio


def test_aimd_halves_on_overload_once_per_cooldown_and_recovers():
    aimd = Aimd(cap=200)
    aimd.overloaded(now=10.0)
    assert aimd.slots == 100
    aimd.overloaded(now=10.5)  # same burst
    assert aimd.slots == 100
    aimd.overloaded(now=11.5)
    assert aimd.slots == 50
    for _ in range(52):  # one slot back per window of successes
        aimd.success()
    assert aimd.slots == 51
    for _ in range(100_000):
        aimd.success()
    assert aimd.slots == 200  # never above the cap
    for t in range(20):
        aimd.overloaded(now=100.0 + 2 * t)
    assert aimd.slots == 1


def test_token_bucket_never_exceeds_the_rate():
    bucket = TokenBucket(rate=10.0, burst=5.0)
    waits = [bucket.reserve(now=0.0) for _ in range(25)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(0.1) and waits[-1] == pytest.approx(2.0)
    # after a quiet spell the burst is back, but no more
    assert bucket.reserve(now=100.0) == 0.0


@pytest.mark.parametrize("start", [0.0, 0.0031, 7.25, 1234.5678])
def test_token_bucket_releases_on_a_grid_without_exceeding_the_rate(start):
    rate, burst, tick = 2000.0, 50.0, 0.01
    bucket = TokenBucket(rate=rate, burst=burst, tick=tick)
    sends = []
    for i in range(3000):
        now = start + i * 0.0001  # booked faster (10,000 a second) than the rate allows
        sends.append(now + bucket.reserve(now=now))
    waited = [t for t in sends if t > start + 3000 * 0.0001]
    # every delayed send lands on the grid, so many go in one wake-up
    assert all(abs(t / tick - round(t / tick)) < 1e-6 for t in waited)
    assert len(set(round(t / tick) for t in sends)) < len(sends) / 10
    # in order, and never more than the rate allows over any window (plus burst and a tick)
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(sends))
    for i, t in enumerate(sends):
        in_window = bisect.bisect_left(sends, t + 0.5 - 1e-9) - i
        assert in_window <= rate * 0.5 + burst + rate * tick + 1
    # the grid only ever delays: nothing leaves before the plain bucket would send it
    plain = TokenBucket(rate=rate, burst=burst, tick=1e-9)
    for i, t in enumerate(sends):
        now = start + i * 0.0001
        assert t >= now + plain.reserve(now=now) - 1e-6


def test_a_late_row_does_not_wait_on_a_slow_scout():
    ten = [float(x) for x in range(1, 11)]
    model = _model(ten, pending_created=[50.0], now=100.0)  # one scout still running, age 50
    assert _plan(model, 20.0, now=100.0) == (pytest.approx(5.0), True)  # past the 90 % point


def test_the_curve_is_cached_between_refreshes():
    model = _model([1.0, 2.0, 3.0], now=0.0)
    assert model.fraction_done(2.0, now=10.0) == pytest.approx(2 / 3)
    model.started(9.9)  # a new scout: the cached curve stands until the refresh interval
    assert model.fraction_done(2.0, now=10.1) == pytest.approx(2 / 3)


# -- the endpoint's health ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "fatal_at"),
    [
        (["certificate"], 1),
        (["redirect"], 1),
        (["dns", "dns"], 2),
        (["refused", "refused", "refused"], 3),
        (["not_api", "not_api", "not_api"], 3),
        (["silent", "silent", "silent"], 3),
        (["tls", "tls", "tls"], 3),
        # a good answer, or another kind of failure, ends a streak
        (["refused", "refused", None, "refused", "refused"], None),
        (["silent", "silent", "transient", "silent", "silent"], None),
        (["dns", "refused", "dns", "refused"], None),
        # once the endpoint answered well, these are a restart or a blip: transient
        ([None, "refused", "refused", "refused", "refused"], None),
        ([None, "dns", "dns", "dns"], None),
        ([None, "not_api", "not_api", "not_api"], None),
        # ... but not these
        ([None, "silent", "silent", "silent"], 4),
        ([None, "redirect"], 2),
        ([None, "certificate"], 2),
        # never a reason to stop
        (["too_large"] * 5 + ["transient"] * 5, None),
    ],
)
def test_health_decides_when_a_failure_is_proven(seen, fatal_at):
    health = Health()
    verdicts = [health.observe(fault) for fault in seen]
    assert (verdicts.index(True) + 1 if True in verdicts else None) == fatal_at


@pytest.mark.parametrize(
    ("rejections", "now", "allowed"),
    [(0, 0.0, 5), (1, 0.5, 4), (4, 1.0, 1), (5, 1.0, 1), (0, 2.0, None), (3, 9.0, None)],
)
def test_cold_start_allows_fewer_creates_as_identical_rejections_come(rejections, now, allowed):
    cold = ColdStart(limit=5, grace=2.0, first=0.0)
    assert cold.allowed(rejections, now) == allowed


def test_cold_start_before_any_create_and_once_warm():
    assert ColdStart().allowed(0, 1000.0) == 5  # no create left yet: the grace has not begun
    warm = ColdStart(warm=True)
    assert warm.allowed(4, 0.0) is None


@pytest.mark.parametrize(
    ("location", "path", "base"),
    [
        ("https://api.example.com/v1/responses", "/responses", "https://api.example.com/v1"),
        (
            "https://api.example.com/v1/responses/r_1",
            "/responses/r_1",
            "https://api.example.com/v1",
        ),
        ("https://x.test/responses?a=1", "/responses", "https://x.test"),
        ("/v1/responses", "/responses", None),
        ("https://login.example.com/sso", "/responses", None),
        ("ftp://x/responses", "/responses", None),
    ],
)
def test_suggest_base_url(location, path, base):
    assert suggest_base_url(location, path) == base


@pytest.mark.parametrize(
    ("fault", "kwargs", "words"),
    [
        ("certificate", {"detail": "self-signed certificate"}, ["SSL_CERT_FILE", "self-signed"]),
        ("redirect", {"detail": "HTTP 301", "location": "https://new.test/v1/responses"},
         ["HTTP 301", "https://new.test/v1/responses", "base_url='https://new.test/v1'"]),
        ("redirect", {"detail": "HTTP 302", "location": None}, ["no Location", "VALAR_BASE_URL"]),
        ("dns", {"detail": "Name or service not known"}, ["'h.test' could not be resolved"]),
        ("refused", {"detail": "Connection refused"}, ["h.test:8443", "refused", "running"]),
        ("tls", {"detail": "WRONG_VERSION_NUMBER"}, ["http://", "WRONG_VERSION_NUMBER"]),
        ("not_api", {"detail": "HTTP 200: b'<html>'"}, ["<html>", "/v1"]),
        ("silent", {"detail": "timed out", "timeout": 60.0}, ["60 s", "ValarClient(timeout=...)"]),
    ],
)  # fmt: skip
def test_explain_names_the_cause_and_the_fix(fault, kwargs, words):
    message = explain(
        fault, base_url="https://h.test:8443/v1", host="h.test", authority="h.test:8443", **kwargs
    )
    for word in words:
        assert word in message
