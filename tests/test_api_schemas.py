"""The OpenAPI schema types every route, and the response models declare every key the storage dicts carry
(the models let unknown keys through, so without this test a new key would go undocumented)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from autointerp.api import create_app
from autointerp.api.embedder import SentenceEmbedder
from storage.reads.feature_detail import feature_detail
from tests.test_api_data import MODEL, fill

TOKEN = "schema-test-token"


class HashEmbedder(SentenceEmbedder):
    """Deterministic vectors without a model: semantic routes work, their meaning does not matter here."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8).astype(np.float32) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows])


@pytest.fixture
def setup(db, monkeypatch):
    monkeypatch.setenv("AUTOINTERP_API_TOKEN", TOKEN)
    ids = fill(db)
    with TestClient(create_app(db.url, embedder=HashEmbedder())) as c:
        yield c, db, ids


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _shape(schema: dict) -> str | None:
    return "object" if "properties" in schema or schema.get("type") == "object" else schema.get("type")


def undeclared(value: Any, schema: dict, spec: dict, where: str = "$") -> list[str]:
    """Paths of keys in `value` that its schema does not declare (open dicts like `config` declare any key)."""
    schema = _resolve(schema, spec)
    shape = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
    for alternative in schema.get("anyOf", []):
        alternative = _resolve(alternative, spec)
        if _shape(alternative) == shape:
            schema = alternative
            break
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return [f"{where}.{k}" for k in value if k not in props] + [
            path for k, v in value.items() if k in props for path in undeclared(v, props[k], spec, f"{where}.{k}")]
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [path for k, v in value.items()
                for path in undeclared(v, schema["additionalProperties"], spec, f"{where}.{k}")]
    if isinstance(value, list) and "items" in schema:
        return [path for i, v in enumerate(value) for path in undeclared(v, schema["items"], spec, f"{where}[{i}]")]
    return []


def _response_schema(spec: dict, path: str, method: str = "get") -> dict:
    responses = spec["paths"][path][method]["responses"]
    ok = responses.get("200") or responses["202"]
    return ok["content"]["application/json"]["schema"]


def test_every_api_route_has_a_response_schema(setup):
    client, _, _ = setup
    spec = client.get("/openapi.json").json()
    routes = [(path, method) for path, item in spec["paths"].items() if path.startswith("/api")
              for method in item]
    expected = {"/api/models", "/api/features", "/api/features/by-key", "/api/features/{feature_id}",
                "/api/features/{feature_id}/similar", "/api/jobs", "/api/jobs/{run_id}", "/api/runs",
                "/api/runs/{run_id}", "/api/layers/{model}/{layer}/score_histograms"}
    assert {path for path, _ in routes} == expected
    assert ("/api/jobs", "post") in routes
    for path, method in routes:
        schema = _response_schema(spec, path, method)
        assert schema not in ({}, None), (path, method)
        resolved = _resolve(schema.get("items", schema), spec)
        assert resolved.get("properties"), (path, method, schema)


def test_responses_declare_every_key(setup):
    client, db, ids = setup
    started = client.post("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"},
                          json={"kind": "explain", "model": MODEL, "layer": 1, "explainer": "openai:gpt-4o-mini",
                                "dry_run": True})
    assert started.status_code == 202, started.text
    job_id = started.json()["run_id"]
    deadline = time.monotonic() + 60
    while client.get(f"/api/jobs/{job_id}").json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    feature = ids["features"][0]
    calls = {
        ("/api/models", "/api/models"): {},
        ("/api/features", "/api/features"): {"layer": 1},
        ("/api/features", "/api/features?semantic"): {"semantic": "numbers"},
        ("/api/features/by-key", "/api/features/by-key"): {"model": MODEL, "layer": 1, "index": 0},
        ("/api/features/{feature_id}", f"/api/features/{feature}"): {},
        ("/api/features/{feature_id}/similar", f"/api/features/{feature}/similar"): {},
        ("/api/runs", "/api/runs"): {},
        ("/api/runs/{run_id}", f"/api/runs/{ids['run']}"): {},
        ("/api/jobs", "/api/jobs"): {},
        ("/api/jobs/{run_id}", f"/api/jobs/{job_id}"): {},
        ("/api/layers/{model}/{layer}/score_histograms", f"/api/layers/{MODEL}/1/score_histograms"): {},
    }
    spec = client.get("/openapi.json").json()
    for (route, url), params in calls.items():
        response = client.get(url.split("?")[0], params=params)
        assert response.status_code == 200, (url, response.text)
        body = response.json()
        assert body, url
        assert undeclared(body, _response_schema(spec, route), spec) == [], url

    # Nothing is lost or added between storage and the wire (but the old name of the shuffled baselines).
    with db.session() as session:
        wire = client.get(f"/api/features/{feature}").json()
        assert wire.pop("sanity_baselines") == wire["shuffled_baselines"]
        assert wire == feature_detail(session, feature)
