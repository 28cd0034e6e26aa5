"""`valar-pandas check` and `valar_pandas.check()` against the emulator, passing and failing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import valar_pandas
from valar_pandas import CheckResult, ConfigError
from valar_pandas._cli.main import main
from valar_pandas.emulator import Faults, Latency

KEY = "sk-check-0123456789abcdef"
NAMES = (
    "API key",
    "model",
    "background asap",
    "background standard",
    "idempotent replay",
    "strict structured output",
    "Batch API",
)


def table(out: str) -> dict[str, list[str]]:
    """The printed table: each check's five cells, wrapped lines joined."""
    rows: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) != 5:
            current = None
            continue
        if cells[0] in NAMES:
            current = rows[cells[0]] = cells
        elif current is not None and not cells[0]:
            for i, cell in enumerate(cells):
                current[i] = f"{current[i]} {cell}".strip()
    return rows


def levels(out: str) -> dict[str, str]:
    """Each check's result word, read from the printed table."""
    return {name: cells[1] for name, cells in table(out).items()}


def run_check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return code, out + err


def test_every_check_passes_on_the_emulator_in_a_real_process(serve_cli):
    emulator = serve_cli(api_key=KEY, batch_api=True)
    done = subprocess.run(
        [sys.executable, "-m", "valar_pandas", "check", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert KEY not in out
    assert levels(out) == dict.fromkeys(NAMES, "PASS")
    # What it sends and what it costs come first, before anything is sent.
    plan, _, rest = out.partition("Waiting for the answers")
    assert "GET  /models" in plan and "POST /responses" in plan
    cost = re.search(r"Cost: at most \$(\d+\.\d+)", plan)
    assert cost is not None and float(cost.group(1)) < 0.01
    assert "pending" in rest and "completed after" in rest
    assert "every required check passed" in out
    # One inference per create; the replay bills nothing; no batch was made.
    assert emulator.stats.inferences == 3
    assert emulator.stats.batch_creates == 0


def test_a_wrong_key_fails_with_the_fix_and_skips_the_rest(serve_cli, monkeypatch, capsys):
    emulator = serve_cli(batch_api=True)
    monkeypatch.setenv("VALAR_API_KEY", KEY)  # not the emulator's
    code, out = run_check(capsys)
    assert code == 1
    found = levels(out)
    assert found["API key"] == "FAIL"
    assert {found[n] for n in NAMES[1:6]} == {"SKIP"}
    row = table(out)["API key"]
    assert "401" in row[3] and "VALAR_API_KEY" in row[4]
    assert emulator.stats.inferences == 0


def test_a_model_the_endpoint_does_not_list_fails(serve_cli, capsys):
    emulator = serve_cli(batch_api=True, models=("acme/other-model",))
    code, out = run_check(capsys, "--model", "zai-org/GLM-5.1-FP8")
    assert code == 1
    found = levels(out)
    assert found["API key"] == "PASS" and found["model"] == "FAIL"
    assert "acme/other-model" in table(out)["model"][3]  # the models it lists, to choose from
    assert emulator.stats.inferences == 0


def test_a_server_that_ignores_idempotency_keys_fails_the_replay(serve_cli, capsys):
    emulator = serve_cli(batch_api=True, idempotency=False)
    code, out = run_check(capsys, "--windows", "asap")
    assert code == 1
    assert levels(out)["idempotent replay"] == "FAIL"
    assert "billed twice" in table(out)["idempotent replay"][3]
    assert emulator.stats.inferences == 3  # asap, strict, and the replay run again


def test_without_the_batch_api_it_warns_and_passes(serve_cli, capsys):
    serve_cli(batch_api=False)
    code, out = run_check(capsys, "--windows", "asap")
    assert code == 0
    assert levels(out)["Batch API"] == "WARN"
    assert "falls back to background" in table(out)["Batch API"][4]


@pytest.mark.parametrize("refusal", ["not_enabled", "coming_soon", "unavailable"])
def test_a_refusing_batch_api_is_a_warning_that_says_runs_fall_back(serve_cli, capsys, refusal):
    serve_cli(batch_api=True, batch_refusal=refusal)
    code, out = run_check(capsys, "--windows", "asap")
    assert code == 0
    assert levels(out)["Batch API"] == "WARN"
    assert "falls back to background" in table(out)["Batch API"][4]


@pytest.mark.parametrize(
    "fault", [Faults(invalid_structured=1.0), Faults(disobey_schema=1.0)], ids=["values", "shape"]
)
def test_a_strict_answer_that_breaks_the_schema_fails(serve_cli, capsys, fault):
    serve_cli(batch_api=True, faults=fault)
    code, out = run_check(capsys, "--windows", "asap")
    assert code == 1
    assert levels(out)["strict structured output"] == "FAIL"
    assert levels(out)["background asap"] == "PASS"


def test_the_strict_probe_meets_a_strict_server(serve_cli, capsys):
    serve_cli(batch_api=True, strict_schemas=True)
    code, out = run_check(capsys, "--windows", "asap")
    assert code == 0
    assert levels(out)["strict structured output"] == "PASS"


def test_a_slow_standard_window_is_a_warning_with_the_timeout_to_raise(serve):
    # Realistic latency by window, the asap window made quick: standard stays running.
    _, client = serve(
        latency=None, latency_by_window={"asap": Latency(median=0.05, sigma=0.0)}, batch_api=True
    )
    lines: list[str] = []
    result = valar_pandas.check(client=client, timeout=1.0, progress=lines.append)
    assert isinstance(result, CheckResult)
    rows = {row.name: row for row in result.rows}
    assert rows["background standard"].level == "warn"
    assert "--timeout" in rows["background standard"].fix
    assert rows["background asap"].level == "pass"
    assert result.ok and result.exit_code == 0
    assert lines[0].startswith("valar-pandas check:")  # the plan, first


def test_the_function_returns_rows_of_expectation_and_observation(serve):
    _, client = serve(batch_api=True)
    result = valar_pandas.check(client=client, windows="asap", progress=None)
    assert [row.name for row in result.rows] == [n for n in NAMES if n != "background standard"]
    assert all(row.level == "pass" and row.expectation and row.observation for row in result.rows)
    assert result.spent is not None and 0 < result.spent < 0.01
    assert "every required check passed" in str(result)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--windows", "flex"], "completion window"),
        (["--timeout", "0"], "--timeout"),
    ],
)
def test_bad_usage_exits_2_before_any_request(serve_cli, capsys, argv, needle):
    emulator = serve_cli(batch_api=True)
    code, out = run_check(capsys, *argv)
    assert code == 2 and needle in out
    assert emulator.stats.total_requests == 0


