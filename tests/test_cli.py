"""The command line: the demo end to end, and Ctrl-C on a blocking run in a real process."""

from __future__ import annotations

import contextlib
import io
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from valar_pandas._cli.main import main


def test_demo_scores_reviews_and_writes_parquet(tmp_path):
    path = tmp_path / "demo.parquet"
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["demo", "--rows", "200", "--quiet", "--latency", "0.2", "--output", str(path)])
    text = out.getvalue()
    assert code == 0, text
    assert "LOCAL Valar emulator" in text
    assert "Rows: 200" in text and "errors: 0" in text and "per row" in text
    frame = pd.read_parquet(path)
    assert len(frame) == 200 and frame["sentiment"].notna().all()
    assert set(frame["sentiment"].str.strip()) <= {"positive", "negative", "neutral"}


def test_demo_rejects_bad_numbers(capsys):
    try:
        main(["demo", "--rows", "0"])
    except SystemExit as exc:
        assert "--rows" in str(exc)
    else:
        raise AssertionError("expected SystemExit")


SCRIPT = textwrap.dedent(
    """
    import dataclasses, signal, sys, warnings, pandas as pd, valar_pandas
    # A parent started in the background may pass SIGINT down as ignored; restore Python's own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from valar_pandas import ValarClient
    from valar_pandas._run.cancel import drain
    from valar_pandas._run.loop import run_sync
    from valar_pandas.emulator import Emulator, EmulatorConfig, Latency
    # Latencies from well under a second to several: some rows finish before the interrupt.
    emulator = Emulator(EmulatorConfig(latency=Latency(median=1.5, sigma=0.6, minimum=0.05)))
    store = sys.argv[1]
    with emulator.run_in_thread(host="127.0.0.1", port=0) as url:
        client = ValarClient(api_key=emulator.config.api_key, base_url=url)
        df = pd.DataFrame({"q": [f"row {i}" for i in range(50)]})
        ask = dict(model="zai-org/GLM-5.1-FP8", client=client, progress=None, store=store,
                   completion_window="asap")
        print("started", flush=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = df.valar.run("say {q}", **ask)
        run_sync(drain())
        answered = int(out["output"].notna().sum())
        cancelled = int(out["output_error"].str.startswith("interrupted").sum())
        print("answered", answered, "cancelled", cancelled, "total", len(out), flush=True)
        print("attrs", out.attrs["valar"]["cancelled"], flush=True)
        print("warned", any("interrupted" in str(w.message) for w in caught), flush=True)
        stopped = emulator.stats.requests["POST /v1/responses/{id}/cancel"]
        print("cancel calls", stopped, flush=True)
        killed = sum(r.cancelled for r in emulator.store.records.values())
        print("server cancelled", killed, flush=True)
        before = emulator.stats.inferences
        emulator.config = dataclasses.replace(emulator.config, latency=Latency(median=0.05))
        again = df.valar.run("say {q}", **ask)
        print("again", int(again["output"].notna().sum()), flush=True)
        print("new inferences", emulator.stats.inferences - before, flush=True)
        print("inferences", emulator.stats.inferences, flush=True)
        twice = sum(n > 1 for n in emulator.stats.inferences_by_body.values())
        print("billed twice", twice, flush=True)
        unchanged = again["output"][out["output"].notna()].equals(out["output"].dropna())
        print("answers kept", unchanged, flush=True)
    """
)


