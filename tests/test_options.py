"""Option validation: every bad option is a ConfigError before anything is built."""

import numpy as np
import pytest

from valar_pandas import ConfigError
from valar_pandas._core.options import validate_options


def test_defaults():
    o = validate_options(model=" zai-org/GLM-5.1-FP8 ")
    assert o.model == "zai-org/GLM-5.1-FP8"
    assert (o.into, o.mode, o.completion_window, o.concurrency) == (
        "output",
        "background",
        "standard",
        200,
    )
    assert (o.errors, o.progress, o.details, o.on_missing) == ("column", "auto", False, "empty")
    assert o.background
    assert o.max_rps == 2000.0


def test_realtime_defaults_to_asap_window():
    o = validate_options(model="m", mode="realtime")
    assert (o.background, o.completion_window) == (False, "asap")
    assert (
        validate_options(model="m", mode="realtime", completion_window="standard").completion_window
        == "standard"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model is required"),
        ({"model": None}, "model is required"),
        (
            {"model": "m", "mode": "batchy"},
            "unknown mode 'batchy'; use one of 'background', 'realtime'",
        ),
        ({"model": "m", "completion_window": "flex"}, "unknown completion_window 'flex'"),
        ({"model": "m", "errors": "ignore"}, "unknown errors 'ignore'"),
        ({"model": "m", "progress": "rich"}, "unknown progress 'rich'"),
        ({"model": "m", "on_missing": "drop"}, "unknown on_missing 'drop'"),
        ({"model": "m", "into": ""}, "into must be"),
        ({"model": "m", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "max_output_tokens": True}, "max_output_tokens"),
        ({"model": "m", "temperature": 2.5}, "temperature"),
        ({"model": "m", "temperature": "hot"}, "temperature"),
        ({"model": "m", "concurrency": 0}, "concurrency"),
        ({"model": "m", "details": "yes"}, "details"),
        ({"model": "m", "salt": 3}, "salt"),
        ({"model": "m", "instructions": ["x"]}, "instructions"),
        ({"model": "m", "max_rps": 0}, "max_rps must be a positive number"),
        ({"model": "m", "max_rps": -5.0}, "max_rps must be a positive number"),
        ({"model": "m", "max_rps": float("nan")}, "max_rps must be a positive number"),
        ({"model": "m", "max_rps": float("inf")}, "max_rps must be a positive number"),
        ({"model": "m", "max_rps": True}, "max_rps must be a positive number"),
        ({"model": "m", "max_rps": "fast"}, "max_rps must be a positive number"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=None) as info:
        validate_options(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(("given", "kept"), [(1, 1.0), (0.5, 0.5), (250, 250.0), (None, None)])
def test_max_rps_accepts_positive_numbers_and_none(given, kept):
    assert validate_options(model="m", max_rps=given).max_rps == kept


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "m", "max_rps": 1e-6}, "at least 0.1"),
        ({"model": "m", "max_rps": 0.09}, "at least 0.1"),
        ({"model": "m", "budget": float("inf")}, "budget must be a positive, finite number"),
        ({"model": "m", "budget": float("nan")}, "budget must be a positive, finite number"),
        ({"model": "m", "budget": -1}, "budget must be a positive, finite number"),
        ({"model": "m", "temperature": float("nan")}, "temperature"),
        ({"model": "m", "concurrency": 2.0}, "concurrency must be a positive integer, got 2.0"),
        ({"model": "m", "max_output_tokens": 16.0}, "max_output_tokens"),
        ({"model": "m", "max_output_tokens": np.True_}, "max_output_tokens"),
        ({"model": "m", "concurrency": np.int64(0)}, "concurrency"),
        ({"model": "m", "max_rps": np.float32(0.01)}, "at least 0.1"),
    ],
)
def test_more_bad_options(kwargs, message):
    with pytest.raises(ConfigError) as info:
        validate_options(**kwargs)
    assert message in str(info.value)


def test_a_bad_value_that_is_not_a_number_is_named_by_its_type_not_quoted():
    for name in ("concurrency", "max_output_tokens", "temperature", "budget", "max_rps"):
        with pytest.raises(ConfigError) as info:
            validate_options(model="m", **{name: "sk-pasted-in-the-wrong-place"})
        assert "got a str" in str(info.value) and "sk-pasted" not in str(info.value)


def test_the_request_budget_floor_itself_is_accepted():
    assert validate_options(model="m", max_rps=0.1).max_rps == 0.1


@pytest.mark.parametrize(
    ("name", "given", "kept"),
    [
        ("max_output_tokens", np.int64(16), 16),
        ("max_output_tokens", np.uint16(16), 16),
        ("concurrency", np.int32(8), 8),
        ("temperature", np.float32(0.5), 0.5),
        ("temperature", np.int64(1), 1.0),
        ("budget", np.int64(2), 2.0),
        ("budget", np.float64(0.25), 0.25),
        ("max_rps", np.int64(100), 100.0),
    ],
)
def test_numpy_numbers_count_as_numbers(name, given, kept):
    value = getattr(validate_options(model="m", **{name: given}), name)
    assert value == kept and type(value) is type(kept)  # plain Python numbers, JSON-ready
