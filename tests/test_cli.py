"""The command line: the demo end to end, and Ctrl-C on a blocking run in a real process."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stdout

import pandas as pd

from valar_pandas._cli import main


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
    import dataclasses, signal, pandas as pd, valar_pandas
    # A parent started in the background may pass SIGINT down as ignored; restore Python's own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from valar_pandas import ValarClient
    from valar_pandas.emulator import Emulator, EmulatorConfig, Latency
    emulator = Emulator(EmulatorConfig(latency=Latency(median=60.0, sigma=0.1)))
    with emulator.run_in_thread(host="127.0.0.1", port=0) as url:
        client = ValarClient(api_key=emulator.config.api_key, base_url=url)
        df = pd.DataFrame({"q": [f"row {i}" for i in range(50)]})
        print("started", flush=True)
        try:
            df.valar.run("say {q}", model="zai-org/GLM-5.1-FP8", client=client, progress=None)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        emulator.config = dataclasses.replace(emulator.config, latency=Latency(median=0.05))
        out = df.head(2).valar.run("again {q}", model="zai-org/GLM-5.1-FP8", client=client,
                                   progress=None, mode="realtime", completion_window="asap")
        print("still works", out["output"].notna().all(), flush=True)
    """
)


def test_ctrl_c_stops_a_blocking_run_cleanly():
    """SIGINT during run(): KeyboardInterrupt in the caller, no traceback from the loop thread."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stdout and "still works True" in stdout
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
