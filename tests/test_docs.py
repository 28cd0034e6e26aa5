"""Every Python and shell example in README.md and docs/*.md runs, as written, on the emulator.

Each document's fenced ``python``, ``bash``, ``sh`` and ``console`` blocks run in order, in a
fresh folder, against an emulator this test starts (``VALAR_API_KEY`` and ``VALAR_BASE_URL``
point at it; its key is the docs' placeholder ``...``). Python blocks share one namespace
per document, as cells of a notebook do; shell blocks run in ``bash -e`` with the real
``valar-pandas`` command. The examples' data is made here, small, so the run stays quick:

* the emulator answers at once, serves the Batch API and cancels (both off by default), and
  also serves the docs' made-up model ``my-org/new-model``;
* names the docs take as given: ``df`` and ``reviews`` (synthetic product reviews, one
  review missing, with a ``price`` column), ``template``, ``m`` (a model id) and ``labels``;
* files: ``reviews.parquet``, ``in.parquet``, ``tickets/`` (``subject``, ``body``),
  ``answers.csv`` (``id``, ``question``, ``answer``), ``letters.jsonl`` (``text``),
  ``prompt.txt`` and ``triage.txt``.

Conventions in the Markdown:

* ``pip install`` commands are not run (the package under test is already installed).
* A block that shows its output (``>>>`` lines) is a doctest, checked exactly, against the
  2,000 reviews ``valar-pandas demo`` uses and an empty run store.
* A block that cannot run here is preceded by ``<!-- no-run: reason -->``. Keep those few.
* A block that imports an optional package (one in the ``test`` extra, so CI has it) is
  preceded by ``<!-- needs: package -->``: where the package is missing, the document's
  other examples still run and the test then reports a skip naming it, as
  ``pytest.importorskip`` would.

Whatever the examples send must be what they mean: no prompt may carry a literal backslash
(the data has none, so a ``\\n`` the shell did not turn into a newline shows up) or a
missing value rendered as ``nan``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import valar_pandas  # noqa: F401  (registers df.valar)
from valar_pandas._cli.reviews import make_reviews
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency
from valar_pandas.emulator._config import DEFAULT_MODELS

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "py", "bash", "sh", "shell", "console"}
SHELL = {"bash", "sh", "shell", "console"}
MODEL = "zai-org/GLM-5.1-FP8"
PLACEHOLDER_KEY = "..."  # `export VALAR_API_KEY=...`, as the docs write it
EXAMPLE_MODELS = ("my-org/new-model",)  # a model outside the price table, in the docs
TEMPLATE = (
    "Classify the sentiment of this product review as positive, negative, or neutral. "
    "Reply with one word.\n\nReview: {review}"
)
_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)")
_NO_RUN = re.compile(r"^<!--\s*no-run:\s*(.*?)\s*-->$")
_NEEDS = re.compile(r"^<!--\s*needs:\s*([\w.]+)\s*-->$")
_PIP = re.compile(r"^\s*pip install\b[^&\n]*(&&\s*|$)")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    no_run: str | None
    needs: str | None = None  # an optional package the example imports

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the no-run reason written before it."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(1), match.group(2).lower(), i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{path.name}:{start + 1}: a code fence is never closed"
        i += 1
        before = next((s.strip() for s in reversed(lines[:start]) if s.strip()), "")
        reason = _NO_RUN.match(before)
        needs = _NEEDS.match(before)
        found.append(Block(path, start + 1, lang, "\n".join(body) + "\n",
                           reason.group(1) if reason else None,
                           needs.group(1) if needs else None))  # fmt: skip
    return found


def runnable(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang in RUNNABLE]


# -- the examples' world --------------------------------------------------------------------


def _frame(n: int = 12) -> pd.DataFrame:
    df = make_reviews(n)
    df["price"] = [9.99 + i for i in range(n)]
    df.loc[3, "review"] = None  # a missing review: examples must not send "nan"
    return df


def _write_files(folder: Path, df: pd.DataFrame) -> None:
    df.to_parquet(folder / "reviews.parquet")
    df.to_parquet(folder / "in.parquet")
    tickets = folder / "tickets"
    tickets.mkdir()
    for part in range(2):
        pd.DataFrame(
            {
                "subject": [f"Invoice {part}-{i} charged twice" for i in range(3)],
                "body": [
                    f"I was billed twice for order {part}{i}. Please refund." for i in range(3)
                ],
            }
        ).to_parquet(tickets / f"part-{part}.parquet")
    pd.DataFrame(
        {
            "id": [1, 2, 3],
            "question": ["What is 2 + 2?", "Capital of France?", "Boiling point of water?"],
            "answer": ["4", "Paris", "100 degrees Celsius at sea level"],
        }
    ).to_csv(folder / "answers.csv", index=False)
    letters = ["Written in Paris in 1889, as the tower rose.", "From Kyoto, spring of 1923."]
    (folder / "letters.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in letters), encoding="utf-8"
    )
    (folder / "prompt.txt").write_text("Review: {review}\n", encoding="utf-8")
    (folder / "triage.txt").write_text("Sort support tickets by topic.\n", encoding="utf-8")


def _namespace(df: pd.DataFrame) -> dict[str, Any]:
    return {
        "__name__": "__docs__",
        "df": df,
        "reviews": df,
        "template": TEMPLATE,
        "m": MODEL,
        "labels": ["positive", "negative", "neutral"],
    }


@contextlib.contextmanager
def _emulator(prompts: list[str]) -> Iterator[str]:
    """An emulator on loopback that accepts the docs' key and records every prompt."""
    emulator = Emulator(
        EmulatorConfig(
            api_key=PLACEHOLDER_KEY,
            latency=Latency(median=0.0, sigma=0.0),  # answers at once: no poll waits
            models=(*DEFAULT_MODELS, *EXAMPLE_MODELS),
            batch_api=True,  # the docs show mode="batch": off by default, served here
            cancel_supported=True,  # and job.cancel(server=True)
        )
    )
    create = emulator.create_record

    def recording(body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        for message in body["input"] if isinstance(body["input"], list) else []:
            content = message.get("content")
            parts = content if isinstance(content, list) else [{"text": content}]
            prompts.extend(p["text"] for p in parts if isinstance(p.get("text"), str))
        if isinstance(body["input"], str):
            prompts.append(body["input"])
        return create(body, *args, **kwargs)

    emulator.create_record = recording  # type: ignore[method-assign]
    with emulator.run_in_thread(host="127.0.0.1", port=0) as url:
        yield url


# -- running blocks -------------------------------------------------------------------------


def _python(block: Block, namespace: dict[str, Any]) -> None:
    if block.code.lstrip().startswith(">>>"):
        _doctest(block, namespace)
        return
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(block.code, block.where, "exec", flags=flags)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


def _doctest(block: Block, namespace: dict[str, Any]) -> None:
    globs = {**namespace, **_namespace(make_reviews(2000))}
    store = Path(f"doctest-{block.line}.sqlite3").resolve()
    old = os.environ.get("VALAR_PANDAS_STORE")
    os.environ["VALAR_PANDAS_STORE"] = str(store)  # an empty run store
    try:
        _run_doctest(block, globs)
    finally:
        os.environ["VALAR_PANDAS_STORE"] = old or ""
        if old is None:
            del os.environ["VALAR_PANDAS_STORE"]


def _run_doctest(block: Block, globs: dict[str, Any]) -> None:
    test = doctest.DocTestParser().get_doctest(
        block.code, globs, block.where, str(block.path), block.line
    )
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def _shell_script(block: Block) -> str:
    lines = block.code.splitlines()
    if block.lang == "console":  # `$ command` lines (with `\` continuations); the rest is output
        commands: list[str] = []
        going = False
        for line in lines:
            if line.startswith("$ ") or going:
                commands.append(line[2:] if line.startswith("$ ") else line)
                going = line.rstrip().endswith("\\")
        lines = commands
    return "\n".join(_PIP.sub("", line) for line in lines) + "\n"


def _shell(block: Block, folder: Path) -> None:
    # The `valar-pandas` of this interpreter, whether or not its folder is on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(
        ["bash", "-e", "-c", _shell_script(block)],
        cwd=folder,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (
        f"exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n"
        f"--- stderr\n{done.stderr[-3000:]}"
    )


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_examples_run_as_written(path, tmp_path, monkeypatch):
    todo = [b for b in runnable(path) if b.no_run is None]
    if not todo:
        pytest.skip("no runnable example")
    df = _frame()
    _write_files(tmp_path, df)
    namespace = _namespace(df)
    prompts: list[str] = []
    unrun: list[str] = []
    monkeypatch.chdir(tmp_path)
    with _emulator(prompts) as url:
        monkeypatch.setenv("VALAR_API_KEY", PLACEHOLDER_KEY)
        monkeypatch.setenv("VALAR_BASE_URL", url)
        for block in todo:
            if block.needs and importlib.util.find_spec(block.needs) is None:
                unrun.append(f"{block.where} not run: {block.needs} is not installed")
                continue
            try:
                if block.lang in SHELL:
                    _shell(block, tmp_path)
                else:
                    _python(block, namespace)
            except Exception as exc:  # name the example that failed
                detail = "".join(traceback.format_exception(exc)[-6:])
                pytest.fail(f"the example at {block.where} fails as written:\n{detail}")
    for prompt in prompts:
        assert "\\" not in prompt, f"{path.name}: a prompt carries a literal backslash: {prompt!r}"
        assert not re.search(r"\bnan\b", prompt), f"{path.name}: a prompt sends 'nan': {prompt!r}"
    if unrun:  # every other example ran and passed; say what did not, as importorskip does
        pytest.skip("; ".join(unrun))


def test_every_example_is_collected_and_exceptions_are_few():
    every = [b for path in DOCUMENTS for b in runnable(path)]
    assert len(every) >= 40  # README and docs hold dozens of examples
    assert {b.path.name for b in every} >= {"README.md", "usage.md", "cli.md", "scoring.md"}
    skipped = [b for b in every if b.no_run is not None]
    assert all(b.no_run for b in skipped), "a no-run marker needs its reason"
    assert len(skipped) <= 6, [b.where for b in skipped]
    # Only these kinds of example may be left unrun: a server that runs until Ctrl-C, this
    # test suite itself, a browser or a full-size benchmark.
    for block in skipped:
        assert re.search(r"server|suite|browser|benchmark|minutes", block.no_run), block.where


def test_the_usage_recipe_skips_a_missing_review(monkeypatch):
    """docs/usage.md's callable recipe leaves a missing review unsent, under any dtype."""
    recipe = next(b for b in runnable(ROOT / "docs" / "usage.md") if "def prompt(row)" in b.code)
    source = recipe.code.split("\n\n\ndf.valar.run")[0]
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    for review in (None, float("nan"), pd.NA):
        df = pd.DataFrame({"review": pd.Series(["Great.", review], dtype=object), "stars": [5, 1]})
        for frame in (df, df.astype({"review": "str"})):
            sent = frame.valar.requests(namespace["prompt"], model=MODEL)
            assert sent["skipped"].iloc[1] == "skipped: the template callable returned None"
            assert sent["skipped"].isna().iloc[0]


def test_the_cli_templates_send_newlines(tmp_path):
    """docs/cli.md's templates reach the command with real newlines, not backslash-n."""
    cli = [b for b in runnable(ROOT / "docs" / "cli.md") if "--template" in b.code]
    multiline = [b for b in cli if "\\n" in b.code]
    assert multiline, "docs/cli.md shows a template spanning lines"
    probe = tmp_path / "argv.py"
    probe.write_text("import json, sys; print(json.dumps(sys.argv[1:]))\n", encoding="utf-8")
    for block in multiline:
        script = _shell_script(block).replace("valar-pandas", f"{sys.executable} {probe}", 1)
        script = script.split("\nEOF\n")[-1]  # after any here-document
        first = script.strip().splitlines()
        command = "\n".join(
            first[: next(i for i, s in enumerate(first) if not s.endswith("\\")) + 1]
        )
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
        argv = json.loads(done.stdout)
        template = argv[argv.index("--template") + 1]
        assert "\n" in template and "\\n" not in template, (block.where, template)
