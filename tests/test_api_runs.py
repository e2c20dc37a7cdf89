"""Past runs through the API, and jobs that own their run row from the start: a dry run that sends nothing,
errors before the row (422, no row) and after it (recorded on the row)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from autointerp.api import create_app
from storage.core.schema import Run
from storage.results import runs
from tests.test_api_data import MODEL, fill

TOKEN = "runs-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(db, monkeypatch):
    monkeypatch.setenv("AUTOINTERP_API_TOKEN", TOKEN)
    ids = fill(db)
    with TestClient(create_app(db.url)) as c:
        yield c, db, ids


def _wait_finished(client: TestClient, run_id: int, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while (job := client.get(f"/api/jobs/{run_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, f"job {run_id} still running: {job['stats']}"
        time.sleep(0.1)
    return job


def test_runs_of_every_kind_newest_first_with_stale_shown(client):
    c, db, ids = client
    with db.session() as s, s.begin():
        collect = runs.start_run(s, "collect", {"layers": [1]})
        runs.finish_run(s, collect, "done", {"done": 2, "llm_requests": 0})
        dead = runs.start_run(s, "explain", {"layer": 1})
        s.get(Run, dead).heartbeat_at = datetime(2020, 1, 1, tzinfo=UTC)
    listed = c.get("/api/runs").json()
    assert [r["id"] for r in listed] == [dead, collect, ids["run"]]
    assert [r["status"] for r in listed] == ["stale", "done", "done"]
    assert listed[1]["kind"] == "collect" and listed[1]["done"] == 2 and listed[1]["duration_s"] is not None
    assert [r["id"] for r in c.get("/api/runs", params={"limit": 1}).json()] == [dead]
    assert c.get(f"/api/runs/{collect}").json() == listed[1]
    assert "collect" not in {j["kind"] for j in c.get("/api/jobs").json()}

    missing = c.get("/api/runs/999999")
    assert missing.status_code == 404 and "no run" in missing.json()["error"]
    assert c.get("/api/runs/0").status_code == 422


def test_dry_run_job_estimates_and_sends_nothing(fake_openai, client):
    # fake_openai first: the app reads OPENAI_BASE_URL when it is created, so a job would call the fake server.
    c, _, _ = client
    response = c.post("/api/jobs", headers=AUTH, json={"kind": "explain", "model": MODEL, "layer": 1,
                                                       "explainer": "openai:gpt-4o-mini", "dry_run": True})
    assert response.status_code == 202, response.text
    job = _wait_finished(c, response.json()["run_id"])
    assert job["status"] == "done" and job["kind"] == "explain", job
    assert job["stats"]["dry_run"] is True
    estimate = job["stats"]["estimate"]
    assert estimate["features_pending"] == 6 and estimate["explainer"]["requests"] == 6
    assert estimate["explainer"]["prompt_tokens"] > 0
    assert fake_openai.requests == 0


def test_selection_errors_are_422_and_leave_no_run(client):
    c, _, _ = client
    before = c.get("/api/runs").json()
    for body in ({"kind": "explain", "model": MODEL, "layer": 9, "dry_run": True},
                 {"kind": "rescore", "model": "no-such-model", "layer": 1},
                 {"kind": "rescore", "model": MODEL, "layer": 1, "features": "0-99"}):
        response = c.post("/api/jobs", headers=AUTH, json=body)
        assert response.status_code == 422 and response.json()["error"], (body, response.text)
    assert c.get("/api/runs").json() == before


def test_errors_after_the_run_starts_are_recorded_on_it(client):
    c, _, _ = client
    response = c.post("/api/jobs", headers=AUTH, json={"kind": "rescore", "model": MODEL, "layer": 1,
                                                       "explainer": "openai:nobody"})
    assert response.status_code == 202, response.text
    job = _wait_finished(c, response.json()["run_id"])
    assert job["status"] == "failed" and "no explanations by openai:nobody" in job["stats"]["error"]
    assert job["active_here"] is False
