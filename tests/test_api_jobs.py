"""Batch jobs through the API: a real rescore run in the serve process's background thread, followed to the end."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from autointerp.api import create_app
from autointerp.api.jobs import build_options
from tests.test_api_data import MODEL, fill

TOKEN = "job-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(db, monkeypatch):
    monkeypatch.setenv("AUTOINTERP_API_TOKEN", TOKEN)
    ids = fill(db)
    with TestClient(create_app(db.url)) as c:
        yield c, ids


def _wait_done(client: TestClient, run_id: int, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/api/jobs/{run_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job {run_id} still {job['status']}: {job['stats']}"
        time.sleep(0.2)


@pytest.mark.slow
def test_rescore_job_runs_in_the_background_and_reports_progress(client):
    c, ids = client
    response = c.post("/api/jobs", headers=AUTH,
                      json={"kind": "rescore", "model": MODEL, "layer": 1, "simulator": "embedding", "shuffled_baseline": False})
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert response.json()["status_url"] == f"/api/jobs/{run_id}"

    job = _wait_done(c, run_id)
    assert job["status"] == "done", job
    assert job["kind"] == "rescore" and job["config"]["layer"] == 1
    assert job["stats"]["total"] == 5 and job["stats"]["done"] + job["stats"]["skipped"] == 5
    assert run_id in [j["id"] for j in c.get("/api/jobs").json()]

    # The new scores reach the feature page, with the run as provenance.
    f = c.get(f"/api/features/{ids['features'][1]}").json()
    from_job = [s for e in f["explanations"] for s in e["scores"] if s["run_id"] == run_id]
    assert from_job and all(s["simulator"] == "embedding" for s in from_job)


def test_job_errors_before_the_run_are_clear_4xx(client):
    c, _ = client
    nothing = c.post("/api/jobs", headers=AUTH, json={"kind": "rescore", "model": MODEL, "layer": 9})
    assert nothing.status_code == 422 and "layer 9" in nothing.json()["error"]
    url = c.post("/api/jobs", headers=AUTH, json={"kind": "explain", "model": MODEL, "layer": 1, "base_url": "http://x"})
    assert url.status_code == 422 and "base_url" in url.json()["error"]
    unknown = c.post("/api/jobs", headers=AUTH, json={"kind": "explain", "colour": "red"})
    assert unknown.status_code == 422 and "colour" in unknown.json()["error"]


def test_a_job_body_may_still_name_the_shuffled_baseline_by_its_old_name():
    def options(body: dict) -> bool:
        return build_options("rescore", {"model": MODEL, "layer": 1, **body}, base_url=None).shuffled_baseline

    assert options({}) is True
    assert options({"shuffled_baseline": False}) is False
    assert options({"sanity": False}) is False  # deprecated, accepted for one release
    assert options({"sanity": True, "shuffled_baseline": False}) is False  # the current name wins
