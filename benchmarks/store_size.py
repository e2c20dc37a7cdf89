"""Store size and save time of one collected layer: today's JSON layout vs the windows + binary layout.

One process: collect ONE real layer once (the embedded subject model over the Wikipedia sample), then save the
same FeatureRecords into two fresh SQLite files side by side:

- old: the JSON layout this project stored records in before windows existed, kept here as the baseline. The
  `activation_records` table exactly as storage/core/schema.py defined it (tokens and activations as JSON lists per
  record, provenance per record), written the way storage/records/collection_store.py wrote it: Core executemany of
  `record_values` dicts in chunks of 5,000 in one transaction. A stub `features` table (ids only) gives the
  records' foreign key, so both sides pay for the same checks.
- new: `storage.records.collection_store.save_layer` on a real migrated `storage.core.db.Database`: whatever layout the
  current code stores (the features' upsert with their statistics is part of its time).

Size: after a WAL checkpoint and VACUUM, SQLite's `dbstat` gives the pages of the tables that hold records or
windows (`activation_records`, `windows`, and all of their indexes); divided by the number of records. Whole-file
bytes per record are printed beside them (the new file also holds features, models, runs and the empty tables of
the schema). Then the reads the API and `query` make (the feature page, load_feature_records,
load_many_feature_records) are timed on the new file.
Time: from the first statement to the commit returning, on the same engine settings (storage.core.db.make_engine:
WAL, synchronous=NORMAL, foreign keys on).

    .venv/bin/python benchmarks/store_size.py [--tokens 8000] [--layer 6] [--model gemma-3-270m] [--keep DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    insert,
    text,
)
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activations.collect import collect
from activations.collect_config import CollectConfig, neuron_target
from activations.corpus import open_corpus
from activations.hooks import n_layers
from activations.records import ActivationRecord, FeatureRecords
from activations.vocab import RunKind
from llm_client.local_models import load_model
from storage.core.db import Database, make_engine
from storage.core.repository import find_feature
from storage.core.schema import Feature
from storage.reads.feature_detail import feature_detail
from storage.records.collection_store import save_layer
from storage.records.record_store import load_feature_records, load_many_feature_records, load_records, numbered
from storage.results.runs import start_run

# The tables that hold records or their windows, in either layout (others are the same in both or empty).
RECORD_TABLES = ("activation_records", "windows")
CHUNK = 5_000  # rows per executemany, as the old collection_store wrote them
READ_FEATURES = 200  # features whose reads are timed

# --- the baseline: the JSON layout of storage/schema.py before windows (git show 3bab1f0:storage/schema.py) ---
OLD = MetaData()
OLD_FEATURES = Table("features", OLD, Column("id", Integer, primary_key=True))
OLD_RECORDS = Table(
    "activation_records", OLD,
    Column("id", Integer, primary_key=True),
    Column("feature_id", ForeignKey("features.id", ondelete="CASCADE"), nullable=False),
    Column("split", String(30), nullable=False),
    Column("data_split", String(10), nullable=False),
    Column("position", Integer, nullable=False),
    Column("tokens", JSON, nullable=False),
    Column("activations", JSON, nullable=False),
    Column("max_activation", Float, nullable=False),
    Column("corpus", String(300)),
    Column("document", String(300)),
    Column("offset", Integer),
    UniqueConstraint("feature_id", "split", "position", name="uq_record_position"),
    Index("ix_records_feature", "feature_id", "data_split"),
)


def old_record_values(feature_id: int, record: ActivationRecord, position: int) -> dict[str, Any]:
    """One row of the old layout (storage.records.record_store.record_values before windows)."""
    return {
        "feature_id": feature_id, "split": record.sample, "data_split": record.data_split, "position": position,
        "tokens": list(record.tokens), "activations": list(record.activations), "max_activation": record.max_activation,
        "corpus": record.provenance.corpus, "document": record.provenance.document, "offset": record.provenance.offset,
    }


def chunks(items: Any) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def save_old(path: Path, features: Sequence[FeatureRecords]) -> tuple[float, int]:
    """The baseline save: (seconds, records stored)."""
    engine = make_engine(f"sqlite:///{path}")
    OLD.create_all(engine)
    ids = {fr.feature.index: i + 1 for i, fr in enumerate(features)}
    start = time.perf_counter()
    stored = 0
    with engine.begin() as conn:
        conn.execute(insert(OLD_FEATURES), [{"id": i} for i in ids.values()])
        rows = (
            old_record_values(ids[fr.feature.index], record, position)
            for fr in features
            for record, position in numbered(fr.records)
        )
        for chunk in chunks(rows):
            conn.execute(insert(OLD_RECORDS), chunk)
            stored += len(chunk)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed, stored


def save_new(db: Database, model_name: str, features: Sequence[FeatureRecords], layers: int) -> tuple[float, int]:
    """The current code's save: (seconds, records stored)."""
    with db.session() as s, s.begin():
        run_id = start_run(s, RunKind.COLLECT, {"benchmark": "store_size"})
    start = time.perf_counter()
    with db.session() as s, s.begin():
        stored = save_layer(s, run_id, model_name, features, n_layers=layers)
    return time.perf_counter() - start, stored


