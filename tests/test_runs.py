"""Run rows as a user sees them: `autointerp runs` (table and JSON), SIGTERM marks a run interrupted,
and a run whose process died without a word shows as stale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import func, select

from autointerp.cli import main
from storage import runs
from storage.db import Database
from storage.schema import Explanation, Run
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


def test_sigterm_stops_explain_like_ctrl_c_and_marks_the_run_interrupted(tmp_path):
    fake = FakeOpenAI(latency_s=0.3).start()
    try:
        url = f"sqlite:///{tmp_path / 'term.db'}"
        db = Database(url)
        fill_layer(db, 40)
        env = {**os.environ, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "autointerp", "explain", "--model", "tiny-model", "--layer", "6", "--explainer",
               "openai:fake", "--simulator", "logprob:openai:fake", "--concurrency", "4", "--db", url]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while True:
            with db.session() as s:
                if s.scalar(select(func.count()).select_from(Explanation)) >= 4:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "ended early"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        with db.session() as s:
            run = s.scalars(select(Run)).one()
            stored = s.scalar(select(func.count()).select_from(Explanation))
            assert run.status == "interrupted" and run.finished_at is not None
            assert 4 <= stored < 40
        assert _runs_json(url)[0]["status"] == "interrupted"
    finally:
        fake.stop()
