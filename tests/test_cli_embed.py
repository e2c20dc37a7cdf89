"""`autointerp embed` (resumable, batch commits, clear errors, brings the index up to date) and the semantic
search fields of the API (`search_mode`, `not_embedded`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

import autointerp.cli.embed as embed_cli
from autointerp.api import create_app
from autointerp.api.embedder import SentenceEmbedder
from autointerp.cli import main
from storage.core.schema import Explanation, ExplanationEmbedding, Feature, SubjectModel
from storage.reads.queries import FeatureQuery
from storage.search import embedding_index as ann
from storage.search import embedding_index_update as ann_update
from storage.search import semantic
from tests.test_semantic_index import DIM, EMBEDDER, TableEmbedder, fill

OTHER = "other-embedder"


class CountingEmbedder:
    """Deterministic vectors from each text; remembers every text; interrupts (like Ctrl-C) on call `stop_at`."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.texts: list[str] = []
        self.calls = 0
        self.stop_at = stop_at

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.texts.extend(texts)
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(DIM) for t in texts]
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture
def cli(db, tmp_path, monkeypatch):
    ann._loaded.clear()
    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "cache"))  # a server database's index goes here
    fill(db, n_features=600)
    runner = CliRunner()

    def run(*args: str, embedder: CountingEmbedder | None = None):
        monkeypatch.setattr(embed_cli, "load_embedder", lambda spec: embedder or CountingEmbedder())
        return runner.invoke(main, ["embed", "--db", db.url, *args])

    return db, run, ann.index_root(db.url, tmp_path / "cache")


def _stored(db, embedder: str, layer: int | None = None) -> int:
    with db.session() as s:
        stmt = (select(func.count()).select_from(ExplanationEmbedding)
                .join(Explanation, Explanation.id == ExplanationEmbedding.explanation_id)
                .join(Feature, Feature.id == Explanation.feature_id).where(ExplanationEmbedding.embedder == embedder))
        if layer is not None:
            stmt = stmt.where(Feature.layer == layer)
        return s.scalar(stmt)


def _searchable(db, layer: int | None = None, model: str | None = None) -> int:
    with db.session() as s:
        stmt = (select(func.count()).select_from(Explanation).join(Feature, Feature.id == Explanation.feature_id)
                .join(SubjectModel, SubjectModel.id == Feature.model_id).where(Explanation.text.is_not(None)))
        if layer is not None:
            stmt = stmt.where(Feature.layer == layer)
        if model is not None:
            stmt = stmt.where(SubjectModel.name == model)
        return s.scalar(stmt)


def test_embed_is_resumable_and_updates_the_index(cli):
    db, run, root = cli
    layer1 = _searchable(db, layer=1, model="m")
    interrupted = CountingEmbedder(stop_at=3)
    result = run("--model", "local:m", "--layer", "1", "--embedder", OTHER, "--batch-size", "100",
                 embedder=interrupted)
    assert result.exit_code == 130, result.output
    assert "interrupted: 200 explanations embedded and kept" in result.output
    assert _stored(db, OTHER) == 200  # two committed batches survive
    assert not ann.embedder_dir(root, OTHER).exists()  # the index waits for a finished run

    resumed = CountingEmbedder()
    result = run("--model", "m", "--layer", "1", "--embedder", OTHER, "--batch-size", "100", embedder=resumed)
    assert result.exit_code == 0, result.output
    assert len(resumed.texts) == layer1 - 200 and not set(resumed.texts) & set(interrupted.texts)
    assert _stored(db, OTHER) == _stored(db, OTHER, layer=1) == layer1 < _searchable(db, layer=1)
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"embedded {layer1 - 200} explanations for layer 1 of m with {OTHER}")
    assert "200 already embedded, 0 left" in line and f"index: {layer1} vectors" in line and "rebuilt (missing)" in line

    again = CountingEmbedder()
    result = run("--model", "m", "--layer", "1", "--embedder", OTHER, embedder=again)
    assert result.exit_code == 0 and again.calls == 0
    assert "embedded 0 explanations" in result.output and "up to date" in result.output

    everything = CountingEmbedder()
    result = run("--embedder", OTHER, embedder=everything)
    assert result.exit_code == 0, result.output
    assert len(everything.texts) == _searchable(db) - layer1 and _stored(db, OTHER) == _searchable(db)
    assert f"index: {_searchable(db):,} vectors, +{len(everything.texts)} -0, incremental" in result.output

    # The index serves searches: an explanation's own vector finds it first.
    index = ann.open_index(root, OTHER)
    assert index is not None and index.n_vectors == _searchable(db)
    with db.session() as s:
        eid, text = s.execute(select(Explanation.id, Explanation.text).where(Explanation.text.is_not(None))
                              .order_by(Explanation.id.desc()).limit(1)).one()
        result_ = semantic.semantic_search(s, FeatureQuery(limit=3), text, embedder=OTHER, embed=CountingEmbedder(),
                                           index_root=root, exact_limit=10)
    assert result_.mode == "ann" and result_.items[0]["explanation_id"] == eid


