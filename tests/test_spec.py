"""One table of options: the methods' signatures and docs, validation and the CLI agree with it."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import pydoc
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import valar_pandas
from valar_pandas import ConfigError, ValarAccessor
from valar_pandas._cli.args import flag_of
from valar_pandas._cli.main import _parser
from valar_pandas._core.options import RunOptions, validate_options
from valar_pandas._core.spec import (
    OPTIONS,
    REQUIRED,
    EstimateArgs,
    RequestsArgs,
    RunArgs,
    ScoreArgs,
    names_of,
    option,
)

METHODS = {
    "run": RunArgs,
    "arun": RunArgs,
    "submit": RunArgs,
    "score": ScoreArgs,
    "submit_score": ScoreArgs,
    "requests": RequestsArgs,
    "estimate": EstimateArgs,
}
CLI_OWN = {
    "input", "output", "encoding", "template", "columns", "limit", "window_rows", "dry_run",
    "estimate", "quiet", "json", "help", "dask",
}  # fmt: skip


@pytest.mark.parametrize("name", METHODS)
def test_every_method_shows_every_option_with_its_default(name):
    method = getattr(ValarAccessor, name)
    params = inspect.signature(method).parameters
    keyword = [p for p in params.values() if p.kind is p.KEYWORD_ONLY]
    assert [p.name for p in keyword] == names_of(METHODS[name])
    for p in keyword:
        default = option(p.name).default
        expected = (
            "score" if (name, p.name) in {("score", "into"), ("submit_score", "into")} else default
        )
        assert p.default == expected or (p.default is p.empty and default is REQUIRED), p.name
    shown = pydoc.render_doc(method, renderer=pydoc.plaintext)
    args = method.__doc__.split("Args:")[1]
    for p in keyword:
        assert f"{p.name}=" in shown or f"{p.name}:" in shown  # in the signature help() prints
        assert f"\n            {p.name}: " in args, f"{name}() documents {p.name}"
    assert "{options}" not in method.__doc__


def test_the_table_and_validation_agree():
    settled = {o.name for o in OPTIONS if o.settled}
    assert {f.name for f in dataclasses.fields(RunOptions)} == settled | {"text"}
    validated = validate_options(model="m")
    for name in settled - {"model", "completion_window"}:
        assert getattr(validated, name) == option(name).default, name
    with pytest.raises(ConfigError, match="unknown option 'temprature'"):
        validate_options(model="m", temprature=1)


def _run_parser() -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["run"]


def test_the_table_and_the_command_line_agree():
    parser = _run_parser()
    flags = {a.dest: a for a in parser._actions}
    for o in OPTIONS:
        if o.flag is None:
            assert o.offline and o.name not in flags, o.name
            continue
        action = flags[o.name]
        assert flag_of(o) in action.option_strings
        assert action.default is None  # "not given": validation fills the table's default
        assert action.required == (o.default is REQUIRED)
    assert set(flags) - {o.name for o in OPTIONS} == CLI_OWN
    text = parser.format_help()
    for flag in ("--temperature", "--salt", "--no-cache", "--label", "--reasons",
                 "--retries-on-invalid", "--retry-failed", "--details"):  # fmt: skip
        assert flag in text


def test_unknown_keywords_name_close_matches():
    df = pd.DataFrame({"x": ["a"]})
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        df.valar.run("{x}", model="m", temprature=0.5)
    with pytest.raises(ConfigError, match="did you mean 'retries_on_invalid'"):
        df.valar.score("{x}", model="m", labels=["a"], retries_on_invalids=1)
    with pytest.raises(ConfigError, match="missing the required option 'model'"):
        df.valar.requests("{x}")


def test_job_is_exported():
    assert "Job" in valar_pandas.__all__ and valar_pandas.Job.__name__ == "Job"


def test_a_type_checker_reads_the_options(tmp_path):
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """\
            import pandas as pd
            from valar_pandas import ValarAccessor

            frame = ValarAccessor(pd.DataFrame())
            frame.run("x", model=1)
            frame.score("x", model="m", labels=["a"], temprature=0.5)
            frame.estimate("x", model="m", max_output_tokens="many")
            frame.run("x", model="m", into="y", concurrency=4)
            """
        )
    )
    out, _, status = api.run(
        [str(snippet), "--cache-dir", str(tmp_path / "cache"), "--follow-imports", "silent"]
    )
    assert status == 1
    assert 'snippet.py:5: error: Argument "model" to "run"' in out
    assert 'snippet.py:6: error: Unexpected keyword argument "temprature"' in out
    assert 'snippet.py:7: error: Argument "max_output_tokens"' in out
    assert "snippet.py:8" not in out


def test_the_cli_docs_list_every_option():
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    table = text.split("### The command and the accessor take the same options")[1]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    listed = {name.strip() for row in rows for name in row.split(",")}
    assert {o.name for o in OPTIONS} <= listed
    for o in OPTIONS:
        if o.flag is not None:
            assert f"`{flag_of(o)}" in table, o.name