def _wait_for_answers(store: Path, at_least: int, proc: subprocess.Popen[str]) -> None:
    """Wait (at most a minute) until the run store holds ``at_least`` answered requests."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            with contextlib.suppress(sqlite3.Error):
                db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
                try:
                    done = db.execute("SELECT count(*) FROM requests WHERE state = 'done'")
                    if done.fetchone()[0] >= at_least:
                        return
                finally:
                    db.close()
        time.sleep(0.02)
    raise AssertionError(f"no {at_least} answers in the store within a minute")


def test_ctrl_c_returns_the_rows_already_answered(tmp_path):
    """SIGINT during run(): the frame comes back with what arrived; nothing is cancelled on
    the server, and the same call collects the rest without paying for any row twice."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "store.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    # Interrupt once the first answers are in the store, not after a fixed time: on a loaded
    # machine a fixed second or two can pass before any row is answered.
    _wait_for_answers(tmp_path / "store.db", at_least=3, proc=proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    lines = dict(line.rsplit(" ", 1) for line in stdout.splitlines() if " " in line)
    first = stdout.splitlines()[0].split()
    answered, cancelled, total = int(first[1]), int(first[3]), int(first[5])
    assert answered > 0 and cancelled > 0 and answered + cancelled == total == 50, stdout
    assert lines["attrs"] == str(cancelled) and lines["warned"] == "True", stdout
    # No cancel went to the server: the re-run re-attached to the responses left running and
    # served the answered rows from the store; every body was billed once.
    assert lines["cancel calls"] == "0" and lines["server cancelled"] == "0", stdout
    assert lines["again"] == "50" and lines["answers kept"] == "True", stdout
    assert lines["inferences"] == "50" and lines["billed twice"] == "0", stdout
    assert "Traceback" not in stderr and "Task was destroyed" not in stderr, stderr
    assert "never retrieved" not in stderr and "Unclosed" not in stderr, stderr


def test_emulator_subcommand_has_its_own_help(capsys):
    try:
        main(["emulator", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: valar-pandas emulator") and "--rate-429" in out


def test_store_commands(serve, tmp_path, capsys):
    from helpers import FAST, TEMPLATE, words

    _, client = serve()
    path = tmp_path / "s.sqlite3"
    words(3).valar.run(TEMPLATE, client=client, store=path, **FAST)
    assert main(["store", "info", "--store", str(path)]) == 0
    info = capsys.readouterr().out
    assert "rows:           3" in info and "'completed': 3" in info
    assert main(["store", "list", "--store", str(path), "--limit", "2"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and "Echo: item" in listed[0]
    assert main(["store", "clear", "--store", str(path), "--older-than", "1d"]) == 0
    assert "deleted 0 rows" in capsys.readouterr().out
    assert main(["store", "clear", "--store", str(path)]) == 0
    assert "deleted 3 rows" in capsys.readouterr().out


def _valar_pandas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "valar_pandas", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("kind", ["garbage", "text", "truncated", "foreign"])
def test_store_commands_on_a_damaged_or_foreign_file(tmp_path, kind):
    from test_store_faults import SECRET, damage

    path = tmp_path / "s.sqlite3"
    damage(kind, path)
    neighbour = tmp_path / "s.sqlite3.bak"
    neighbour.write_bytes(b"keep me")
    for action in ("info", "list"):
        done = _valar_pandas("store", action, "--store", str(path))
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and str(path) in done.stderr
        assert "store clear --store" in done.stderr and SECRET not in done.stderr + done.stdout
    refused = _valar_pandas("store", "clear", "--store", str(path), "--older-than", "1d")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and path.exists()
    for sibling in ("-wal", "-shm"):  # as a crash leaves them
        Path(f"{path}{sibling}").write_bytes(b"x")
    cleared = _valar_pandas("store", "clear", "--store", str(path))
    assert cleared.returncode == 0 and "removed s.sqlite3" in cleared.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite3.bak"]
    assert neighbour.read_bytes() == b"keep me"


def test_store_commands_on_unreadable_rows_and_on_no_store(tmp_path):
    from test_store_faults import SECRET, _filled_store

    path = tmp_path / "s.sqlite3"
    _filled_store(path, rows=5)
    with sqlite3.connect(path) as db:  # a row whose text is not UTF-8: the driver quotes it
        db.execute("UPDATE requests SET text = CAST(? AS TEXT)", (SECRET.encode() + b"\xff",))
    listed = _valar_pandas("store", "list", "--store", str(path))
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert SECRET not in listed.stderr and str(path) in listed.stderr
    cleared = _valar_pandas("store", "clear", "--store", str(path))
    assert cleared.returncode == 0 and "deleted 5 rows" in cleared.stdout
    missing = tmp_path / "nothing.sqlite3"
    shown = _valar_pandas("store", "info", "--store", str(missing))
    assert shown.returncode == 0 and "no run store" in shown.stdout and not missing.exists()


def test_cli_run_with_a_locked_store_writes_every_answer_and_warns(
    serve, tmp_path, monkeypatch, capsys
):
    from helpers import MODEL, TEMPLATE, echo, words
    from test_store_faults import locked

    import valar_pandas._store.runstore as store_module
    from valar_pandas import RunStore

    emulator, client = serve()
    monkeypatch.setenv("VALAR_API_KEY", client.api_key.reveal())
    monkeypatch.setenv("VALAR_BASE_URL", client.base_url)
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 1.0)
    df = words(120)
    df.to_parquet(tmp_path / "in.parquet")
    store = tmp_path / "s.sqlite3"
    RunStore(store).close()
    out = tmp_path / "out.parquet"
    argv = ["run", str(tmp_path / "in.parquet"), str(out), "--model", MODEL]
    argv += ["--template", TEMPLATE, "--completion-window", "asap", "--quiet"]
    argv += ["--store", str(store), "--window-rows", "50"]
    with locked(store):
        code = main(argv)
    assert code == 0
    assert pd.read_parquet(out)["output"].tolist() == echo(df)
    assert emulator.stats.inferences == 120
    err = capsys.readouterr().err
    assert "could not be written" in err and str(store) in err and str(out) in err