def test_embed_errors_name_what_exists(cli):
    db, run, _ = cli
    result = run("--model", "nope")
    assert result.exit_code == 1 and "no model 'nope' in this database (it has: m, other)" in result.output
    result = run("--model", "m", "--layer", "7")
    assert result.exit_code == 1 and "no features at layer 7 for this selection (layers: 0, 1, 2)" in result.output
    result = run("--sae", "missing")
    assert result.exit_code == 1 and "no SAE 'missing'" in result.output and "sae-a" in result.output
    result = run("--batch-size", "0")
    assert result.exit_code == 2
    with db.session() as s, s.begin():
        s.execute(delete(Explanation))
    result = run()
    assert result.exit_code == 0 and "no explanations to embed" in result.output


def test_embed_rebuild_index_and_sae_selection(cli):
    db, run, root = cli
    result = run("--sae", "sae-a", "--embedder", OTHER)
    assert result.exit_code == 0, result.output
    with db.session() as s:
        sae_explanations = s.scalar(select(func.count()).select_from(Explanation).join(Feature)
                                    .where(Feature.sae_key == "sae-a", Explanation.text.is_not(None)))
    assert _stored(db, OTHER) == sae_explanations
    result = run("--rebuild-index", "--embedder", OTHER)
    assert result.exit_code == 0 and "rebuilt (rebuild requested)" in result.output


class ApiEmbedder(SentenceEmbedder):
    def __init__(self, table: TableEmbedder) -> None:
        super().__init__(name=EMBEDDER)
        self.table = table

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.table(texts)


def test_api_reports_search_mode_and_missing_embeddings(db, tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    monkeypatch.setenv("AUTOINTERP_CACHE", str(tmp_path / "cache"))
    ann._loaded.clear()
    table, ids = fill(db)
    root = ann.index_root(db.url, tmp_path / "cache")
    with db.session() as s:
        ann_update.update_index(s, root, EMBEDDER)
    monkeypatch.setattr(semantic, "EXACT_LIMIT", 50)
    with TestClient(create_app(db.url, embedder=ApiEmbedder(table))) as client:
        body = client.get("/api/features", params={"semantic": "c:1", "limit": 5, "layer": 2}).json()
        assert body["order"] == "similarity" and body["search_mode"] == "ann" and body["not_embedded"] == 0
        assert len(body["items"]) == 5 and all(i["layer"] == 2 for i in body["items"])
        plain = client.get("/api/features", params={"limit": 5}).json()
        assert "search_mode" not in plain and "not_embedded" not in plain
        feature = body["items"][0]["feature_id"]
        similar = client.get(f"/api/features/{feature}/similar").json()
        assert similar["search_mode"] == "ann" and feature not in [i["feature_id"] for i in similar["items"]]

        with db.session() as s, s.begin():
            s.execute(delete(ExplanationEmbedding).where(ExplanationEmbedding.explanation_id.in_(ids[:500])))
            model = s.scalar(select(SubjectModel.id).where(SubjectModel.name == "m"))
        with db.session() as s:
            ann_update.update_index(s, root, EMBEDDER)
        monkeypatch.setattr(semantic, "LAZY_EMBED_LIMIT", 100)
        body = client.get("/api/features", params={"semantic": "c:1", "limit": 5}).json()
        assert body["search_mode"] == "ann" and body["not_embedded"] == 500 and len(body["items"]) == 5
        assert model is not None


@pytest.mark.slow
def test_embed_with_minilm_then_search_through_the_index(sqlite_url, tmp_path, monkeypatch):
    """The real embedder end to end: `autointerp embed`, then the API ranks by meaning through the ANN index."""
    from storage.core.db import Database
    from tests.test_api_data import fill as fill_api

    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    ann._loaded.clear()
    db = Database(sqlite_url)
    fill_api(db)
    result = CliRunner().invoke(main, ["embed", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "embedded 6 explanations for all layers of all models with all-MiniLM-L6-v2" in result.output
    monkeypatch.setattr(semantic, "EXACT_LIMIT", 0)
    with TestClient(create_app(sqlite_url)) as client:
        body = client.get("/api/features", params={"semantic": "felines such as kittens"}).json()
    assert body["search_mode"] == "ann" and body["not_embedded"] == 0
    assert body["items"][0]["explanation"] == "references to cats and other pets"
