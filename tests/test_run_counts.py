"""A run counts what it did: a feature another run stored first is not this run's `done`, and a dry run started
as an API job shows as a dry run, not as an explain run that finished."""

from __future__ import annotations

import json
import threading
import time

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from autointerp.api import create_app
from autointerp.cli import main
from autointerp.workflows.explain_run import run_explain
from autointerp.workflows.options import ExplainOptions
from storage.core.db import Database
from storage.core.schema import Explanation, Feature, Run
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import fill_layer, uncached_spec
from tests.test_api_data import MODEL, fill

EXPLAINER = uncached_spec()  # every request reaches the server: the race is staged in its answer hook
EXPLAIN = ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", EXPLAINER, "--simulator",
           "logprob:openai:fake", "--no-shuffled-baseline", "--concurrency", "1"]


def test_a_feature_another_run_stored_first_is_not_counted_done(db_url, fake_openai):
    """Run A explains features 0-3 one at a time; while A waits for feature 2's explanation, run B (a real second
    writer, through another endpoint) explains and stores feature 2. A's summary must not claim it."""
    db = Database(db_url)
    fill_layer(db, 4)
    other_endpoint = FakeOpenAI().start()
    chats = []
    other_runs: list[int] = []

    def other_run() -> None:
        opts = ExplainOptions(model="tiny-model", layer=6, features="2", explainer=EXPLAINER,
                              simulator="logprob:openai:fake", base_url=other_endpoint.url, shuffled_baseline=False)
        other_runs.append(run_explain(db, opts, show_progress=False))

    def answer(endpoint: str, body: dict) -> str:
        if endpoint == "chat":
            chats.append(1)
            if len(chats) == 3:  # A's request for feature 2: B stores it meanwhile (and A waits for that)
                writer = threading.Thread(target=other_run)
                writer.start()
                writer.join()
        return "the word 7"

    fake_openai.answer = answer
    try:
        result = CliRunner().invoke(main, [*EXPLAIN, "--base-url", fake_openai.url, "--db", db_url])
    finally:
        other_endpoint.stop()
    assert result.exit_code == 0, result.output
    summary = " ".join(result.output.split())
    assert other_runs and "3 done" in summary and "1 finished by another run" in summary
    with db.session() as s:
        first = s.scalars(select(Run).order_by(Run.id)).first()
        assert first.id != other_runs[0] and first.stats["done"] == 3 and first.stats["finished_elsewhere"] == 1
        # done is what carries the run's id
        assert s.scalar(select(func.count()).select_from(Explanation).where(Explanation.run_id == first.id)) == 3
        by_index = dict(s.execute(select(Feature.index, Explanation.run_id).join(
            Explanation, Explanation.feature_id == Feature.id)).all())
        assert by_index[2] == other_runs[0]
        assert s.scalar(select(func.count()).select_from(Explanation)) == 4  # no duplicates
    listed = json.loads(CliRunner().invoke(main, ["runs", "--format", "json", "--db", db_url]).output)
    assert {r["id"]: r["skipped"] for r in listed}[first.id] == 1  # not done by it: finished elsewhere


def test_a_dry_run_job_shows_as_a_dry_run(db, monkeypatch):
    monkeypatch.setenv("AUTOINTERP_API_TOKEN", "token")
    fill(db)
    with TestClient(create_app(db.url)) as client:
        started = client.post("/api/jobs", headers={"Authorization": "Bearer token"},
                              json={"kind": "explain", "model": MODEL, "layer": 1, "explainer": "openai:fake",
                                    "simulator": "embedding", "dry_run": True})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        deadline = time.monotonic() + 60
        while (job := client.get(f"/api/jobs/{run_id}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        listed = {r["id"]: r for r in client.get("/api/runs").json()}
    assert job["dry_run"] is True and listed[run_id]["dry_run"] is True
    assert listed[run_id]["stats"]["estimate"]["features_pending"] > 0
    table = CliRunner().invoke(main, ["runs", "--db", db.url]).output
    assert "explain (dry run)" in table
