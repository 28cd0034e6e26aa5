"""``valar-pandas evals``: a sweep of a file, its leaderboard printed and its report written."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pandas as pd

from valar_pandas._cli.reviews import make_reviews

WEAK = "google/gemma-4-31B-it"
COMMAND = [sys.executable, "-m", "valar_pandas", "evals"]


def _env(client: Any) -> dict[str, str]:
    return {
        **os.environ,
        "VALAR_API_KEY": client.api_key.reveal(),
        "VALAR_BASE_URL": client.base_url,
    }


def test_the_command_writes_the_report_and_resumes_from_the_store(
    serve: Any, tmp_path: Any
) -> None:
    emulator, client = serve(model_errors={WEAK: 0.3})
    source = tmp_path / "reviews.csv"
    make_reviews(40).to_csv(source, index=False)
    report, results = tmp_path / "report.html", tmp_path / "long.csv"
    args = [
        str(source), str(report),
        "--template", "plain=Classify the sentiment of this review. Review: {review}",
        "--template", "terse=Sentiment? Review: {review}",
        "--models", f"zai-org/GLM-5.1-FP8,{WEAK}",
        "--score-labels", "positive,negative,neutral", "--truth", "label",
        "--max-output-tokens", "16", "--completion-window", "asap",
        "--store", str(tmp_path / "store.sqlite"), "--budget", "1", "--quiet",
        "--results", str(results),
    ]  # fmt: skip
    done = subprocess.run(
        [*COMMAND, *args], env=_env(client), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert "SweepResult: 4 prompt × model pairs over 40 rows" in done.stdout
    assert "exact McNemar" in done.stdout and f"report: {report}" in done.stdout
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "valar-leaderboard" in page
    long = pd.read_csv(results)
    assert len(long) == 160 and set(long["prompt"]) == {"plain", "terse"}
    assert emulator.stats.inferences == 160
    # The same command again is served from the store: nothing is created.
    again = subprocess.run(
        [*COMMAND, *args], env=_env(client), capture_output=True, text=True, timeout=240
    )
    assert again.returncode == 0, again.stderr
    assert emulator.stats.requests["POST /v1/responses"] == 160


def test_bad_flags_exit_2_before_any_request(serve: Any, tmp_path: Any) -> None:
    emulator, client = serve()
    source = tmp_path / "reviews.csv"
    make_reviews(5).to_csv(source, index=False)
    cases = [
        (["--template", "a=Review: {review}", "--template", "Review: {review}"], "name each"),
        (["--template", "a=Review: {nope}"], "nope"),
        (["--template", "a=Review: {review}", "--budget", "0.0000001"], "more than its budget"),
    ]
    for extra, said in cases:
        done = subprocess.run(
            [*COMMAND, str(source), str(tmp_path / "r.html"), "--models", "zai-org/GLM-5.1-FP8",
             "--score-labels", "positive,negative,neutral", "--store", str(tmp_path / "s.sqlite"),
             "--max-output-tokens", "16", "--quiet", *extra],
            env=_env(client), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, (extra, done.stderr)
        assert said in done.stderr, (extra, done.stderr)
    assert emulator.stats.total_requests == 0
    assert not (tmp_path / "r.html").exists()
