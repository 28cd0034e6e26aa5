"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
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
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    report = next(o for o in nb.cells[3]["outputs"] if o.get("output_type") == "execute_result")
    assert "confusion" in report["data"]["text/html"].lower()
    printed = "".join(o.get("text", "") for o in nb.cells[4]["outputs"])
    assert "accuracy=" in printed and "errors=" in printed
    scored = int(printed.split("scored=")[1].split()[0])
    errors = int(printed.split("errors=")[1].split()[0])
    assert scored + errors == 300 and errors > 0
