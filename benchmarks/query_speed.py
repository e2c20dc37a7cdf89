"""Fill a SQLite database with 1,000,000 scored explanations (synthetic) and time the two hot queries.

Side by side: ingest rate, "top 100 by score in one layer" and a full-text search, each through the same
storage.queries code that `autointerp query` and the API use.
Run: .venv/bin/python benchmarks/query_speed.py [--n 1000000] [--db PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from storage.bulk import ScoredExplanationRow, bulk_add_features, bulk_add_scored_explanations
from storage.db import Database
from storage.queries import FeatureQuery, query_features
from storage.repository import get_or_create_model

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
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        print(f"ingest: {rows_per_s:,.0f} rows/s ({args.n:,} scored explanations, features + explanations + scores)")

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
        print(json.dumps({"ingest_rows_per_s": round(rows_per_s), "top100_ms": round(top_ms, 2),
                          "search_ms": round(search_ms, 2)}))


if __name__ == "__main__":
    main()
