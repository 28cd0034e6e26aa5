"""Real-browser check: the quickstart notebook's progress widget in JupyterLab and Chromium.

It does what a person would: starts JupyterLab on 127.0.0.1 over a temporary copy of
``notebooks/``, opens the quickstart notebook in headless Chromium (driven by Playwright),
runs its code cells one by one up to the ``.submit(`` cell, and then reads the page:

* the submit cell finished (its prompt shows an execution count) and the kernel is idle
  (the notebook toolbar's execution indicator, cross-checked with the server's own record of
  the kernel's state);
* meanwhile the progress widget ``.valar-progress`` is on the page, not yet done, and its bar
  grows;
* then the widget reaches its final state (``.valar-done``, a full green bar);
* the remaining cells run, the ``.result()`` cell's frame renders as a table, and the saved
  notebook holds no error output.

A screenshot of the notebook with the bar part-way, taken while the kernel was idle, goes to
``docs/images/notebook-progress.png`` when the check passes. Every wait is bounded; a failure
names what was not seen, saves a screenshot of the page and prints the end of the Jupyter
server's log. JupyterLab (with its kernel) and Chromium are stopped on every path.

Run from the repository root, with the ``browser`` extra installed and Debian's chromium at
``/usr/bin/chromium``::

    python .ci/browser_check.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags for Chromium on a machine without outside network: no background traffic at all."""

