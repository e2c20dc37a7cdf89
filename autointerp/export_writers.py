"""Write feature documents as JSON Lines or Parquet (explicit schema, written in row groups so memory
stays bounded). Free-form `params` and `details` travel as JSON text in Parquet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from activations.vocab import SampleKind
from storage.reads.feature_documents import score_column
from storage.reads.queries import SCORE_METHODS

# Field for field the dicts of storage.core.rows (tests/test_export_schema.py holds them together).
_SCORE = pa.struct([
    ("id", pa.int64()), ("explanation_id", pa.int64()), ("simulation_id", pa.int64()), ("run_id", pa.int64()),
    ("method", pa.string()), ("subset", pa.string()), ("role", pa.string()), ("simulator", pa.string()),
    ("imported", pa.bool_()), ("scoring_version", pa.string()), ("value", pa.float64()),
    ("undefined_reason", pa.string()), ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("n_records", pa.int64()),
    ("details", pa.string()), ("created_at", pa.string()),
])
_EXPLANATION = pa.struct([
    ("id", pa.int64()), ("feature_id", pa.int64()), ("status", pa.string()), ("text", pa.string()),
    ("failure_reason", pa.string()), ("explainer", pa.string()), ("prompt_version", pa.string()),
    ("params", pa.string()), ("polarity", pa.string()), ("candidate", pa.int64()), ("selected", pa.bool_()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("cost_usd", pa.float64()),
    ("elapsed_s", pa.float64()), ("run_id", pa.int64()), ("source", pa.string()), ("created_at", pa.string()),
    ("scores", pa.list_(_SCORE)),
])
_RECORD = pa.struct([
    ("id", pa.int64()), ("sample", pa.string()), ("data_split", pa.string()), ("position", pa.int64()),
    ("tokens", pa.list_(pa.string())), ("activations", pa.list_(pa.float64())), ("max_activation", pa.float64()),
    ("corpus", pa.string()), ("document", pa.string()), ("offset", pa.int64()),
])
_LOGIT = pa.struct([("token", pa.string()), ("logit", pa.float64())])
_NEIGHBOUR = pa.struct([("index", pa.int64()), ("similarity", pa.float64())])
FEATURE_SCHEMA = pa.schema([
    ("feature_id", pa.int64()), ("model", pa.string()), ("layer", pa.int64()), ("kind", pa.string()),
    ("sae", pa.string()), ("index", pa.int64()), ("max_activation", pa.float64()), ("min_activation", pa.float64()),
    ("mean", pa.float64()), ("variance", pa.float64()), ("firing_fraction", pa.float64()), ("n_tokens", pa.int64()),
    ("dead", pa.bool_()), ("quantile_boundaries", pa.list_(pa.float64())),
    # Flat, for analysis without unnesting (storage.reads.feature_documents says what they hold).
    ("explanation", pa.string()), ("explanation_id", pa.int64()), ("explainer", pa.string()),
    *((score_column(method), pa.float64()) for method in SCORE_METHODS),
    ("logits", pa.struct([("promoted", pa.list_(_LOGIT)), ("suppressed", pa.list_(_LOGIT))])),
    ("neighbours", pa.list_(_NEIGHBOUR)),
    ("records", pa.list_(_RECORD)), ("explanations", pa.list_(_EXPLANATION)),
])
_QUANTILE_BIN = re.compile(rf"{SampleKind.QUANTILE}:(\d+)")


def _batches(docs: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_jsonl(docs: Iterable[dict], out: Path) -> int:
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_neuron_records(docs: Iterable[dict], out: Path) -> int:
    """OpenAI NeuronRecord JSON Lines: each feature's records by sample kind and its statistics."""
    def dump(doc: dict, sample: str) -> list[dict]:
        return [{"tokens": r["tokens"], "activations": r["activations"]}
                for r in doc["records"] if r["sample"] == sample]

    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for doc in docs:
            bins = sorted({int(m.group(1)) for r in doc["records"] if (m := _QUANTILE_BIN.fullmatch(r["sample"]))})
            record = {
                "dataclass_name": "NeuronRecord",
                "neuron_id": {"dataclass_name": "NeuronId", "layer_index": doc["layer"], "neuron_index": doc["index"]},
                "random_sample": dump(doc, SampleKind.RANDOM),
                "random_sample_by_quantile": [dump(doc, SampleKind.quantile(b)) for b in bins],
                "quantile_boundaries": doc["quantile_boundaries"] or [],
                "mean": doc["mean"], "variance": doc["variance"], "skewness": None, "kurtosis": None,
                "most_positive_activation_records": dump(doc, SampleKind.TOP),
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_parquet(docs: Iterable[dict], out: Path, *, row_group: int = 500) -> int:
    n = 0
    with pq.ParquetWriter(out, FEATURE_SCHEMA) as writer:
        for batch in _batches(docs, row_group):
            for doc in batch:
                doc["logits"] = _logit_structs(doc["logits"])
                for e in doc["explanations"]:
                    e["params"] = _json_text(e.get("params"))
                    for sc in e["scores"]:
                        sc["details"] = _json_text(sc.get("details"))
            writer.write_table(pa.Table.from_pylist(batch, schema=FEATURE_SCHEMA))
            n += len(batch)
    return n


def _logit_structs(logits: dict | None) -> dict | None:
    """[token, logit] pairs (as stored and as JSON Lines carries them) as Parquet structs."""
    if logits is None:
        return None
    return {side: [{"token": token, "logit": value} for token, value in logits.get(side, [])]
            for side in ("promoted", "suppressed")}


def _json_text(value: object) -> str | None:
    return json.dumps(value) if value is not None else None
