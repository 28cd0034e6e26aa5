"""Retry and poll arithmetic. Pure: time and randomness are passed in."""

import pytest

from valar_pandas._policy import PollSchedule, RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("status", "attempt", "expected"),
    [
        (None, 1, True),
        (408, 1, True),
        (429, 1, True),
        (500, 1, True),
        (502, 1, True),
        (503, 1, True),
        (504, 1, True),
        (400, 1, False),
        (401, 1, False),
        (404, 1, False),
        (409, 1, True),
        (422, 1, False),
        (501, 1, False),
        (503, 7, True),
        (503, 8, False),
    ],
)
def test_should_retry(status, attempt, expected):
    assert RetryPolicy(attempts=8).should_retry(status, attempt) is expected


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