def test_no_key_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("VALAR_API_KEY", raising=False)
    code, out = run_check(capsys)
    assert code == 2 and "VALAR_API_KEY" in out


def test_the_function_checks_its_arguments_before_sending(serve):
    emulator, client = serve(batch_api=True)
    with pytest.raises(ConfigError, match="window"):
        valar_pandas.check(client=client, windows=["now"], progress=None)
    with pytest.raises(ConfigError, match="timeout"):
        valar_pandas.check(client=client, timeout=float("nan"), progress=None)
    assert emulator.stats.total_requests == 0


def test_a_server_that_echoes_the_key_never_gets_it_printed(serve_cli, capsys):
    serve_cli(api_key=KEY, batch_api=True, faults=Faults(echo_key=True))
    code, out = run_check(capsys, "--windows", "asap")  # run_check: the key is nowhere
    assert code == 1
    found = levels(out)
    assert found["background asap"] == "FAIL" and found["strict structured output"] == "FAIL"
    assert "may not use this model" in table(out)["background asap"][3]
    assert "\x1b" not in out  # the server's terminal escapes are shown, never obeyed


def test_a_busy_server_is_retried_as_a_run_retries(serve_cli, capsys):
    emulator = serve_cli(batch_api=True, faults=Faults(rate_429=0.3, retry_after=0.05))
    code, out = run_check(capsys, "--windows", "asap")
    assert code == 0, out
    assert emulator.stats.faults["429"] > 0
