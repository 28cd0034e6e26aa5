"""Real-browser check of the sweep report: ``valar-pandas evals`` output in headless Chromium.

Starts the built-in emulator on loopback (one model made to err on 30 % of its labels),
runs ``valar-pandas evals`` over 200 synthetic reviews as a user would (a subprocess, the
key and base URL in its environment), then opens the HTML report it wrote in headless
Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; no browser is downloaded)
and checks what a reader sees:

- the page loads from the file alone: every request other than the file itself is refused
  and counted, and there must be none; no script error, no console error;
- the leaderboard has one row per prompt × model pair, Pareto-front rows highlighted;
- three pictures (quality against cost, the confusion matrices, per-class F1) are drawn as
  inline SVG, each with a real size on the page;
- the note on significance names the exact McNemar test.

A screenshot of the whole report goes to ``docs/images/evals-report.png`` (shown in
docs/evals.md). Run from the repository root, with the ``browser`` and ``evals`` extras::

    python .ci/evals_report_check.py [--screenshot PATH] [--chromium /usr/bin/chromium]

Exit 0 when every check passes, 1 otherwise (each failure named).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from browser_check import CHROMIUM_ARGS  # this directory: the same offline Chromium
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from valar_pandas._cli.reviews import make_reviews
from valar_pandas.emulator import Emulator, EmulatorConfig, Latency

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["zai-org/GLM-5.1-FP8", "google/gemma-4-31B-it", "moonshotai/Kimi-K2.6"]
TEMPLATES = [
    "plain=Classify the sentiment of this product review.\n\nReview: {review}",
    "terse=Sentiment? Review: {review}",
]


def log(line: str) -> None:
    """One progress line on stderr."""
    print(f"evals-report-check: {line}", file=sys.stderr, flush=True)


def write_report(work: Path) -> Path:
    """Run ``valar-pandas evals`` against an emulator; the report it wrote."""
    source = work / "reviews.csv"
    make_reviews(200).to_csv(source, index=False)
    report = work / "report.html"
    config = EmulatorConfig(
        latency=Latency.fast(),
        model_errors={"google/gemma-4-31B-it": 0.3, "moonshotai/Kimi-K2.6": 0.12},
    )
    emulator = Emulator(config)
    with emulator.run_in_thread(host="127.0.0.1", port=0) as url:
        env = {**os.environ, "VALAR_API_KEY": config.api_key, "VALAR_BASE_URL": url}
        command = [sys.executable, "-m", "valar_pandas", "evals", str(source), str(report)]
        for template in TEMPLATES:
            command += ["--template", template]
        command += [
            "--models", ",".join(MODELS), "--score-labels", "positive,negative,neutral",
            "--truth", "label", "--max-output-tokens", "16", "--completion-window", "asap",
            "--store", str(work / "store.sqlite"), "--budget", "1", "--quiet",
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise SystemExit(f"valar-pandas evals exited {done.returncode}: {done.stderr[-2000:]}")
    print(done.stdout, file=sys.stderr)
    return report


def check_page(report: Path, chromium: str, screenshot: Path) -> list[str]:
    """Open the report in Chromium; what is wrong with it (empty when all is well)."""
    problems: list[str] = []
    fetched: list[str] = []
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=CHROMIUM_ARGS, timeout=30_000
            )
        except PlaywrightError as exc:
            return [f"Chromium ({chromium}) did not start: {exc}"]
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

            def refuse(route: object) -> None:
                request = route.request  # type: ignore[attr-defined]
                if request.url == report.as_uri():
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    fetched.append(request.url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", refuse)
            page.goto(report.as_uri(), wait_until="load", timeout=30_000)
            rows = page.locator("table.valar-leaderboard tr").count() - 1
            if rows != len(MODELS) * len(TEMPLATES):
                problems.append(f"the leaderboard shows {rows} pairs, not 6")
            if page.locator("table.valar-leaderboard tr.front").count() < 1:
                problems.append("no leaderboard row is marked as on the Pareto front")
            pictures = page.locator("div.valar-picture svg")
            if pictures.count() != 3:
                problems.append(f"{pictures.count()} pictures drawn, not 3")
            for i in range(pictures.count()):
                box = pictures.nth(i).bounding_box()
                if box is None or box["width"] < 200 or box["height"] < 150:
                    problems.append(f"picture {i + 1} has no real size on the page: {box}")
            text = page.inner_text("body")
            if "exact McNemar" not in text:
                problems.append("the note on significance is missing")
            for title in ("Quality against cost", "Confusion matrices", "Per-class F1"):
                if title not in text:
                    problems.append(f"the heading {title!r} is missing")
            problems += [f"browser error: {e}" for e in errors]
            problems += [f"the page asked for {url}: it is not self-contained" for url in fetched]
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            log(f"screenshot: {screenshot}")
        finally:
            browser.close()
    return problems


def main() -> int:
    """Run the check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--screenshot", type=Path, default=ROOT / "docs" / "images" / "evals-report.png"
    )
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="valar-evals-") as folder:
        report = write_report(Path(folder))
        log(f"report written: {report.stat().st_size:,} bytes")
        problems = check_page(report, args.chromium, args.screenshot)
    for problem in problems:
        log(f"FAILED: {problem}")
    if not problems:
        log("the report renders in Chromium: leaderboard, three pictures, the note")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
