"""Option validation: every bad option is a ConfigError before anything is built."""

import pytest

from valar_pandas import ConfigError
from valar_pandas._options import validate_options


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
