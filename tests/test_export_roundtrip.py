"""Exports read the windowed, binary store exactly: JSON Lines and Parquet carry the values that were saved,
and an OpenAI NeuronRecord export imports into a fresh database and exports again unchanged."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from activations.records import ActivationRecord, FeatureId, FeatureRecords, FeatureStats, Provenance
from autointerp.cli import main
from storage.core.db import Database
from storage.records.collection_store import save_layer
from storage.results.runs import start_run

TOKENS = [" The", " river", " rose", " 12", " feet"]


def _layer() -> list[FeatureRecords]:
    rng = np.random.default_rng(0)
    out = []
    for index in range(3):
        fid = FeatureId("tiny", 2, "mlp_neuron", index)
        records = [ActivationRecord(TOKENS, rng.random(5).astype(np.float32).tolist(), sample=sample,
                                    data_split=data_split, provenance=Provenance("wiki", f"doc{k}", 5 * k),
                                    token_ids=[11, 12, 13, 14, 15])
                   for k, (sample, data_split) in enumerate([("top", "train"), ("quantile:0", "valid"),
                                                             ("random", "test")])]
        records.append(ActivationRecord(TOKENS, [0.1, 0.2, 0.3, 0.0, 0.05], sample="top", data_split="test"))
        stats = FeatureStats(max_activation=1.0, mean=0.2, variance=0.1, firing_fraction=0.5, n_tokens=50,
                             quantile_boundaries=(0.5,))
        out.append(FeatureRecords(fid, records, stats))
    return out


def _cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def test_exports_carry_the_saved_values_and_openai_round_trips(db_url, db, tmp_path):
    layer = _layer()
    with db.session() as s, s.begin():
        save_layer(s, start_run(s, "collect", {}), "tiny", layer)
    _cli("export", "--format", "jsonl", "--out", str(tmp_path / "a.jsonl"), "--db", db_url)
    _cli("export", "--format", "parquet", "--out", str(tmp_path / "a.parquet"), "--db", db_url)
    docs = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert docs == pq.read_table(tmp_path / "a.parquet").to_pylist()
    for doc, feature in zip(docs, layer):
        saved = {(r.sample, tuple(r.activations)) for r in feature.records}
        assert {(r["sample"], tuple(r["activations"])) for r in doc["records"]} == saved
        assert all(r["tokens"] == TOKENS for r in doc["records"])

    _cli("export", "--format", "openai", "--out", str(tmp_path / "first.jsonl"), "--db", db_url)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    Database(fresh).dispose()
    _cli("import", str(tmp_path / "first.jsonl"), "--model", "tiny", "--db", fresh)
    _cli("export", "--format", "openai", "--out", str(tmp_path / "second.jsonl"), "--db", fresh)
    assert (tmp_path / "second.jsonl").read_text() == (tmp_path / "first.jsonl").read_text()