USER_SETTINGS = {
    # Every cell stays in the DOM, so cells can be found by their index in the notebook.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No news or update check: nothing reaches outside, and no toast covers the page.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

PANEL = ".jp-NotebookPanel"
CELLS = f"{PANEL} .jp-Notebook .jp-Cell"
INDICATOR = f"{PANEL} .jp-Notebook-ExecutionIndicator"

# Reads, in one go, what the page shows of the kernel and of the progress widget in one cell.
SAMPLE_JS = """
([cells, indicator, index]) => {
  const status = document.querySelector(indicator);
  const cell = document.querySelectorAll(cells)[index];
  const box = cell ? cell.querySelector('.jp-OutputArea .valar-progress') : null;
  const out = {
    status: status ? status.getAttribute('data-status') : null,
    prompt: cell ? (cell.querySelector('.jp-InputPrompt') || {}).textContent || '' : '',
    visible: false, done: false, percent: null, barClass: '', text: '',
  };
  if (!box) return out;
  const rect = box.getBoundingClientRect();
  out.visible = rect.width > 0 && rect.height > 0 && getComputedStyle(box).visibility !== 'hidden';
  out.done = box.classList.contains('valar-done');
  out.text = box.innerText.replace(/\\s+/g, ' ').trim();
  const track = box.querySelector('.widget-hprogress .progress');
  const bar = box.querySelector('.widget-hprogress .progress-bar');
  if (track && bar && track.getBoundingClientRect().width > 0) {
    const ratio = bar.getBoundingClientRect().width / track.getBoundingClientRect().width;
    out.percent = Math.round(1000 * ratio) / 10;
    out.barClass = bar.className;
  }
  return out;
}
"""

# Text of every stderr or error output shown, by cell: what went wrong in the notebook itself.
STDERR_JS = """
(cells) => Array.from(document.querySelectorAll(cells)).flatMap((cell, index) =>
  Array.from(cell.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
  )).map((out) => `cell ${index}: ${out.innerText.trim().slice(-400)}`))
"""

PROMPT_JS = """
([cells, index]) => {
  const cell = document.querySelectorAll(cells)[index];
  const prompt = cell ? cell.querySelector('.jp-InputPrompt') : null;
  return prompt ? prompt.textContent.trim() : null;
}
"""


class CheckFailed(Exception):
    """What the check expected to see and did not; the message says what."""


@dataclass
class Budget:
    """One deadline for the whole check; each wait takes the smaller of its own and the rest.

    Attributes:
        seconds: The whole check's time.
        started: When the check began (monotonic clock).
    """

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds left before the deadline."""
        return self.seconds - (time.monotonic() - self.started)

    def wait(self, seconds: float) -> float:
        """The timeout for one wait: its own, or what is left of the whole, if less.

        Raises:
            CheckFailed: The whole check's time is up.
        """
        left = self.left()
        if left <= 0:
            raise CheckFailed(f"the whole check ran out of its {self.seconds:.0f} s")
        return min(seconds, left)

    def elapsed(self) -> float:
        """Seconds since the check began."""
        return time.monotonic() - self.started


@dataclass
class Sample:
    """What the page showed at one moment, and the server's record of the kernel."""

    at: float
    status: str | None
    server: str | None
    prompt: str
    visible: bool
    done: bool
    percent: float | None
    bar_class: str
    text: str

    @property
    def idle(self) -> bool:
        """Both the page and the server say the kernel is idle."""
        return self.status == "idle" and self.server == "idle"

    def describe(self) -> str:
        """One line for a failure message."""
        return (
            f"t={self.at:.1f}s kernel(page)={self.status} kernel(server)={self.server} "
            f"prompt={self.prompt!r} widget={'done' if self.done else 'running'} "
            f"bar={self.percent}% text={self.text!r}"
        )


def log(message: str) -> None:
    """Print one progress line of the check."""
    print(f"browser check: {message}", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 in its own process group, with throwaway Jupyter dirs.

    Args:
        root: The folder it serves (the notebooks' copy).
        work: A scratch folder for Jupyter's config, data and runtime dirs, and the log.
    """

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "jupyter.log"
        self.proc: subprocess.Popen[bytes] | None = None
        config = work / "config"
        for name, settings in USER_SETTINGS.items():
            path = config / "lab" / "user-settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings))
        self.env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(work / "data"),
            "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
            "IPYTHONDIR": str(work / "ipython"),
            "VALAR_PANDAS_STORE": str(work / "store.sqlite"),
            "JUPYTERLAB_SETTINGS_DIR": str(config / "lab" / "user-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(config / "lab" / "workspaces"),
        }

    def start(self) -> None:
        """Start the server; its output goes to the log file."""
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            "--allow-root",  # CI runs as root; the server only listens on 127.0.0.1
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False",
        ]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def api(self, path: str) -> Any:
        """GET a JSON answer from the server's REST API.

        Raises:
            OSError: The server did not answer, or answered with an error.
        """
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server answers its status endpoint.

        Raises:
            CheckFailed: It exited, or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise CheckFailed(
                    f"jupyter lab exited with code {self.proc.returncode} before it answered "
                    f"on {self.base}"
                )
            with contextlib.suppress(OSError, ValueError):
                self.api("/api/status")
                return
            time.sleep(0.25)
        raise CheckFailed(f"jupyter lab did not answer on {self.base} within {timeout:.0f} s")

    def kernel(self, notebook: str) -> dict[str, Any]:
        """The server's record of the notebook's kernel (``execution_state``, ``connections``).

        Empty when the server has none, or did not answer.
        """
        try:
            sessions = self.api("/api/sessions")
        except (OSError, ValueError):
            return {}
        for session in sessions:
            if session.get("path") == notebook and session.get("kernel"):
                kernel: dict[str, Any] = session["kernel"]
                return kernel
        return {}

    def kernel_state(self, notebook: str) -> str | None:
        """The server's record of the execution state of the notebook's kernel, if any."""
        state: str | None = self.kernel(notebook).get("execution_state")
        return state

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and everything it started (the kernel): TERM, then KILL."""
        if self.proc is None or self.proc.poll() is not None:
            self._kill_group()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def _kill_group(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Notebook:
    """The cells of the notebook under test, as its file has them."""

    name: str
    kinds: list[str]
    sources: list[str]

    @classmethod
    def read(cls, path: Path) -> Notebook:
        """Read a notebook file's cell types and sources."""
        cells = json.loads(path.read_text())["cells"]
        return cls(
            name=path.name,
            kinds=[cell["cell_type"] for cell in cells],
            sources=["".join(cell["source"]) for cell in cells],
        )

    def find(self, needle: str, start: int = 0) -> int:
        """Index of the first code cell at or after ``start`` whose source has ``needle``.

        Raises:
            CheckFailed: No such cell.
        """
        for index in range(start, len(self.kinds)):
            if self.kinds[index] == "code" and needle in self.sources[index]:
                return index
        raise CheckFailed(f"{self.name} has no code cell containing {needle!r}")

    def code(self, start: int, stop: int) -> list[int]:
        """Indexes of the code cells in ``range(start, stop)``."""
        return [i for i in range(start, stop) if self.kinds[i] == "code"]

    def first_line(self, index: int) -> str:
        """The first line of a cell's source, for messages."""
        lines = self.sources[index].strip().splitlines()
        return lines[0] if lines else ""


class Check:
    """The check's steps against one open page.

    Args:
        page: The page with JupyterLab.
        lab: The server.
        notebook: The notebook under test.
        budget: The whole check's deadline.
    """

    def __init__(self, page: Page, lab: JupyterLab, notebook: Notebook, budget: Budget) -> None:
        self.page = page
        self.lab = lab
        self.nb = notebook
        self.budget = budget

    def wait_js(self, js: str, arg: Any, seconds: float, not_seen: str) -> None:
        """Wait until ``js`` returns something truthy in the page.

        Raises:
            CheckFailed: ``not_seen``, with the time waited, when it did not in time.
        """
        timeout = self.budget.wait(seconds)
        try:
            self.page.wait_for_function(js, arg=arg, timeout=timeout * 1000, polling=100)
        except PlaywrightTimeout:
            raise CheckFailed(f"{not_seen} within {timeout:.0f} s") from None

    def open(self) -> None:
        """Open the notebook and wait until its cells are shown and its kernel is idle.

        Raises:
            CheckFailed: The notebook or an idle kernel was not seen in time.
        """
        url = f"{self.lab.base}/lab/tree/{self.nb.name}?token={self.lab.token}"
        timeout = self.budget.wait(60)
        try:
            self.page.goto(url, timeout=timeout * 1000, wait_until="domcontentloaded")
        except PlaywrightError as exc:
            raise CheckFailed(
                f"the JupyterLab page did not load within {timeout:.0f} s: {exc}"
            ) from None
        self.wait_js(
            "([sel, n]) => document.querySelectorAll(sel).length === n",
            [CELLS, len(self.nb.kinds)],
            60,
            f"the notebook {self.nb.name} with its {len(self.nb.kinds)} cells was not shown",
        )
        self.wait_js(
            "(sel) => { const e = document.querySelector(sel);"
            " return e && e.getAttribute('data-status') === 'idle'; }",
            INDICATOR,
            60,
            f"the kernel was not seen ready ({INDICATOR} with data-status=idle)",
        )
        timeout = self.budget.wait(30)
        deadline = time.monotonic() + timeout
        while self.lab.kernel(self.nb.name).get("connections", 0) < 1:
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"the server saw no connection from the page to the kernel within "
                    f"{timeout:.0f} s"
                )
            time.sleep(0.2)
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            raise CheckFailed(f"a dialog covers the notebook: {dialog.first.inner_text()!r}")

    def prompt(self, index: int) -> str:
        """A cell's input prompt as shown, e.g. ``[3]:``, ``[*]:`` or ``[ ]:``."""
        text: str | None = self.page.evaluate(PROMPT_JS, [CELLS, index])
        return text or ""

    def focus_editor(self, index: int, what: str) -> None:
        """Click into a cell's editor and wait until the notebook is in edit mode on it.

        Keys sent before that go to the bare editor, which takes Ctrl+Enter as text editing
        rather than as "run".

        Raises:
            CheckFailed: The click or edit mode was not seen in time.
        """
        editor = self.page.locator(CELLS).nth(index).locator(".jp-InputArea-editor")
        try:
            editor.click(timeout=self.budget.wait(10) * 1000)
        except PlaywrightTimeout:
            raise CheckFailed(f"could not click into {what}") from None
        self.wait_js(
            """([cells, index]) => {
                 const cell = document.querySelectorAll(cells)[index];
                 const nb = cell && cell.closest('.jp-Notebook');
                 return Boolean(nb && nb.classList.contains('jp-mod-editMode')
                   && cell.classList.contains('jp-mod-active')
                   && cell.contains(document.activeElement));
               }""",
            [CELLS, index],
            10,
            f"{what} was not in edit mode with its editor focused after a click into it",
        )

    def run_cell(self, index: int, seconds: float = 60) -> None:
        """Run one code cell as a person would (click into it, Ctrl+Enter) and wait for it.

        Raises:
            CheckFailed: The cell did not start, or did not finish, in time.
        """
        before = self.prompt(index)
        what = f"cell {index} ({self.nb.first_line(index)!r})"
        # A press that JupyterLab takes marks the cell as queued ("[*]") at once; one that
        # comes while the kernel connection is still settling is dropped, so press again.
        for attempt in range(3):
            if attempt:
                log(f"pressing Ctrl+Enter again in {what}: the last press did not queue it")
            self.focus_editor(index, what)
            self.page.keyboard.press("Control+Enter")
            with contextlib.suppress(CheckFailed):
                self.wait_js(
                    """([cells, index, before]) => {
                         const cell = document.querySelectorAll(cells)[index];
                         const p = cell && cell.querySelector('.jp-InputPrompt');
                         return Boolean(p && p.textContent.trim() !== before);
                       }""",
                    [CELLS, index, before],
                    5,
                    "",
                )
                break
        else:
            raise CheckFailed(f"{what} did not start on Ctrl+Enter (its prompt stayed {before!r})")
        try:
            self.wait_js(
                """([cells, index, before]) => {
                     const cell = document.querySelectorAll(cells)[index];
                     const p = cell && cell.querySelector('.jp-InputPrompt');
                     const text = p ? p.textContent.trim() : '';
                     return /^\\[\\d+\\]:?$/.test(text) && text !== before;
                   }""",
                [CELLS, index, before],
                seconds,
                f"{what} did not finish",
            )
        except CheckFailed as exc:
            raise CheckFailed(f"{exc} (its prompt still shows {self.prompt(index)!r})") from None

    def sample(self, index: int) -> Sample:
        """What the page and the server show now, for the widget in cell ``index``."""
        seen = self.page.evaluate(SAMPLE_JS, [CELLS, INDICATOR, index])
        return Sample(
            at=self.budget.elapsed(),
            status=seen["status"],
            server=self.lab.kernel_state(self.nb.name),
            prompt=seen["prompt"],
            visible=seen["visible"],
            done=seen["done"],
            percent=seen["percent"],
            bar_class=seen["barClass"],
            text=seen["text"],
        )

    def watch(self, index: int, shot: Path, seconds: float = 90) -> list[Sample]:
        """Sample the widget of cell ``index`` until it is done; screenshot it mid-run.

        The screenshot is taken at the first moment the kernel is idle, the widget visible and
        not done, and its bar between 15 % and 85 %; failing that, at the first such moment
        with the bar past 0 % (written beside ``shot`` as ``early-<name>``).

        Returns:
            Every sample, the last one done.

        Raises:
            CheckFailed: The widget was not seen, or did not finish in time.
        """
        self.wait_js(
            "([cells, index]) => { const c = document.querySelectorAll(cells)[index];"
            " return Boolean(c && c.querySelector('.jp-OutputArea .valar-progress')); }",
            [CELLS, index],
            30,
            f"the progress widget .valar-progress never appeared in the output of cell {index}",
        )
        self.page.locator(CELLS).nth(index).locator(".valar-progress").scroll_into_view_if_needed()
        timeout = self.budget.wait(seconds)
        deadline = time.monotonic() + timeout
        samples: list[Sample] = []
        while time.monotonic() < deadline:
            sample = self.sample(index)
            samples.append(sample)
            if sample.done:
                return samples
            if sample.idle and sample.visible and sample.percent:
                middle = 15 <= sample.percent <= 85
                for path, wanted in ((shot, middle), (early_shot(shot), True)):
                    if wanted and not shot.exists() and not path.exists():
                        self.page.locator(PANEL).screenshot(path=str(path))
                        log(f"screenshot ({path.name}) at {sample.describe()}")
                        break
            time.sleep(0.2)
        last = samples[-1].describe() if samples else "nothing"
        raise CheckFailed(
            f"the progress widget never reached its final state (.valar-progress.valar-done) "
            f"within {timeout:.0f} s; last seen: {last}"
        )

    def result_table(self, first: int, last: int) -> tuple[int, int]:
        """The first cell in ``first..last`` with a table in its output, and its row count.

        Raises:
            CheckFailed: None of them shows a table with rows.
        """
        for index in self.nb.code(first, last + 1):
            rows: int = (
                self.page.locator(CELLS)
                .nth(index)
                .locator(".jp-OutputArea-output table tbody tr")
                .count()
            )
            if rows:
                return index, rows
        raise CheckFailed(
            f"job.result()'s frame was not rendered: no table with rows in the output of cell "
            f"{first} ({self.nb.first_line(first)!r})"
            + (f" or cell {last}" if last != first else "")
        )

    def save(self, path: Path, seconds: float = 20) -> list[dict[str, Any]]:
        """Save the notebook from the page (Ctrl+S) and read the saved cells back.

        Raises:
            CheckFailed: The file was not written in time.
        """
        before = path.stat().st_mtime_ns
        self.page.keyboard.press("Control+s")
        timeout = self.budget.wait(seconds)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.stat().st_mtime_ns != before:
                with contextlib.suppress(ValueError):
                    cells: list[dict[str, Any]] = json.loads(path.read_text())["cells"]
                    return cells
            time.sleep(0.2)
        raise CheckFailed(
            f"the notebook was not saved to {path.name} (Ctrl+S) within {timeout:.0f} s"
        )


def early_shot(shot: Path) -> Path:
    """Where the screenshot goes when the bar was not (yet) seen mid-way."""
    return shot.with_name(f"early-{shot.name}")


def assert_moved_while_idle(samples: list[Sample], prompt_after: str) -> None:
    """The bar grew while the kernel was idle and the submit cell had finished.

    Raises:
        CheckFailed: It did not, with what was seen.
    """
    running = [s for s in samples if not s.done]
    idle = [s for s in running if s.idle and s.prompt == prompt_after and s.visible]
    if not running:
        raise CheckFailed(
            "the progress widget was already done when the submit() cell finished, so it was "
            "never seen moving while the kernel was idle (did submit() wait for the run?); "
            f"first sample: {samples[0].describe()}"
        )
    if not idle:
        seen = "; ".join(s.describe() for s in running[:5])
        raise CheckFailed(
            "never saw the kernel idle (page and server) with the submit cell finished while "
            f"the progress widget was visible and still running; first samples: {seen}"
        )
    percents = sorted({s.percent for s in idle if s.percent is not None})
    if len(percents) < 2:
        raise CheckFailed(
            f"the bar did not move while the kernel was idle: {len(idle)} samples over "
            f"{idle[-1].at - idle[0].at:.1f} s all showed {percents or 'no bar'} "
            f"(first: {idle[0].describe()})"
        )
    log(
        f"bar moved while the kernel was idle: {len(idle)} samples, "
        f"{percents[0]}% -> {percents[-1]}% over {idle[-1].at - idle[0].at:.1f} s"
    )


def assert_finished(last: Sample) -> None:
    """The widget's final state: a full, green bar.

    Raises:
        CheckFailed: It was not.
    """
    if "progress-bar-success" not in last.bar_class.split() or last.percent != 100.0:
        raise CheckFailed(
            "the finished progress widget did not show a full green bar "
            f"(progress-bar-success at 100 %): {last.describe()} classes={last.bar_class!r}"
        )
    log(f"widget done: {last.text!r}")


def assert_no_errors(cells: list[dict[str, Any]], notebook: Notebook) -> None:
    """Every code cell ran, and none has an error output.

    Raises:
        CheckFailed: A cell did not run, or has an error output, named.
    """
    problems = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        if cell.get("execution_count") is None:
            problems.append(f"cell {index} ({notebook.first_line(index)!r}) did not run")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(
                    f"cell {index} ({notebook.first_line(index)!r}) shows an error: "
                    f"{output.get('ename')}: {output.get('evalue')}"
                )
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = "".join(output.get("text", "")).strip()
                log(f"note: cell {index} wrote to stderr: {text[:300]!r}")
    if problems:
        raise CheckFailed("; ".join(problems))


def run_check(
    page: Page, lab: JupyterLab, nb: Notebook, copy: Path, shot: Path, budget: Budget
) -> None:
    """The steps, in order, against an open browser page.

    Raises:
        CheckFailed: A step did not see what it expects.
    """
    check = Check(page, lab, nb, budget)
    submit = nb.find(".submit(")
    result = nb.find(".result(", submit + 1)
    check.open()
    log(f"notebook open, kernel idle ({budget.elapsed():.1f} s)")

    for index in nb.code(0, submit + 1):
        check.run_cell(index)
    prompt_after = check.prompt(submit)
    log(f"submit cell {submit} finished as {prompt_after} ({budget.elapsed():.1f} s)")

    samples = check.watch(submit, shot)
    assert_moved_while_idle(samples, prompt_after)
    assert_finished(samples[-1])
    if not shot.exists():  # the bar was never seen mid-way: the first moment it moved
        early_shot(shot).rename(shot)

    for index in nb.code(submit + 1, len(nb.kinds)):
        check.run_cell(index)
    following = nb.code(result + 1, len(nb.kinds))
    table_cell, rows = check.result_table(result, following[0] if following else result)
    log(f"result frame rendered in cell {table_cell}: a table with {rows} rows")

    text = page.locator(PANEL).inner_text()
    if "Error displaying widget" in text:
        raise CheckFailed("the page shows 'Error displaying widget'")
    assert_no_errors(check.save(copy / nb.name), nb)
    log(f"no error output; all cells ran ({budget.elapsed():.1f} s)")


@contextlib.contextmanager
def terminated_as_exit() -> Iterator[None]:
    """Turn SIGTERM (e.g. from ``timeout``) into SystemExit, so every cleanup path runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log(f"stopped by signal {signum}: stopping JupyterLab and Chromium")
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when it passed, 1 when it failed.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--notebook", default="quickstart.ipynb")
    parser.add_argument(
        "--screenshot", type=Path, default=ROOT / "docs" / "images" / "notebook-progress.png"
    )
    parser.add_argument("--artifacts", type=Path, default=ROOT / "build" / "browser-check")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for everything")
    args = parser.parse_args(argv)

    budget = Budget(args.budget)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    failure_shot = args.artifacts / "failure.png"
    failure_shot.unlink(missing_ok=True)
    with terminated_as_exit(), tempfile.TemporaryDirectory(prefix="valar-browser-") as tmp:
        work = Path(tmp)
        copy = work / "notebooks"
        shutil.copytree(args.notebooks, copy, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        nb = Notebook.read(copy / args.notebook)
        shot = work / "progress.png"
        lab = JupyterLab(copy, work)
        try:
            lab.start()
            lab.wait_ready(budget.wait(60))
            log(f"jupyter lab answers on {lab.base} ({budget.elapsed():.1f} s)")
            with sync_playwright() as playwright:
                try:
                    browser = playwright.chromium.launch(
                        executable_path=args.chromium,
                        args=CHROMIUM_ARGS,
                        timeout=budget.wait(30) * 1000,
                    )
                except PlaywrightError as exc:
                    raise CheckFailed(f"Chromium ({args.chromium}) did not start: {exc}") from exc
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    page.on(
                        "console",
                        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
                    )
                    try:
                        run_check(page, lab, nb, copy, shot, budget)
                    except (CheckFailed, PlaywrightError) as exc:
                        with contextlib.suppress(PlaywrightError):
                            page.screenshot(path=str(failure_shot), full_page=True)
                        with contextlib.suppress(PlaywrightError):
                            for text in page.evaluate(STDERR_JS, CELLS):
                                log(f"stderr or error output in the page, {text}")
                        if errors:
                            log("errors in the page's console: " + " | ".join(errors[-5:]))
                        raise CheckFailed(str(exc)) from exc
                finally:
                    browser.close()
        except CheckFailed as exc:
            log(f"FAILED after {budget.elapsed():.1f} s: {exc}")
            if failure_shot.exists():
                log(f"screenshot of the page: {failure_shot}")
            shutil.copy(lab.log_path, args.artifacts / "jupyter.log")
            print("---- jupyter server log (tail) ----\n" + lab.log_tail(), flush=True)
            return 1
        finally:
            lab.stop()
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, args.screenshot)
    log(f"passed in {budget.elapsed():.1f} s; screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
