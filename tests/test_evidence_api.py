"""The API's evidence: logit lens and linked neighbours on the feature endpoint (absent ones shown as null), and
per-layer score histograms of own scores against the shuffled baseline."""

from __future__ import annotations

import bisect

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from autointerp.api import create_app
from scorer import simulation_scorer_config
from storage.core.schema import Explanation, Feature, Score
from tests.stored import store_score
from tests.test_api_data import MODEL, fill
from tests.test_api_schemas import HashEmbedder, _response_schema, undeclared

LOGITS = {"promoted": [[" cat", 2.5], [" dog", 2.0]], "suppressed": [[" the", -1.0], ["\n", -0.5]]}


@pytest.fixture
def client(db):
    ids = fill(db)
    with db.session() as s, s.begin():
        feature = s.get(Feature, ids["features"][0])
        feature.extra = {"logits": LOGITS, "neighbours": [{"index": 3, "similarity": 0.9},
                                                          {"index": 99, "similarity": 0.1}]}
        # Two more shuffled baselines (as another feature's explanation scored on these features' records).
        for index, value in ((0, 0.1), (2, -0.35)):
            own = s.get(Explanation, ids["explanations"][index])
            store_score(s, own, s.get(Feature, ids["features"][index]), method="ev_correlation",
                           subset="top_and_random", value=value, simulator="embedding", role="shuffled",
                           scorer_config=simulation_scorer_config())
    with TestClient(create_app(db.url, embedder=HashEmbedder())) as c:
        yield c, ids


def test_feature_endpoint_carries_evidence_with_links(client):
    c, ids = client
    body = c.get(f"/api/features/{ids['features'][0]}").json()
    assert body["evidence"]["logits"] == LOGITS
    assert body["evidence"]["neighbours"] == [
        {"index": 3, "similarity": 0.9, "feature_id": ids["features"][3]},
        {"index": 99, "similarity": 0.1, "feature_id": None},  # not stored in this database: nothing to link
    ]
    assert c.get(f"/api/features/{ids['features'][1]}").json()["evidence"] == {"logits": None, "neighbours": None}
    listed = {item["index"]: item for item in c.get("/api/features", params={"layer": 1}).json()["items"]}
    assert listed[0]["logits"] == LOGITS and listed[1]["logits"] is None and listed[1]["neighbours"] is None
    spec = c.get("/openapi.json").json()
    assert undeclared(body, _response_schema(spec, "/api/features/{feature_id}"), spec) == []


def _bin_counts(values: list[float], edges: list[float]) -> list[int]:
    """By hand: bin i holds edges[i] <= v < edges[i + 1], the last bin closed."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        counts[min(len(counts) - 1, bisect.bisect_right(edges, v) - 1)] += 1
    return counts


def test_layer_histograms_count_own_and_shuffled_on_shared_edges(client, db):
    c, _ = client
    with db.session() as s:
        stored = s.execute(select(Score.role, Score.value).where(
            Score.method == "ev_correlation", Score.subset == "top_and_random", Score.layer == 1)).all()
    own = [v for role, v in stored if role == "own"]
    shuffled = [v for role, v in stored if role == "shuffled"]
    body = c.get(f"/api/layers/{MODEL}/1/score_histograms").json()
    assert (body["model"], body["layer"]) == (MODEL, 1)
    by_key = {(h["method"], h["subset"]): h for h in body["histograms"]}
    ev = by_key[("ev_correlation", "top_and_random")]
    assert ev["simulator"] == "embedding" and ev["edges"] == pytest.approx([-1 + i / 10 for i in range(21)])
    assert len(own) == 4 and len(shuffled) == 3  # fill's baseline for feature 0, and the two added here
    assert ev["own"]["counts"] == _bin_counts(own, ev["edges"]) and ev["own"]["mean"] == pytest.approx(sum(own) / 4)
    assert ev["shuffled"]["counts"] == _bin_counts(shuffled, ev["edges"]) and ev["shuffled"]["n"] == 3
    undefined = by_key[("ev_correlation", "random_only")]
    assert undefined["own"]["undefined"] == 1 and undefined["own"]["n"] == 0
    only_random = c.get(f"/api/layers/{MODEL}/1/score_histograms", params={"subset": "random_only"}).json()
    assert {h["subset"] for h in only_random["histograms"]} == {"random_only"}
    assert c.get("/api/layers/no-such-model/1/score_histograms").status_code == 404
    assert c.get(f"/api/layers/{MODEL}/-1/score_histograms").status_code == 422
    assert c.get(f"/api/layers/{MODEL}/7/score_histograms").json()["histograms"] == []
