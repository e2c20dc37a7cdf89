"""Fill a SQLite database with 1,000,000 scored explanations (synthetic) and time the hot queries.

Side by side: ingest rate, "top 100 by score in one layer", a full-text search, and a filtered semantic search
(one model and layer, best 100 features by meaning) through the ANN index, each through the same storage code
that `autointerp query` and the API use. The semantic search runs over precomputed 384-dim embeddings that
stand in for MiniLM's: each text's vector is the sum of its words' random vectors plus noise, so neighbours
are meaningful and recall against exact search can be measured (`semantic_recall`); `ann_build_s` is the time
to build the index from the database, `ann_update_s` to add 1,000 new vectors to it incrementally.
Run: .venv/bin/python benchmarks/query_speed.py [--n 1000000] [--keep PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from storage.core.db import Database
from storage.core.repository import get_or_create_model
from storage.core.schema import Explanation, ExplanationEmbedding
from storage.reads.queries import FeatureQuery, query_features
from storage.records.bulk import ScoredExplanationRow, bulk_add_features, bulk_add_scored_explanations
from storage.search import embedding_index, embedding_index_update
from storage.search.embedding_store import store_embeddings
from storage.search.semantic import semantic_search

WORDS = ("numbers digits years dates colour colours red blue names people cities countries verbs past tense plural "
         "nouns punctuation commas quotes brackets code python html tags music songs albums films sport football "
         "games science chemistry biology medicine law court legal religion church war battle army ships trains "
         "cars roads rivers mountains weather rain animals birds fish food cooking wine money prices units "
         "measurements letters capital prefix suffix after before token start end sentence paragraph").split()


def synthetic_text(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)} and {rng.choice(WORDS)}, especially {rng.choice(WORDS)} near {rng.choice(WORDS)}"


def fill(db: Database, n: int, layers: int, per_feature: int, seed: int = 0) -> float:
    rng = random.Random(seed)
    n_features = n // per_feature
    per_layer = n_features // layers
    rows_written = 0
    start = time.perf_counter()
    with db.session() as s, s.begin():
        model_id = get_or_create_model(s, "synthetic-model").id
    for layer in range(layers):
        with db.session() as s, s.begin():
            feature_ids = bulk_add_features(s, model_id, layer, range(per_layer))
            rows_written += len(feature_ids)
            batch = []
            for candidate in range(per_feature):
                for fid in feature_ids:
                    value = rng.uniform(-0.2, 1.0)
                    batch.append(ScoredExplanationRow(
                        feature_id=fid, model_id=model_id, layer=layer, text=synthetic_text(rng),
                        explainer=f"openai:model-{candidate % 2}", candidate=candidate,
                        scores={("ev_correlation", "top_and_random"): value,
                                ("ev_correlation", "random_only"): value * 0.8},
                        simulator="embedding",
                    ))
                    if len(batch) >= 20_000:
                        rows_written += bulk_add_scored_explanations(s, batch, config={"bench": candidate})
                        batch = []
            rows_written += bulk_add_scored_explanations(s, batch, config={"bench": "tail"})
    return rows_written / (time.perf_counter() - start)


EMBEDDER = "synthetic-minilm"
DIM = 384


class WordVectors:
    """Stand-in sentence embeddings: a text's vector is the weighted sum of its words' random unit vectors plus
    noise (unit length), so texts sharing words are neighbours, as with a real sentence embedder."""

    weights = {0: 1.0, 2: 1.0, 4: 0.7, 6: 0.5}  # word positions in synthetic_text and their weight

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((len(WORDS), DIM)).astype(np.float32)
        self.words = dict(zip(WORDS, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)))
        self.rng = rng

    def __call__(self, texts: Sequence[str], noise: float = 0.6) -> np.ndarray:
        index = {w: i for i, w in enumerate(self.words)}
        matrix = np.concatenate([np.stack(list(self.words.values())), np.zeros((1, DIM), dtype=np.float32)])
        none = len(self.words)  # the extra last row of `matrix`, all zeros
        rows = []
        for text in texts:
            words = text.replace(",", "").split()
            if len(words) <= 3:  # a query ("music songs"): each word in a weight-1 slot
                words = [w for word in words for w in (word, "")]
            rows.append([index.get(w, none) for w in (words + [""] * 7)[:7]])
        codes = np.array(rows, dtype=np.int64).reshape(len(texts), 7)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for position, weight in self.weights.items():
            out += weight * matrix[codes[:, position]]
        if noise:
            extra = self.rng.standard_normal(out.shape, dtype=np.float32)
            out += noise * extra / np.linalg.norm(extra, axis=1, keepdims=True)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def add_embeddings(db: Database, vectors: WordVectors) -> float:
    """Store a vector for every explanation through the bulk path; returns rows stored per second (making up
    the vectors not counted)."""
    storing = 0.0
    n = 0
    with db.session() as read, db.session() as write:
        rows = read.execute(select(Explanation.id, Explanation.text).order_by(Explanation.id)
                            .execution_options(yield_per=50_000))
        for chunk in rows.partitions():
            matrix = vectors([r[1] or "" for r in chunk])
            start = time.perf_counter()
            store_embeddings(write, EMBEDDER, [r[0] for r in chunk], matrix)
            storing += time.perf_counter() - start
            n += len(chunk)
        start = time.perf_counter()
        write.commit()
        storing += time.perf_counter() - start
    return n / storing


def add_new_explanations(db: Database, vectors: WordVectors, n: int, layer: int = 99, seed: int = 1) -> None:
    """`n` more scored explanations (of features of a new layer) with their vectors, written after the index
    was built."""
    rng = random.Random(seed)
    with db.session() as s, s.begin():
        model_id = get_or_create_model(s, "synthetic-model").id
        feature_ids = bulk_add_features(s, model_id, layer, range(n))
        rows = [ScoredExplanationRow(feature_id=fid, model_id=model_id, layer=layer, text=synthetic_text(rng),
                                     explainer="openai:model-0", candidate=0,
                                     scores={("ev_correlation", "top_and_random"): rng.uniform(-0.2, 1.0)},
                                     simulator="embedding") for fid in feature_ids]
        bulk_add_scored_explanations(s, rows, config={"bench": "new"})
        new = s.execute(select(Explanation.id, Explanation.text).where(Explanation.feature_id.in_(feature_ids))).all()
        store_embeddings(s, EMBEDDER, [r[0] for r in new], vectors([r[1] or "" for r in new]))


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="scored explanations to create")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--per-feature", type=int, default=4, help="explanations per feature (re-explained/rescored)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the filled database at this path (reused if present)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        reuse = path.exists()
        db = Database(f"sqlite:///{path}")
        rows_per_s = 0.0 if reuse else fill(db, args.n, args.layers, args.per_feature)
        vectors = WordVectors()
        with db.session() as s:
            has_vectors = s.scalar(select(func.count()).select_from(
                select(ExplanationEmbedding.explanation_id).limit(1).subquery()))
        embed_rows_per_s = 0.0 if has_vectors else add_embeddings(db, vectors)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        print(f"ingest: {rows_per_s:,.0f} rows/s ({args.n:,} scored explanations, features + explanations + scores)")
        print(f"embeddings: {embed_rows_per_s:,.0f} vectors/s stored ({DIM} dims, bulk path)")

        def top100() -> list:
            with db.session() as s:
                return query_features(s, FeatureQuery(model="synthetic-model", layer=5, limit=100))

        queries = iter(WORDS * (args.repeats // len(WORDS) + 2))

        def search() -> list:
            with db.session() as s:
                return query_features(s, FeatureQuery(search=next(queries), limit=100))

        assert len(top100()) == 100 and top100()[0]["score"] >= top100()[-1]["score"]
        top_ms = median_ms(top100, args.repeats)
        search_ms = median_ms(search, args.repeats)
        print(f"top 100 by score in one layer: median {top_ms:.1f} ms (target <= 20)")
        print(f"full-text search, best 100:    median {search_ms:.1f} ms (target <= 50)")

        root = embedding_index.index_root(db.url, Path(tmp))
        assert root is not None
        with db.session() as s:
            report = embedding_index_update.update_index(s, root, EMBEDDER)
        ann_build_s = report.seconds
        print(f"ANN index: {report.vectors:,} vectors, {report.reason} in {ann_build_s:.1f} s ({report.path})")

        def query_vector(texts: Sequence[str]) -> np.ndarray:
            return vectors(texts, noise=0.0)

        pairs = iter([f"{a} {b}" for a, b in zip(WORDS, WORDS[7:] + WORDS[:7])] * (args.repeats // len(WORDS) + 2))
        layer_query = FeatureQuery(model="synthetic-model", layer=5, limit=100)

        def semantic(text: str, *, exact: bool = False) -> list:
            with db.session() as s:
                result = semantic_search(s, layer_query, text, embedder=EMBEDDER, embed=query_vector,
                                         index_root=None if exact else root)
                assert exact or result.mode == "ann"
                return result.items

        t0 = time.perf_counter()
        first = semantic("music songs")
        cold_ms = (time.perf_counter() - t0) * 1000
        assert len(first) == 100 and all(i["layer"] == 5 for i in first)
        assert "music" in first[0]["explanation"] or "songs" in first[0]["explanation"], first[0]
        semantic_ms = median_ms(lambda: semantic(next(pairs)), args.repeats)
        recalls = []
        for text in ("rain weather", "python code", "football sport"):
            got = {i["feature_id"] for i in semantic(text)}
            want = {i["feature_id"] for i in semantic(text, exact=True)}
            recalls.append(len(got & want) / len(want))
        recall = statistics.mean(recalls)
        print(f"semantic search, one layer, best 100 of {report.vectors:,}: median {semantic_ms:.1f} ms "
              f"(target <= 100; first query {cold_ms:.0f} ms, opening the index); recall vs exact {recall:.3f}")

        add_new_explanations(db, vectors, 1000)
        with db.session() as s:
            update = embedding_index_update.update_index(s, root, EMBEDDER)
        print(f"ANN index update: +{update.added:,} vectors, {update.reason} in {update.seconds:.1f} s")
        print(json.dumps({"ingest_rows_per_s": round(rows_per_s), "top100_ms": round(top_ms, 2),
                          "search_ms": round(search_ms, 2), "semantic_ms": round(semantic_ms, 2),
                          "semantic_recall": round(recall, 3), "ann_build_s": round(ann_build_s, 1),
                          "ann_update_s": round(update.seconds, 2),
                          "embed_rows_per_s": round(embed_rows_per_s)}))


if __name__ == "__main__":
    main()
