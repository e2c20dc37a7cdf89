"""Run rows as a user sees them: `autointerp runs` (table and JSON), SIGTERM and Ctrl-C stop a run cleanly (its
summary, the row marked interrupted, exit 143 or 130), and a run whose process died without a word shows as
stale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from autointerp.cli import main
from storage.core.db import Database
from storage.core.schema import Explanation, Run
from storage.results import runs
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import fill_layer


def _runs_json(url: str) -> list[dict]:
    result = CliRunner().invoke(main, ["runs", "--format", "json", "--db", url])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_runs_lists_counts_and_shows_a_silent_death_as_stale(db_url, db):
    old = datetime.now(UTC) - timedelta(minutes=10)
    with db.session() as s, s.begin():
        done = runs.start_run(s, "explain", {"explainer": "openai:x"})
        runs.finish_run(s, done, "done", {"done": 5, "failed": 1, "skipped": 2, "llm_requests": 9,
                                          "prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.01})
        alive = runs.start_run(s, "collect", {})
        dead = runs.start_run(s, "rescore", {})
        s.get(Run, dead).heartbeat_at = old
        s.get(Run, dead).started_at = old
    listed = {r["id"]: r for r in _runs_json(db_url)}
    assert [r["id"] for r in _runs_json(db_url)] == [dead, alive, done]  # newest first
    assert listed[done]["status"] == "done" and (listed[done]["done"], listed[done]["failed"], listed[done]["skipped"]) == (5, 1, 2)
    assert (listed[done]["requests"], listed[done]["tokens"], listed[done]["cost_usd"]) == (9, 120, 0.01)
    assert listed[alive]["status"] == "running"
    assert listed[dead]["status"] == "stale" and listed[dead]["duration_s"] >= 0
    table = CliRunner().invoke(main, ["runs", "--db", db_url]).output
    assert "stale" in table and "rescore" in table


def _interrupt_explain(tmp_path: Path, name: str, signum: int, explainer: list[str], env: dict[str, str],
                       stored: int = 4) -> tuple[int, str, Database, str]:
    """Start `explain` in a process of its own, send `signum` once `stored` features are stored; its exit code,
    what it printed, and its database."""
    url = f"sqlite:///{tmp_path / name}"
    db = Database(url)
    fill_layer(db, 40)
    cmd = [sys.executable, "-m", "autointerp", "explain", "--model", "tiny-model", "--layer", "6", *explainer,
           "--concurrency", "4", "--db", url]
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while True:
        with db.session() as s:
            if s.scalar(select(func.count()).select_from(Explanation)) >= stored:
                break
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err, db, url


def _assert_interrupted(code: int, output: str, db: Database, url: str, signum: int, stored_before: int = 4) -> None:
    assert code == 128 + signum, output  # not 134 (SIGABRT: a model thread alive at exit), not 1
    assert "terminate called" not in output and "Traceback" not in output
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    assert "(explain, interrupted)" in output and f"stopped early: interrupted ({name})" in output
    assert f"exit code {128 + signum}" in output
    with db.session() as s:
        run = s.scalars(select(Run)).one()
        stored = s.scalar(select(func.count()).select_from(Explanation))
        assert run.status == "interrupted" and run.finished_at is not None and run.stats["exit_code"] == 128 + signum
        assert stored_before <= stored < 40 and run.stats["done"] <= stored
    listed = _runs_json(url)[0]
    assert listed["status"] == "interrupted" and listed["exit_code"] == 128 + signum


def test_sigterm_stops_explain_cleanly_with_its_summary_and_exit_143(tmp_path):
    fake = FakeOpenAI(latency_s=0.3).start()
    env = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test"}
    # The embedding simulator runs torch on a model thread of its own: the old exit raced it (abort, 134).
    explainer = ["--explainer", "openai:fake", "--simulator", "embedding"]
    try:
        for attempt in range(3):  # it failed 2 times in 3: once would hide it
            _assert_interrupted(*_interrupt_explain(tmp_path, f"term{attempt}.db", signal.SIGTERM, explainer, env),
                                signum=signal.SIGTERM)
        _assert_interrupted(*_interrupt_explain(tmp_path, "int.db", signal.SIGINT, explainer, env),
                            signum=signal.SIGINT)
    finally:
        fake.stop()


@pytest.mark.slow
def test_sigterm_while_the_local_model_generates_exits_143_not_134(tmp_path):
    # Today's model threads at their busiest: a local explainer and the embedding simulator, both on torch.
    explainer = ["--explainer", "local:gemma-3-270m", "--simulator", "embedding"]
    for attempt in range(2):
        _assert_interrupted(*_interrupt_explain(tmp_path, f"local{attempt}.db", signal.SIGTERM, explainer, {},
                                                stored=2), signum=signal.SIGTERM, stored_before=2)
