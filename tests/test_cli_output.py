"""What a run prints when its output is not a terminal (a log file, a pipe, a scheduler): a plain progress line
now and then, and nothing from the libraries underneath (warnings, weight-loading bars)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autointerp.runtime.progress import ProgressDisplay
from storage.core.db import Database
from tests.pipeline_data import fill_layer

ROOT = Path(__file__).resolve().parents[1]
NOISE = re.compile(r"Warning|Loading weights|it/s\]|Traceback")


def _explain(db_url: str, *args: str) -> subprocess.CompletedProcess:
    """`autointerp explain` in its own process with stdout and stderr captured (pipes, not a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "autointerp", "explain", "--model", "tiny-model", "--layer", "6",
                           "--db", db_url, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def _progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("features: ")]


def test_explain_without_a_terminal_reports_progress_and_no_library_noise(fake_openai, sqlite_url):
    fill_layer(Database(sqlite_url), 4)
    done = _explain(sqlite_url, "--explainer", "openai:fake", "--simulator", "embedding", "--no-shuffled-baseline")
    assert done.returncode == 0, done.stderr
    lines = _progress_lines(done.stderr)
    assert [line.split(",")[0] for line in lines] == [f"features: {n}/4" for n in range(1, 5)], done.stderr
    assert re.fullmatch(r"features: 4/4, 4 done, 0 failed, 0 skipped, [\d,]+ tok, (\$[\d.]+|cost n/a), [\d.]+ s", lines[-1])
    assert not [line for line in done.stderr.splitlines() + done.stdout.splitlines() if NOISE.search(line)], \
        done.stderr


@pytest.mark.slow
def test_local_explainer_prints_no_transformers_warning(sqlite_url):
    fill_layer(Database(sqlite_url), 2)
    done = _explain(sqlite_url, "--explainer", "local:smollm2-135m", "--simulator", "embedding", "--no-shuffled-baseline",
                    "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert _progress_lines(done.stderr)[-1].startswith("features: 2/2, 2 done")
    assert not [line for line in done.stderr.splitlines() + done.stdout.splitlines() if NOISE.search(line)], \
        done.stderr


def test_progress_lines_come_every_nth_item_and_at_the_end(capsys):
    with ProgressDisplay(12, label="explanations", unit="expl", every_items=5, every_s=1e9) as display:
        for n in range(1, 12):
            display.update(n, extra=f"{n} done")
    assert [line.rsplit(",", 1)[0] for line in capsys.readouterr().err.splitlines()] == [
        "explanations: 5/12, 5 done", "explanations: 10/12, 10 done", "explanations: 11/12, 11 done"]


def test_no_progress_when_not_asked(capsys):
    with ProgressDisplay(3, show=False) as display:
        for n in range(1, 4):
            display.update(n)
    assert capsys.readouterr().err == ""
