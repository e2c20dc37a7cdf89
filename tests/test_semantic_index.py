"""Semantic search at scale: the ANN index (storage.search.embedding_index) against exact search, filters honoured
exactly, incremental updates, persistence and rebuilds, and searches that never turn into embedding jobs.
Vectors are small random clusters and the embedder is a lookup table: the model is not the point here."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, insert, select, update

from activations.vocab import OutcomeStatus, ScoreRole
from scorer import simulation_scorer_config
from storage.core.db import Database
from storage.core.repository import config_hash
from storage.core.schema import Explanation, ExplanationEmbedding, Feature, Score, SubjectModel
from storage.reads.queries import FeatureQuery
from storage.search import embedding_index as ann
from storage.search import embedding_index_update as ann_update
from storage.search import embedding_store, semantic
from tests.conftest import BACKENDS, _postgres_schema_url

EMBEDDER = "fake-embedder"
CURRENT_SCORER_HASH = config_hash(simulation_scorer_config())  # scores of the current scoring version rank
DIM = 32
WORDS = ("numbers", "cats", "brackets", "html", "music", "rivers", "colours", "verbs")


class TableEmbedder:
    """Texts -> vectors: `c:<k>` is cluster centre k, `e:<id>` the stored vector of explanation id, any other
    text a vector derived from its hash. Counts the texts it embeds."""

    def __init__(self, centres: np.ndarray, vectors: dict[int, np.ndarray]) -> None:
        self.centres = centres
        self.vectors = vectors
        self.embedded: list[str] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        out = []
        for text in texts:
            if text.startswith("c:"):
                out.append(self.centres[int(text[2:])])
            elif text.startswith("e:"):
                out.append(self.vectors[int(text[2:])])
            else:
                rng = np.random.default_rng(abs(hash(text)) % 2**32)
                out.append(rng.standard_normal(DIM))
        matrix = np.asarray(out, dtype=np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def fill(db, n_features: int = 1500, seed: int = 0) -> tuple[TableEmbedder, list[int]]:
    """Two models; 3 layers; every 5th feature an SAE latent; two explanations per feature (explainers a, b),
    scored by two simulators; one failed explanation per 50 features. Stores a vector for every ok explanation
    (30 clusters). Returns the embedder and the ok explanation ids. Core inserts: PostgreSQL fills in a second."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    with db.session() as s, s.begin():
        model_ids = list(s.scalars(insert(SubjectModel).returning(SubjectModel.id, sort_by_parameter_order=True),
                                   [{"name": "m", "meta": {}}, {"name": "other", "meta": {}}]))
        feature_rows = [{"model_id": model_ids[i % 7 == 0], "layer": i % 3,
                         "kind": "sae_latent" if i % 5 == 0 else "mlp_neuron", "sae_key": "sae-a" if i % 5 == 0 else "",
                         "index": i, "dead": False, "extra": {}} for i in range(n_features)]
        feature_ids = list(s.scalars(insert(Feature).returning(Feature.id, sort_by_parameter_order=True), feature_rows))
        explanation_rows = []
        for i, fid in enumerate(feature_ids):
            for c, explainer in enumerate(("x:a", "x:b")):
                explanation_rows.append({
                    "feature_id": fid, "text": f"{WORDS[(i + c) % len(WORDS)]} of feature {i}", "explainer": explainer,
                    "config_hash": f"h{c}", "candidate": c, "status": OutcomeStatus.OK, "params": {}})
            if i % 50 == 0:
                explanation_rows.append({"feature_id": fid, "text": None, "status": OutcomeStatus.FAILED,
                                         "failure_reason": "boom", "explainer": "x:a", "config_hash": "failed",
                                         "candidate": 0, "params": {}})
        explanation_ids = list(s.scalars(
            insert(Explanation).returning(Explanation.id, sort_by_parameter_order=True), explanation_rows))
        features = {fid: row for fid, row in zip(feature_ids, feature_rows)}
        score_rows = []
        ok_ids = []
        for eid, e in zip(explanation_ids, explanation_rows):
            if e["status"] != OutcomeStatus.OK:
                continue
            ok_ids.append(eid)
            f = features[e["feature_id"]]
            for simulator in ("embedding", "logprob:x"):
                score_rows.append({"explanation_id": eid, "feature_id": e["feature_id"], "model_id": f["model_id"],
                                   "layer": f["layer"], "method": "ev_correlation", "subset": "top_and_random",
                                   "role": ScoreRole.OWN, "simulator": simulator, "scorer_hash": CURRENT_SCORER_HASH, "details": {},
                                   "value": float(rng.uniform(-0.2, 1.0))})
        s.execute(insert(Score), score_rows)
    vectors = centres[rng.integers(0, len(centres), len(ok_ids))] + 0.5 * rng.standard_normal((len(ok_ids), DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    with db.session() as s, s.begin():
        embedding_store.store_embeddings(s, EMBEDDER, ok_ids, vectors)
    return TableEmbedder(centres, dict(zip(ok_ids, vectors))), ok_ids


def _indexed(db, root: Path):
    embedder, ids = fill(db)
    with db.session() as s:
        report = ann_update.update_index(s, root, EMBEDDER)
    assert report.vectors == len(ids) and report.rebuilt and report.reason == "missing"
    return db, root, embedder, ids


@pytest.fixture
def data(db, tmp_path):
    """A filled, indexed database of one's own (for tests that change it)."""
    ann._loaded.clear()
    return _indexed(db, tmp_path / "ann")


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request, tmp_path_factory):
    """One filled, indexed database per backend for the tests that only read."""
    tmp = tmp_path_factory.mktemp("shared")
    database = Database(f"sqlite:///{tmp / 'test.db'}" if request.param == "sqlite" else _postgres_schema_url())
    yield _indexed(database, tmp / "ann")
    database.dispose()


def search(db, q: FeatureQuery, text: str, embedder, root: Path | None, **kw) -> semantic.SemanticResult:
    with db.session() as s:
        result = semantic.semantic_search(s, q, text, embedder=EMBEDDER, embed=embedder, index_root=root, **kw)
        s.commit()
        return result


FILTERS = [
    {},
    {"layer": 1},
    {"model": "m", "layer": 2},
    {"kind": "sae_latent", "sae": "sae-a"},
    {"explainer": "x:b"},
    {"min_score": 0.6},
    {"simulator": "logprob:x", "min_score": 0.3},
    {"search": "cats"},
    {"layer": 0, "feature_indices": list(range(0, 1500, 2))},
]


def _satisfies(db, item: dict, flt: dict) -> bool:
    with db.session() as s:
        e = s.get(Explanation, item["explanation_id"])
        f = s.get(Feature, e.feature_id)
        model = s.get(SubjectModel, f.model_id).name
        scores = [sc.value for sc in s.scalars(select(Score).where(Score.explanation_id == e.id))
                  if flt.get("simulator") in (None, sc.simulator)]
    checks = [
        e.status == OutcomeStatus.OK,
        f.id == item["feature_id"],
        flt.get("layer") in (None, f.layer),
        flt.get("model") in (None, model),
        flt.get("kind") in (None, f.kind),
        flt.get("sae") in (None, f.sae_key),
        flt.get("explainer") in (None, e.explainer),
        "min_score" not in flt or max(scores) >= flt["min_score"],
        "search" not in flt or flt["search"] in e.text,
        "feature_indices" not in flt or f.index in flt["feature_indices"],
    ]
    return all(checks)


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_ann_finds_the_exact_top_20_and_honours_filters(shared, flt):
    db, root, embedder, _ = shared
    for k in range(4):
        q = FeatureQuery(limit=20, **flt)
        approx = search(db, q, f"c:{k}", embedder, root, exact_limit=50)
        exact = search(db, FeatureQuery(limit=20, **flt), f"c:{k}", embedder, None)
        assert approx.mode == "ann" and exact.mode == "exact"
        assert approx.not_embedded == 0 and approx.searched > 50
        want = [i["feature_id"] for i in exact.items]
        got = [i["feature_id"] for i in approx.items]
        assert len(got) == len(want) == 20
        assert len(set(got) & set(want)) / 20 >= 0.9, (flt, k)
        assert all(_satisfies(db, item, flt) for item in approx.items), flt
        # Similarities are the stored vectors' (re-ranked exactly), best first; shown scores are the matched
        # explanation's best under the filters.
        sims = [i["similarity"] for i in approx.items]
        assert sims == sorted(sims, reverse=True)
        exact_sims = {i["feature_id"]: i["similarity"] for i in exact.items}
        for item in approx.items:
            if item["feature_id"] in exact_sims:
                assert item["similarity"] == pytest.approx(exact_sims[item["feature_id"]], abs=1e-5)
        if "min_score" in flt:
            assert all(i["score"] >= flt["min_score"] for i in approx.items)


def test_paging_and_excluded_features_through_the_index(shared):
    db, root, embedder, _ = shared
    first = search(db, FeatureQuery(limit=10), "c:3", embedder, root, exact_limit=50).items
    second = search(db, FeatureQuery(limit=10, offset=10), "c:3", embedder, root, exact_limit=50).items
    both = search(db, FeatureQuery(limit=20), "c:3", embedder, root, exact_limit=50).items
    assert [i["feature_id"] for i in first + second] == [i["feature_id"] for i in both]
    with db.session() as s:
        skip = first[0]["feature_id"]
        items = semantic.semantic_search(s, FeatureQuery(limit=10), "c:3", embedder=EMBEDDER, embed=embedder,
                                         index_root=root, exact_limit=50, exclude_features=[skip]).items
    assert skip not in [i["feature_id"] for i in items] and len(items) == 10


def test_small_candidate_sets_are_searched_exactly(shared):
    db, root, embedder, _ = shared
    q: dict[str, Any] = {"layer": 1, "model": "m", "explainer": "x:a"}  # ~430: below the default exact limit
    with_index = search(db, FeatureQuery(limit=15, **q), "c:5", embedder, root)
    without = search(db, FeatureQuery(limit=15, **q), "c:5", embedder, None)
    assert with_index.mode == without.mode == "exact"
    assert with_index.items == without.items


def test_index_is_persisted_and_reloaded(data):
    db, root, embedder, ids = data
    directory = ann.embedder_dir(root, EMBEDDER)
    assert (directory / "CURRENT").read_text().strip() == "g000001"
    loaded = ann.open_index(root, EMBEDDER)
    assert ann.open_index(root, EMBEDDER) is loaded  # one load per process
    ann._loaded.clear()
    fresh = ann.open_index(root, EMBEDDER)
    assert fresh is not loaded and fresh.n_vectors == len(ids) and fresh.dim == DIM
    with db.session() as s:
        again = ann_update.update_index(s, root, EMBEDDER)
    assert (again.added, again.removed, again.rebuilt, again.reason) == (0, 0, False, "up to date")
    target = ids[123]
    top = search(db, FeatureQuery(limit=1), f"e:{target}", embedder, root, exact_limit=50).items[0]
    assert top["explanation_id"] == target and top["similarity"] == pytest.approx(1.0, abs=1e-5)


def _add_feature_with_explanation(db, index: int, text: str) -> int:
    with db.session() as s, s.begin():
        model_id = s.scalar(select(SubjectModel.id).where(SubjectModel.name == "m"))
        feature = Feature(model_id=model_id, layer=1, kind="mlp_neuron", sae_key="", index=index)
        s.add(feature)
        s.flush()
        e = Explanation(feature_id=feature.id, text=text, explainer="x:a", config_hash="new")
        s.add(e)
        s.flush()
        return e.id


def test_incremental_update_adds_new_vectors_and_drops_deleted_ones(data):
    db, root, embedder, ids = data
    new_vectors = {}
    rng = np.random.default_rng(7)
    for n in range(25):
        eid = _add_feature_with_explanation(db, 10_000 + n, f"new explanation {n}")
        vec = rng.standard_normal(DIM).astype(np.float32)
        new_vectors[eid] = vec / np.linalg.norm(vec)
    with db.session() as s, s.begin():
        embedding_store.store_embeddings(s, EMBEDDER, list(new_vectors), np.stack(list(new_vectors.values())))
    embedder.vectors.update(new_vectors)
    gone = ids[10]
    with db.session() as s, s.begin():
        s.execute(delete(Explanation).where(Explanation.id == gone))
    # Before the update: the deleted explanation is never returned (hits are checked against the database).
    hit = search(db, FeatureQuery(limit=5), f"e:{gone}", embedder, root, exact_limit=50)
    assert gone not in [i["explanation_id"] for i in hit.items]
    with db.session() as s:
        report = ann_update.update_index(s, root, EMBEDDER)
    assert (report.added, report.removed, report.rebuilt, report.reason) == (25, 1, False, "incremental")
    assert report.vectors == len(ids) - 1 + 25
    directory = ann.embedder_dir(root, EMBEDDER)
    assert (directory / "CURRENT").read_text().strip() == "g000002"
    # Only the new vectors were written: the base file is the first generation's (hard-linked), they sit in a delta.
    assert (directory / "g000002" / "index.faiss").stat().st_ino == (directory / "g000001" / "index.faiss").stat().st_ino
    assert np.load(directory / "g000002" / "delta.npy").shape == (25, DIM)
    ann._loaded.clear()  # as a new process would
    for eid in list(new_vectors)[:5]:
        top = search(db, FeatureQuery(limit=1), f"e:{eid}", embedder, root, exact_limit=50).items[0]
        assert top["explanation_id"] == eid


def test_a_large_delta_merges_into_the_base(data, monkeypatch):
    db, root, embedder, ids = data
    monkeypatch.setattr(ann_update, "DELTA_MERGE", (10, 0.0))
    new = {}
    for n in range(12):
        eid = _add_feature_with_explanation(db, 30_000 + n, f"merged {n}")
        new[eid] = embedder.centres[n]
    with db.session() as s, s.begin():
        embedding_store.store_embeddings(s, EMBEDDER, list(new), np.stack(list(new.values())))
    with db.session() as s:
        report = ann_update.update_index(s, root, EMBEDDER)
    assert (report.added, report.reason) == (12, "incremental")
    index = ann.open_index(root, EMBEDDER)
    assert index.nb == len(ids) + 12 and len(index.delta) == 0
    assert not (ann.embedder_dir(root, EMBEDDER) / index.generation / "delta.npy").exists()
    top = search(db, FeatureQuery(limit=1, layer=1), "c:4", embedder, root, exact_limit=50).items[0]
    assert top["explanation_id"] == list(new)[4]


def test_an_index_without_vectors_takes_explanations_not_embedded_yet(db, tmp_path):
    """An index written before any vector was stored has no base file; explanations stored after it without
    vectors (not embedded yet) update it incrementally, and their first vectors rebuild it."""
    root = tmp_path / "ann"
    with db.session() as s, s.begin():
        s.add(SubjectModel(name="m", meta={}))
    with db.session() as s:
        first = ann_update.update_index(s, root, EMBEDDER)
    assert (first.vectors, first.rebuilt, first.reason) == (0, True, "missing")
    eid = _add_feature_with_explanation(db, 0, "not embedded yet")
    with db.session() as s:
        report = ann_update.update_index(s, root, EMBEDDER)
    assert (report.vectors, report.added, report.not_embedded, report.reason) == (0, 0, 1, "incremental")
    with db.session() as s, s.begin():
        embedding_store.store_embeddings(s, EMBEDDER, [eid], np.ones((1, DIM), dtype=np.float32))
    with db.session() as s:
        report = ann_update.update_index(s, root, EMBEDDER)
    assert (report.vectors, report.added, report.not_embedded, report.reason) == (1, 1, 0, "first vectors")


def test_search_folds_in_new_explanations_and_embeds_only_a_few(data):
    db, root, embedder, ids = data
    ann.open_index(root, EMBEDDER)  # loaded before the new rows exist
    new = [_add_feature_with_explanation(db, 20_000 + n, f"fresh text {n}") for n in range(5)]
    embedder.embedded.clear()
    result = search(db, FeatureQuery(layer=1, limit=5), "fresh text 3", embedder, root, exact_limit=50)
    assert result.mode == "ann" and result.not_embedded == 0
    assert sorted(embedder.embedded) == sorted(["fresh text 3"] + [f"fresh text {n}" for n in range(5)])
    assert result.items[0]["explanation_id"] == new[3]
    with db.session() as s:  # stored, so the next index update carries them
        assert s.scalar(select(ExplanationEmbedding.vector).where(ExplanationEmbedding.explanation_id == new[0]))


def test_many_missing_embeddings_are_reported_not_computed(data):
    db, root, embedder, ids = data
    with db.session() as s, s.begin():
        s.execute(delete(ExplanationEmbedding).where(ExplanationEmbedding.explanation_id.in_(ids[:400])))
    with db.session() as s:
        ann_update.update_index(s, root, EMBEDDER)
    embedder.embedded.clear()
    result = search(db, FeatureQuery(limit=10), "c:1", embedder, root, exact_limit=50, lazy_limit=100)
    assert embedder.embedded == ["c:1"]  # only the query
    assert result.mode == "ann" and result.not_embedded == 400 and len(result.items) == 10
    assert not {i["explanation_id"] for i in result.items} & set(ids[:400])
    assert "autointerp embed" in result.notes[0]
    # Without an index the exact path behaves the same way.
    exact = search(db, FeatureQuery(limit=10), "c:1", embedder, None, lazy_limit=100)
    assert exact.not_embedded == 400 and embedder.embedded == ["c:1", "c:1"]
    # A few missing ones are embedded inline.
    few = search(db, FeatureQuery(limit=10, layer=1), "c:1", embedder, root, exact_limit=50, lazy_limit=1000)
    assert few.not_embedded == 0 and len(embedder.embedded) == 3 + len([i for i in ids[:400]
                                                                         if _layer(db, i) == 1])


def _layer(db, explanation_id: int) -> int:
    with db.session() as s:
        return s.scalar(select(Feature.layer).join(Explanation, Explanation.feature_id == Feature.id)
                        .where(Explanation.id == explanation_id))


def test_changed_vector_is_ranked_by_the_database(data):
    db, root, embedder, ids = data
    target = ids[42]
    replacement = embedder.centres[9]
    with db.session() as s, s.begin():
        s.execute(update(ExplanationEmbedding).where(ExplanationEmbedding.explanation_id == target)
                  .values(vector=replacement.astype(np.float32).tobytes()))
    # The index still has the old vector for `target`; its reported similarity is the stored vector's.
    items = search(db, FeatureQuery(limit=50), f"e:{target}", embedder, root, exact_limit=50).items
    for item in items:
        if item["explanation_id"] == target:
            assert item["similarity"] == pytest.approx(float(replacement @ embedder.vectors[target]), abs=1e-5)


def test_corrupt_or_missing_index_is_rebuilt(data):
    db, root, embedder, ids = data
    directory = ann.embedder_dir(root, EMBEDDER)
    index_file = directory / "g000001" / "index.faiss"
    index_file.write_bytes(index_file.read_bytes()[:1000])  # truncated
    ann._loaded.clear()
    with pytest.raises(ann.IndexCorrupt, match="bytes"):
        ann.open_index(root, EMBEDDER)
    # A search still answers (exactly) and rebuilds the index in the background.
    result = search(db, FeatureQuery(limit=10), "c:2", embedder, root, exact_limit=50)
    assert result.mode == "exact" and len(result.items) == 10
    for thread in semantic.build_threads:
        thread.join(timeout=60)
    assert ann.open_index(root, EMBEDDER).n_vectors == len(ids)
    # Garbage state: update_index rebuilds it.
    current = (directory / "CURRENT").read_text().strip()
    (directory / current / "state.json").write_text("{not json")
    with db.session() as s:
        report = ann_update.update_index(s, root, EMBEDDER)
    assert report.rebuilt and report.reason.startswith("corrupt") and report.vectors == len(ids)
    # Missing altogether.
    shutil.rmtree(directory)
    with db.session() as s:
        report = ann_update.update_index(s, root, EMBEDDER)
    assert report.rebuilt and report.reason == "missing"
    approx = search(db, FeatureQuery(limit=10), "c:2", embedder, root, exact_limit=50)
    assert approx.mode == "ann" and [i["feature_id"] for i in approx.items] == [i["feature_id"] for i in result.items]


def test_index_root_sits_next_to_sqlite_or_in_the_cache(tmp_path):
    assert ann.index_root("sqlite:////data/x.db", tmp_path) == Path("/data/x.db.ann")
    assert ann.index_root("sqlite://", tmp_path) is None
    assert ann.index_root("sqlite:///:memory:", tmp_path) is None
    a = ann.index_root("postgresql+psycopg://u:secret@host/db", tmp_path)
    b = ann.index_root("postgresql+psycopg://u:other@host/db", tmp_path)
    c = ann.index_root("postgresql+psycopg://u@host/db2", tmp_path)
    assert a == b != c and a.parent == tmp_path / "ann" and "secret" not in str(a)
