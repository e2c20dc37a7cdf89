"""Semantic search with the real MiniLM sentence embedder: ranking, filters, lazily stored embeddings."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from autointerp.api import create_app
from autointerp.api.embedder import SentenceEmbedder
from storage.core.schema import ExplanationEmbedding
from tests.test_api_data import fill

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder()


@pytest.fixture
def setup(db, embedder, monkeypatch):
    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    ids = fill(db)
    with TestClient(create_app(db.url, embedder=embedder)) as c:
        yield c, db, ids


def _stored(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(ExplanationEmbedding))


def test_semantic_search_ranks_by_meaning_and_stores_embeddings(setup):
    client, db, _ = setup
    assert _stored(db) == 0
    body = client.get("/api/features", params={"semantic": "felines such as kittens"}).json()
    assert body["order"] == "similarity"
    assert body["items"][0]["explanation"] == "references to cats and other pets"
    sims = [i["similarity"] for i in body["items"]]
    assert sims == sorted(sims, reverse=True)
    # Every ok explanation (5 on layer 1, 1 on layer 0) got a vector, computed once.
    assert _stored(db) == 6
    client.get("/api/features", params={"semantic": "integers"})
    assert _stored(db) == 6


def test_semantic_search_combines_with_score_and_keyword_filters(setup):
    client, _, _ = setup
    items = client.get("/api/features", params={"semantic": "kittens", "min_score": 0.55}).json()["items"]
    assert {(i["layer"], i["index"]) for i in items} == {(0, 7), (1, 0), (1, 3)}
    assert all(i["score"] >= 0.55 for i in items)
    items = client.get("/api/features", params={"semantic": "digits", "layer": 1, "limit": 1}).json()
    assert [i["index"] for i in items["items"]] == [0] and items["has_more"]
    items = client.get("/api/features", params={"semantic": "animals", "q": "brackets"}).json()["items"]
    assert [i["index"] for i in items] == [2]


def test_similar_features(setup):
    client, _, ids = setup
    items = client.get(f"/api/features/{ids['features'][0]}/similar").json()["items"]
    assert items and ids["features"][0] not in [i["feature_id"] for i in items]
    assert items[0]["explanation"] == "numbers at layer zero"
    assert client.get(f"/api/features/{ids['features'][5]}/similar").json()["items"] == []