def compact(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("VACUUM")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def table_bytes(engine: Engine) -> dict[str, int]:
    """Bytes of pages per table, its indexes included (dbstat), for every table of the file."""
    with engine.connect() as conn:
        owner = {name: table for name, table in conn.execute(
            text("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')"))}
        sizes: dict[str, int] = {}
        for name, pgsize in conn.execute(text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")):
            table = owner.get(name, name)
            sizes[table] = sizes.get(table, 0) + int(pgsize)
    return sizes


def measure(engine: Engine, path: Path) -> tuple[int, int, dict[str, int]]:
    """(record/window table bytes, whole file bytes, bytes per table) after checkpoint and VACUUM."""
    compact(engine)
    sizes = table_bytes(engine)
    return sum(sizes.get(t, 0) for t in RECORD_TABLES), path.stat().st_size, sizes


def count_windows(engine: Engine) -> int | None:
    with engine.connect() as conn:
        has = conn.scalar(text("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'windows'"))
        return int(conn.scalar(text("SELECT count(*) FROM windows")) or 0) if has else None


def distinct_windows(features: Sequence[FeatureRecords]) -> int:
    return len({(r.provenance.corpus, r.provenance.document, r.provenance.offset, r.tokens)
                for fr in features for r in fr.records})


def check_read_back(db: Database, features: Sequence[FeatureRecords], n: int = 25) -> float:
    """Largest activation error of the stored records of `n` features, relative to each record's max |value|;
    tokens, samples and order must read back equal."""
    worst = 0.0
    with db.session() as s:
        for fr in random.Random(0).sample(list(features), min(n, len(features))):
            row = find_feature(s, fr.feature)
            assert row is not None, fr.feature
            stored = {(r.sample, r.tokens): r for r in load_records(s, row)}
            assert len(stored) == len({(r.sample, r.tokens) for r in fr.records}), fr.feature
            for record in fr.records:
                back = stored[(record.sample, record.tokens)]
                assert back.data_split == record.data_split and back.provenance == record.provenance, fr.feature
                scale = max(max(abs(a) for a in record.activations), 1e-12)
                worst = max(worst, max(abs(a - b) for a, b in zip(record.activations, back.activations)) / scale)
    return worst


def time_reads(
    db: Database, features: Sequence[FeatureRecords], n: int = READ_FEATURES, repeats: int = 3
) -> dict[str, float]:
    """Milliseconds of the reads the API and `query` make, on `n` features picked at random (same seed every run):
    the feature page and load_feature_records per feature (mean), load_many_feature_records of all `n` at once;
    each the best of `repeats` passes, so a busy neighbour on the machine shows less."""
    chosen = random.Random(1).sample(list(features), min(n, len(features)))

    def rows(s: Session) -> list[Feature]:
        """The chosen features' rows in this session, their model loaded as the callers' rows have it."""
        found = [find_feature(s, fr.feature) for fr in chosen]
        return [row for row in found if row is not None and row.model is not None]

    timings: dict[str, list[float]] = {"feature_page_ms": [], "load_feature_records_ms": [],
                                       "load_many_feature_records_ms": []}
    for _ in range(repeats):
        with db.session() as s:
            picked = rows(s)
            start = time.perf_counter()
            for row in picked:
                feature_detail(s, row.id)
            timings["feature_page_ms"].append((time.perf_counter() - start) * 1e3 / len(picked))
        with db.session() as s:
            picked = rows(s)
            start = time.perf_counter()
            for row in picked:
                load_feature_records(s, row)
            timings["load_feature_records_ms"].append((time.perf_counter() - start) * 1e3 / len(picked))
        with db.session() as s:
            picked = rows(s)
            start = time.perf_counter()
            load_many_feature_records(s, picked)
            timings["load_many_feature_records_ms"].append((time.perf_counter() - start) * 1e3)
    return {key: round(min(values), 3) for key, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=8_000, help="corpus tokens to collect over")
    parser.add_argument("--ctx-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the two databases into this folder and keep them")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a cProfile of the new layout's save (only) to this file")
    args = parser.parse_args()

    start = time.perf_counter()
    loaded = load_model(args.model, device="cpu")
    config = CollectConfig(ctx_len=args.ctx_len, max_tokens=args.tokens, batch_size=args.batch_size)
    target = neuron_target(args.layer)
    features = collect(loaded.model, loaded.tokenizer, open_corpus("wikipedia"), [target], args.model, config)[target]
    layers = n_layers(loaded.model)
    n_records = sum(len(fr.records) for fr in features)
    print(f"collected layer {args.layer}: {len(features)} features, {n_records:,} records from "
          f"{distinct_windows(features):,} distinct windows over {args.tokens:,} tokens in "
          f"{time.perf_counter() - start:.1f} s (model load included)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        old_path, new_path = folder / "old_json.db", folder / "new.db"
        for path in (old_path, new_path):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        save_s_old, stored_old = save_old(old_path, features)
        db = Database(f"sqlite:///{new_path}")
        if args.profile:
            profiler = cProfile.Profile()
            save_s_new, stored_new = profiler.runcall(save_new, db, args.model, features, layers)
            profiler.dump_stats(args.profile)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
        else:
            save_s_new, stored_new = save_new(db, args.model, features, layers)
        assert stored_old == stored_new == n_records, (stored_old, stored_new, n_records)
        max_rel_err = check_read_back(db, features)
        reads = time_reads(db, features)

        old_engine = make_engine(f"sqlite:///{old_path}")
        old_bytes, old_file, old_tables = measure(old_engine, old_path)
        new_bytes, new_file, new_tables = measure(db.engine, new_path)
        windows = count_windows(db.engine)
        old_engine.dispose()
        db.dispose()

    for name, tables, file_bytes in (("old", old_tables, old_file), ("new", new_tables, new_file)):
        listed = ", ".join(f"{t} {b / 2**20:.1f} MiB" for t, b in sorted(tables.items(), key=lambda kv: -kv[1])
                           if t in RECORD_TABLES or b > 2**20)
        print(f"{name}: file {file_bytes / 2**20:.1f} MiB after VACUUM; {listed}")
    print(f"record/window tables: old {old_bytes / n_records:,.0f} B/record, new {new_bytes / n_records:,.0f} "
          f"B/record; whole file: old {old_file / n_records:,.0f} B/record, new {new_file / n_records:,.0f} B/record; "
          f"save old {save_s_old:.2f} s, new {save_s_new:.2f} s; read-back max rel. error {max_rel_err:.2e}")
    print(f"reads (new, {READ_FEATURES} features, best of 3): feature page {reads['feature_page_ms']:.2f} ms, "
          f"load_feature_records {reads['load_feature_records_ms']:.2f} ms per feature; load_many_feature_records "
          f"{reads['load_many_feature_records_ms']:.1f} ms for all")
    print(json.dumps({
        "bytes_per_record_old": round(old_bytes / n_records, 1),
        "bytes_per_record_new": round(new_bytes / n_records, 1),
        "ratio": round(old_bytes / new_bytes, 2),
        "save_s_old": round(save_s_old, 3),
        "save_s_new": round(save_s_new, 3),
        "records": n_records,
        "windows": windows,
        "file_bytes_per_record_old": round(old_file / n_records, 1),
        "file_bytes_per_record_new": round(new_file / n_records, 1),
        "max_rel_err": max_rel_err,
        **reads,
    }))


if __name__ == "__main__":
    main()
