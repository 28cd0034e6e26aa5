"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_quickstart_runs_in_a_kernel(tmp_path):
    """run() blocks inside the kernel's own running event loop and returns every row."""
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(nb.cells)}
    totals = next(
        o["data"]["text/plain"] for o in outputs[6] if o.get("output_type") == "execute_result"
    )
    assert "'rows': 300" in totals and "'failed': 0" in totals
    counts = json.dumps(outputs[4])
    assert "positive" in counts and "negative" in counts


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
