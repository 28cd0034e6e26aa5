"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def widget_models(nb: nbformat.NotebookNode) -> dict[str, dict[str, Any]]:
    """The widget states the kernel left, as stored in the notebook's metadata."""
    stored = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return {model_id: entry["state"] for model_id, entry in stored.items()}


def result_of(cell: nbformat.NotebookNode, kind: str = "text/plain") -> str:
    return next(o["data"][kind] for o in cell["outputs"] if o["output_type"] == "execute_result")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_quickstart_runs_in_a_kernel(tmp_path):
    """run() blocks inside the kernel's running loop; submit() returns and its bar finishes."""
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
        store_widget_state=True,
    ).execute()
    cells = nb.cells
    totals = result_of(cells[6])
    assert "'rows': 300" in totals and "'failed': 0" in totals
    counts = json.dumps(cells[4]["outputs"])
    assert "positive" in counts and "negative" in counts
    # Both the blocking run and the background job drew a widget, and both ended green,
    # full and marked done.
    models = widget_models(nb)
    bars = [m for m in models.values() if m["_model_name"] == "IntProgressModel"]
    assert len(bars) == 2
    assert all(b["value"] == b["max"] == 300 and b["bar_style"] == "success" for b in bars)
    boxes = [m for m in models.values() if "valar-progress" in m.get("_dom_classes", [])]
    assert len(boxes) == 2 and all("valar-done" in b["_dom_classes"] for b in boxes)
    texts = [m["value"] for m in models.values() if m["_model_name"] == "HTMLModel"]
    assert sum(t.startswith("done: 300 rows") for t in texts) == 2, texts
    widget_outputs = [
        o for o in cells[8]["outputs"] if "application/vnd.jupyter.widget-view+json" in o["data"]
    ]
    assert len(widget_outputs) == 1  # the submit cell shows its bar
    assert "'state': 'running'" in result_of(cells[9])  # the cell after submit ran meanwhile
    summaries = result_of(cells[10], "text/html")
    assert "summary_error" in summaries and "Echo: Summarise this product review" in summaries


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_evals_notebook_scores_and_reports(tmp_path):
    nb = nbformat.read(NOTEBOOKS / "evals.ipynb", as_version=4)
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
        store_widget_state=True,
    ).execute()
    report = next(o for o in nb.cells[3]["outputs"] if o.get("output_type") == "execute_result")
    assert "confusion" in report["data"]["text/html"].lower()
    printed = "".join(o.get("text", "") for o in nb.cells[4]["outputs"])
    assert "accuracy=" in printed and "errors=" in printed
    scored = int(printed.split("scored=")[1].split()[0])
    errors = int(printed.split("errors=")[1].split()[0])
    assert scored + errors == 300 and errors > 0
    # The replies it could not read are failed rows on the widget too: red, with the count.
    models = widget_models(nb)
    bars = [m for m in models.values() if m["_model_name"] == "IntProgressModel"]
    (bar,) = [b for b in bars if b["max"] == 300]
    assert bar["bar_style"] == "danger" and bar["value"] == bar["max"] == 300
    texts = [m["value"] for m in models.values() if m["_model_name"] == "HTMLModel"]
    assert any(
        t.startswith(f"{errors} of 300 rows failed; see the sentiment_error column") for t in texts
    ), texts
    # The sweep: one display for all four pairs (2 prompts × 2 models × 100 sampled rows).
    (swept,) = [b for b in bars if b["max"] == 400]
    assert swept["value"] == 400
    shown = next(o for o in nb.cells[6]["outputs"] if o.get("output_type") == "execute_result")
    page = shown["data"]["text/html"]
    assert page.count("<svg") == 3 and "Pareto front" in page and "valar-leaderboard" in page
    note = "".join(o.get("text", "") for o in nb.cells[7]["outputs"])
    assert note.startswith("best: ") and "zai-org/GLM-5.1-FP8" in note.split(";")[0]
    assert "exact McNemar" in note


INTERRUPTED = """
import re
import warnings
import pandas as pd
import valar_pandas
from valar_pandas import ValarClient
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

emulator = Emulator(EmulatorConfig(latency=Latency(median=1.5, sigma=0.6, minimum=0.05)))
client = ValarClient(api_key=emulator.config.api_key, base_url=emulator.start())
df = pd.DataFrame({"q": [f"row {i}" for i in range(80)]})
ask = dict(model="zai-org/GLM-5.1-FP8", client=client, completion_window="asap")
print("running", flush=True)
out = df.valar.run("say {q}", **ask)
print("answered", int(out["output"].notna().sum()), "of", len(out))
shapes = {re.sub(r"response \\S+", "response <id>", e) for e in out["output_error"].dropna()}
print("errors", sorted(shapes))
print("cancelled", out.attrs["valar"]["cancelled"])
"""

AGAIN = """
again = df.valar.run("say {q}", **ask)
stats = emulator.stats
print("again", int(again["output"].notna().sum()))
print("kept", again["output"][out["output"].notna()].equals(out["output"].dropna()))
print("cancels", stats.requests["POST /v1/responses/{id}/cancel"])
print("billed", stats.inferences, "bodies", len(stats.inferences_by_body))
print("twice", sum(n > 1 for n in stats.inferences_by_body.values()))
"""


def _execute(manager: KernelManager, client: Any, code: str, interrupt: bool) -> str:
    """Run code in the kernel; interrupt it once it prints "running" if asked. Its text."""
    msg_id = client.execute(code)
    outputs: list[dict[str, Any]] = []
    while True:
        msg = client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and "running" in content["text"] and interrupt:
            time.sleep(1.5)  # some rows answered, the rest still running
            manager.interrupt_kernel()
            interrupt = False
        if kind in ("stream", "error", "display_data", "execute_result"):
            outputs.append(content)
        if kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=10)
    text = "".join(o.get("text", "") for o in outputs)
    assert reply["content"]["status"] == "ok", text  # no KeyboardInterrupt traceback
    assert not any("ename" in o for o in outputs) and "Traceback" not in text, text
    return text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_kernel_interrupt_returns_the_rows_answered_so_far(tmp_path):
    """The stop button during a blocking run(): the cell ends normally, with the frame; the
    same call in the next cell completes it, and no row is paid for twice."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        text = _execute(manager, client, INTERRUPTED, interrupt=True)
        again = _execute(manager, client, AGAIN, interrupt=False)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert "interrupted:" in text and "Run the same call again to resume" in text, text
    assert "left to finish on the server" in text, text
    answered = int(text.split("answered ")[1].split()[0])
    assert 0 < answered < 80, text
    lines = dict(line.split(" ", 1) for line in again.splitlines())
    assert lines["again"] == "80" and lines["kept"] == "True", again
    assert lines["cancels"] == "0", again  # the interrupt cancelled nothing on the server
    assert lines["billed"] == "80 bodies 80" and lines["twice"] == "0", again
    # quickstart.ipynb describes this very behaviour: its quoted error is the one rows get,
    # and the rows without an answer are the ones attrs counts as cancelled.
    quickstart = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    told = next(c.source for c in quickstart.cells if "Interrupting a blocking" in c.source)
    quoted = [q for q in re.findall(r"`([^`]+)`", told) if q.startswith("interrupted")]
    assert quoted and repr(quoted[0]) in text.split("errors ")[1].splitlines()[0], (quoted, text)
    assert f"cancelled {80 - answered}" in text, text
    assert "returns the frame" in told and "KeyboardInterrupt" in told
